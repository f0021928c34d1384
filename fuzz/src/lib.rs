//! Fuzz harnesses for `updraft-core`'s parsers.
//!
//! Each target in `fuzz_targets/` is a thin wrapper around a function here:
//!
//! * [`reader`]: raw artifact bytes (after a chunk-size prefix) through
//!   [`Reader`], once whole and once in chunks; checks the event contract
//!   and that accepting or rejecting does not depend on the split.
//! * [`tar`]: raw bytes through [`tar::Parser`] the same way; checks consumed
//!   counts, `Data(n)` ranges and entry sizes, and that the split does not
//!   change the items or the error.
//! * [`reader_gen`]: the input drives [`gen::artifact`], which builds a
//!   structurally valid artifact (right tar checksums and manifest digests)
//!   with perturbations chosen by the input, then runs [`reader`] on it. Raw
//!   bytes rarely get past the digests; this does.
//!
//! Built by `cargo fuzz` (`--cfg fuzzing`), the targets are libFuzzer
//! targets. Built plainly (`cargo run --release --bin reader`), they run
//! [`standalone::main`]: replay the files given as arguments, or fuzz for
//! `FUZZ_SECONDS` with a seeded random mutator.

#![forbid(unsafe_code)]

pub mod gen;
pub mod standalone;

use sha2::{Digest, Sha256};
use updraft_core::artifact::tar::{self as utar, EntryKind, Item, TarError};
use updraft_core::artifact::{Error, Event, Reader, SignatureState};

/// Splits the input into chunk sizes and the rest. `data[0] % 8` is the
/// number of size bytes that follow (0: feed everything at once); a size
/// byte `b` means `b + 1` bytes when `b < 128`, else `(b - 127) * 509`. The
/// sizes repeat until the input is used up.
pub fn split_prefix(data: &[u8]) -> (Vec<usize>, &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return (vec![usize::MAX], data);
    };
    let n = (first % 8) as usize;
    if n == 0 || rest.len() < n {
        return (vec![usize::MAX], rest);
    }
    let sizes = rest[..n]
        .iter()
        .map(|&b| {
            if b < 128 {
                b as usize + 1
            } else {
                (b as usize - 127) * 509
            }
        })
        .collect();
    (sizes, &rest[n..])
}

/// Feeding more events than this without finishing is taken as a hang.
const MAX_EVENTS: u64 = 20_000_000;

/// What the reader reported, with data runs merged so that any split of the
/// input gives the same list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    /// A state script, with its size and the SHA-256 of its bytes.
    Script(String, u64, [u8; 32]),
    /// The header event: artifact name and signature state.
    Header(String, SignatureState),
    /// A payload file: index, name, size, mtime and the verified digest.
    Payload(usize, String, u64, u64, [u8; 32]),
    /// The end.
    Done,
}

/// A file being received.
struct Open {
    size: u64,
    got: u64,
    hash: Sha256,
    script: bool,
    name: String,
    payload: usize,
    mtime: u64,
}

