//! The platform-independent FIM engine: everything between an event source and a change record.
//!
//! Sources (eBPF on Linux today, Windows notifications next) produce [`source`] items. The
//! [`reconcile`] loop coalesces them per path, [`scan`]s the path, compares the new
//! [`state::FileState`] with the baseline in the [`store`], and journals a [`change`] record
//! for every real difference. The [`policy`] says which paths belong to which entity. Nothing
//! here knows about BPF: the Windows companion links this crate unchanged.
pub mod change;
pub mod daemon;
pub mod diff;
pub mod identity;
pub mod path_text;
pub mod policy;
pub mod reconcile;
pub mod scan;
pub mod source;
pub mod state;
pub mod store;
pub mod task;
pub mod trust;
pub mod users;
