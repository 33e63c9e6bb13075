//! Microsoft-Windows-Kernel-Registry events (templates of the provider manifest, task_0).
//!
//! Keys are named in events in two ways: CreateKey and OpenKey give the new key object's
//! address with its name (absolute, `\REGISTRY\MACHINE\...`, or relative to a base object),
//! and later events give only the key object (with, at best, a relative KeyName). So a key
//! object cache is built from CreateKey/OpenKey ([`super::correlate`]); a key opened before
//! the session started has no entry there, and such an event is matched by its value name
//! and time alone (see the correlator).
use super::{fields::FieldError, fields::Fields, EtwEvent};

pub const CREATE_KEY: u16 = 1;
pub const OPEN_KEY: u16 = 2;
pub const DELETE_KEY: u16 = 3;
pub const SET_VALUE_KEY: u16 = 5;
pub const DELETE_VALUE_KEY: u16 = 6;
pub const SET_SECURITY_KEY: u16 = 15;

/// The keyword bits to enable: SetValueKey 0x0100, DeleteValueKey 0x0200, CreateKey 0x1000,
/// OpenKey 0x2000 (for key names), DeleteKey 0x4000, SetSecurityKey 0x10000 (the masks are
/// easy to get wrong; these are the manifest's).
pub const KEYWORDS: u64 = 0x0100 | 0x0200 | 0x1000 | 0x2000 | 0x4000 | 0x1_0000;

/// What a registry event did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistryAction {
    /// CreateKey or OpenKey: `key_object` is now the key named `base_name`\`relative_name`
    /// (or relative to `base_object`). Disposition 1 is a new key, 2 an existing one.
    Named {
        base_object: u64,
        base_name: String,
        relative_name: String,
        disposition: u32,
        created: bool,
    },
    SetValue {
        value_name: String,
        value_type: u32,
        data_size: u32,
        previous_type: u32,
    },
    DeleteValue {
        value_name: String,
    },
    DeleteKey,
    SetSecurity,
}

/// One decoded registry event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryOp {
    pub key_object: u64,
    /// NTSTATUS: a failed operation changed nothing.
    pub status: u32,
    /// The KeyName field where the event has one (often relative or empty).
    pub key_name: String,
    pub action: RegistryAction,
}

impl RegistryOp {
    pub fn succeeded(&self) -> bool {
        // NT_SUCCESS: severity bits 00 or 01.
        self.status & 0x8000_0000 == 0
    }
}

pub(super) fn decode(event: &EtwEvent) -> Result<Option<RegistryOp>, FieldError> {
    let mut fields = Fields::new(&event.user_data, event.id, event.pointer_size);
    let op = match event.id {
        CREATE_KEY | OPEN_KEY => {
            let base_object = fields.pointer("BaseObject")?;
            let key_object = fields.pointer("KeyObject")?;
            let status = fields.u32("Status")?;
            let disposition = fields.u32("Disposition")?;
            let base_name = fields.unicode("BaseName")?;
            let relative_name = fields.unicode("RelativeName")?;
            RegistryOp {
                key_object,
                status,
                key_name: String::new(),
                action: RegistryAction::Named {
                    base_object,
                    base_name,
                    relative_name,
                    disposition,
                    created: event.id == CREATE_KEY && disposition == 1,
                },
            }
        }
        SET_VALUE_KEY => {
            let key_object = fields.pointer("KeyObject")?;
            let status = fields.u32("Status")?;
            let value_type = fields.u32("Type")?;
            let data_size = fields.u32("DataSize")?;
            let key_name = fields.unicode("KeyName")?;
            let value_name = fields.unicode("ValueName")?;
            // The captured data and previous value follow; the record's values come from the
            // registry itself, so only the previous type is kept (to check the correlation).
            let captured = fields.u16("CapturedDataSize")?;
            fields.binary("CapturedData", usize::from(captured))?;
            let previous_type = fields.u32("PreviousDataType").unwrap_or(0);
            RegistryOp {
                key_object,
                status,
                key_name,
                action: RegistryAction::SetValue {
                    value_name,
                    value_type,
                    data_size,
                    previous_type,
                },
            }
        }
        DELETE_VALUE_KEY => {
            let key_object = fields.pointer("KeyObject")?;
            let status = fields.u32("Status")?;
            let key_name = fields.unicode("KeyName")?;
            let value_name = fields.unicode("ValueName")?;
            RegistryOp {
                key_object,
                status,
                key_name,
                action: RegistryAction::DeleteValue { value_name },
            }
        }
        DELETE_KEY | SET_SECURITY_KEY => {
            let key_object = fields.pointer("KeyObject")?;
            let status = fields.u32("Status")?;
            let key_name = fields.unicode("KeyName")?;
            RegistryOp {
                key_object,
                status,
                key_name,
                action: if event.id == DELETE_KEY {
                    RegistryAction::DeleteKey
                } else {
                    RegistryAction::SetSecurity
                },
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(op))
}

/// A kernel registry path as records spell it: `\REGISTRY\MACHINE\X` is `HKEY_LOCAL_MACHINE\X`,
/// `\REGISTRY\USER\X` is `HKEY_USERS\X`; anything else is returned as it is.
pub fn user_key_path(kernel: &str) -> String {
    let upper = kernel.to_ascii_uppercase();
    for (prefix, hive) in [
        ("\\REGISTRY\\MACHINE", "HKEY_LOCAL_MACHINE"),
        ("\\REGISTRY\\USER", "HKEY_USERS"),
    ] {
        if upper.starts_with(prefix)
            && kernel[prefix.len()..]
                .chars()
                .next()
                .is_none_or(|c| c == '\\')
        {
            return format!("{hive}{}", &kernel[prefix.len()..]);
        }
    }
    kernel.to_string()
}
