//! Running the targets without libFuzzer (stable Rust, no sanitizer): replay
//! inputs, or fuzz for a while with a seeded mutator that is not coverage
//! guided but knows the formats (generated artifacts, tar checksum repair).
//!
//! ```text
//! target/release/reader FILE|DIR...     replay inputs (exit 101 on a panic)
//! target/release/reader                 fuzz for FUZZ_SECONDS (default 30)
//! ```
//!
//! Environment: `FUZZ_SECONDS`, `FUZZ_SEED` (a number; printed at the
//! start so a run can be repeated). Seeds are the files in
//! `fuzz/corpus/<target>/` when present, plus generated artifacts. A
//! panicking input is written to `fuzz/artifacts/<target>/crash-<hash>`
//! (as cargo-fuzz does) and the process exits with status 1.

use std::panic;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::gen;

/// xorshift64*: small, seeded, good enough to pick mutations.
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A number below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// What a target's inputs look like, for the mutator.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Chunk prefix + artifact bytes.
    Artifact,
    /// Chunk prefix + tar bytes.
    Tar,
    /// Generator choices.
    Choices,
}

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
}

fn read_inputs(paths: &[PathBuf]) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            entries.sort();
            out.extend(read_inputs(&entries));
        } else if let Ok(data) = std::fs::read(p) {
            out.push((p.clone(), data));
        } else {
            eprintln!("cannot read {}", p.display());
            std::process::exit(2);
        }
    }
    out
}

/// A chunk-size prefix: whole, tiny, odd or block-sized chunks.
fn prefix(rng: &mut Rng) -> Vec<u8> {
    let n = rng.below(8);
    let mut p = vec![n as u8];
    for _ in 0..n {
        p.push(match rng.below(4) {
            0 => rng.below(8) as u8,   // 1..8 bytes
            1 => rng.below(128) as u8, // 1..128
            _ => 128 + rng.below(128) as u8,
        });
    }
    p
}

/// Byte-level mutations; `tar_aligned` says the data (from byte 0) is a tar
/// stream whose header checksums should be repaired afterwards.
fn mutate_bytes(data: &mut Vec<u8>, rng: &mut Rng, pool: &[Vec<u8>], tar_aligned: bool) {
    for _ in 0..1 + rng.below(4) {
        let len = data.len();
        let at = rng.below(len + 1);
        match rng.below(10) {
            0 if len > 0 => data[at.min(len - 1)] ^= 1 << rng.below(8),
            1 if len > 0 => data[at.min(len - 1)] = rng.next_u64() as u8,
            2 if len > 0 => {
                const HOT: &[u8] = &[0, 0xff, 0x7f, 0x80, b'0', b'7', b' ', b'/', b'\n', b'"'];
                data[at.min(len - 1)] = HOT[rng.below(HOT.len())];
            }
            3 => {
                let n = 1 + rng.below(16);
                let ins = rng.bytes(n);
                data.splice(at..at, ins);
            }
            4 if at < len => {
                let end = (at + 1 + rng.below(600)).min(len);
                data.drain(at..end);
            }
            5 => data.truncate(at),
            6 if at < len => {
                let end = (at + 1 + rng.below(1024)).min(len);
                let copy = data[at..end].to_vec();
                let to = rng.below(len + 1);
                data.splice(to..to, copy);
            }
            7 if !pool.is_empty() => {
                let other = &pool[rng.below(pool.len())];
                let from = rng.below(other.len() + 1);
                let end = (from + rng.below(2048)).min(other.len());
                data.splice(at..(at + (end - from)).min(len), other[from..end].to_vec());
            }
            8 if len >= 512 => {
                // Overwrite a numeric tar field with digits or base-256.
                let block = rng.below(len / 512) * 512;
                let (off, w) = [(124, 12), (136, 12), (100, 8), (345, 155), (0, 100)][rng.below(5)];
                if block + off + w <= len {
                    for b in &mut data[block + off..block + off + w] {
                        *b = [b'7', b'0', 0, 0x80, 0xff, b' '][rng.below(6)];
                    }
                }
            }
            _ => {
                let n = rng.below(3) * 512;
                data.splice(at..at, std::iter::repeat_n(0u8, n));
            }
        }
    }
    if tar_aligned && rng.below(4) != 0 {
        gen::fix_checksums(data);
    }
}

