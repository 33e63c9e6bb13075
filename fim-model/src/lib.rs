//! The platform-neutral change model: what every producer and consumer of change records
//! shares.
//!
//! Producers are the Linux daemon (eBPF and scans), the Windows companion (registry, service
//! and file notifications) and, later, the workspace collector re-reading what agents sent;
//! consumers are the journal, the gRPC API, the CLI and the dashboard. Keeping the record, the
//! monitored object, the actor and the filter here, with no SQLite, thread pool or runtime,
//! lets each of them link the same definitions, so a record means the same thing everywhere
//! and a filter selects the same records in SQL, in a live stream and in a test.
pub mod actor;
pub mod change;
pub mod columns;
pub mod filter;
pub mod monitor;
pub mod object;
pub mod path_text;
pub mod samples;
pub mod source;
pub mod timestamp;

pub use actor::{Actor, UserIdentity};
pub use change::{
    ChangeCategory, ChangeRecord, ConfigChangeType, Contributor, Detection, MAX_CONTRIBUTORS,
};
pub use columns::{FileColumns, RegistryColumns, ServiceColumns};
pub use filter::ChangeFilter;
pub use monitor::{MonitorColumns, MonitorEvent};
pub use object::{MonitoredObject, ObjectKind};
pub use timestamp::{Timestamp, TimestampError};
