//! The artifact reader on generated artifacts: the input (after a chunk-size
//! prefix) chooses how to build and perturb an artifact whose tar checksums
//! and manifest digests are right, so the reader's deeper paths (headers,
//! JSON, payloads, gzip) are reached.
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| updraft_fuzz::reader_gen(data));

#[cfg(not(fuzzing))]
fn main() {
    use updraft_fuzz::standalone::{main, Kind};
    main("reader_gen", Kind::Choices, updraft_fuzz::reader_gen);
}