/// Runs the reader over `art` fed in chunks of `sizes` (cycled) and checks
/// every event against the documented contract. Panics on a violation.
pub fn run_reader(art: &[u8], sizes: &[usize]) -> (Vec<Ev>, Result<(), Error>) {
    let mut r = Reader::new();
    let mut evs = Vec::new();
    let mut open: Option<Open> = None;
    let mut header_seen = false;
    let mut done_seen = false;
    let mut count: u64 = 0;
    let (mut pos, mut ci) = (0usize, 0usize);
    let result = 'outer: loop {
        if pos >= art.len() {
            break r.finish();
        }
        let end = pos.saturating_add(sizes[ci % sizes.len()]).min(art.len());
        ci += 1;
        let mut input = &art[pos..end];
        pos = end;
        loop {
            count += 1;
            assert!(count < MAX_EVENTS, "reader made no progress");
            let len = input.len();
            let (used, ev) = match r.feed(input) {
                Ok(x) => x,
                Err(e) => {
                    assert_eq!(r.feed(&[]).err(), Some(Error::Poisoned));
                    assert_eq!(r.finish(), Err(Error::Poisoned));
                    break 'outer Err(e);
                }
            };
            assert!(used <= len, "feed used {used} of {len} bytes");
            let Some(ev) = ev else {
                assert_eq!(used, len, "feed returned no event but left input unused");
                break;
            };
            assert!(!done_seen, "event after Done: {ev:?}");
            match ev {
                Event::ScriptStart { name, size } => {
                    assert!(open.is_none() && !header_seen, "misplaced ScriptStart");
                    open = Some(Open {
                        size,
                        got: 0,
                        hash: Sha256::new(),
                        script: true,
                        name: name.to_owned(),
                        payload: 0,
                        mtime: 0,
                    });
                }
                Event::ScriptData(d) | Event::PayloadData(d) => {
                    let is_script = matches!(ev, Event::ScriptData(_));
                    let f = open.as_mut().expect("data outside a file");
                    assert_eq!(f.script, is_script, "data of the wrong kind");
                    f.got += d.len() as u64;
                    assert!(f.got <= f.size, "more data than the file's size");
                    f.hash.update(d);
                }
                Event::ScriptEnd => {
                    let f = open.take().expect("ScriptEnd outside a script");
                    assert!(f.script && f.got == f.size, "script size mismatch");
                    evs.push(Ev::Script(f.name, f.size, f.hash.finalize().into()));
                }
                Event::Header {
                    metadata,
                    signature,
                } => {
                    assert!(open.is_none() && !header_seen, "misplaced Header");
                    header_seen = true;
                    evs.push(Ev::Header(metadata.artifact_name().to_owned(), signature));
                }
                Event::PayloadStart {
                    payload,
                    name,
                    size,
                    mtime,
                } => {
                    assert!(open.is_none() && header_seen, "misplaced PayloadStart");
                    open = Some(Open {
                        size,
                        got: 0,
                        hash: Sha256::new(),
                        script: false,
                        name: name.to_owned(),
                        payload,
                        mtime,
                    });
                }
                Event::PayloadEnd { digest } => {
                    let f = open.take().expect("PayloadEnd outside a file");
                    assert!(!f.script && f.got == f.size, "payload size mismatch");
                    let actual: [u8; 32] = f.hash.finalize().into();
                    assert_eq!(
                        actual, digest,
                        "PayloadEnd digest is not of the data handed out"
                    );
                    evs.push(Ev::Payload(f.payload, f.name, f.size, f.mtime, digest));
                }
                Event::Done => {
                    assert!(open.is_none() && header_seen, "misplaced Done");
                    done_seen = true;
                    evs.push(Ev::Done);
                }
                _ => {}
            }
            input = &input[used..];
        }
    };
    match &result {
        Ok(()) => assert!(done_seen && r.is_done(), "finish() is Ok without Done"),
        // Done, then non-zero bytes after the archive: the only error
        // allowed after Done. (A caller that stops at Done accepts such an
        // artifact; one that feeds everything rejects it.)
        Err(Error::TrailingData { member }) if done_seen && member.as_str() == "artifact" => {}
        Err(e) => assert!(!done_seen, "error after Done: {e:?}"),
    }
    (evs, result)
}

/// The reader target: the whole input at once, then in the chunks the
/// prefix asks for. Both must pass the event checks, agree on accepting or
/// rejecting, and give the same events when accepting.
pub fn reader(data: &[u8]) {
    let (sizes, art) = split_prefix(data);
    let whole = run_reader(art, &[usize::MAX]);
    if sizes[0] == usize::MAX {
        return;
    }
    let split = run_reader(art, &sizes);
    assert_eq!(
        whole.1.is_ok(),
        split.1.is_ok(),
        "the split changed the verdict: whole {:?}, split {:?} (sizes {sizes:?})",
        whole.1,
        split.1
    );
    if whole.1.is_ok() {
        assert_eq!(whole.0, split.0, "the split changed the events");
    }
}

/// The structured target: build an artifact from the input and read it.
pub fn reader_gen(data: &[u8]) {
    let (sizes, rest) = split_prefix(data);
    let art = gen::artifact(rest);
    let whole = run_reader(&art, &[usize::MAX]);
    let split = run_reader(&art, &sizes);
    assert_eq!(
        whole.1.is_ok(),
        split.1.is_ok(),
        "the split changed the verdict: whole {:?}, split {:?} (sizes {sizes:?})",
        whole.1,
        split.1
    );
    if whole.1.is_ok() {
        assert_eq!(whole.0, split.0, "the split changed the events");
    }
}

/// A tar item with data runs merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TarEv {
    /// Path, size, mtime, kind.
    Entry(String, u64, u64, EntryKind),
    /// Content bytes of the entry, all runs together: length and SHA-256.
    Data(u64, [u8; 32]),
    /// End of entry.
    EntryEnd,
    /// End of archive.
    End,
}

