//! Power-cut sweeps over the three `BootControl` writes (arm, confirm,
//! roll back from armed and from running), on both backends:
//!
//! * U-Boot, redundant pair in memory: the write is cut after every byte
//!   count from 0 to one full copy;
//! * Mender double grubenv in memory: the write is cut at each of the six
//!   steps, leaving the file untouched, truncated with every prefix length
//!   (`grub-editenv`), or overwritten in place up to every byte (GRUB's
//!   `save_env`).
//!
//! After each cut, `state()` (through a fresh control, i.e. a reboot) must
//! be exactly the state before or after the operation, and reading again
//! must give the same answer (repair is stable). Where noted, the files
//! are also read by `fw_printenv` / `grub-editenv list`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod control_common;

use common::{run, TempDir};
use control_common::{
    file, grub_mem, grub_our_list, grub_tool_list, proof, uboot_copy, uboot_defaults, Mem, PARTS,
};
use std::path::Path;
use updraft_boot::control::{grub_script_boot, uboot_script_boot, GrubControl, UbootControl};
use updraft_boot::mender_grub::{FileKind, Half, MenderGrubenv, Tear, WORK_SIZE};
use updraft_boot::storage::MemStorage;
use updraft_boot::uboot::{CopyId, EnvLocation, UbootEnv};
use updraft_core::boot::{BootControl, BootState, Slot, Trial};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Arm,
    Confirm,
    RollBack,
}

fn apply<C: BootControl>(ctl: &mut C, op: Op) -> Result<(), C::Error> {
    match op {
        Op::Arm => ctl.arm_trial(Slot::B, &proof()),
        Op::Confirm => ctl.confirm(),
        Op::RollBack => ctl.roll_back(),
    }
}

// ------------------------------------------------------------ U-Boot

const SIZE: usize = 0x1000;
type UMem = MemStorage<Vec<u8>>;

fn pair(a: &[u8], b: &[u8]) -> UbootEnv<UMem> {
    UbootEnv::redundant(
        EnvLocation {
            storage: MemStorage::new(a.to_vec()),
            offset: 0,
        },
        EnvLocation {
            storage: MemStorage::new(b.to_vec()),
            offset: 0,
        },
        SIZE,
    )
}

fn copies(env: &UbootEnv<UMem>) -> (Vec<u8>, Vec<u8>) {
    let c = |id| env.location(id).unwrap().storage.as_bytes().to_vec();
    (c(CopyId::First), c(CopyId::Second))
}

fn ustate(a: &[u8], b: &[u8]) -> BootState {
    let mut buf = vec![0u8; SIZE];
    UbootControl::new(pair(a, b), &mut buf, PARTS)
        .state()
        .unwrap()
}

/// Sweeps `op` over the pair (a, b); returns the pair after the uncut op.
fn sweep_uboot(a: &[u8], b: &[u8], op: Op, tools: Option<&Path>) -> (Vec<u8>, Vec<u8>) {
    let old = ustate(a, b);
    let mut buf = vec![0u8; SIZE];
    let mut ctl = UbootControl::new(pair(a, b), &mut buf, PARTS);
    apply(&mut ctl, op).unwrap();
    let new = ctl.state().unwrap();
    assert_ne!(old, new, "{op:?} must change the state");
    let env = ctl.into_inner();
    let total: usize = [CopyId::First, CopyId::Second]
        .iter()
        .map(|&id| env.location(id).unwrap().storage.bytes_written())
        .sum();
    assert_eq!(total, SIZE, "{op:?} writes one copy");
    let (na, nb) = copies(&env);

    let mut seen_new = 0;
    for cut in 0..=total {
        let mut env = pair(a, b);
        for id in [CopyId::First, CopyId::Second] {
            env.location_mut(id).unwrap().storage.cut_after(cut);
        }
        let mut ctl = UbootControl::new(env, &mut buf, PARTS);
        let result = apply(&mut ctl, op);
        assert_eq!(result.is_ok(), cut == total, "{op:?} cut {cut}");
        let (ca, cb) = copies(&ctl.into_inner());
        let after = ustate(&ca, &cb);
        assert!(
            after == old || after == new,
            "{op:?} cut after {cut}/{total} bytes: {after:?} is neither {old:?} nor {new:?}"
        );
        seen_new += usize::from(after == new);
        if let Some(dir) = tools {
            // Every 97th cut, and the boundaries, through fw_printenv.
            if cut % 97 == 0 || cut + 5 >= total {
                let printed = fw_printenv(dir, &ca, &cb);
                // mender_boot_part names the armed slot, else the active one.
                let part = match after.trial {
                    Trial::Armed(slot) => slot,
                    _ => after.active,
                };
                let p = PARTS.partition(part);
                assert!(
                    printed.contains(&format!("mender_boot_part={p}\n"))
                        && printed.contains(&format!("mender_boot_part_hex={p:x}\n")),
                    "{op:?} cut {cut}: fw_printenv shows {printed}"
                );
            }
        }
    }
    assert!(seen_new >= 1);
    (na, nb)
}

