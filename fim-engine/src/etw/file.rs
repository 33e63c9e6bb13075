//! Microsoft-Windows-Kernel-File events (manifest templates, version 1).
//!
//! Create and CreateNewFile name a file object (`\Device\HarddiskVolume3\...`); Write names
//! only the object, so the correlator keeps object-to-name from the creates; DeletePath and
//! RenamePath carry a path of their own (for a rename, the new one).
use super::{fields::FieldError, fields::Fields, EtwEvent};

pub const CREATE: u16 = 12;
pub const WRITE: u16 = 16;
pub const DELETE_PATH: u16 = 26;
pub const RENAME_PATH: u16 = 27;
pub const CREATE_NEW_FILE: u16 = 30;

/// KERNEL_FILE_KEYWORD_FILENAME 0x10, CREATE 0x80, WRITE 0x200, DELETE_PATH 0x400,
/// RENAME_SETLINK_PATH 0x800, CREATE_NEW_FILE 0x1000.
pub const KEYWORDS: u64 = 0x10 | 0x80 | 0x200 | 0x400 | 0x800 | 0x1000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileAction {
    /// The object now names this file (opened or created).
    Opened {
        name: String,
        created: bool,
    },
    Write {
        size: u32,
    },
    Delete {
        path: String,
    },
    Rename {
        new_path: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileOp {
    pub file_object: u64,
    /// The thread that issued the I/O (the event's own thread may be a system worker).
    pub issuing_thread: u32,
    pub action: FileAction,
}

pub(super) fn decode(event: &EtwEvent) -> Result<Option<FileOp>, FieldError> {
    let mut fields = Fields::new(&event.user_data, event.id, event.pointer_size);
    let op = match event.id {
        CREATE | CREATE_NEW_FILE => {
            fields.pointer("Irp")?;
            let file_object = fields.pointer("FileObject")?;
            let issuing_thread = fields.u32("IssuingThreadId")?;
            fields.u32("CreateOptions")?;
            fields.u32("CreateAttributes")?;
            fields.u32("ShareAccess")?;
            let name = fields.unicode("FileName")?;
            FileOp {
                file_object,
                issuing_thread,
                action: FileAction::Opened {
                    name,
                    created: event.id == CREATE_NEW_FILE,
                },
            }
        }
        WRITE => {
            fields.u64("ByteOffset")?;
            fields.pointer("Irp")?;
            let file_object = fields.pointer("FileObject")?;
            fields.pointer("FileKey")?;
            let issuing_thread = fields.u32("IssuingThreadId")?;
            let size = fields.u32("IOSize")?;
            FileOp {
                file_object,
                issuing_thread,
                action: FileAction::Write { size },
            }
        }
        DELETE_PATH | RENAME_PATH => {
            fields.pointer("Irp")?;
            let file_object = fields.pointer("FileObject")?;
            fields.pointer("FileKey")?;
            fields.pointer("ExtraInformation")?;
            let issuing_thread = fields.u32("IssuingThreadId")?;
            fields.u32("InfoClass")?;
            let path = fields.unicode("FilePath")?;
            FileOp {
                file_object,
                issuing_thread,
                action: if event.id == DELETE_PATH {
                    FileAction::Delete { path }
                } else {
                    FileAction::Rename { new_path: path }
                },
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(op))
}
