//! fimd's library: everything between the kernel programs and the change records.
pub mod kernel_offsets;
