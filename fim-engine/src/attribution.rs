//! Who made a change, when the event that found it did not say.
//!
//! On Linux the kernel event names its process, and the record is built with it. The Windows
//! notification sources (registry notifications, ReadDirectoryChangesW) say only *what*
//! changed; who did it comes from a separate who-data source (an ETW session, see
//! [`crate::etw::live`]). The reconciler asks an [`Attributor`] for the actor of every
//! real-time record that has none, just before the record is journaled (its hash covers the
//! actor, so it cannot be added later).
use fim_model::{actor::Actor, change::ChangeRecord};

/// A source of who-data for records whose event named nobody.
pub trait Attributor: Send + Sync {
    /// The process that made the change `record` describes, if the source saw it. May wait
    /// briefly for the source to catch up with the record's time; never blocks for long.
    fn actor_for(&self, record: &ChangeRecord) -> Option<Actor>;
}
