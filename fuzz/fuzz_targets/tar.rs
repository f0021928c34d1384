//! The tar parser on raw bytes: a chunk-size prefix, then the tar stream.
//! Consumed counts stay within the input, `Data(n)` ranges are in bounds and
//! add up to the entry sizes, and the split changes no item and no error.
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| updraft_fuzz::tar(data));

#[cfg(not(fuzzing))]
fn main() {
    use updraft_fuzz::standalone::{main, Kind};
    main("tar", Kind::Tar, updraft_fuzz::tar);
}
