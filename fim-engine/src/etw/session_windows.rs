//! The real-time ETW session behind who-data: Kernel-Registry, Kernel-File and Kernel-Process
//! enabled with their keyword masks and the user's SID, consumed on a thread of its own into
//! [`LiveWhoData`].
//!
//! Only built and type-checked here: Wine 8.0 accepts StartTraceW and EnableTraceEx2 but
//! cannot consume (OpenTraceW fails with error 5, see fim-windows's capability probes), so
//! [`EtwSession::start`] fails there and fimsvc records carry no actor. Choices:
//! - One named session, [`SESSION_NAME`]. A session left by a fimsvc that was killed is
//!   stopped and started again (ERROR_ALREADY_EXISTS), never shared.
//! - Buffers sized explicitly ([`BUFFER_KB`] x [`MIN_BUFFERS`]..[`MAX_BUFFERS`]) and flushed
//!   every second, so a burst is held in 4 MB before events are lost, and delivery lags a
//!   change by about a second (the reconciler waits for it, see `live`).
//! - Events are copied out of the callback and handed on at once; decoding and correlation
//!   happen under [`LiveWhoData`]'s lock, never in ETW's buffers.
//! - Lost events ([`EtwSession::lost`]: EventsLost and RealTimeBuffersLost from a query of
//!   the session) are polled by fimsvc, which logs a rise and puts it in status.
use std::{io, mem::size_of, ptr::null_mut, sync::Arc, thread::JoinHandle};

use windows_sys::{
    core::GUID,
    Win32::{
        Foundation::{ERROR_ALREADY_EXISTS, ERROR_SUCCESS},
        Storage::FileSystem::QueryDosDeviceW,
        System::Diagnostics::Etw::{
            CloseTrace, ControlTraceW, EnableTraceEx2, OpenTraceW, ProcessTrace, StartTraceW,
            CONTROLTRACE_HANDLE, ENABLE_TRACE_PARAMETERS, ENABLE_TRACE_PARAMETERS_VERSION_2,
            EVENT_CONTROL_CODE_ENABLE_PROVIDER, EVENT_ENABLE_PROPERTY_SID,
            EVENT_HEADER_EXTENDED_DATA_ITEM, EVENT_HEADER_EXT_TYPE_SID,
            EVENT_HEADER_FLAG_32_BIT_HEADER, EVENT_RECORD, EVENT_TRACE_CONTROL_QUERY,
            EVENT_TRACE_CONTROL_STOP, EVENT_TRACE_LOGFILEW, EVENT_TRACE_PROPERTIES,
            EVENT_TRACE_REAL_TIME_MODE, PROCESSTRACE_HANDLE, PROCESS_TRACE_MODE_EVENT_RECORD,
            PROCESS_TRACE_MODE_REAL_TIME, WNODE_FLAG_TRACED_GUID,
        },
    },
};

use super::{file, live::LiveWhoData, process, registry, EtwEvent, Provider};

pub const SESSION_NAME: &str = "fimsvc-whodata";
pub const BUFFER_KB: u32 = 64;
pub const MIN_BUFFERS: u32 = 16;
pub const MAX_BUFFERS: u32 = 64;
/// TRACE_LEVEL_INFORMATION: the providers log the operations at this level.
const LEVEL: u8 = 4;
/// OpenTraceW's failure value.
const INVALID_PROCESSTRACE_HANDLE: u64 = u64::MAX;

/// Why the session could not run: the call that failed and its Windows error.
#[derive(Debug, thiserror::Error)]
#[error("{call} failed: {source}")]
pub struct SessionError {
    pub call: &'static str,
    #[source]
    pub source: io::Error,
}

fn failed(call: &'static str, code: u32) -> SessionError {
    SessionError {
        call,
        source: io::Error::from_raw_os_error(code as i32),
    }
}

fn wide(text: &str) -> Vec<u16> {
    text.encode_utf16().chain([0]).collect()
}

