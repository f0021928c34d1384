//! `McubootControl` as the agent drives it (with a real arming proof from
//! a `mender-artifact` artifact and images signed by imgtool 2.5.0), and
//! power-cut sweeps over every trailer write: cut at every byte, with
//! prefix-torn and bit-torn writes, at BOOT_MAX_ALIGN 8/16/32, write sizes
//! 1..32, 0xff and 0x00 erased flash, in every mode.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod mcuboot_common;

use mcuboot_common::{dumpinfo, key, proof, sign, TempDir};
use updraft_boot::mcuboot::trailer::{self, read_state, set_confirmed, set_pending};
use updraft_boot::mcuboot::{
    Area, ArmCheck, ControlError, Flag, MagicState, McubootControl, Mode, SwapType, TrailerError,
    TrailerLayout, VerifyError,
};
use updraft_boot::storage::{EnvStorage, MemError, MemStorage, Storage};
use updraft_core::boot::{BootControl, BootState, Slot, Trial};

const SLOT: u64 = 0x20000;
const SECTOR: u64 = 0x1000;

fn primary() -> Area {
    Area {
        offset: 0,
        size: SLOT,
        sector_size: SECTOR,
    }
}

fn secondary() -> Area {
    Area {
        offset: SLOT,
        size: SLOT,
        sector_size: SECTOR,
    }
}

fn state(trial: Trial) -> BootState {
    BootState {
        active: Slot::A,
        trial,
    }
}

/// Flash holding a running image in the primary (confirmed: imgtool
/// `--confirm`) and a new unpadded image in the secondary.
fn device(dir: &TempDir, layout: &TrailerLayout) -> MemStorage<Vec<u8>> {
    let k = key("ecdsa-p256", 0);
    let old = std::fs::read(sign(
        dir,
        "old.bin",
        Some(k),
        &["--align", "8", "--confirm"],
    ))
    .unwrap();
    let mut new = std::fs::read(sign(dir, "new.bin", Some(k), &[])).unwrap();
    new.resize(SLOT as usize, 0xff);
    let mut flash = old;
    flash.extend_from_slice(&new);
    let _ = layout;
    MemStorage::new(flash).with_erase_value(0xff)
}

/// What MCUboot does at reset for a TEST/PERM swap (swap-scratch): the
/// images trade places, the primary trailer gets swap_info, (image_ok for
/// PERM), magic, then copy_done; the secondary trailer ends erased.
fn bootloader_swap(flash: &mut MemStorage<Vec<u8>>, layout: &TrailerLayout) {
    let s = SLOT as usize;
    let p = read_state(flash, primary(), layout).unwrap();
    let sec = read_state(flash, secondary(), layout).unwrap();
    let t = trailer::swap_type(&p, &sec, layout.mode());
    assert!(matches!(
        t,
        SwapType::Test | SwapType::Perm | SwapType::Revert
    ));
    let bytes = flash.as_bytes_mut();
    let (a, b) = bytes.split_at_mut(s);
    a.swap_with_slice(&mut b[..s]);
    let tsize = 0x1000;
    bytes[s - tsize..s].fill(0xff);
    bytes[2 * s - tsize..].fill(0xff);
    let cell = |bytes: &mut [u8], off: u64, v: u8| bytes[off as usize] = v;
    cell(bytes, layout.swap_info_off(SLOT), t.code());
    if matches!(t, SwapType::Perm | SwapType::Revert) {
        cell(bytes, layout.image_ok_off(SLOT), 1);
    }
    bytes[s - 16..s].copy_from_slice(&layout.magic());
    cell(bytes, layout.copy_done_off(SLOT), 1);
}

fn layout8() -> TrailerLayout {
    TrailerLayout::new(Mode::SwapScratch, 8, 8, 0xff).unwrap()
}

