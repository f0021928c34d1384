//! Power-cut sweeps over a redundant U-Boot env update: cut the write after
//! every byte count from 0 to the full copy, then read the env back (with
//! our reader and, where noted, with fw_printenv): it must be exactly the
//! old or exactly the new variable set, never anything else.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{run, run_ok, TempDir};
use std::path::Path;
use updraft_boot::storage::{MemError, MemStorage};
use updraft_boot::uboot::{
    encode_copy, Change, CopyId, Env, EnvLocation, LoadError, Redundancy, UbootEnv, UpdateError,
    UpdateOutcome,
};

type Mem = MemStorage<Vec<u8>>;

fn pair(a: Vec<u8>, b: Vec<u8>, erase: Option<u8>) -> UbootEnv<Mem> {
    let mem = |v| {
        let m = MemStorage::new(v);
        match erase {
            Some(e) => m.with_erase_value(e),
            None => m,
        }
    };
    let size = a.len();
    UbootEnv::redundant(
        EnvLocation {
            storage: mem(a),
            offset: 0,
        },
        EnvLocation {
            storage: mem(b),
            offset: 0,
        },
        size,
    )
}

fn copies(env: &UbootEnv<Mem>) -> (Vec<u8>, Vec<u8>) {
    let a = env
        .location(CopyId::First)
        .unwrap()
        .storage
        .as_bytes()
        .to_vec();
    let b = env
        .location(CopyId::Second)
        .unwrap()
        .storage
        .as_bytes()
        .to_vec();
    (a, b)
}

/// The env as `name=value\n` lines (sorted), or `None` when unreadable.
fn printed(env: &mut UbootEnv<Mem>) -> Option<String> {
    let mut buf = vec![0u8; env.size()];
    let loaded = env.load(&mut buf).ok()?;
    Some(
        loaded
            .env
            .sorted()
            .map(|v| {
                format!(
                    "{}={}\n",
                    String::from_utf8_lossy(v.name),
                    String::from_utf8_lossy(v.value)
                )
            })
            .collect(),
    )
}