/// EVENT_TRACE_PROPERTIES followed by room for the session name, as the API wants them.
struct Properties {
    cells: Vec<u64>,
}

impl Properties {
    fn new() -> Self {
        let name_bytes = (SESSION_NAME.len() + 1) * 2;
        let bytes = size_of::<EVENT_TRACE_PROPERTIES>() + name_bytes;
        let mut properties = Properties {
            cells: vec![0u64; bytes.div_ceil(8)],
        };
        let total = (properties.cells.len() * 8) as u32;
        let header = properties.header();
        header.Wnode.BufferSize = total;
        header.Wnode.Flags = WNODE_FLAG_TRACED_GUID;
        // QPC time stamps are converted to FILETIME by the consumer (ClientContext 1).
        header.Wnode.ClientContext = 1;
        header.BufferSize = BUFFER_KB;
        header.MinimumBuffers = MIN_BUFFERS;
        header.MaximumBuffers = MAX_BUFFERS;
        header.LogFileMode = EVENT_TRACE_REAL_TIME_MODE;
        header.FlushTimer = 1;
        header.LoggerNameOffset = size_of::<EVENT_TRACE_PROPERTIES>() as u32;
        properties
    }

    fn header(&mut self) -> &mut EVENT_TRACE_PROPERTIES {
        // SAFETY: the cells are 8-aligned and at least size_of::<EVENT_TRACE_PROPERTIES>().
        unsafe { &mut *(self.cells.as_mut_ptr() as *mut EVENT_TRACE_PROPERTIES) }
    }
}

/// Stops the named session, whoever started it (a fimsvc killed before it could).
fn stop_named(name: &[u16]) -> u32 {
    let mut properties = Properties::new();
    // SAFETY: the properties buffer is sized for the session name; a zero handle with a name
    // addresses the session by name.
    unsafe {
        ControlTraceW(
            CONTROLTRACE_HANDLE { Value: 0 },
            name.as_ptr(),
            properties.header(),
            EVENT_TRACE_CONTROL_STOP,
        )
    }
}

fn guid(text: &str) -> GUID {
    let hex: String = text.chars().filter(char::is_ascii_hexdigit).collect();
    GUID::from_u128(u128::from_str_radix(&hex, 16).unwrap_or(0))
}

fn provider_of(id: &GUID) -> Option<Provider> {
    [
        Provider::KernelRegistry,
        Provider::KernelFile,
        Provider::KernelProcess,
    ]
    .into_iter()
    .find(|provider| {
        let known = guid(provider.guid());
        (known.data1, known.data2, known.data3, known.data4)
            == (id.data1, id.data2, id.data3, id.data4)
    })
}

/// A running session and its consumer thread; stopped on drop.
pub struct EtwSession {
    control: CONTROLTRACE_HANDLE,
    trace: PROCESSTRACE_HANDLE,
    name: Vec<u16>,
    consumer: Option<JoinHandle<()>>,
    sink: Arc<LiveWhoData>,
}

impl EtwSession {
    /// Starts the session, enables the three providers and starts consuming into `sink`.
    pub fn start(sink: Arc<LiveWhoData>) -> Result<EtwSession, SessionError> {
        let name = wide(SESSION_NAME);
        let control = start_trace(&name)?;
        let mut session = EtwSession {
            control,
            trace: PROCESSTRACE_HANDLE {
                Value: INVALID_PROCESSTRACE_HANDLE,
            },
            name,
            consumer: None,
            sink,
        };
        for (provider, keywords) in [
            (Provider::KernelRegistry, registry::KEYWORDS),
            (Provider::KernelFile, file::KEYWORDS),
            (Provider::KernelProcess, process::KEYWORDS),
        ] {
            session.enable(provider, keywords)?;
        }
        session.consume()?;
        session.sink.set_live(true);
        Ok(session)
    }

