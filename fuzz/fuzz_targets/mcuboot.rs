//! MCUboot images: header, TLVs, hash-only verification on raw bytes: no panic.
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| updraft_fuzz::mcuboot(data));

#[cfg(not(fuzzing))]
fn main() {
    use updraft_fuzz::standalone::{main, Kind};
    main("mcuboot", Kind::Choices, updraft_fuzz::mcuboot);
}
