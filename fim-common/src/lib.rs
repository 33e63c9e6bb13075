//! Types shared by the kernel programs (`fim-ebpf`) and user space (`fim-userspace`).
//!
//! Everything here is `#[repr(C)]` plain data: the kernel writes it into maps and the ring
//! buffer, user space reads the same bytes. One module per concept, as in kunai:
//! - [`event`]: the ring-buffer record (header + packed path data) and operation codes;
//! - [`roots`]: how monitored roots are keyed in the inode map and the path-prefix trie;
//! - [`offsets`]: kernel struct offsets read from BTF in user space (Rust BPF has no CO-RE);
//! - [`maps`]: map and program names, so both halves agree on them;
//! - [`strategy`]: the attach strategies, named once for fimd, the tests and xtask.
#![no_std]
// clap's derive (the optional `clap` feature, for command lines) names `::std`.
#[cfg(any(feature = "clap", test))]
extern crate std;

pub mod event;
pub mod maps;
pub mod offsets;
pub mod roots;
pub mod strategy;

#[cfg(feature = "user")]
mod pod {
    //! aya's `Pod` marker for every type user space exchanges with maps.
    use crate::{offsets::KernelOffsets, roots::*};
    unsafe impl aya::Pod for InodeKey {}
    unsafe impl aya::Pod for InodeEntry {}
    unsafe impl aya::Pod for PrefixEntry {}
    unsafe impl aya::Pod for WriterState {}
    unsafe impl aya::Pod for KernelOffsets {}
}
