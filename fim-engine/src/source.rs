//! What every event source produces: see [`fim_model::source`], re-exported here.
pub use fim_model::source::*;