fn encode(vars: &[Change<'_>], flags: u8, size: usize, pad: u8) -> Vec<u8> {
    let mut copy = vec![0u8; size];
    encode_copy(
        &mut copy,
        Redundancy::Redundant,
        flags,
        Env::empty(),
        vars,
        pad,
    )
    .unwrap();
    copy
}

/// Tool check: writes both copies to files and runs fw_printenv.
struct ToolCheck {
    dir: TempDir,
    size: usize,
}

impl ToolCheck {
    fn new(size: usize) -> ToolCheck {
        ToolCheck {
            dir: TempDir::new("sweep-tool"),
            size,
        }
    }

    fn print(&self, a: &[u8], b: &[u8]) -> Option<String> {
        let (pa, pb) = (self.dir.join("a.bin"), self.dir.join("b.bin"));
        std::fs::write(&pa, a).unwrap();
        std::fs::write(&pb, b).unwrap();
        let cfg = self.dir.join("fw_env.config");
        let line = |p: &Path| format!("{} 0x0 {:#x}\n", p.display(), self.size);
        std::fs::write(&cfg, line(&pa) + &line(&pb)).unwrap();
        let out = run(
            "fw_printenv",
            [
                "-c",
                cfg.to_str().unwrap(),
                "-f",
                "/nonexistent/initial-env",
            ],
        );
        out.status
            .success()
            .then(|| String::from_utf8(out.stdout).unwrap())
    }
}

/// Runs `changes` on the pair once uncut to learn the old and new state and
/// the byte count, then once per cut point `0..=total`. Returns the new pair
/// and how many cut points already showed the new env.
fn sweep(
    a: Vec<u8>,
    b: Vec<u8>,
    erase: Option<u8>,
    changes: &[Change<'_>],
    tools: Option<&ToolCheck>,
) -> (Vec<u8>, Vec<u8>, usize) {
    let mut reference = pair(a.clone(), b.clone(), erase);
    let old = printed(&mut reference).expect("the starting env must be valid");
    let mut buf = vec![0u8; reference.size()];
    let outcome = reference.update(&mut buf, changes).unwrap();
    assert!(matches!(outcome, UpdateOutcome::Written { .. }));
    let new = printed(&mut reference).unwrap();
    assert_ne!(old, new, "the update must change something");
    let total = reference
        .location(CopyId::First)
        .unwrap()
        .storage
        .bytes_written()
        + reference
            .location(CopyId::Second)
            .unwrap()
            .storage
            .bytes_written();
    assert_eq!(total, a.len(), "an update writes exactly one full copy");

    let mut new_seen = 0;
    for cut in 0..=total {
        let mut env = pair(a.clone(), b.clone(), erase);
        for copy in [CopyId::First, CopyId::Second] {
            env.location_mut(copy).unwrap().storage.cut_after(cut);
        }
        let result = env.update(&mut buf, changes);
        if cut < total {
            assert_eq!(
                result,
                Err(UpdateError::Storage(MemError::PowerLost)),
                "cut {cut}"
            );
        } else {
            assert!(result.is_ok(), "cut {cut}: {result:?}");
        }
        for copy in [CopyId::First, CopyId::Second] {
            env.location_mut(copy).unwrap().storage.restore_power();
        }
        let after = printed(&mut env)
            .unwrap_or_else(|| panic!("cut after {cut}/{total} bytes: env unreadable"));
        assert!(
            after == old || after == new,
            "cut after {cut}/{total} bytes: neither old nor new:\n{after}"
        );
        if after == new {
            new_seen += 1;
        }
        if let Some(tools) = tools {
            let (ca, cb) = copies(&env);
            let theirs = tools.print(&ca, &cb);
            assert_eq!(
                theirs.as_deref(),
                Some(after.as_str()),
                "cut after {cut}/{total} bytes: fw_printenv disagrees with us"
            );
        }
    }
    assert!(new_seen >= 1, "the full write must give the new env");
    let (na, nb) = copies(&reference);
    (na, nb, new_seen)
}

fn mender_vars() -> Vec<Change<'static>> {
    vec![
        Change::set("bootcmd", "run mender_setup; run mmcboot"),
        Change::set("bootcount", "0"),
        Change::set("bootlimit", "1"),
        Change::set("mender_boot_part", "2"),
        Change::set("mender_boot_part_hex", "2"),
        Change::set("upgrade_available", "0"),
    ]
}

const R1: [Change<'static>; 4] = [
    Change::set("mender_boot_part", "3"),
    Change::set("mender_boot_part_hex", "3"),
    Change::set("upgrade_available", "1"),
    Change::set("bootcount", "0"),
];
const R2: [Change<'static>; 1] = [Change::set("bootcount", "1")];
const R3: [Change<'static>; 2] = [
    Change::set("upgrade_available", "0"),
    Change::set("bootcount", "0"),
];

/// The whole Mender flow r1..r3 on a 0x1000 pair, every step swept at every
/// byte with our reader.
#[test]
fn sweep_mender_flow_every_byte() {
    let a = encode(&mender_vars(), 1, 0x1000, 0xff);
    let b = a.clone();
    let (a, b, _) = sweep(a, b, None, &R1, None);
    let (a, b, _) = sweep(a, b, None, &R2, None);
    let (a, b, _) = sweep(a, b, None, &R3, None);
    let mut env = pair(a, b, None);
    let mut buf = vec![0u8; 0x1000];
    let loaded = env.load(&mut buf).unwrap();
    assert_eq!((loaded.copy, loaded.flags), (CopyId::Second, Some(4)));
}

/// The arming step at the usual 0x4000 copy size, every byte.
#[test]
fn sweep_arming_0x4000() {
    let a = encode(&mender_vars(), 1, 0x4000, 0xff);
    sweep(a.clone(), a, None, &R1, None);
}

/// Same on NOR-like storage (erase fills 0xff before the write).
#[test]
fn sweep_with_erase() {
    let a = encode(&mender_vars(), 1, 0x1000, 0xff);
    let b = a.clone();
    sweep(a, b, Some(0xff), &R1, None);
}

/// Flags wrap-around during the sweep: active 255 → new copy gets 0; and
/// active 0 (after a wrap) → new copy gets 1.
#[test]
fn sweep_across_wraparound() {
    let vars = mender_vars();
    let a = encode(&vars, 254, 0x1000, 0xff);
    let b = encode(&[Change::set("bootcount", "9")], 255, 0x1000, 0xff);
    let (a, b, _) = sweep(a, b, None, &R1, None);
    let mut env = pair(a.clone(), b.clone(), None);
    let mut buf = vec![0u8; 0x1000];
    let loaded = env.load(&mut buf).unwrap();
    assert_eq!((loaded.copy, loaded.flags), (CopyId::First, Some(0)));
    let (a, b, _) = sweep(a, b, None, &R2, None);
    let mut env = pair(a, b, None);
    let loaded = env.load(&mut buf).unwrap();
    assert_eq!((loaded.copy, loaded.flags), (CopyId::Second, Some(1)));
}

/// The inactive copy erased (all 0xff) or holding garbage.
#[test]
fn sweep_over_erased_and_garbage_inactive_copy() {
    let a = encode(&mender_vars(), 1, 0x1000, 0xff);
    sweep(a.clone(), vec![0xff; 0x1000], None, &R1, None);
    let garbage: Vec<u8> = (0..0x1000u32).map(|i| (i * 7 + 3) as u8).collect();
    sweep(a, garbage, None, &R1, None);
}

/// The new copy equals what the inactive copy already holds (a value set
/// back to what it was two writes ago): only the flags byte changes, and the
/// old env must stay active until it does.
#[test]
fn sweep_rewriting_identical_content() {
    let vars = mender_vars();
    let size = 0x1000;
    let mut env = pair(encode(&vars, 1, size, 0), encode(&vars, 1, size, 0), None);
    let mut buf = vec![0u8; size];
    env.update(&mut buf, &[Change::set("bootcount", "1")])
        .unwrap(); // second = E1 (flags 2)
    env.update(&mut buf, &[Change::set("bootcount", "2")])
        .unwrap(); // first = E2 (flags 3)
    let (a, b) = copies(&env);
    // Back to bootcount=1: the second copy already holds exactly that data.
    let (_, _, new_seen) = sweep(a, b, None, &[Change::set("bootcount", "1")], None);
    // Only the cut after the flags byte (and later) shows the new env.
    assert_eq!(new_seen, size - 4);
}

/// Every cut point of an update on a pair made by mkenvimage, read back by
/// fw_printenv as well: it must agree with our reader at every byte.
#[test]
fn sweep_checked_by_fw_printenv() {
    let size = 0x1000;
    let dir = TempDir::new("sweep-mk");
    let txt = dir.join("env.txt");
    std::fs::write(
        &txt,
        "bootcmd=run mender_setup\nbootcount=0\nbootlimit=1\nmender_boot_part=2\n\
         mender_boot_part_hex=2\nupgrade_available=0\n",
    )
    .unwrap();
    let img = dir.join("a.bin");
    run_ok(
        "mkenvimage",
        [
            "-r",
            "-s",
            "0x1000",
            "-o",
            img.to_str().unwrap(),
            txt.to_str().unwrap(),
        ],
    );
    let a = std::fs::read(&img).unwrap();
    let tools = ToolCheck::new(size);
    sweep(a.clone(), a, None, &R1, Some(&tools));
}

/// A single copy is not power-safe: a cut in the middle leaves no valid
/// env (U-Boot falls back to its default env). Documented, not hidden.
#[test]
fn single_copy_is_not_power_safe() {
    let size = 0x400;
    let mut copy = vec![0u8; size];
    encode_copy(
        &mut copy,
        Redundancy::Single,
        0,
        Env::empty(),
        &mender_vars(),
        0xff,
    )
    .unwrap();
    let mut env = UbootEnv::single(MemStorage::new(copy), 0, size);
    env.location_mut(CopyId::First)
        .unwrap()
        .storage
        .cut_after(size / 2);
    let mut buf = vec![0u8; size];
    assert!(env.update(&mut buf, &R1).is_err());
    env.location_mut(CopyId::First)
        .unwrap()
        .storage
        .restore_power();
    assert!(matches!(env.load(&mut buf), Err(LoadError::NoValidCopy)));
}
