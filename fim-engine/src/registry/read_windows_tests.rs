//! [`WindowsRegistry`] against the real registry (run under Wine by `cargo xtask wine-test`).
//! Keys are written with the raw Win32 calls, not through the code under test, under
//! `HKEY_CURRENT_USER\Software\fim-test-<pid>-<test>`, and deleted by a guard.
use std::{ptr::null_mut, time::Duration};

use windows_sys::Win32::{
    Foundation::{LocalFree, ERROR_SUCCESS},
    Security::{
        Authorization::{ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1},
        DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR,
    },
    Storage::FileSystem::WRITE_DAC,
    System::LibraryLoader::{GetModuleHandleW, GetProcAddress},
    System::Registry::{
        RegCreateKeyExW, RegDeleteTreeW, RegDeleteValueW, RegOpenKeyExW, RegSetKeySecurity,
        RegSetValueExW, HKEY, HKEY_CURRENT_USER, HKEY_LOCAL_MACHINE, KEY_ALL_ACCESS,
        KEY_WOW64_32KEY, KEY_WOW64_64KEY, REG_BINARY, REG_DWORD, REG_EXPAND_SZ, REG_MULTI_SZ,
        REG_NONE, REG_OPTION_NON_VOLATILE, REG_QWORD, REG_SZ,
    },
};

use super::*;
use crate::registry::{fold, KeyReader, KeySnapshot, RegistryError, RegistryValue, RegistryView};

/// A test's own key, its whole tree deleted when dropped. The hive is kept as a number so the
/// guard can be shared with a writer thread.
pub(crate) struct TestKey {
    hive: usize,
    hive_name: &'static str,
    /// Below the hive: `Software\fim-test-<pid>-<test>`.
    path: String,
    /// KEY_WOW64_32KEY or KEY_WOW64_64KEY: the view it is written in.
    flags: u32,
}

impl TestKey {
    /// `HKEY_CURRENT_USER\Software\fim-test-<pid>-<test>`, created empty.
    pub(crate) fn new(test: &str) -> TestKey {
        let key = TestKey::unmade(
            HKEY_CURRENT_USER,
            "HKEY_CURRENT_USER",
            test,
            KEY_WOW64_64KEY,
        );
        key.try_create("").expect("create the test key");
        key
    }

    /// The same under another hive and view; `None` when it cannot be created there.
    pub(crate) fn new_in(
        hive: HKEY,
        hive_name: &'static str,
        test: &str,
        flags: u32,
    ) -> Option<TestKey> {
        let key = TestKey::unmade(hive, hive_name, test, flags);
        match key.try_create("") {
            Ok(()) => Some(key),
            Err(status) => {
                eprintln!("cannot create {}: error {status}", key.key());
                std::mem::forget(key);
                None
            }
        }
    }

    fn unmade(hive: HKEY, hive_name: &'static str, test: &str, flags: u32) -> TestKey {
        TestKey {
            hive: hive as usize,
            hive_name,
            path: format!("Software\\fim-test-{}-{test}", std::process::id()),
            flags,
        }
    }

    /// The key's full name, long hive first.
    pub(crate) fn key(&self) -> String {
        format!("{}\\{}", self.hive_name, self.path)
    }

    /// A key below it (`rel` = `a\b`), full name.
    pub(crate) fn sub(&self, rel: &str) -> String {
        format!("{}\\{rel}", self.key())
    }

    fn below(&self, rel: &str) -> String {
        if rel.is_empty() {
            self.path.clone()
        } else {
            format!("{}\\{rel}", self.path)
        }
    }

    /// Opens (creating it and its parents) the key `rel` below this one, "" for this one.
    fn open_raw(&self, rel: &[u16]) -> Result<Key, u32> {
        let mut units: Vec<u16> = self.path.encode_utf16().collect();
        if !rel.is_empty() {
            units.push(u16::from(b'\\'));
            units.extend_from_slice(rel);
        }
        units.push(0);
        let mut handle: HKEY = null_mut();
        // SAFETY: `units` is NUL-terminated; the handle is written on success.
        let status = unsafe {
            RegCreateKeyExW(
                self.hive as HKEY,
                units.as_ptr(),
                0,
                std::ptr::null(),
                REG_OPTION_NON_VOLATILE,
                KEY_ALL_ACCESS | self.flags,
                std::ptr::null(),
                &mut handle,
                null_mut(),
            )
        };
        if status == ERROR_SUCCESS {
            Ok(Key(handle))
        } else {
            Err(status)
        }
    }

