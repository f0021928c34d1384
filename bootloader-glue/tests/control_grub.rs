//! `GrubControl` over Mender's double grubenv: the flow in memory and on a
//! real directory made by `grub-editenv` + `sha256sum` (spec 6.2), with
//! `grub-editenv list` (on copies) checking every file after every
//! operation; the repair rule on tool-made damage; the GRUB boot logic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod control_common;

use common::TempDir;
use control_common::{
    file, grub_mem, grub_our_list, grub_tool_fixture, grub_tool_list, proof, run_in, PARTS,
};
use std::path::Path;
use updraft_boot::control::{grub_script_boot, ControlError, GrubControl, ScriptBoot};
use updraft_boot::mender_grub::{
    FileKind, FsDir, GrubenvDir, Half, MenderGrubError, MenderGrubenv, Repair, WriteMode, WORK_SIZE,
};
use updraft_boot::Change;
use updraft_core::boot::{BootControl, BootState, Slot, Trial};

fn st(active: Slot, trial: Trial) -> BootState {
    BootState { active, trial }
}

#[test]
fn update_confirmed_and_fallback_in_memory() {
    let mut work = [0u8; WORK_SIZE];
    let mut ctl = GrubControl::new(grub_mem(), &mut work, PARTS);
    assert_eq!(ctl.state().unwrap(), st(Slot::A, Trial::None));
    ctl.arm_trial(Slot::B, &proof()).unwrap();
    assert_eq!(ctl.state().unwrap(), st(Slot::A, Trial::Armed(Slot::B)));
    assert_eq!(ctl.confirm().unwrap_err(), ControlError::NotBooted);
    let mut env = ctl.into_inner();
    let mut w2 = [0u8; WORK_SIZE];
    let boot = grub_script_boot(&mut env, &mut w2, PARTS).unwrap();
    assert_eq!(
        boot,
        ScriptBoot {
            slot: Slot::B,
            partition: 3,
            trial: true,
            fell_back: false
        }
    );
    let mut ctl = GrubControl::new(env, &mut work, PARTS);
    assert_eq!(
        ctl.state().unwrap(),
        st(Slot::B, Trial::Running { boot_count: 1 })
    );
    ctl.confirm().unwrap();
    assert_eq!(ctl.state().unwrap(), st(Slot::B, Trial::None));

    // Next update, never confirmed: GRUB falls back on the second boot.
    ctl.arm_trial(Slot::A, &proof()).unwrap();
    let mut env = ctl.into_inner();
    assert!(
        !grub_script_boot(&mut env, &mut w2, PARTS)
            .unwrap()
            .fell_back
    );
    let boot = grub_script_boot(&mut env, &mut w2, PARTS).unwrap();
    assert_eq!((boot.slot, boot.fell_back), (Slot::B, true));
    let mut ctl = GrubControl::new(env, &mut work, PARTS);
    assert_eq!(ctl.state().unwrap(), st(Slot::B, Trial::None));
    ctl.roll_back().unwrap();
    assert_eq!(ctl.state().unwrap(), st(Slot::B, Trial::None));
}

#[test]
fn roll_back_armed_and_running_in_memory() {
    let mut work = [0u8; WORK_SIZE];
    let mut ctl = GrubControl::new(grub_mem(), &mut work, PARTS);
    ctl.arm_trial(Slot::B, &proof()).unwrap();
    ctl.roll_back().unwrap();
    assert_eq!(ctl.state().unwrap(), st(Slot::A, Trial::None));
    ctl.arm_trial(Slot::B, &proof()).unwrap();
    let mut env = ctl.into_inner();
    let mut w2 = [0u8; WORK_SIZE];
    grub_script_boot(&mut env, &mut w2, PARTS).unwrap();
    let mut ctl = GrubControl::new(env, &mut work, PARTS);
    ctl.roll_back().unwrap();
    assert_eq!(ctl.state().unwrap(), st(Slot::A, Trial::None));
}

#[test]
fn invalid_grub_values_are_errors() {
    for (changes, expected) in [
        (
            vec![Change::set("bootcount", "2")],
            "Invalid { name: \"bootcount\" }",
        ),
        (
            vec![Change::set("mender_boot_part", "9")],
            "UnknownPartition { partition: 9 }",
        ),
        (
            vec![Change::remove("upgrade_available")],
            "Missing { name: \"upgrade_available\" }",
        ),
    ] {
        let mut env = grub_mem();
        let mut work = [0u8; WORK_SIZE];
        env.update(&mut work, &changes).unwrap();
        let mut ctl = GrubControl::new(env, &mut work, PARTS);
        assert_eq!(format!("{:?}", ctl.state().unwrap_err()), expected);
    }
}