    fn enable(&self, provider: Provider, keywords: u64) -> Result<(), SessionError> {
        let parameters = ENABLE_TRACE_PARAMETERS {
            Version: ENABLE_TRACE_PARAMETERS_VERSION_2,
            EnableProperty: EVENT_ENABLE_PROPERTY_SID,
            ..Default::default()
        };
        let id = guid(provider.guid());
        // SAFETY: a started session's handle, a GUID and parameters that outlive the call.
        let code = unsafe {
            EnableTraceEx2(
                self.control,
                &id,
                EVENT_CONTROL_CODE_ENABLE_PROVIDER,
                LEVEL,
                keywords,
                0,
                0,
                &parameters,
            )
        };
        if code != ERROR_SUCCESS {
            return Err(failed("EnableTraceEx2", code));
        }
        Ok(())
    }

    fn consume(&mut self) -> Result<(), SessionError> {
        // SAFETY: zeroed is a valid EVENT_TRACE_LOGFILEW; the fields the API reads are set.
        let mut logfile: EVENT_TRACE_LOGFILEW = unsafe { std::mem::zeroed() };
        logfile.LoggerName = self.name.as_mut_ptr();
        logfile.Anonymous1.ProcessTraceMode =
            PROCESS_TRACE_MODE_REAL_TIME | PROCESS_TRACE_MODE_EVENT_RECORD;
        logfile.Anonymous2.EventRecordCallback = Some(on_event);
        // The sink outlives the consumer: `stop` joins the thread before the Arc is dropped.
        logfile.Context = Arc::as_ptr(&self.sink) as *mut core::ffi::c_void;
        // SAFETY: the logfile is fully set up for a real-time consumer.
        let trace = unsafe { OpenTraceW(&mut logfile) };
        if trace.Value == INVALID_PROCESSTRACE_HANDLE {
            return Err(SessionError {
                call: "OpenTraceW",
                source: io::Error::last_os_error(),
            });
        }
        self.trace = trace;
        let handle = trace.Value;
        let consumer = std::thread::Builder::new()
            .name("etw-consumer".into())
            .spawn(move || {
                let handles = [PROCESSTRACE_HANDLE { Value: handle }];
                // SAFETY: an open trace handle; returns once the trace is closed.
                let code = unsafe {
                    ProcessTrace(handles.as_ptr(), 1, std::ptr::null(), std::ptr::null())
                };
                if code != ERROR_SUCCESS {
                    tracing::warn!(code, "the ETW consumer ended with an error: who-data stops");
                }
            })
            .map_err(|source| SessionError {
                call: "spawning the ETW consumer",
                source,
            })?;
        self.consumer = Some(consumer);
        Ok(())
    }

    /// Events the session lost so far (its own count plus real-time buffers lost).
    pub fn lost(&self) -> Result<u64, SessionError> {
        let mut properties = Properties::new();
        // SAFETY: the session's handle and a properties buffer sized for its name.
        let code = unsafe {
            ControlTraceW(
                self.control,
                null_mut(),
                properties.header(),
                EVENT_TRACE_CONTROL_QUERY,
            )
        };
        if code != ERROR_SUCCESS {
            return Err(failed("ControlTraceW(QUERY)", code));
        }
        let header = properties.header();
        Ok(u64::from(header.EventsLost) + u64::from(header.RealTimeBuffersLost))
    }

    fn stop(&mut self) {
        self.sink.set_live(false);
        let _ = stop_named(&self.name);
        if self.trace.Value != INVALID_PROCESSTRACE_HANDLE {
            // SAFETY: opened by `consume`, closed once; ProcessTrace returns after it.
            unsafe { CloseTrace(self.trace) };
            self.trace.Value = INVALID_PROCESSTRACE_HANDLE;
        }
        if let Some(consumer) = self.consumer.take() {
            let _ = consumer.join();
        }
    }
}

impl Drop for EtwSession {
    fn drop(&mut self) {
        self.stop();
    }
}

