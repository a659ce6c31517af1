//! Helpers of `tools/vm/run-tests`, the checks of kith against real kernel drivers in qemu:
//! tiny test models that fit kith's contracts ([`models`]), reading a Linux framebuffer dump back as
//! RGB ([`fb`]) and comparing it with the picture kith meant to show ([`compare`]).

pub mod compare;
pub mod fb;
pub mod models;
