//! Bytes from the ring buffer to a checked [`RawEvent`].
//!
//! Nothing from the kernel is trusted blindly: every offset and length is checked against the
//! record, so a malformed record is an error, not a panic or an out-of-bounds read.
use fim_common::event::{path_flag, EventHeader, PathDesc, HEADER_SIZE};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than the {HEADER_SIZE}-byte header")]
    Short(usize),
    #[error("record declares {declared} data bytes but carries {actual}")]
    DataLength { declared: usize, actual: usize },
    #[error("path {slot}: {what} range {start}..{end} lies outside the {len}-byte data area")]
    OutOfRange {
        slot: usize,
        what: &'static str,
        start: usize,
        end: usize,
        len: usize,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawPath {
    pub desc: PathDesc,
    /// Dentry names from the walk, leaf first.
    pub names: Vec<Vec<u8>>,
    /// The string the process passed, when the kernel had not resolved the path.
    pub string: Option<Vec<u8>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawEvent {
    pub header: EventHeader,
    pub paths: [Option<RawPath>; 3],
}

pub fn decode(record: &[u8]) -> Result<RawEvent, DecodeError> {
    if record.len() < HEADER_SIZE {
        return Err(DecodeError::Short(record.len()));
    }
    // SAFETY: EventHeader is repr(C) plain data and the slice holds at least HEADER_SIZE bytes.
    let header: EventHeader = unsafe { std::ptr::read_unaligned(record.as_ptr().cast()) };
    let data = &record[HEADER_SIZE..];
    let declared = header.data_len as usize;
    if declared > data.len() {
        return Err(DecodeError::DataLength {
            declared,
            actual: data.len(),
        });
    }
    let data = &data[..declared];
    let mut paths = [None, None, None];
    for (slot, desc) in header.paths.iter().enumerate() {
        if desc.flags & path_flag::PRESENT == 0 {
            continue;
        }
        let names = slice(data, slot, "names", desc.names_off, desc.names_len)?
            .split(|byte| *byte == 0)
            .filter(|name| !name.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        let string = if desc.str_len > 0 || desc.str_off > 0 {
            Some(slice(data, slot, "string", desc.str_off, desc.str_len)?.to_vec())
        } else {
            None
        };
        paths[slot] = Some(RawPath {
            desc: *desc,
            names,
            string,
        });
    }
    Ok(RawEvent { header, paths })
}

fn slice<'a>(
    data: &'a [u8],
    slot: usize,
    what: &'static str,
    off: u16,
    len: u16,
) -> Result<&'a [u8], DecodeError> {
    let (start, end) = (off as usize, off as usize + len as usize);
    data.get(start..end).ok_or(DecodeError::OutOfRange {
        slot,
        what,
        start,
        end,
        len: data.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(header: EventHeader, data: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0u8; HEADER_SIZE];
        unsafe { std::ptr::write_unaligned(bytes.as_mut_ptr().cast(), header) };
        bytes.extend_from_slice(data);
        bytes
    }

    #[test]
    fn decodes_names_and_string() {
        let mut header = EventHeader {
            data_len: 12,
            ..Default::default()
        };
        header.paths[0] = PathDesc {
            flags: path_flag::PRESENT,
            names_off: 0,
            names_len: 6,
            str_off: 6,
            str_len: 5,
            ..Default::default()
        };
        let event = decode(&record(header, b"b\0cd\0\0x/y.z\0")).unwrap();
        let path = event.paths[0].as_ref().unwrap();
        assert_eq!(path.names, vec![b"b".to_vec(), b"cd".to_vec()]);
        assert_eq!(path.string.as_deref(), Some(&b"x/y.z"[..]));
        assert!(event.paths[1].is_none());
    }

    #[test]
    fn rejects_out_of_range_offsets() {
        let mut header = EventHeader {
            data_len: 4,
            ..Default::default()
        };
        header.paths[1] = PathDesc {
            flags: path_flag::PRESENT,
            names_off: 2,
            names_len: 9,
            ..Default::default()
        };
        let error = decode(&record(header, b"abcd")).unwrap_err();
        assert_eq!(
            error,
            DecodeError::OutOfRange {
                slot: 1,
                what: "names",
                start: 2,
                end: 11,
                len: 4
            }
        );
        assert_eq!(decode(&[0u8; 3]).unwrap_err(), DecodeError::Short(3));
    }
}
