//! The fim kernel programs.
//!
//! Layout, after kunai: [`maps`] declares every map, [`kernel`] reads kernel structs through
//! offsets user space found in BTF, [`emit`] assembles a record in per-CPU scratch and sends it,
//! [`walk`] turns a dentry into "which root is this under, and by which names", and
//! `probes/` holds one file per event family of the tracepoint strategy.
//!
//! Built for the host (by `cargo test --workspace`), it is an empty program: the kernel code
//! only exists for `target_arch = "bpf"`.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]

#[cfg(target_arch = "bpf")]
mod emit;
#[cfg(target_arch = "bpf")]
mod kernel;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod probes;
#[cfg(target_arch = "bpf")]
mod walk;

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach this, so it is never entered.
    loop {}
}
