//! The power-cut sweep of a whole update (issue 6): run a complete update
//! on a simulated device, count every write, then for every write re-run
//! the update cutting power before it, inside it (torn) and right after
//! it; reboot; run to the end; check the device boots a complete image,
//! the agent agrees, the server was told the truth and no state record
//! was lost. For U-Boot, GRUB and MCUboot, for a healthy new image, one
//! that fails its health check and one that never boots, and with a second
//! cut during the recovery.
//!
//! MCUboot (`updraft_e2e::mcuboot`): the payload is an image signed by
//! imgtool at test time; arming writes a TEST trailer through
//! `McubootControl`; the simulated bootloader swaps sector by sector
//! (every erase and write of the swap, and of the revert, is a cut point
//! too) and reverts an unconfirmed trial at the next reset.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;
use std::rc::Rc;
use std::sync::OnceLock;

use updraft_e2e::{
    make_image, Cut, Grub, Health, Loader, Mcuboot, Power, Scenario, Sim, Uboot, NEW,
};

/// An artifact for `release-2` made by Debian's `mender-artifact` (once
/// per bootloader, scenario and process); its payload is what `L` installs
/// (`Loader::payload`).
fn artifact<L: Loader>(health: Health) -> Vec<u8> {
    type Cache = std::sync::Mutex<Vec<(&'static str, Health, Vec<u8>)>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut c = cache.lock().unwrap();
    let loader = std::any::type_name::<L>();
    if let Some((_, _, a)) = c.iter().find(|(l, h, _)| *l == loader && *h == health) {
        return a.clone();
    }
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "updraft-sweep-{}-{}-{health:?}",
        std::process::id(),
        loader.rsplit("::").next().unwrap_or("")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let img = dir.join("rootfs.img");
    std::fs::write(&img, L::payload(make_image(NEW, health, 8000))).unwrap();
    let out = dir.join("release-2.mender");
    let res = Command::new("mender-artifact")
        .args(["write", "rootfs-image", "-n", NEW, "-t", "sim-board", "-f"])
        .arg(&img)
        .arg("-o")
        .arg(&out)
        .output()
        .expect("mender-artifact must be installed (scripts/test.sh installs it)");
    assert!(
        res.status.success(),
        "mender-artifact: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    let bytes = std::fs::read(&out).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    c.push((loader, health, bytes.clone()));
    bytes
}

fn health(s: Scenario) -> Health {
    match s {
        Scenario::Healthy => Health::Good,
        Scenario::FailsCheck => Health::FailsCheck,
        Scenario::FailsBoot => Health::FailsBoot,
    }
}

fn run<L: Loader>(
    make: fn(&Rc<Power>) -> L,
    s: Scenario,
    cuts: Vec<Cut>,
) -> (Sim<L>, Result<updraft_e2e::Verdict, String>) {
    let mut sim = Sim::new(make, artifact::<L>(health(s)), cuts);
    let v = sim.run();
    let v = v.and_then(|v| sim.check(&v, s).map(|()| v));
    (sim, v)
}

fn tears(len: usize) -> Vec<usize> {
    let mut v = vec![0, 1, len / 2, len.saturating_sub(1), len];
    v.retain(|&b| b <= len);
    v.sort_unstable();
    v.dedup();
    v
}

/// Single cuts at every write, torn at several offsets; returns
/// (runs, successes).
fn sweep<L: Loader>(make: fn(&Rc<Power>) -> L, s: Scenario) -> (usize, usize) {
    let (clean, v) = run(make, s, vec![]);
    let v = v.unwrap_or_else(|e| panic!("{s:?} without a cut: {e}\n{}", clean.trace()));
    let want = if s == Scenario::Healthy {
        "success"
    } else {
        "failure"
    };
    assert_eq!(v.finals.last().copied(), Some(want), "{s:?} without a cut");
    let ops = clean.power.ops();
    assert!(
        ops.len() > 10,
        "only {} writes in a whole update?",
        ops.len()
    );
    let (mut runs, mut ok) = (0, 0);
    for (k, op) in ops.iter().enumerate() {
        for bytes in tears(op.len) {
            let (sim, v) = run(make, s, vec![Cut { op: k, bytes }]);
            match v {
                Ok(v) => ok += usize::from(v.finals.last() == Some(&"success")),
                Err(e) => panic!(
                    "{} {s:?}: cut at write #{k} ({} bytes to {}) after {bytes} bytes: {e}\n-- trace:\n{}",
                    sim.loader.name(),
                    op.len,
                    op.device,
                    sim.trace()
                ),
            }
            runs += 1;
        }
    }
    println!(
        "{} {s:?}: {} writes in a clean update; {runs} cut points, all consistent ({ok} committed, {} rolled back)",
        clean.loader.name(),
        ops.len(),
        runs - ok
    );
    (runs, ok)
}

/// A cut inside every write, then a second cut at each of the next writes
/// (power failing again during the recovery or rollback).
fn double_sweep<L: Loader>(make: fn(&Rc<Power>) -> L, s: Scenario) -> usize {
    let (clean, _) = run(make, s, vec![]);
    let n = clean.power.ops().len();
    let mut runs = 0;
    for k in 0..n {
        let len = clean.power.ops()[k].len;
        for k2 in k + 1..k + 16 {
            let cuts = vec![
                Cut {
                    op: k,
                    bytes: len / 2,
                },
                Cut { op: k2, bytes: 0 },
            ];
            let (sim, v) = run(make, s, cuts.clone());
            if let Err(e) = v {
                panic!(
                    "{} {s:?}: cuts {cuts:?}: {e}\n-- trace:\n{}",
                    sim.loader.name(),
                    sim.trace()
                );
            }
            runs += 1;
        }
    }
    println!(
        "{} {s:?}: {runs} double-cut runs, all consistent",
        clean.loader.name()
    );
    runs
}

#[test]
fn uboot_healthy_update_survives_a_cut_at_every_write() {
    let (runs, ok) = sweep(Uboot::new, Scenario::Healthy);
    assert!(
        ok > 0 && ok < runs,
        "some cuts commit, some (during the trial) roll back"
    );
}

#[test]
fn uboot_failed_health_check_rolls_back_at_every_cut() {
    sweep(Uboot::new, Scenario::FailsCheck);
}

#[test]
fn uboot_image_that_never_boots_falls_back_at_every_cut() {
    sweep(Uboot::new, Scenario::FailsBoot);
}

#[test]
fn uboot_second_cut_during_recovery() {
    double_sweep(Uboot::new, Scenario::FailsCheck);
    double_sweep(Uboot::new, Scenario::Healthy);
}

#[test]
fn grub_healthy_update_survives_a_cut_at_every_write() {
    let (runs, ok) = sweep(Grub::new, Scenario::Healthy);
    assert!(ok > 0 && ok < runs);
}

#[test]
fn grub_failures_roll_back_at_every_cut() {
    sweep(Grub::new, Scenario::FailsCheck);
    sweep(Grub::new, Scenario::FailsBoot);
}

#[test]
fn grub_second_cut_during_recovery() {
    double_sweep(Grub::new, Scenario::FailsCheck);
}

#[test]
fn mcuboot_healthy_update_survives_a_cut_at_every_write() {
    let (runs, ok) = sweep(Mcuboot::new, Scenario::Healthy);
    assert!(
        ok > 0 && ok < runs,
        "some cuts commit, some (during the trial) revert"
    );
}

#[test]
fn mcuboot_failed_health_check_reverts_at_every_cut() {
    sweep(Mcuboot::new, Scenario::FailsCheck);
}

#[test]
fn mcuboot_image_that_never_boots_reverts_at_every_cut() {
    sweep(Mcuboot::new, Scenario::FailsBoot);
}

#[test]
fn mcuboot_second_cut_during_recovery() {
    double_sweep(Mcuboot::new, Scenario::FailsCheck);
    double_sweep(Mcuboot::new, Scenario::Healthy);
}

#[test]
fn mcuboot_second_cut_during_the_watchdog_revert() {
    double_sweep(Mcuboot::new, Scenario::FailsBoot);
}

#[test]
fn mcuboot_clean_updates() {
    for (s, want, boots) in [
        (Scenario::Healthy, "release-2", 2),
        (Scenario::FailsCheck, "release-1", 3),
        (Scenario::FailsBoot, "release-1", 3),
    ] {
        let (sim, v) = run(Mcuboot::new, s, vec![]);
        let v = v.unwrap_or_else(|e| panic!("{s:?}: {e}\n{}", sim.trace()));
        println!("-- MCUboot {s:?}\n{}", sim.trace());
        assert_eq!(v.running, want, "{s:?}");
        assert_eq!(
            v.slot,
            updraft_core::boot::Slot::A,
            "MCUboot runs the primary"
        );
        assert_eq!(v.boots, boots, "{s:?}");
        let swaps = sim.trace().matches("swap done").count();
        assert_eq!(swaps, boots - 1, "{s:?}: one swap per reset after the arm");
    }
}

#[test]
fn clean_update_talks_like_the_mender_client() {
    // Without state scripts: Mender 3.4's order for a rootfs update with
    // reboot (spec 2.6): `downloading` entering the download, once the
    // artifact answered, and once it is stored.
    let mut sim = Sim::new(
        Uboot::new,
        artifact::<Uboot>(health(Scenario::Healthy)),
        vec![],
    );
    sim.scripts.clear();
    let v = sim
        .run()
        .and_then(|v| sim.check(&v, Scenario::Healthy).map(|()| v));
    let v = v.unwrap_or_else(|e| panic!("{e}\n{}", sim.trace()));
    let statuses: Vec<&str> = sim.server.statuses.iter().map(|s| s.trim_end()).collect();
    assert_eq!(
        statuses,
        [
            "{\"status\":\"downloading\"}",
            "{\"status\":\"downloading\"}",
            "{\"status\":\"downloading\"}",
            "{\"status\":\"installing\"}",
            "{\"status\":\"rebooting\"}",
            "{\"status\":\"installing\"}",
            "{\"status\":\"success\"}",
        ]
    );
    assert!(sim.ran.is_empty(), "{:?}", sim.ran);
    // Auth at start, then (after the reboot, where the token is gone
    // anyway) the forced re-auth before the commit.
    assert_eq!(sim.server.auths, 2, "auth at start and before commit");
    assert_eq!(v.boots, 2);
    assert_eq!(v.slot, updraft_core::boot::Slot::B);
}

#[test]
fn state_scripts_run_in_mender_order_with_substate_reports() {
    let (sim, v) = run(Uboot::new, Scenario::Healthy, vec![]);
    v.unwrap_or_else(|e| panic!("{e}\n{}", sim.trace()));
    // Each hook of the path taken, in order; the Download script comes
    // from the root file system, the others from the artifact.
    assert_eq!(
        sim.ran,
        [
            "Download_Enter_00",
            "ArtifactInstall_Enter_00",
            "ArtifactCommit_Enter_00",
            "ArtifactCommit_Leave_00",
        ]
    );
    // The real client's reports with artifact Enter scripts (spec 2.6):
    // a substate pair around each, `rebooting` with ArtifactCommit_Enter.
    let statuses: Vec<&str> = sim.server.statuses.iter().map(|s| s.trim_end()).collect();
    assert_eq!(
        statuses,
        [
            "{\"status\":\"downloading\"}",
            "{\"status\":\"downloading\"}",
            "{\"status\":\"downloading\"}",
            "{\"status\":\"installing\",\"substate\":\"Executing script: ArtifactInstall_Enter_00\"}",
            "{\"status\":\"installing\",\"substate\":\"finished executing script: ArtifactInstall_Enter_00\"}",
            "{\"status\":\"installing\"}",
            "{\"status\":\"rebooting\"}",
            "{\"status\":\"rebooting\",\"substate\":\"Executing script: ArtifactCommit_Enter_00\"}",
            "{\"status\":\"rebooting\",\"substate\":\"finished executing script: ArtifactCommit_Enter_00\"}",
            "{\"status\":\"installing\"}",
            "{\"status\":\"success\"}",
        ]
    );
}

#[test]
fn a_failed_health_check_runs_the_error_rollback_and_failure_scripts() {
    let (sim, v) = run(Uboot::new, Scenario::FailsCheck, vec![]);
    v.unwrap_or_else(|e| panic!("{e}\n{}", sim.trace()));
    assert_eq!(
        sim.ran,
        [
            "Download_Enter_00",
            "ArtifactInstall_Enter_00",
            "ArtifactReboot_Error_00",
            "ArtifactRollback_Enter_00",
            "ArtifactFailure_Enter_00",
        ]
    );
}

#[test]
fn a_failing_enter_script_fails_the_update_where_it_stands() {
    // ArtifactInstall_Enter fails: nothing is armed, no reboot; the
    // state's Error scripts run, then ArtifactFailure's.
    let mut sim = Sim::new(
        Uboot::new,
        artifact::<Uboot>(health(Scenario::Healthy)),
        vec![],
    );
    sim.failing.push("ArtifactInstall_Enter_00");
    let v = sim.run().unwrap_or_else(|e| panic!("{e}\n{}", sim.trace()));
    sim.check(&v, Scenario::Healthy)
        .unwrap_or_else(|e| panic!("{e}\n{}", sim.trace()));
    assert_eq!((v.running.as_str(), v.boots), (updraft_e2e::OLD, 1));
    assert_eq!(v.finals, ["failure"]);
    assert_eq!(
        sim.ran,
        [
            "Download_Enter_00",
            "ArtifactInstall_Enter_00",
            "ArtifactInstall_Error_00",
            "ArtifactFailure_Enter_00",
        ]
    );
    assert!(
        sim.server
            .logs
            .iter()
            .any(|l| l.contains("state script ArtifactInstall_Enter_00 failed")),
        "{:?}",
        sim.server.logs
    );

    // ArtifactCommit_Enter fails on the new image: it is rolled back.
    let mut sim = Sim::new(
        Uboot::new,
        artifact::<Uboot>(health(Scenario::Healthy)),
        vec![],
    );
    sim.failing.push("ArtifactCommit_Enter_00");
    let v = sim.run().unwrap_or_else(|e| panic!("{e}\n{}", sim.trace()));
    assert_eq!((v.running.as_str(), v.boots), (updraft_e2e::OLD, 3));
    assert_eq!(v.finals, ["failure"]);
    assert_eq!(
        sim.ran,
        [
            "Download_Enter_00",
            "ArtifactInstall_Enter_00",
            "ArtifactCommit_Enter_00",
            "ArtifactCommit_Error_00",
            "ArtifactRollback_Enter_00",
            "ArtifactFailure_Enter_00",
        ]
    );
}
