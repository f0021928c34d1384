//! The artifact reader on raw bytes: a chunk-size prefix, then the artifact
//! (see `updraft_fuzz::split_prefix`). Fed whole and in those chunks, it must
//! never panic, keep the event contract, and give the same verdict.
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| updraft_fuzz::reader(data));

#[cfg(not(fuzzing))]
fn main() {
    use updraft_fuzz::standalone::{main, Kind};
    main("reader", Kind::Artifact, updraft_fuzz::reader);
}
