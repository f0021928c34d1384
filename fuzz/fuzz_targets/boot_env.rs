//! U-Boot env copies, fw_env.config and GRUB env blocks on raw bytes: no panic.
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| updraft_fuzz::boot_env(data));

#[cfg(not(fuzzing))]
fn main() {
    use updraft_fuzz::standalone::{main, Kind};
    main("boot_env", Kind::Choices, updraft_fuzz::boot_env);
}