// ------------------------------------------------------------ real tools

/// Every file of the directory, listed by grub-editenv (on a copy) and by
/// us: they agree; env1 and env2 agree; both locks are editing=0 and pass
/// `sha256sum -c`.
fn check_dir(root: &Path, vars: &[&str]) {
    let fs = FsDir::new(root);
    let mut lists = Vec::new();
    for half in [Half::First, Half::Second] {
        let env = std::fs::read(fs.path(file(half, FileKind::Env))).unwrap();
        assert_eq!(env.len(), 1024, "block size kept");
        let theirs = grub_tool_list(&env);
        assert_eq!(theirs, grub_our_list(&env));
        lists.push(theirs);
        let lock = std::fs::read(fs.path(file(half, FileKind::Lock))).unwrap();
        assert_eq!(grub_tool_list(&lock), vec!["editing=0".to_owned()]);
        let dir = root.join(half.dir_name());
        run_in(&dir, "sha256sum", &["-c", "lock.sha256sum"]);
    }
    assert_eq!(lists[0], lists[1]);
    let want: Vec<String> = vars.iter().map(|s| s.to_string()).collect();
    for v in &want {
        assert!(lists[0].contains(v), "{v} not in {:?}", lists[0]);
    }
}

fn ctl_on<'b>(root: &Path, mode: WriteMode, work: &'b mut [u8]) -> GrubControl<'b, FsDir> {
    GrubControl::new(
        MenderGrubenv::new(FsDir::new(root).with_mode(mode)),
        work,
        PARTS,
    )
}

#[test]
fn operations_checked_by_grub_editenv() {
    for mode in [WriteMode::InPlace, WriteMode::Atomic] {
        let dir = TempDir::new("ctl-grub-tools");
        grub_tool_fixture(dir.path());
        check_dir(
            dir.path(),
            &["bootcount=0", "mender_boot_part=2", "upgrade_available=0"],
        );
        let mut work = [0u8; WORK_SIZE];
        let mut ctl = ctl_on(dir.path(), mode, &mut work);
        assert_eq!(ctl.state().unwrap(), st(Slot::A, Trial::None));
        ctl.arm_trial(Slot::B, &proof()).unwrap();
        check_dir(
            dir.path(),
            &[
                "bootcount=0",
                "mender_boot_part=3",
                "mender_boot_part_hex=3",
                "upgrade_available=1",
            ],
        );
        let mut env = ctl.into_inner();
        let mut w2 = [0u8; WORK_SIZE];
        grub_script_boot(&mut env, &mut w2, PARTS).unwrap();
        check_dir(
            dir.path(),
            &["bootcount=1", "mender_boot_part=3", "upgrade_available=1"],
        );
        let mut ctl = GrubControl::new(env, &mut work, PARTS);
        ctl.confirm().unwrap();
        check_dir(
            dir.path(),
            &["bootcount=0", "mender_boot_part=3", "upgrade_available=0"],
        );
        ctl.arm_trial(Slot::A, &proof()).unwrap();
        ctl.roll_back().unwrap();
        check_dir(
            dir.path(),
            &[
                "bootcount=0",
                "mender_boot_part=3",
                "mender_boot_part_hex=3",
                "upgrade_available=0",
            ],
        );
        // No temporary files left behind.
        for half in [Half::First, Half::Second] {
            let mut names: Vec<_> = std::fs::read_dir(dir.path().join(half.dir_name()))
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            assert_eq!(names, ["env", "lock", "lock.sha256sum"]);
        }
    }
}