#[test]
fn trial_confirm_and_revert_cycle() {
    let dir = TempDir::new("cycle");
    let l = layout8();
    let mut c = McubootControl::new(device(&dir, &l), primary(), secondary(), l).unwrap();
    assert_eq!(c.state().unwrap(), state(Trial::None));
    assert!(matches!(
        c.arm_trial(Slot::A, &proof()),
        Err(ControlError::NotSecondary(Slot::A))
    ));
    c.arm_trial(Slot::B, &proof()).unwrap();
    assert_eq!(c.state().unwrap(), state(Trial::Armed(Slot::B)));
    let s = c.secondary_state().unwrap();
    assert_eq!(
        (s.magic, s.image_ok, s.swap_type),
        (MagicState::Good, Flag::Unset, SwapType::Test)
    );
    // Re-arming is idempotent.
    c.arm_trial(Slot::B, &proof()).unwrap();

    // The secondary as a file: imgtool sees the TEST request.
    let sec = dir.join("secondary.bin");
    std::fs::write(&sec, &c.storage().as_bytes()[SLOT as usize..]).unwrap();
    let t = &dumpinfo(&sec)["trailer"];
    assert_eq!(
        (t["swap_info"].as_u64(), t["image_ok"].as_u64()),
        (Some(2), Some(0xff))
    );

    // Reset: MCUboot swaps. The trial runs.
    let snapshot = c.storage().as_bytes().to_vec();
    bootloader_swap(c.storage(), &l);
    assert_eq!(c.state().unwrap(), state(Trial::Running { boot_count: 1 }));
    assert!(matches!(
        c.arm_trial(Slot::B, &proof()),
        Err(ControlError::TrialRunning)
    ));
    // Roll back while running writes nothing: MCUboot reverts at reset.
    let before = c.storage().as_bytes().to_vec();
    c.roll_back().unwrap();
    assert!(c.storage().as_bytes() == &before[..]);
    assert_eq!(c.swap_type().unwrap(), SwapType::Revert);

    // Confirm instead: image_ok set, nothing pending any more.
    c.confirm().unwrap();
    assert_eq!(c.state().unwrap(), state(Trial::None));
    assert_eq!(c.primary_state().unwrap().image_ok, Flag::Set);
    c.confirm().unwrap();

    // Back to the armed snapshot: roll back while armed.
    c.storage().as_bytes_mut().copy_from_slice(&snapshot);
    c.roll_back().unwrap();
    assert_eq!(c.state().unwrap(), state(Trial::None));
    assert_eq!(c.secondary_state().unwrap().magic, MagicState::Unset);
    // The primary (running image) is untouched.
    assert!(c.storage().as_bytes()[..SLOT as usize] == snapshot[..SLOT as usize]);
}

#[test]
fn roll_back_on_a_block_device_clears_the_fields() {
    // MemStorage without an erase value: erase does nothing, like a file.
    let dir = TempDir::new("rb-file");
    let l = layout8();
    let flash = device(&dir, &l).into_inner();
    let mut c = McubootControl::new(MemStorage::new(flash), primary(), secondary(), l).unwrap();
    c.arm_trial(Slot::B, &proof()).unwrap();
    let before = c.storage().as_bytes().to_vec();
    c.roll_back().unwrap();
    assert_eq!(c.state().unwrap(), state(Trial::None));
    let after = c.storage().as_bytes();
    // Only the trailer cells we wrote changed back; the image is intact.
    let changed: Vec<usize> = (0..after.len())
        .filter(|&i| after[i] != before[i])
        .collect();
    assert!(
        changed.iter().all(|&i| i as u64 >= 2 * SLOT - 48),
        "{changed:?}"
    );
    c.arm_trial(Slot::B, &proof()).unwrap();
    assert_eq!(c.state().unwrap(), state(Trial::Armed(Slot::B)));
}

