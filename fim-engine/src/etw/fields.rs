//! Reading an ETW event's user data field by field, in manifest order.
//!
//! Manifest templates lay fields out back to back with no padding: integers little-endian,
//! pointers 8 bytes in a 64-bit session (4 in a 32-bit one, which the event header says),
//! strings NUL-terminated UTF-16, binaries with their length in an earlier field, SIDs with
//! their size in their own header. Every read is bounds-checked: a short or lying event is an
//! error naming the field, never a panic or a guess.

/// Why a field could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("event {event}: field {field} at byte {offset} runs past the {length}-byte user data")]
pub struct FieldError {
    pub event: u16,
    pub field: &'static str,
    pub offset: usize,
    pub length: usize,
}

/// A cursor over one event's user data.
pub struct Fields<'a> {
    data: &'a [u8],
    at: usize,
    event: u16,
    pointer_size: usize,
}

impl<'a> Fields<'a> {
    pub fn new(data: &'a [u8], event: u16, pointer_size: usize) -> Self {
        Fields {
            data,
            at: 0,
            event,
            pointer_size,
        }
    }

    fn take(&mut self, field: &'static str, count: usize) -> Result<&'a [u8], FieldError> {
        let end = self
            .at
            .checked_add(count)
            .filter(|end| *end <= self.data.len());
        let Some(end) = end else {
            return Err(FieldError {
                event: self.event,
                field,
                offset: self.at,
                length: self.data.len(),
            });
        };
        let bytes = &self.data[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    pub fn u16(&mut self, field: &'static str) -> Result<u16, FieldError> {
        let bytes = self.take(field, 2)?;
        Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
    }

    pub fn u32(&mut self, field: &'static str) -> Result<u32, FieldError> {
        let bytes = self.take(field, 4)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    pub fn u64(&mut self, field: &'static str) -> Result<u64, FieldError> {
        let mut word = [0; 8];
        word.copy_from_slice(self.take(field, 8)?);
        Ok(u64::from_le_bytes(word))
    }

    /// A `win:Pointer`: an object address, used only as an identity.
    pub fn pointer(&mut self, field: &'static str) -> Result<u64, FieldError> {
        if self.pointer_size == 4 {
            self.u32(field).map(u64::from)
        } else {
            self.u64(field)
        }
    }

    /// A `win:UnicodeString`: UTF-16 up to its NUL (decoded lossily: names need not be valid).
    pub fn unicode(&mut self, field: &'static str) -> Result<String, FieldError> {
        let rest = &self.data[self.at.min(self.data.len())..];
        let end = rest
            .chunks_exact(2)
            .position(|pair| pair == [0, 0])
            .ok_or(FieldError {
                event: self.event,
                field,
                offset: self.at,
                length: self.data.len(),
            })?;
        let bytes = self.take(field, end * 2 + 2)?;
        let units: Vec<u16> = bytes[..end * 2]
            .chunks_exact(2)
            .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
            .collect();
        Ok(fim_model::columns::utf16_lossy(&units).0)
    }

    /// A `win:Binary` of `count` bytes.
    pub fn binary(&mut self, field: &'static str, count: usize) -> Result<Vec<u8>, FieldError> {
        self.take(field, count).map(<[u8]>::to_vec)
    }

    /// A `win:SID`: revision, sub-authority count, 6-byte authority, the sub-authorities;
    /// returned as its string form (`S-1-5-21-...`).
    pub fn sid(&mut self, field: &'static str) -> Result<String, FieldError> {
        let header = self.take(field, 8)?;
        let count = usize::from(header[1]);
        let authority = header[2..8]
            .iter()
            .fold(0u64, |value, byte| (value << 8) | u64::from(*byte));
        let (revision, subs) = (header[0], self.take(field, count * 4)?);
        let mut text = format!("S-{revision}-{authority}");
        for sub in subs.chunks_exact(4) {
            text.push_str(&format!(
                "-{}",
                u32::from_le_bytes([sub[0], sub[1], sub[2], sub[3]])
            ));
        }
        Ok(text)
    }
}

/// A binary SID (as in an event's extended data) as text; None when it is malformed.
pub fn sid_text(bytes: &[u8]) -> Option<String> {
    let mut fields = Fields::new(bytes, 0, 8);
    fields.sid("SID").ok()
}