    fn try_create(&self, rel: &str) -> Result<(), u32> {
        let units: Vec<u16> = rel.encode_utf16().collect();
        self.open_raw(&units).map(drop)
    }

    /// Creates the key `rel` (and its parents) below this one.
    pub(crate) fn create(&self, rel: &str) {
        self.try_create(rel)
            .unwrap_or_else(|status| panic!("create {}: error {status}", self.below(rel)));
    }

    /// Creates a key whose name is raw UTF-16 (not necessarily valid).
    pub(crate) fn create_units(&self, rel: &[u16]) {
        self.open_raw(rel).expect("create a key from raw units");
    }

    /// Sets value `name` of key `rel` to `data` (`None`: a NULL data pointer, no bytes).
    pub(crate) fn set(&self, rel: &str, name: &str, kind: u32, data: Option<&[u8]>) {
        self.set_units(rel, &name.encode_utf16().collect::<Vec<_>>(), kind, data);
    }

    /// [`TestKey::set`] with the value's name as raw UTF-16.
    pub(crate) fn set_units(&self, rel: &str, name: &[u16], kind: u32, data: Option<&[u8]>) {
        let handle = self
            .open_raw(&rel.encode_utf16().collect::<Vec<_>>())
            .expect("open for set");
        let name: Vec<u16> = name.iter().copied().chain(std::iter::once(0)).collect();
        let (pointer, len) = match data {
            Some(data) => (data.as_ptr(), data.len() as u32),
            None => (std::ptr::null(), 0),
        };
        // SAFETY: the name is NUL-terminated; `pointer` is NULL or `len` live bytes.
        let status = unsafe { RegSetValueExW(handle.raw(), name.as_ptr(), 0, kind, pointer, len) };
        assert_eq!(status, ERROR_SUCCESS, "set {}", self.below(rel));
    }

    /// Replaces the DACL of key `rel` with the one in `sddl`.
    pub(crate) fn set_dacl(&self, rel: &str, sddl: &str) {
        let handle = self
            .open_raw(&rel.encode_utf16().collect::<Vec<_>>())
            .expect("open");
        set_dacl_of(&handle, sddl);
    }

    /// [`TestKey::set_dacl`] for a key the test may no longer read: opened for WRITE_DAC only.
    pub(crate) fn reset_dacl(&self, rel: &str, sddl: &str) {
        let path = wide(&self.below(rel));
        let mut handle: HKEY = null_mut();
        // SAFETY: NUL-terminated name; the handle is written on success and closed by `Key`.
        let status = unsafe {
            RegOpenKeyExW(
                self.hive as HKEY,
                path.as_ptr(),
                0,
                WRITE_DAC | self.flags,
                &mut handle,
            )
        };
        assert_eq!(
            status,
            ERROR_SUCCESS,
            "open {} for WRITE_DAC",
            self.below(rel)
        );
        set_dacl_of(&Key(handle), sddl);
    }

    pub(crate) fn delete_value(&self, rel: &str, name: &str) {
        let handle = self
            .open_raw(&rel.encode_utf16().collect::<Vec<_>>())
            .expect("open");
        let name = wide(name);
        // SAFETY: the name is NUL-terminated.
        let status = unsafe { RegDeleteValueW(handle.raw(), name.as_ptr()) };
        assert_eq!(status, ERROR_SUCCESS);
    }

    /// Deletes the key `rel` below this one with everything under it.
    pub(crate) fn delete_tree(&self, rel: &str) {
        let handle = self.open_raw(&[]).expect("open");
        let rel = wide(rel);
        // SAFETY: the name is NUL-terminated.
        let status = unsafe { RegDeleteTreeW(handle.raw(), rel.as_ptr()) };
        assert_eq!(status, ERROR_SUCCESS);
    }
}

impl Drop for TestKey {
    fn drop(&mut self) {
        // RegDeleteTreeW takes no view flag: open the parent in the key's view.
        let (parent, leaf) = self.path.rsplit_once('\\').expect("Software\\leaf");
        let parent = wide(parent);
        let leaf = wide(leaf);
        let mut handle: HKEY = null_mut();
        // SAFETY: NUL-terminated names; the handle is closed by the guard.
        unsafe {
            let status = RegOpenKeyExW(
                self.hive as HKEY,
                parent.as_ptr(),
                0,
                KEY_ALL_ACCESS | self.flags,
                &mut handle,
            );
            if status == ERROR_SUCCESS {
                let handle = Key(handle);
                RegDeleteTreeW(handle.raw(), leaf.as_ptr());
            }
        }
    }
}