/// What a cut inside `grub-editenv` leaves (spec 6.2), made with the tool
/// and plain file operations, then repaired by us.
#[test]
fn repairs_tool_made_damage() {
    let p = |root: &Path, h: &str, f: &str| root.join(h).join(f);
    // A cut while env2 was being set: lock2 editing=1, env2 emptied.
    let dir = TempDir::new("ctl-grub-cut2");
    let root = dir.path();
    grub_tool_fixture(root);
    let e2 = p(root, "mender_grubenv2", "env");
    run_in(
        &root.join("mender_grubenv2"),
        "grub-editenv",
        &["lock", "set", "editing=1"],
    );
    std::fs::write(&e2, b"").unwrap();
    let mut env = MenderGrubenv::new(FsDir::new(root));
    let mut work = [0u8; WORK_SIZE];
    let loaded = env.load(&mut work).unwrap();
    assert_eq!(loaded.repair, Repair::RestoredSecond);
    check_dir(root, &["mender_boot_part=2"]);

    // A cut while env1 was being set (env2 complete with the new values):
    // lock1 editing=1, env1 truncated to 100 bytes.
    let dir = TempDir::new("ctl-grub-cut1");
    let root = dir.path();
    grub_tool_fixture(root);
    run_in(
        &root.join("mender_grubenv2"),
        "grub-editenv",
        &["env", "set", "mender_boot_part=3", "upgrade_available=1"],
    );
    run_in(
        &root.join("mender_grubenv1"),
        "grub-editenv",
        &["lock", "set", "editing=1"],
    );
    let e1 = p(root, "mender_grubenv1", "env");
    let full = std::fs::read(&e1).unwrap();
    std::fs::write(&e1, &full[..100]).unwrap();
    let mut work = [0u8; WORK_SIZE];
    let mut ctl = ctl_on(root, WriteMode::InPlace, &mut work);
    assert_eq!(ctl.state().unwrap(), st(Slot::A, Trial::Armed(Slot::B)));
    check_dir(root, &["mender_boot_part=3", "upgrade_available=1"]);

    // The spec's negative: env1 empty and both locks editing=1.
    let dir = TempDir::new("ctl-grub-both");
    let root = dir.path();
    grub_tool_fixture(root);
    for h in ["mender_grubenv1", "mender_grubenv2"] {
        run_in(&root.join(h), "grub-editenv", &["lock", "set", "editing=1"]);
    }
    std::fs::write(p(root, "mender_grubenv1", "env"), b"").unwrap();
    let mut work = [0u8; WORK_SIZE];
    let mut ctl = ctl_on(root, WriteMode::InPlace, &mut work);
    let err = ctl.state().unwrap_err();
    assert!(
        matches!(err, ControlError::Env(MenderGrubError::BothLocksDirty)),
        "{err:?}"
    );

    // A broken checksum file is a provisioning error, reported as such.
    let dir = TempDir::new("ctl-grub-sum");
    let root = dir.path();
    grub_tool_fixture(root);
    std::fs::write(p(root, "mender_grubenv2", "lock.sha256sum"), b"garbage\n").unwrap();
    let mut work = [0u8; WORK_SIZE];
    let mut ctl = ctl_on(root, WriteMode::InPlace, &mut work);
    let err = ctl.state().unwrap_err();
    assert!(matches!(
        err,
        ControlError::Env(MenderGrubError::BadChecksumFile { half: Half::Second })
    ));
    assert!(err.to_string().contains("mender_grubenv2/lock.sha256sum"));
}

/// A lock restored after a cut must pass `sha256sum -c` whichever way the
/// locks were provisioned: by `grub-editenv create` (the tool fixture) or
/// by Mender's `blank_grubenv` (our provisioning), even when the other
/// lock was made the other way.
#[test]
fn restored_locks_match_their_checksum() {
    let dir = TempDir::new("ctl-grub-lockforms");
    let root = dir.path();
    grub_tool_fixture(root);
    // Half 1 re-provisioned in Mender's form.
    let mut ours = MenderGrubenv::new(FsDir::new(dir.join("ours")));
    ours.dir().create_dirs().unwrap();
    let mut work = [0u8; WORK_SIZE];
    ours.provision(&mut work, &[Change::set("mender_boot_part", "2")])
        .unwrap();
    for f in ["lock", "lock.sha256sum"] {
        std::fs::copy(
            dir.join("ours").join("mender_grubenv1").join(f),
            root.join("mender_grubenv1").join(f),
        )
        .unwrap();
    }
    for dirty in [Half::First, Half::Second] {
        let mut fs = FsDir::new(root);
        fs.replace(file(dirty, FileKind::Lock), b"").unwrap();
        let mut env = MenderGrubenv::new(fs);
        env.load(&mut work).unwrap();
        for h in ["mender_grubenv1", "mender_grubenv2"] {
            run_in(&root.join(h), "sha256sum", &["-c", "lock.sha256sum"]);
        }
    }
}
