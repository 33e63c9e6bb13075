//! Microsoft-Windows-Kernel-Process ProcessStart (1) and ProcessStop (2).
//!
//! ProcessStart's template grew over versions: v0 has ProcessID, CreateTime, ParentProcessID,
//! SessionID, ImageName; v1 adds Flags before the image; v2 adds fields after the image only;
//! v3 adds sequence numbers, the token's elevation and its mandatory label (a SID) before it.
//! ProcessStop has a sequence number after the pid from v2 on.
use super::{fields::FieldError, fields::Fields, EtwEvent};

pub const PROCESS_START: u16 = 1;
pub const PROCESS_STOP: u16 = 2;

/// WINEVENT_KEYWORD_PROCESS.
pub const KEYWORDS: u64 = 0x10;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcessOp {
    Start {
        pid: u32,
        parent: u32,
        session: u32,
        /// FILETIME.
        create_time: i64,
        /// The kernel's path of the image (`\Device\HarddiskVolume3\Windows\...`).
        image: String,
    },
    Stop {
        pid: u32,
        create_time: i64,
    },
}

pub(super) fn decode(event: &EtwEvent) -> Result<Option<ProcessOp>, FieldError> {
    let mut fields = Fields::new(&event.user_data, event.id, event.pointer_size);
    let op = match event.id {
        PROCESS_START => {
            let pid = fields.u32("ProcessID")?;
            if event.version >= 3 {
                fields.u64("ProcessSequenceNumber")?;
            }
            let create_time = fields.u64("CreateTime")? as i64;
            let parent = fields.u32("ParentProcessID")?;
            if event.version >= 3 {
                fields.u64("ParentProcessSequenceNumber")?;
            }
            let session = fields.u32("SessionID")?;
            if event.version >= 1 {
                fields.u32("Flags")?;
            }
            if event.version >= 3 {
                fields.u32("ProcessTokenElevationType")?;
                fields.u32("ProcessTokenIsElevated")?;
                fields.sid("MandatoryLabel")?;
            }
            let image = fields.unicode("ImageName")?;
            ProcessOp::Start {
                pid,
                parent,
                session,
                create_time,
                image,
            }
        }
        PROCESS_STOP => {
            let pid = fields.u32("ProcessID")?;
            if event.version >= 2 {
                fields.u64("ProcessSequenceNumber")?;
            }
            let create_time = fields.u64("CreateTime")? as i64;
            ProcessOp::Stop { pid, create_time }
        }
        _ => return Ok(None),
    };
    Ok(Some(op))
}