#[test]
fn arm_checks_the_image_first() {
    let dir = TempDir::new("check");
    let l = layout8();
    // Damaged payload: refused, nothing written.
    let mut flash = device(&dir, &l);
    flash.as_bytes_mut()[SLOT as usize + 0x200 + 10] ^= 1;
    let mut c = McubootControl::new(flash, primary(), secondary(), l).unwrap();
    let before = c.storage().as_bytes().to_vec();
    let e = c.arm_trial(Slot::B, &proof()).unwrap_err();
    assert!(
        matches!(e, ControlError::Image(VerifyError::HashMismatch { .. })),
        "{e}"
    );
    assert!(c.storage().as_bytes() == &before[..]);

    // Signature check with the right and the wrong key.
    let good = key("ecdsa-p256", 0).public.clone();
    let bad = key("ecdsa-p256", 1).public.clone();
    let mut c = McubootControl::new(device(&dir, &l), primary(), secondary(), l)
        .unwrap()
        .with_check(ArmCheck::Signature(bad));
    assert!(matches!(
        c.arm_trial(Slot::B, &proof()),
        Err(ControlError::Image(VerifyError::KeyHashMismatch))
    ));
    let mut c = McubootControl::new(c.into_inner(), primary(), secondary(), l)
        .unwrap()
        .with_check(ArmCheck::Signature(good));
    c.arm_trial(Slot::B, &proof()).unwrap();

    // An imgtool --confirm image in the secondary already asks for PERM.
    let k = key("ecdsa-p256", 0);
    let conf = std::fs::read(sign(&dir, "c.bin", Some(k), &["--align", "8", "--confirm"])).unwrap();
    let mut flash = device(&dir, &l);
    flash.as_bytes_mut()[SLOT as usize..].copy_from_slice(&conf);
    let mut c = McubootControl::new(flash, primary(), secondary(), l).unwrap();
    assert!(matches!(
        c.arm_trial(Slot::B, &proof()),
        Err(ControlError::PermanentPending)
    ));
    // Overlapping slots are refused.
    let overlap = Area {
        offset: SLOT / 2,
        ..secondary()
    };
    assert!(McubootControl::new(MemStorage::new(vec![0u8; 4]), primary(), overlap, l).is_err());
}

// ------------------------------------------------------------ power cuts

/// NOR-like flash: writes program (AND for 0xff-erased, OR for
/// 0x00-erased), erase fills sectors. `cut_after(n)` stores exactly `n`
/// more bytes; with `garble` the byte at the cut is half-programmed.
#[derive(Clone)]
struct FlashSim {
    data: Vec<u8>,
    erased: u8,
    budget: Option<usize>,
    powered: bool,
    garble: bool,
    written: usize,
}

impl FlashSim {
    fn new(size: usize, erased: u8) -> Self {
        FlashSim {
            data: vec![erased; size],
            erased,
            budget: None,
            powered: true,
            garble: false,
            written: 0,
        }
    }

    fn program(&self, old: u8, new: u8) -> u8 {
        if self.erased == 0xff {
            old & new
        } else {
            old | new
        }
    }
}

impl Storage for FlashSim {
    type Error = MemError;

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let o = offset as usize;
        buf.copy_from_slice(&self.data[o..o + buf.len()]);
        Ok(())
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), MemError> {
        if !self.powered {
            return Err(MemError::PowerLost);
        }
        let o = offset as usize;
        let allowed = self.budget.map_or(data.len(), |b| b.min(data.len()));
        for (i, &b) in data[..allowed].iter().enumerate() {
            self.data[o + i] = self.program(self.data[o + i], b);
        }
        self.written += allowed;
        if let Some(b) = self.budget.as_mut() {
            *b -= allowed;
            if allowed < data.len() {
                if self.garble {
                    // Half the bits of the next byte made it.
                    let i = o + allowed;
                    let target = self.program(self.data[i], data[allowed]);
                    let mask = 0x5a;
                    self.data[i] = (self.data[i] & !mask) | (target & mask);
                }
                self.powered = false;
                return Err(MemError::PowerLost);
            }
        }
        Ok(())
    }

    fn erase(&mut self, offset: u64, len: u64) -> Result<(), MemError> {
        if !self.powered || self.budget == Some(0) {
            self.powered = false;
            return Err(MemError::PowerLost);
        }
        let o = offset as usize;
        self.data[o..o + len as usize].fill(self.erased);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), MemError> {
        if self.powered {
            Ok(())
        } else {
            Err(MemError::PowerLost)
        }
    }
}