fn fw_printenv(dir: &Path, a: &[u8], b: &[u8]) -> String {
    let (pa, pb) = (dir.join("a.bin"), dir.join("b.bin"));
    std::fs::write(&pa, a).unwrap();
    std::fs::write(&pb, b).unwrap();
    let cfg = dir.join("fw_env.config");
    let line = |p: &Path| format!("{} 0x0 {SIZE:#x}\n", p.display());
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
    assert!(out.status.success(), "fw_printenv failed");
    String::from_utf8(out.stdout).unwrap()
}

fn uboot_boot(a: &[u8], b: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut env = pair(a, b);
    let mut buf = vec![0u8; SIZE];
    uboot_script_boot(&mut env, &mut buf, PARTS).unwrap();
    copies(&env)
}

#[test]
fn uboot_every_byte() {
    let dir = TempDir::new("cut-uboot");
    let a = uboot_copy(&uboot_defaults(), 1, SIZE);
    let b = a.clone();
    // Arm, boot once, confirm.
    let (a1, b1) = sweep_uboot(&a, &b, Op::Arm, Some(dir.path()));
    let (a2, b2) = uboot_boot(&a1, &b1);
    assert_eq!(
        ustate(&a2, &b2),
        BootState {
            active: Slot::B,
            trial: Trial::Running { boot_count: 1 }
        }
    );
    let (a3, b3) = sweep_uboot(&a2, &b2, Op::Confirm, Some(dir.path()));
    assert_eq!(ustate(&a3, &b3).trial, Trial::None);
    // Roll back while armed, and while running.
    sweep_uboot(&a1, &b1, Op::RollBack, Some(dir.path()));
    sweep_uboot(&a2, &b2, Op::RollBack, None);
}

// ------------------------------------------------------------ GRUB

fn gstate(env: MenderGrubenv<Mem>) -> (BootState, MenderGrubenv<Mem>) {
    let mut work = [0u8; WORK_SIZE];
    let mut ctl = GrubControl::new(env, &mut work, PARTS);
    let s = ctl.state().unwrap();
    // Reading again (after any repair) gives the same answer.
    assert_eq!(ctl.state().unwrap(), s);
    (s, ctl.into_inner())
}

/// The tears of a replace with `len` new bytes: untouched, and truncated
/// or overwritten at every byte of the first 160 (signature, variables,
/// the start of the `#` padding), then every 16th byte and the last one
/// (all padding: those cuts behave alike; an every-byte run is cheap in
/// release mode but slow in debug).
fn tears(len: usize) -> Vec<Tear> {
    let mut t = vec![Tear::Untouched];
    let points = (0..len).filter(|&n| n < 160 || n % 16 == 0 || n + 1 == len);
    for n in points {
        t.push(Tear::Truncated(n));
        t.push(Tear::Overwritten(n));
    }
    t
}

