//! Who made a Windows change: decoding the kernel ETW providers' events and correlating them
//! with the changes the notifications found.
//!
//! fimsvc detects changes without ETW (registry notifications, ReadDirectoryChangesW, the
//! service control manager) and would use a real-time ETW session only for who-data: which
//! process, image and user made the change. So losing ETW events degrades who-data, never
//! detection. The session itself is Windows I/O; what its events mean is decided here,
//! platform-neutrally, and tested on fixtures (`fim-engine/tests/fixtures/etw/`), because Wine
//! 8.0 cannot consume ETW (OpenTraceW fails: see fim-windows's capability probes).
//!
//! Providers and what is taken from them:
//! - Microsoft-Windows-Kernel-Registry ([`registry`]): CreateKey, OpenKey (key object to
//!   name), SetValueKey, DeleteValueKey, DeleteKey, SetSecurityKey. Events are routed by
//!   event id (the opcode is 0 on the builds seen); the keyword masks to enable are
//!   [`registry::KEYWORDS`].
//! - Microsoft-Windows-Kernel-File ([`file`]): Create/CreateNewFile (file object to name),
//!   Write, DeletePath, RenamePath.
//! - Microsoft-Windows-Kernel-Process ([`process`]): ProcessStart/ProcessStop for the image
//!   and parent of a pid, with the pid's lifetime so a reused pid is not misattributed.
//! - The user: the SID extended data item every event carries when the session enables
//!   `EVENT_ENABLE_PROPERTY_SID`.
pub mod correlate;
pub mod fields;
pub mod file;
pub mod live;
pub mod process;
pub mod registry;
#[cfg(windows)]
pub mod session_windows;

use fim_model::Timestamp;

/// The providers fimsvc enables, by GUID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    KernelRegistry,
    KernelFile,
    KernelProcess,
}

impl Provider {
    pub const fn guid(self) -> &'static str {
        match self {
            Provider::KernelRegistry => "70eb4f03-c1de-4f73-a051-33d13d5413bd",
            Provider::KernelFile => "edd08927-9cc4-4e65-b970-c2560fb5c289",
            Provider::KernelProcess => "22fb2cd6-0e7b-422b-a0c7-2fad1fd0e716",
        }
    }

    pub fn from_guid(guid: &str) -> Option<Self> {
        [
            Provider::KernelRegistry,
            Provider::KernelFile,
            Provider::KernelProcess,
        ]
        .into_iter()
        .find(|provider| {
            provider
                .guid()
                .eq_ignore_ascii_case(guid.trim_matches(['{', '}']))
        })
    }
}

/// The parts of an EVENT_RECORD the decoders use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtwEvent {
    pub provider: Provider,
    pub id: u16,
    pub version: u8,
    pub pid: u32,
    pub tid: u32,
    /// The event's time as a FILETIME (100 ns since 1601), as the session delivers it.
    pub filetime: i64,
    /// 8 in a 64-bit session, 4 in a 32-bit one (EVENT_HEADER_FLAG_32_BIT_HEADER).
    pub pointer_size: usize,
    pub user_data: Vec<u8>,
    /// The user's SID from the event's extended data, as text.
    pub sid: Option<String>,
}

impl EtwEvent {
    pub fn time(&self) -> Timestamp {
        // FILETIME epoch (1601) to Unix epoch, in 100 ns units.
        const UNIX_EPOCH_AS_FILETIME: i64 = 116_444_736_000_000_000;
        Timestamp::from_unix_nanos(
            self.filetime
                .saturating_sub(UNIX_EPOCH_AS_FILETIME)
                .saturating_mul(100),
        )
    }
}

/// An event decoded into what who-data needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    Registry(registry::RegistryOp),
    File(file::FileOp),
    Process(process::ProcessOp),
}

/// Decodes `event`; `Ok(None)` for events of these providers that who-data does not use.
pub fn decode(event: &EtwEvent) -> Result<Option<Decoded>, fields::FieldError> {
    Ok(match event.provider {
        Provider::KernelRegistry => registry::decode(event)?.map(Decoded::Registry),
        Provider::KernelFile => file::decode(event)?.map(Decoded::File),
        Provider::KernelProcess => process::decode(event)?.map(Decoded::Process),
    })
}

#[cfg(test)]
#[path = "fixture_tests.rs"]
mod fixture_tests;
