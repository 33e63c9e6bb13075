//! Paths as text: see [`fim_model::path_text`], re-exported here for the engine's users.
pub use fim_model::path_text::*;