/// Runs the tar parser over `input` in chunks of `sizes` (cycled). Panics
/// on a contract violation.
pub fn run_tar(input: &[u8], sizes: &[usize]) -> (Vec<TarEv>, Result<(), TarError>) {
    let mut p = utar::Parser::new();
    let mut evs = Vec::new();
    // (size, got, hash) of the current file entry.
    let mut cur: Option<(u64, u64, Sha256)> = None;
    let mut idle = 0;
    let (mut pos, mut ci) = (0usize, 0usize);
    let mut last = false;
    let result = 'outer: loop {
        let end = if pos >= input.len() {
            if last {
                break Ok(());
            }
            last = true; // one more call with nothing, to flush a pending end
            pos
        } else {
            let e = pos.saturating_add(sizes[ci % sizes.len()]).min(input.len());
            ci += 1;
            e
        };
        let mut chunk = &input[pos..end];
        pos = end;
        loop {
            let (n, item) = match p.step(chunk) {
                Ok(x) => x,
                Err(e) => break 'outer Err(e),
            };
            assert!(n <= chunk.len(), "step used {n} of {} bytes", chunk.len());
            if n == 0 && !matches!(item, Item::NeedMore | Item::End) {
                idle += 1;
                assert!(idle < 4, "tar parser made no progress ({item:?})");
            } else {
                idle = 0;
            }
            match item {
                Item::NeedMore => {
                    assert_eq!(n, chunk.len(), "NeedMore left input unused");
                    break;
                }
                Item::Entry => {
                    assert!(cur.is_none(), "Entry inside an entry");
                    let e = p.entry();
                    if e.kind != EntryKind::File {
                        assert_eq!(e.size, 0, "a non-file entry with content");
                    }
                    assert_eq!(p.remaining(), e.size);
                    evs.push(TarEv::Entry(e.path.to_string(), e.size, e.mtime, e.kind));
                    cur = Some((e.size, 0, Sha256::new()));
                }
                Item::Data(k) => {
                    assert!(k <= n, "Data({k}) but only {n} bytes consumed");
                    assert!(k > 0, "empty Data");
                    let (size, got, hash) = cur.as_mut().expect("Data outside an entry");
                    *got += k as u64;
                    assert!(*got <= *size, "more data than the entry's size");
                    assert_eq!(p.remaining(), *size - *got);
                    hash.update(&chunk[n - k..n]);
                }
                Item::EntryEnd => {
                    let (size, got, hash) = cur.take().expect("EntryEnd outside an entry");
                    assert_eq!(got, size, "entry ended early");
                    evs.push(TarEv::Data(got, hash.finalize().into()));
                    evs.push(TarEv::EntryEnd);
                }
                Item::End => {
                    assert!(cur.is_none(), "End inside an entry");
                    assert!(p.ended());
                    assert_eq!(p.step(&chunk[n..]), Ok((0, Item::End)));
                    evs.push(TarEv::End);
                    break 'outer Ok(());
                }
            }
            chunk = &chunk[n..];
        }
    };
    (evs, result)
}

/// The tar target: whole, then split; both runs must give the same items
/// and the same error.
pub fn tar(data: &[u8]) {
    let (sizes, input) = split_prefix(data);
    let whole = run_tar(input, &[usize::MAX]);
    if sizes[0] == usize::MAX {
        return;
    }
    let split = run_tar(input, &sizes);
    assert_eq!(
        whole, split,
        "the split changed the tar items (sizes {sizes:?})"
    );
}

/// The boot-environment parsers on raw bytes: a U-Boot env copy (single
/// and redundant layout, CRC, variables), `fw_env.config` text and a GRUB
/// environment block. None may panic, whatever the bytes.
pub fn boot_env(data: &[u8]) {
    use updraft_boot::uboot::{Env, EnvCopy, Redundancy};
    for r in [Redundancy::Single, Redundancy::Redundant] {
        if let Ok(copy) = EnvCopy::new(data, r) {
            let _ = (copy.crc_ok(), copy.flags());
            if let Some(Ok(env)) = copy.env() {
                let n = env.entries().count();
                assert!(env.sorted().count() <= n);
            }
        }
    }
    if let Ok(env) = Env::parse(data) {
        for e in env.entries() {
            let _ = e;
        }
    }
    if let Ok(text) = core::str::from_utf8(data) {
        let _ = updraft_boot::uboot::config::FwEnvConfig::parse(text);
    }
    if let Ok(g) = updraft_boot::grub::GrubEnv::new(data) {
        for v in g.vars() {
            let _ = v;
        }
        let _ = g.validate();
    }
}

/// The MCUboot image parser and TLV walk, and hash-only verification, on
/// raw bytes. None may panic.
pub fn mcuboot(data: &[u8]) {
    if let Ok(img) = updraft_boot::mcuboot::Image::parse(data) {
        for t in img.tlvs() {
            let _ = t;
        }
    }
    let _ = updraft_boot::mcuboot::verify(data, None);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No choices: the generator's usual artifact, which must be valid.
    #[test]
    fn usual_generated_artifact_is_valid() {
        let art = gen::artifact(&[]);
        let (evs, result) = run_reader(&art, &[usize::MAX]);
        assert_eq!(result, Ok(()));
        assert_eq!(evs.last(), Some(&Ev::Done));
        let (evs2, result2) = run_reader(&art, &[1, 7, 512, 3000]);
        assert_eq!((evs, result), (evs2, result2));
        if let Ok(path) = std::env::var("UPDRAFT_FUZZ_DUMP") {
            std::fs::write(path, &art).unwrap();
        }
    }

    #[test]
    fn generated_tar_parses() {
        let art = gen::artifact(&[]);
        let (evs, result) = run_tar(&art, &[usize::MAX]);
        assert_eq!(result, Ok(()));
        assert_eq!(evs.last(), Some(&TarEv::End));
        tar(&[3, 0, 200, 77]
            .iter()
            .copied()
            .chain(art)
            .collect::<Vec<_>>());
    }
}
