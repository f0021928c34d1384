//! A redundant U-Boot env on NOR flash (`NorStorage` over the simulated
//! `SimNor`, which enforces erase/write granularity and 1 → 0 programming
//! and tears writes and erases), with the boolean active/obsolete flags of
//! U-Boot's `env/flash.c` and libubootenv on NOR MTD devices.
//!
//! Each step of the Mender flow is swept: the update is cut after every
//! programmed byte (and the erase reached at each cut point is torn), then
//! the env is read back. It must be exactly the old or exactly the new
//! variable set, and a retried update must then succeed. The starting env
//! is made by `mkenvimage`; in `sweep_checked_by_fw_printenv` every cut
//! state is also read by `fw_printenv` (on plain files it uses the counter
//! rule, which agrees with the boolean rule on every state this writer
//! produces from such a start).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{run, run_ok, TempDir};
use std::cell::RefCell;
use std::path::Path;
use updraft_boot::nor::{NorError, NorStorage, SimNor, SimNorError};
use updraft_boot::storage::Shared;
use updraft_boot::uboot::{
    Change, CopyId, EnvLocation, FlagScheme, UbootEnv, UpdateError, UpdateOutcome,
};

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

/// What the sweep needs from a simulated chip.
trait Sim: embedded_storage::nor_flash::NorFlash<Error = SimNorError> + Clone {
    fn erased(sectors: usize) -> Self;
    fn put(&mut self, offset: usize, bytes: &[u8]);
    fn cut(&mut self, bytes: usize);
    fn power_on(&mut self);
    fn programmed(&self) -> usize;
    fn bytes(&self) -> &[u8];
}

impl<const R: usize, const W: usize, const E: usize, const M: bool> Sim for SimNor<R, W, E, M> {
    fn erased(sectors: usize) -> Self {
        SimNor::new(sectors)
    }
    fn put(&mut self, offset: usize, bytes: &[u8]) {
        self.load(offset, bytes)
    }
    fn cut(&mut self, bytes: usize) {
        self.cut_after(bytes)
    }
    fn power_on(&mut self) {
        self.restore_power()
    }
    fn programmed(&self) -> usize {
        self.bytes_written()
    }
    fn bytes(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// One chip layout: the two copies' offsets and size, and how to wrap the
/// chip (`NorStorage::new` or `NorStorage::multiwrite`).
struct Layout<F> {
    sectors: usize,
    second_at: u64,
    size: usize,
    wrap: fn(F) -> NorStorage<F>,
}

type Cell<F> = RefCell<NorStorage<F>>;

fn env<'c, F: Sim>(cell: &'c Cell<F>, l: &Layout<F>) -> UbootEnv<Shared<'c, NorStorage<F>>> {
    UbootEnv::redundant(
        EnvLocation {
            storage: Shared(cell),
            offset: 0,
        },
        EnvLocation {
            storage: Shared(cell),
            offset: l.second_at,
        },
        l.size,
    )
    .with_flag_scheme(FlagScheme::Boolean)
}