/// Replaces the DACL of the open key `handle` with the one in `sddl`.
fn set_dacl_of(handle: &Key, sddl: &str) {
    let text = wide(sddl);
    let mut descriptor: PSECURITY_DESCRIPTOR = null_mut();
    // SAFETY: NUL-terminated SDDL; the descriptor is LocalAlloc'd by the call and freed
    // below, after RegSetKeySecurity has copied it.
    unsafe {
        let ok = ConvertStringSecurityDescriptorToSecurityDescriptorW(
            text.as_ptr(),
            SDDL_REVISION_1,
            &mut descriptor,
            null_mut(),
        );
        assert_ne!(ok, 0, "parse {sddl}");
        let status = RegSetKeySecurity(handle.raw(), DACL_SECURITY_INFORMATION, descriptor);
        LocalFree(descriptor.cast());
        assert_eq!(status, ERROR_SUCCESS, "set the DACL {sddl}");
    }
}

/// Whether the tests run under Wine (its ntdll exports `wine_get_version`): where Wine is
/// known to differ from Windows, a test asserts what each does.
pub(crate) fn under_wine() -> bool {
    let ntdll = wide("ntdll.dll");
    // SAFETY: ntdll is loaded in every process; the names are NUL-terminated.
    unsafe {
        let module = GetModuleHandleW(ntdll.as_ptr());
        !module.is_null() && GetProcAddress(module, c"wine_get_version".as_ptr().cast()).is_some()
    }
}

/// `text` as REG_SZ bytes: UTF-16LE with its terminating NUL.
pub(crate) fn sz(text: &str) -> Vec<u8> {
    wide(text)
        .iter()
        .flat_map(|unit| unit.to_le_bytes())
        .collect()
}

fn units_bytes(units: &[u16]) -> Vec<u8> {
    units.iter().flat_map(|unit| unit.to_le_bytes()).collect()
}

fn read(key: &str) -> KeySnapshot {
    WindowsRegistry
        .read_key(key, RegistryView::Native, true)
        .expect("read")
        .expect("the key exists")
}

fn value(name: &str, kind: u32, data: &[u8]) -> RegistryValue {
    RegistryValue {
        name: name.to_string(),
        kind,
        data: data.to_vec(),
    }
}