/// One new input for a target of `kind`.
fn next_input(kind: Kind, rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    match kind {
        Kind::Choices => {
            let mut data = if !seeds.is_empty() && rng.below(2) == 0 {
                seeds[rng.below(seeds.len())].clone()
            } else {
                Vec::new()
            };
            // Mostly zero (the usual choice) with some non-zero bytes.
            let len = rng.below(300);
            data.resize(data.len().max(len), 0);
            for _ in 0..rng.below(12) {
                let i = rng.below(data.len().max(1));
                if let Some(b) = data.get_mut(i) {
                    *b = rng.next_u64() as u8;
                }
            }
            let mut out = prefix(rng);
            out.extend_from_slice(&data);
            out
        }
        Kind::Artifact | Kind::Tar => {
            // Start from a corpus file (minus its prefix), or a generated
            // artifact, or (for tar) a member of one.
            let mut body = if !seeds.is_empty() && rng.below(3) == 0 {
                let s = &seeds[rng.below(seeds.len())];
                crate::split_prefix(s).1.to_vec()
            } else {
                let choices: Vec<u8> = (0..rng.below(200))
                    .map(|_| {
                        if rng.below(3) == 0 {
                            rng.next_u64() as u8
                        } else {
                            0
                        }
                    })
                    .collect();
                gen::artifact(&choices)
            };
            let pool: Vec<Vec<u8>> = seeds.iter().take(8).cloned().collect();
            if rng.below(5) != 0 {
                mutate_bytes(&mut body, rng, &pool, true);
            }
            let mut out = prefix(rng);
            out.extend_from_slice(&body);
            out
        }
    }
}

fn hash(data: &[u8]) -> u64 {
    // FNV-1a, for crash file names.
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

fn save_crash(target: &str, data: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("artifacts")
        .join(target);
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("crash-{:016x}", hash(data)));
    let _ = std::fs::write(&path, data);
    path
}

/// The `main` of a target built without libFuzzer.
pub fn main(target: &str, kind: Kind, run: fn(&[u8])) {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if !args.is_empty() {
        let inputs = read_inputs(&args);
        for (path, data) in &inputs {
            eprintln!("replaying {} ({} bytes)", path.display(), data.len());
            run(data);
        }
        eprintln!("{target}: {} input(s) replayed, no crash", inputs.len());
        return;
    }

    let seconds: u64 = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let dir = corpus_dir(target);
    let seeds: Vec<Vec<u8>> = if dir.is_dir() {
        read_inputs(&[dir]).into_iter().map(|(_, d)| d).collect()
    } else {
        Vec::new()
    };
    eprintln!(
        "{target}: fuzzing for {seconds} s, FUZZ_SEED={seed}, {} corpus file(s)",
        seeds.len()
    );

    // Corpus files first, as they are.
    for s in &seeds {
        check(target, s, run);
    }
    let mut rng = Rng::new(seed);
    let start = Instant::now();
    let limit = Duration::from_secs(seconds);
    let mut runs: u64 = 0;
    while start.elapsed() < limit {
        for _ in 0..16 {
            let input = next_input(kind, &mut rng, &seeds);
            check(target, &input, run);
            runs += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{target}: {runs} inputs in {secs:.1} s ({:.0}/s), no crash",
        runs as f64 / secs
    );
}

fn check(target: &str, input: &[u8], run: fn(&[u8])) {
    if panic::catch_unwind(|| run(input)).is_err() {
        let path = save_crash(target, input);
        eprintln!("{target}: CRASH, input saved to {}", path.display());
        if input.len() <= 4096 {
            let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
            eprintln!("input (hex): {hex}");
        }
        std::process::exit(1);
    }
}