/// The env as sorted `name=value\n` lines, or `None` when unreadable.
fn printed<F: Sim>(cell: &Cell<F>, l: &Layout<F>) -> Option<String> {
    let mut buf = vec![0u8; l.size];
    let mut e = env(cell, l);
    let loaded = e.load(&mut buf).ok()?;
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

/// A `mkenvimage -r` copy of `size` bytes (flags 1) with Mender's variables.
fn mkenvimage(size: usize) -> Vec<u8> {
    let dir = TempDir::new("nor-mk");
    let txt = dir.join("env.txt");
    std::fs::write(
        &txt,
        "bootcmd=run mender_setup; run bootcmd_nor\nbootcount=0\nbootlimit=1\n\
         mender_boot_part=2\nmender_boot_part_hex=2\nupgrade_available=0\n",
    )
    .unwrap();
    let img = dir.join("env.bin");
    run_ok(
        "mkenvimage",
        [
            "-r",
            "-s",
            &format!("{size:#x}"),
            "-o",
            img.to_str().unwrap(),
            txt.to_str().unwrap(),
        ],
    );
    std::fs::read(img).unwrap()
}

/// fw_printenv on the two copies written out as files (`None` when it
/// finds no valid copy).
fn fw_printenv(dir: &TempDir, a: &[u8], b: &[u8]) -> Option<String> {
    let (pa, pb) = (dir.join("a.bin"), dir.join("b.bin"));
    std::fs::write(&pa, a).unwrap();
    std::fs::write(&pb, b).unwrap();
    let cfg = dir.join("fw_env.config");
    let line = |p: &Path| format!("{} 0x0 {:#x}\n", p.display(), a.len());
    std::fs::write(&cfg, line(&pa) + &line(&pb)).unwrap();
    let out = run(
        "fw_printenv",
        ["-c", cfg.to_str().unwrap(), "-f", "/nonexistent/env"],
    );
    out.status
        .success()
        .then(|| String::from_utf8(out.stdout).unwrap())
}

/// Sweeps `changes` over the chip `start`; returns the chip after the
/// uncut update.
fn sweep<F: Sim>(start: &F, l: &Layout<F>, changes: &[Change<'_>], tool: bool) -> F {
    let reference = RefCell::new((l.wrap)(start.clone()));
    let old = printed(&reference, l).expect("the starting env must be valid");
    let mut buf = vec![0u8; l.size];
    let outcome = env(&reference, l).update(&mut buf, changes).unwrap();
    let UpdateOutcome::Written { copy, flags } = outcome else {
        panic!("nothing written: {outcome:?}");
    };
    assert_eq!(flags, Some(1), "boolean scheme: the new copy is active (1)");
    let new = printed(&reference, l).unwrap();
    assert_ne!(old, new);
    let done = reference.into_inner().into_inner();
    // The new copy holds flags 1, the old one 0 (obsolete).
    let (new_at, old_at) = match copy {
        CopyId::First => (0, l.second_at as usize),
        CopyId::Second => (l.second_at as usize, 0),
    };
    assert_eq!(done.bytes()[new_at + 4], 1);
    assert_eq!(done.bytes()[old_at + 4], 0);
    let total = done.programmed() - start.programmed();
    assert!(
        total > l.size,
        "a full copy plus the obsolete flag: {total}"
    );

    let dir = TempDir::new("nor-sweep");
    let mut new_seen = 0;
    for cut in 0..=total {
        let mut chip = start.clone();
        chip.cut(cut);
        let cell = RefCell::new((l.wrap)(chip));
        let result = env(&cell, l).update(&mut buf, changes);
        if cut < total {
            assert_eq!(
                result,
                Err(UpdateError::Storage(NorError::Flash(
                    SimNorError::PowerLost
                ))),
                "cut {cut}/{total}"
            );
        } else {
            assert!(result.is_ok(), "cut {cut}: {result:?}");
        }
        cell.borrow_mut().flash().power_on();
        let after = printed(&cell, l)
            .unwrap_or_else(|| panic!("cut after {cut}/{total} bytes: env unreadable"));
        assert!(
            after == old || after == new,
            "cut after {cut}/{total} bytes: neither old nor new:\n{after}"
        );
        if after == new {
            new_seen += 1;
        } else {
            assert_eq!(
                new_seen, 0,
                "cut {cut}: back to the old env after the new one"
            );
        }
        if tool {
            let bytes = cell.borrow_mut().flash().bytes().to_vec();
            let a = &bytes[..l.size];
            let b = &bytes[l.second_at as usize..l.second_at as usize + l.size];
            assert_eq!(
                fw_printenv(&dir, a, b).as_deref(),
                Some(after.as_str()),
                "cut after {cut}/{total} bytes: fw_printenv disagrees"
            );
        }
        // Rebooted: the same update again must succeed and give the new env
        // (a torn copy is erased again before it is rewritten).
        let retry = env(&cell, l).update(&mut buf, changes);
        assert!(
            matches!(
                retry,
                Ok(UpdateOutcome::Written { .. } | UpdateOutcome::Unchanged)
            ),
            "cut {cut}: retry failed: {retry:?}"
        );
        assert_eq!(
            printed(&cell, l).as_deref(),
            Some(new.as_str()),
            "cut {cut}"
        );
    }
    assert!(new_seen >= 1);
    done
}

/// The Mender flow r1..r3 swept on a chip provisioned with one
/// `mkenvimage -r` copy (flags 1) and the other copy's sectors erased.
fn mender_flow<F: Sim>(l: &Layout<F>) {
    let mut chip = F::erased(l.sectors);
    chip.put(0, &mkenvimage(l.size));
    let chip = sweep(&chip, l, &R1, false);
    let chip = sweep(&chip, l, &R2, false);
    sweep(&chip, l, &R3, false);
}

/// Single-write chip with 8-byte words: the old copy cannot be flagged in
/// place, so it is erased and rewritten with flags 0 (U-Boot's way).
#[test]
fn sweep_single_write_8_byte_words() {
    mender_flow::<SimNor<1, 8, 0x1000>>(&Layout {
        sectors: 2,
        second_at: 0x1000,
        size: 0x1000,
        wrap: NorStorage::new,
    });
}

/// Byte-writable multi-write chip: the flags byte is programmed to 0 in
/// place (libubootenv's way).
#[test]
fn sweep_multiwrite_bytes() {
    mender_flow::<SimNor<1, 1, 0x1000, true>>(&Layout {
        sectors: 2,
        second_at: 0x1000,
        size: 0x1000,
        wrap: NorStorage::multiwrite,
    });
}

/// 4-byte read units and words, copies of two 0x800 sectors each, with a
/// gap sector between them: the one-byte flag write becomes a word write
/// with the other bytes left as they are.
#[test]
fn sweep_multiwrite_words_copies_over_two_sectors() {
    mender_flow::<SimNor<4, 4, 0x800, true>>(&Layout {
        sectors: 5,
        second_at: 0x1800,
        size: 0x1000,
        wrap: NorStorage::multiwrite,
    });
}

/// Every cut state of the arming step read by fw_printenv as well.
#[test]
fn sweep_checked_by_fw_printenv() {
    let l = Layout {
        sectors: 2,
        second_at: 0x1000,
        size: 0x1000,
        wrap: NorStorage::<SimNor<1, 1, 0x1000, true>>::multiwrite,
    };
    let mut chip = SimNor::<1, 1, 0x1000, true>::new(2);
    let copy = mkenvimage(0x1000);
    chip.load(0, &copy);
    sweep(&chip, &l, &R1, true);
}

/// States U-Boot's `env_flash_init` distinguishes, on the chip: active
/// beats obsolete whatever the position; a copy still flagged 0xff beats
/// one flagged 1; equal flags pick the first copy.
#[test]
fn reads_flag_states_as_uboot() {
    let copy = mkenvimage(0x1000);
    let mut other = copy.clone();
    // Same variables but bootcount=7: tells the copies apart.
    let at = other.windows(11).position(|w| w == b"bootcount=0").unwrap();
    other[at + 10] = b'7';
    let crc = crc32fast::hash(&other[5..]);
    other[..4].copy_from_slice(&crc.to_le_bytes());
    let l = Layout {
        sectors: 2,
        second_at: 0x1000,
        size: 0x1000,
        wrap: NorStorage::<SimNor<1, 1, 0x1000, true>>::multiwrite,
    };
    for (f1, f2, winner) in [
        (1u8, 0u8, "0"),
        (0, 1, "7"),
        (1, 1, "0"),
        (0, 0, "0"),
        (0xff, 1, "0"),
        (1, 0xff, "7"),
        (0xff, 0xff, "0"),
    ] {
        let mut chip = SimNor::<1, 1, 0x1000, true>::new(2);
        let mut a = copy.clone();
        a[4] = f1;
        let mut b = other.clone();
        b[4] = f2;
        chip.load(0, &a);
        chip.load(0x1000, &b);
        let cell = RefCell::new((l.wrap)(chip));
        let shown = printed(&cell, &l).unwrap();
        assert!(
            shown.contains(&format!("bootcount={winner}\n")),
            "flags {f1}/{f2}: expected bootcount={winner}:\n{shown}"
        );
    }
}

/// An env copy that does not fill whole sectors cannot be erased without
/// destroying the rest of the sector: refused, nothing written.
#[test]
fn copy_smaller_than_a_sector_is_refused() {
    let mut chip = SimNor::<1, 1, 0x2000, true>::new(2);
    chip.load(0, &mkenvimage(0x1000));
    let l = Layout {
        sectors: 2,
        second_at: 0x2000,
        size: 0x1000,
        wrap: NorStorage::multiwrite,
    };
    let cell = RefCell::new((l.wrap)(chip.clone()));
    let mut buf = vec![0u8; 0x1000];
    let err = env(&cell, &l).update(&mut buf, &R1).unwrap_err();
    assert!(
        matches!(
            err,
            UpdateError::Storage(NorError::NotAligned { unit: 0x2000, .. })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("8192-byte unit"), "{err}");
    assert_eq!(cell.borrow_mut().flash().as_bytes(), chip.as_bytes());
}
