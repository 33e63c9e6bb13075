//! The platform-independent FIM engine: everything between an event source and a change record.
//!
//! Sources (eBPF on Linux today, Windows notifications next) produce [`source`] items. The
//! [`reconcile`] loop coalesces them per path, [`scan`]s the path, compares the new
//! [`state::FileState`] with the baseline in the [`store`], and journals a [`change`] record
//! for every real difference. The [`policy`] says which paths belong to which entity. Nothing
//! here knows about BPF: the Windows companion links this crate unchanged. What differs by
//! operating system lives in files named for it (`*_unix.rs`, `*_windows.rs`) behind one
//! platform-neutral facade each ([`platform`], [`identity`], [`trust`], [`users`],
//! `scan::observe`).
pub mod attribution;
pub mod change;
pub mod daemon;
pub mod diff;
pub mod etw;
pub mod identity;
#[cfg(unix)]
mod identity_unix;
#[cfg(windows)]
mod identity_windows;
pub mod path_text;
pub mod platform;
#[cfg(unix)]
mod platform_unix;
#[cfg(windows)]
mod platform_windows;
pub mod policy;
pub mod reconcile;
pub mod registry;
pub mod scan;
pub mod sddl;
#[cfg(windows)]
mod security_windows;
pub mod service;
pub mod source;
pub mod state;
#[cfg(unix)]
mod state_unix;
pub mod store;
pub mod task;
pub mod trust;
#[cfg(unix)]
mod trust_unix;
#[cfg(windows)]
mod trust_windows;
pub mod users;
#[cfg(unix)]
mod users_unix;
#[cfg(windows)]
mod users_windows;
pub mod usn;
#[cfg(windows)]
pub mod usn_windows;
