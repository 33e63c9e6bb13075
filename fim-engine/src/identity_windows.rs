//! [`crate::identity`] on Windows: the MachineGuid Windows setup writes once per installation
//! (what Windows tools use to tell machines apart), and the DNS host name.
use windows_sys::Win32::{
    Foundation::ERROR_SUCCESS,
    System::{
        Registry::{RegGetValueW, HKEY_LOCAL_MACHINE, RRF_RT_REG_SZ, RRF_SUBKEY_WOW6464KEY},
        SystemInformation::{ComputerNameDnsHostname, GetComputerNameExW},
    },
};

fn wide(text: &str) -> Vec<u16> {
    text.encode_utf16().chain(Some(0)).collect()
}

/// `HKLM\SOFTWARE\Microsoft\Cryptography\MachineGuid`, read from the 64-bit view (a 32-bit
/// process would otherwise be redirected to WOW6432Node, where it does not exist).
pub(crate) fn machine_id() -> Option<String> {
    let key = wide(r"SOFTWARE\Microsoft\Cryptography");
    let value = wide("MachineGuid");
    let mut buffer = [0u16; 128];
    let mut bytes = std::mem::size_of_val(&buffer) as u32;
    // SAFETY: NUL-terminated names; the buffer is valid for `bytes` bytes, which the call
    // updates to what it wrote (the terminating NUL included).
    let status = unsafe {
        RegGetValueW(
            HKEY_LOCAL_MACHINE,
            key.as_ptr(),
            value.as_ptr(),
            RRF_RT_REG_SZ | RRF_SUBKEY_WOW6464KEY,
            std::ptr::null_mut(),
            buffer.as_mut_ptr().cast(),
            &mut bytes,
        )
    };
    if status != ERROR_SUCCESS {
        return None;
    }
    let units = (bytes as usize / 2).min(buffer.len());
    let end = buffer[..units]
        .iter()
        .position(|&unit| unit == 0)
        .unwrap_or(units);
    let text = String::from_utf16_lossy(&buffer[..end]);
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

pub(crate) fn host_name() -> String {
    let mut buffer = [0u16; 256];
    let mut len = buffer.len() as u32;
    // SAFETY: the buffer holds `len` UTF-16 units; on success `len` is what was written
    // (without the NUL).
    let ok = unsafe { GetComputerNameExW(ComputerNameDnsHostname, buffer.as_mut_ptr(), &mut len) };
    if ok == 0 {
        return "localhost".to_string();
    }
    String::from_utf16_lossy(&buffer[..(len as usize).min(buffer.len())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_guid_and_host_name_are_read() {
        let id = machine_id().expect("MachineGuid");
        // A GUID: 8-4-4-4-12 hex digits.
        let groups: Vec<usize> = id.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12], "{id}");
        assert!(!host_name().is_empty());
        assert_eq!(crate::identity::Computer::of_this_host().id, id);
    }
}