#[test]
fn values_of_every_type_read_back_exactly() {
    let t = TestKey::new("types");
    let multi = units_bytes(&[0x6f, 0x6e, 0x65, 0, 0, 0x74, 0x77, 0x6f, 0, 0]); // one,"",two
    let big: Vec<u8> = (0..2 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let unpaired = units_bytes(&[0x61, 0xD800, 0x62, 0]);
    let expected = [
        value("", REG_SZ, &sz("the default")),
        value("Text", REG_SZ, &sz("hello wörld")),
        value("Expand", REG_EXPAND_SZ, &sz("%SystemRoot%\\x")),
        value("Multi", REG_MULTI_SZ, &multi),
        value("Dword", REG_DWORD, &0x1234_5678u32.to_le_bytes()),
        value("Qword", REG_QWORD, &0x0102_0304_0506_0708u64.to_le_bytes()),
        value("Big", REG_BINARY, &big),
        value("Nothing", REG_NONE, &[]),
        value("Unpaired", REG_SZ, &unpaired),
        value("MiXeD CaSe", REG_DWORD, &7u32.to_le_bytes()),
        value("Unknown type", 0x1234, &[1, 2, 3]),
        value("Odd length", REG_SZ, &[0x61, 0, 0x62]),
    ];
    for v in &expected {
        let data = (!v.data.is_empty()).then_some(v.data.as_slice());
        t.set("", &v.name, v.kind, data);
    }
    // A value name that is not valid UTF-16 comes back with U+FFFD, not dropped.
    t.set_units("", &[0x76, 0xDC00], REG_DWORD, Some(&[9, 0, 0, 0]));

    let snapshot = read(&t.key());
    let mut want = KeySnapshot {
        sddl: snapshot.sddl.clone(),
        last_write: snapshot.last_write,
        ..KeySnapshot::default()
    };
    for v in &expected {
        want.insert_value(v.clone());
    }
    want.insert_value(value("v\u{fffd}", REG_DWORD, &[9, 0, 0, 0]));
    assert_eq!(snapshot.values.len(), 13);
    assert_eq!(snapshot, want);
    assert_eq!(snapshot.values["mixed case"].name, "MiXeD CaSe");
    assert_eq!(snapshot.values[""].data, sz("the default"));
    assert_eq!(snapshot.values["big"].data.len(), 2 * 1024 * 1024);
    assert_ne!(snapshot.last_write, 0);
}

#[test]
fn a_value_that_outgrew_the_buffers_is_read_again() {
    let t = TestKey::new("grow");
    let long_name = "N".repeat(300);
    t.set("", &long_name, REG_BINARY, Some(&[5; 4096]));
    t.set("", "small", REG_DWORD, Some(&[1, 0, 0, 0]));
    let handle = open_key(&t.key(), RegistryView::Native, KEY_READ)
        .unwrap()
        .unwrap();
    // Buffers of one unit and one byte, as if both values grew after RegQueryInfoKeyW.
    let mut read = values(&handle, &t.key(), 0, 0).unwrap();
    read.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(
        read,
        vec![
            value(&long_name, REG_BINARY, &[5; 4096]),
            value("small", REG_DWORD, &[1, 0, 0, 0]),
        ]
    );
}

#[test]
fn subkeys_keep_their_spelling() {
    let t = TestKey::new("subkeys");
    let longest = format!("L{}", "x".repeat(254));
    assert_eq!(longest.len(), 255);
    for name in ["Alpha", "beta", "GAMMA delta", longest.as_str()] {
        t.create(name);
    }
    t.create("Alpha\\grandchild"); // not a direct subkey: not listed
    t.create_units(&[0x66, 0xD800, 0x67]); // not valid UTF-16
    let snapshot = read(&t.key());
    let mut want = std::collections::BTreeMap::new();
    for name in [
        "Alpha",
        "beta",
        "GAMMA delta",
        longest.as_str(),
        "f\u{fffd}g",
    ] {
        want.insert(fold(name), name.to_string());
    }
    assert_eq!(snapshot.subkeys, want);
    assert!(snapshot.values.is_empty());
    // A 255-character subkey reads back too, by a key name with the other spelling.
    let child = read(&t.sub(&longest.to_uppercase()));
    assert!(child.subkeys.is_empty());
}

#[test]
fn missing_keys_and_keys_without_a_hive() {
    let t = TestKey::new("missing");
    let reader = WindowsRegistry;
    let missing = t.sub("not there");
    assert_eq!(
        reader
            .read_key(&missing, RegistryView::Native, true)
            .unwrap(),
        None
    );
    for key in ["Software\\Microsoft", "HKEY_NOWHERE\\x", "", "C:\\Windows"] {
        match reader.read_key(key, RegistryView::Native, true) {
            Err(RegistryError::NoHive { key: got }) => assert_eq!(got, key),
            other => panic!("{key:?}: {other:?}"),
        }
    }
    // The short hive spelling, and a trailing backslash, read the same key.
    t.set("", "v", REG_DWORD, Some(&[1, 0, 0, 0]));
    let long = read(&t.key());
    let short = read(&format!("HKCU\\{}\\", t.path));
    assert_eq!(short, long);
    // The hive alone is a key too.
    let hive = read("HKEY_CURRENT_USER");
    assert_eq!(
        hive.subkeys.get("software").map(String::as_str),
        Some("Software")
    );
}

#[test]
fn without_values_a_read_keeps_subkeys_and_the_time() {
    let t = TestKey::new("novalues");
    t.create("Child");
    t.set("", "v", REG_SZ, Some(&sz("x")));
    let full = read(&t.key());
    let bare = WindowsRegistry
        .read_key(&t.key(), RegistryView::Native, false)
        .unwrap()
        .unwrap();
    assert_eq!(full.values.len(), 1);
    assert_eq!(
        bare,
        KeySnapshot {
            values: Default::default(),
            ..full
        }
    );
}

#[test]
fn last_write_moves_for_own_values_not_for_grandchildren() {
    let t = TestKey::new("lastwrite");
    t.create("child\\grandchild");
    let before = read(&t.key()).last_write;
    std::thread::sleep(Duration::from_millis(50));
    t.set("child\\grandchild", "deep", REG_DWORD, Some(&[1, 0, 0, 0]));
    t.create("child\\grandchild\\deeper");
    assert_eq!(read(&t.key()).last_write, before);
    std::thread::sleep(Duration::from_millis(50));
    t.set("", "own", REG_DWORD, Some(&[1, 0, 0, 0]));
    let after_set = read(&t.key()).last_write;
    assert!(after_set > before, "{after_set} > {before}");
    std::thread::sleep(Duration::from_millis(50));
    t.delete_value("", "own");
    let after_delete = read(&t.key()).last_write;
    assert!(after_delete > after_set, "{after_delete} > {after_set}");
}

#[test]
fn the_security_descriptor_comes_as_sddl() {
    let t = TestKey::new("sddl");
    let sddl = read(&t.key())
        .sddl
        .expect("Wine 8.0 returns the key's SDDL");
    assert!(sddl.starts_with("O:"), "{sddl}");
    assert!(sddl.contains("G:"), "{sddl}");
    assert!(sddl.contains("D:"), "{sddl}");
    // Under Wine 8.0 a new HKCU key reads O:BAG:BAD:(A;CIIO;GR;;;BU)(A;;KA;;;BA); Windows
    // gives another owner and ACEs, so only a DACL we set ourselves is compared exactly.
    t.set_dacl("", "D:(A;;KA;;;BA)(A;;KR;;;WD)");
    let after = read(&t.key()).sddl.expect("SDDL after RegSetKeySecurity");
    let dacl = after.split_once("D:").map(|(_, dacl)| dacl);
    assert_eq!(dacl, Some("(A;;KA;;;BA)(A;;KR;;;WD)"), "{after}");
    // Wine 8.0 surprise: setting only the DACL also rewrote owner and group to
    // S-1-5-21-0-0-0-513, so they are not compared.
    assert!(after.starts_with("O:"), "{after}");
}

#[test]
fn the_32_bit_view_is_its_own_key() {
    let Some(t) = TestKey::new_in(
        HKEY_LOCAL_MACHINE,
        "HKEY_LOCAL_MACHINE",
        "wow32",
        KEY_WOW64_32KEY,
    ) else {
        panic!("Wine's prefix lets the test user write HKLM");
    };
    t.set("", "bits", REG_DWORD, Some(&[32, 0, 0, 0]));
    let reader = WindowsRegistry;
    let wow = reader
        .read_key(&t.key(), RegistryView::Wow32, true)
        .unwrap()
        .unwrap();
    assert_eq!(wow.values["bits"].data, vec![32, 0, 0, 0]);
    assert_eq!(
        reader
            .read_key(&t.key(), RegistryView::Native, true)
            .unwrap(),
        None
    );
    // The native view shows it below WOW6432Node, as Windows does.
    let node = t.key().replacen("Software\\", "Software\\WOW6432Node\\", 1);
    let native = reader
        .read_key(&node, RegistryView::Native, true)
        .unwrap()
        .unwrap();
    assert_eq!(native.values, wow.values);
}

#[test]
fn errors_carry_the_system_text() {
    match os_error("HKEY_CURRENT_USER\\x", 2) {
        RegistryError::Os { key, code, message } => {
            assert_eq!((key.as_str(), code), ("HKEY_CURRENT_USER\\x", 2));
            assert_ne!(message, "unknown error");
            assert!(!message.ends_with(['\n', '.']), "{message:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        os_error("HKEY_USERS\\y", 5),
        RegistryError::AccessDenied { key } if key == "HKEY_USERS\\y"
    ));
    assert_eq!(system_message(0x2000_1234), "unknown error");
}

#[test]
fn a_key_we_may_not_read_is_access_denied() {
    let t = TestKey::new("denied");
    t.create("locked");
    t.set("", "visible", REG_DWORD, Some(&[1, 0, 0, 0]));
    // Everyone may change the DACL and delete the key, nobody may read it.
    t.set_dacl("locked", "D:(A;;WDSD;;;WD)");
    let denied = WindowsRegistry.read_key(&t.sub("locked"), RegistryView::Native, true);
    t.reset_dacl("locked", "D:(A;;KA;;;WD)");
    match denied {
        Err(RegistryError::AccessDenied { key }) => assert_eq!(key, t.sub("locked")),
        other => panic!("{other:?}"),
    }
    // The parent still reads, and lists the locked subkey.
    let parent = read(&t.key());
    assert_eq!(
        parent.subkeys.get("locked").map(String::as_str),
        Some("locked")
    );
}