impl EnvStorage for FlashSim {}

const SMALL: u64 = 0x800;

fn small(offset: u64) -> Area {
    Area {
        offset,
        size: SMALL,
        sector_size: 0x200,
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    PendingTest,
    PendingPerm,
    Confirm,
    RollBackArmed,
}

/// Flash before the operation, and the decisions allowed after a cut.
fn setup(op: Op, l: &TrailerLayout) -> (FlashSim, Vec<SwapType>) {
    let mut f = FlashSim::new(2 * SMALL as usize, l.erased());
    let allowed = match op {
        Op::PendingTest => vec![SwapType::None, SwapType::Test],
        // spec 1.6: a cut after the magic leaves TEST.
        Op::PendingPerm => vec![SwapType::None, SwapType::Test, SwapType::Perm],
        Op::Confirm => {
            // A test swap ran: primary magic + copy_done, no image_ok.
            f.write(SMALL - l.magic_block(), &magic_block(l)).unwrap();
            let mut cell = vec![l.erased(); l.write_size() as usize];
            cell[0] = 1;
            f.write(l.copy_done_off(SMALL), &cell).unwrap();
            vec![SwapType::Revert, SwapType::None]
        }
        Op::RollBackArmed => {
            set_pending(&mut f, small(SMALL), l, false).unwrap();
            vec![SwapType::Test, SwapType::None]
        }
    };
    (f, allowed)
}

fn magic_block(l: &TrailerLayout) -> Vec<u8> {
    let n = l.magic_block() as usize;
    let mut b = vec![l.erased(); n];
    b[n - 16..].copy_from_slice(&l.magic());
    b
}

fn run(op: Op, f: &mut FlashSim, l: &TrailerLayout) -> Result<(), String> {
    let r = match op {
        Op::PendingTest => set_pending(f, small(SMALL), l, false).map(drop),
        Op::PendingPerm => set_pending(f, small(SMALL), l, true).map(drop),
        Op::Confirm => set_confirmed(f, small(0), l).map(drop),
        Op::RollBackArmed => trailer::neutralise(f, small(SMALL), l),
    };
    r.map_err(|e: TrailerError<MemError>| e.to_string())
}

fn decision(f: &mut FlashSim, l: &TrailerLayout) -> SwapType {
    let p = read_state(f, small(0), l).expect("primary trailer unreadable after a cut");
    let s = read_state(f, small(SMALL), l).expect("secondary trailer unreadable after a cut");
    trailer::swap_type(&p, &s, l.mode())
}

#[test]
fn power_cut_at_every_byte_gives_old_or_new_state() {
    let combos: &[(u32, u32)] = &[
        (8, 1),
        (8, 4),
        (8, 8),
        (16, 1),
        (16, 4),
        (16, 8),
        (16, 16),
        (32, 1),
        (32, 8),
        (32, 16),
        (32, 32),
    ];
    let modes = [
        Mode::SwapScratch,
        Mode::SwapMove,
        Mode::SwapOffset,
        Mode::OverwriteOnly,
    ];
    let mut runs = 0;
    let mut torn_magic = 0;
    let mut torn_flag = 0;
    for mode in modes {
        for &(a, w) in combos {
            for erased in [0xffu8, 0x00] {
                let l = TrailerLayout::new(mode, a, w, erased).unwrap();
                for op in [
                    Op::PendingTest,
                    Op::PendingPerm,
                    Op::Confirm,
                    Op::RollBackArmed,
                ] {
                    let (clean, allowed) = setup(op, &l);
                    let old = decision(&mut clean.clone(), &l);
                    let mut full = clean.clone();
                    run(op, &mut full, &l).unwrap();
                    let new = decision(&mut full, &l);
                    let total = full.written;
                    assert!(
                        allowed.contains(&old) && allowed.contains(&new),
                        "{op:?} {mode:?} A={a} w={w}: {old:?} -> {new:?}"
                    );
                    assert_ne!(old, new, "{op:?} {mode:?} A={a} w={w}: no effect");
                    for garble in [false, true] {
                        for cut in 0..=total {
                            let mut f = clean.clone();
                            f.garble = garble;
                            f.cut_after(cut);
                            let r = run(op, &mut f, &l);
                            f.restore();
                            runs += 1;
                            let ctx = format!(
                                "{op:?} {mode:?} A={a} w={w} erased={erased:#x} \
                                 garble={garble} cut={cut}/{total}: {r:?}"
                            );
                            let d = decision(&mut f, &l);
                            assert!(allowed.contains(&d), "{ctx}: decision {d:?}");
                            if matches!(op, Op::PendingPerm) && d == SwapType::Test {
                                // Only after the magic was complete.
                                assert!(cut >= l.magic_block() as usize, "{ctx}");
                            }
                            let s = read_state(&mut f, small(SMALL), &l).unwrap();
                            if s.magic == MagicState::Bad {
                                torn_magic += 1;
                                // A torn magic is ignored by MCUboot (old
                                // state) and refused by a retry.
                                assert_eq!(d, old, "{ctx}");
                                assert!(matches!(
                                    set_pending(&mut f, small(SMALL), &l, false),
                                    Err(TrailerError::BadMagic)
                                ));
                                continue;
                            }
                            if s.magic == MagicState::Good && matches!(s.image_ok, Flag::Bad(_)) {
                                // A half-programmed image_ok (PERM): the
                                // bootloader matches no row (old state),
                                // and set_pending never rewrites a GOOD
                                // magic, so a retry cannot repair it, as
                                // in MCUboot: the slot must be erased.
                                torn_flag += 1;
                                assert_eq!(d, old, "{ctx}");
                                continue;
                            }
                            // Otherwise retrying the operation completes it.
                            run(op, &mut f, &l).unwrap_or_else(|e| panic!("{ctx}: retry {e}"));
                            let d = decision(&mut f, &l);
                            let ok =
                                d == new || (matches!(op, Op::PendingPerm) && d == SwapType::Test);
                            assert!(ok, "{ctx}: after retry {d:?}");
                        }
                    }
                }
            }
        }
    }
    assert!(runs > 10_000, "{runs} runs");
    assert!(torn_magic > 0 && torn_flag > 0);
}

impl FlashSim {
    fn cut_after(&mut self, n: usize) {
        self.budget = Some(n);
    }

    fn restore(&mut self) {
        self.budget = None;
        self.powered = true;
    }
}

#[test]
fn control_state_after_cuts_during_arm_and_confirm() {
    // The same through the BootControl API: the agent's view is always
    // the old or the new state.
    let dir = TempDir::new("ctl-cut");
    let l = layout8();
    let base = device(&dir, &l).into_inner();
    let mut clean = McubootControl::new(
        MemStorage::new(base.clone()).with_erase_value(0xff),
        primary(),
        secondary(),
        l,
    )
    .unwrap();
    clean.storage().reset_counter();
    clean.arm_trial(Slot::B, &proof()).unwrap();
    let total = clean.storage().bytes_written();
    for cut in 0..=total {
        let mut c = McubootControl::new(
            MemStorage::new(base.clone()).with_erase_value(0xff),
            primary(),
            secondary(),
            l,
        )
        .unwrap();
        c.storage().cut_after(cut);
        let _ = c.arm_trial(Slot::B, &proof());
        c.storage().restore_power();
        let st = c.state().unwrap();
        assert!(
            st == state(Trial::None) || st == state(Trial::Armed(Slot::B)),
            "cut {cut}: {st:?}"
        );
        assert_eq!(st == state(Trial::Armed(Slot::B)), cut >= 16, "cut {cut}");
    }
}
