//! The fim kernel programs.
//!
//! Layout, after kunai: [`maps`] declares every map, [`kernel`] reads kernel structs through
//! offsets user space found in BTF, [`emit`] assembles a record in per-CPU scratch and sends it,
//! [`walk`] turns a dentry into "which root is this under, and by which names", and
//! `probes/` holds one file per event family of the tracepoint strategy.
#![no_std]
#![no_main]

mod emit;
mod kernel;
mod maps;
mod probes;
mod walk;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach this, so it is never entered.
    loop {}
}
