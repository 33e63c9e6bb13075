//! fimd's library: everything between the kernel programs and the change records.
//!
//! Data path: [`loader`] loads the BPF object chosen by [`strategy`], with offsets from
//! [`kernel_offsets`]; [`ebpf_source`] owns the maps and drains the ring buffer; `assemble`
//! [`decode`]s records, rebuilds [`paths`] from the [`roots`] plan, pairs results and tracks
//! [`writers`], and emits [`record`] types, the interface every event source shares.
mod assemble;
pub mod decode;
mod detach;
pub mod ebpf_source;
pub mod kernel_offsets;
pub mod loader;
pub mod paths;
pub mod preexisting;
mod process_info;
/// The interface every event source shares (lives in the platform-independent engine).
pub use fim_engine::source as record;
pub mod roots;
pub mod strategy;
pub mod wallclock;
pub mod writers;