fn start_trace(name: &[u16]) -> Result<CONTROLTRACE_HANDLE, SessionError> {
    for attempt in 0..2 {
        let mut properties = Properties::new();
        let mut control = CONTROLTRACE_HANDLE { Value: 0 };
        // SAFETY: a NUL-terminated name and a properties buffer with room for it.
        let code = unsafe { StartTraceW(&mut control, name.as_ptr(), properties.header()) };
        match code {
            ERROR_SUCCESS => return Ok(control),
            ERROR_ALREADY_EXISTS if attempt == 0 => {
                tracing::info!(
                    session = SESSION_NAME,
                    "stopping an ETW session left behind"
                );
                let _ = stop_named(name);
            }
            other => return Err(failed("StartTraceW", other)),
        }
    }
    Err(failed("StartTraceW", ERROR_ALREADY_EXISTS))
}

/// The event callback: copies what the decoders need and hands it to the sink.
unsafe extern "system" fn on_event(record: *mut EVENT_RECORD) {
    // SAFETY: ETW passes a valid record for the duration of the call; UserContext is the
    // sink set in `consume`, alive until the consumer thread has been joined.
    let (record, sink) = unsafe {
        let Some(record) = record.as_ref() else {
            return;
        };
        let Some(sink) = (record.UserContext as *const LiveWhoData).as_ref() else {
            return;
        };
        (record, sink)
    };
    let header = &record.EventHeader;
    let Some(provider) = provider_of(&header.ProviderId) else {
        return;
    };
    let user_data = if record.UserData.is_null() {
        Vec::new()
    } else {
        // SAFETY: UserData holds UserDataLength bytes during the callback.
        unsafe {
            std::slice::from_raw_parts(record.UserData as *const u8, record.UserDataLength.into())
        }
        .to_vec()
    };
    let event = EtwEvent {
        provider,
        id: header.EventDescriptor.Id,
        version: header.EventDescriptor.Version,
        pid: header.ProcessId,
        tid: header.ThreadId,
        filetime: header.TimeStamp,
        pointer_size: if u32::from(header.Flags) & EVENT_HEADER_FLAG_32_BIT_HEADER != 0 {
            4
        } else {
            8
        },
        user_data,
        // SAFETY: the extended data items are valid during the callback.
        sid: unsafe { event_sid(record) },
    };
    sink.observe(&event);
}

/// The SID extended data item of `record`, as text.
///
/// # Safety
/// `record` must be the record ETW passed to the callback, during the callback.
unsafe fn event_sid(record: &EVENT_RECORD) -> Option<String> {
    if record.ExtendedData.is_null() {
        return None;
    }
    // SAFETY: ExtendedDataCount items at ExtendedData (the caller's contract).
    let items: &[EVENT_HEADER_EXTENDED_DATA_ITEM] =
        unsafe { std::slice::from_raw_parts(record.ExtendedData, record.ExtendedDataCount.into()) };
    let item = items
        .iter()
        .find(|item| u32::from(item.ExtType) == EVENT_HEADER_EXT_TYPE_SID)?;
    // SAFETY: a SID item's data is a SID.
    unsafe { crate::security_windows::sid_string(item.DataPtr as *mut core::ffi::c_void) }.ok()
}

/// The kernel device of each drive letter (`\Device\HarddiskVolume3`, `C:`), for turning
/// Kernel-File paths into the paths records use.
pub fn drive_devices() -> Vec<(String, String)> {
    let mut devices = Vec::new();
    for letter in b'A'..=b'Z' {
        let drive = format!("{}:", letter as char);
        let name = wide(&drive);
        let mut target = vec![0u16; 1024];
        // SAFETY: a NUL-terminated drive name and a buffer of the given length.
        let len =
            unsafe { QueryDosDeviceW(name.as_ptr(), target.as_mut_ptr(), target.len() as u32) };
        if len == 0 {
            continue;
        }
        // The first of the NUL-separated targets.
        let end = target.iter().position(|unit| *unit == 0).unwrap_or(0);
        let device = String::from_utf16_lossy(&target[..end]);
        if !device.is_empty() {
            devices.push((device, drive));
        }
    }
    devices
}