/// Sweeps `op` over `start`; returns the grubenv after the uncut op.
/// `tool_every`: check the files with grub-editenv every that many cuts.
fn sweep_grub(start: &MenderGrubenv<Mem>, op: Op, tool_every: Option<usize>) -> MenderGrubenv<Mem> {
    let clone = |e: &MenderGrubenv<Mem>| MenderGrubenv::new(e.dir().clone());
    let (old, _) = gstate(clone(start));
    let mut reference = clone(start);
    reference.dir_mut().reset_ops();
    let mut work = [0u8; WORK_SIZE];
    let mut ctl = GrubControl::new(reference, &mut work, PARTS);
    apply(&mut ctl, op).unwrap();
    let reference = ctl.into_inner();
    let ops = reference.dir().ops();
    assert_eq!(ops, 6, "{op:?}: the six protocol steps");
    let (new, reference) = gstate(reference);
    assert_ne!(old, new);

    let mut runs = 0;
    for step in 0..ops {
        for tear in tears(1024) {
            let mut env = clone(start);
            env.dir_mut().reset_ops();
            env.dir_mut().cut_at(step, tear);
            let mut ctl = GrubControl::new(env, &mut work, PARTS);
            assert!(apply(&mut ctl, op).is_err(), "{op:?} step {step} {tear:?}");
            let mut env = ctl.into_inner();
            env.dir_mut().restore_power();
            let (after, env) = gstate(env);
            assert!(
                after == old || after == new,
                "{op:?} cut at step {step} ({tear:?}): {after:?} is neither {old:?} nor {new:?}"
            );
            // Steps 0-2 (half 2) give the old state, 4-5 (half 1) the new;
            // a cut at step 3 (lock1 editing=1) gives the new state unless
            // lock1 is still unchanged (then env1 still holds the old one).
            match step {
                0..=2 => assert_eq!(after, old, "{op:?} step {step} {tear:?}"),
                3 => {}
                _ => assert_eq!(after, new, "{op:?} step {step} {tear:?}"),
            }
            runs += 1;
            if tool_every.is_some_and(|n| runs % n == 0) {
                // After the repair both envs list the same under grub-editenv.
                let e1 = env.dir().file(file(Half::First, FileKind::Env));
                let e2 = env.dir().file(file(Half::Second, FileKind::Env));
                let l1 = grub_tool_list(e1);
                assert_eq!(l1, grub_tool_list(e2));
                assert_eq!(l1, grub_our_list(e1));
                for h in [Half::First, Half::Second] {
                    let lock = env.dir().file(file(h, FileKind::Lock));
                    assert_eq!(grub_tool_list(lock), vec!["editing=0".to_owned()]);
                }
            }
        }
    }
    reference
}

fn grub_boot(env: &MenderGrubenv<Mem>) -> MenderGrubenv<Mem> {
    let mut env = MenderGrubenv::new(env.dir().clone());
    let mut work = [0u8; WORK_SIZE];
    grub_script_boot(&mut env, &mut work, PARTS).unwrap();
    env
}

#[test]
fn grub_every_step_and_tear() {
    let start = grub_mem();
    let armed = sweep_grub(&start, Op::Arm, Some(331));
    let running = grub_boot(&armed);
    let (s, running) = gstate(running);
    assert_eq!(s.trial, Trial::Running { boot_count: 1 });
    sweep_grub(&running, Op::Confirm, Some(331));
    sweep_grub(&armed, Op::RollBack, None);
    sweep_grub(&running, Op::RollBack, None);
}

/// The bootloader's own save (GRUB marking the first trial boot) swept
/// the same way: a cut gives bootcount 0 (boot again as the first trial)
/// or 1, never a broken env.
#[test]
fn grub_boot_save_every_step() {
    let clone = |e: &MenderGrubenv<Mem>| MenderGrubenv::new(e.dir().clone());
    let mut armed = grub_mem();
    let mut work = [0u8; WORK_SIZE];
    let mut ctl = GrubControl::new(clone(&armed), &mut work, PARTS);
    ctl.arm_trial(Slot::B, &proof()).unwrap();
    armed = ctl.into_inner();
    for step in 0..6 {
        for tear in [
            Tear::Untouched,
            Tear::Truncated(0),
            Tear::Truncated(500),
            Tear::Overwritten(30),
        ] {
            let mut env = clone(&armed);
            env.dir_mut().reset_ops();
            env.dir_mut().cut_at(step, tear);
            assert!(grub_script_boot(&mut env, &mut work, PARTS).is_err());
            env.dir_mut().restore_power();
            let (s, _) = gstate(env);
            let old = Trial::Armed(Slot::B);
            let new = Trial::Running { boot_count: 1 };
            // The lock's value byte is at offset 33: a cut before it at
            // step 3 leaves lock1 clean, env1 old.
            let want = match (step, tear) {
                (0..=2, _) | (3, Tear::Untouched) => old,
                (3, Tear::Overwritten(n)) if n <= 33 => old,
                _ => new,
            };
            assert_eq!(s.trial, want, "step {step} {tear:?}");
        }
    }
}
