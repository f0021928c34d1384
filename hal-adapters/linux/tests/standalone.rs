//! Standalone updates, as Mender's `install` / `commit` / `rollback`: the
//! real `updraft` binary on a device made of files, no server. Each
//! "reboot" runs the boot script's logic on the env (`updraft boot-env
//! boot`).
//!
//! 1. `install` arms a trial of slot B; `commit` before the reboot is
//!    refused; after it, `commit` keeps B and `show-artifact` names the new
//!    artifact; a second `commit` has nothing to do (exit 2).
//! 2. `install` + reboot + `rollback`: the env points back at B (the
//!    committed slot); after the reboot the next `install` finishes the
//!    rollback first and proceeds.
//! 3. `install` + `rollback` before any reboot disarms the trial.
//! 4. A tampered artifact fails with the reason; nothing is armed.
//!
//! Needs `mkenvimage` (see `daemon_server.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};

mod common;
use common::{signing_key, tools_missing, write_artifact, Device, UPDRAFT};

fn updraft(dev: &Device, args: &[&str]) -> Output {
    Command::new(UPDRAFT)
        .args(args)
        .arg("-c")
        .arg(&dev.config)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn reboot(dev: &Device) -> String {
    dev.boot_env(&["boot", "--partitions", "2,3"])
}

fn env(dev: &Device) -> String {
    dev.boot_env(&["print", "mender_boot_part", "upgrade_available"])
}

fn show(dev: &Device) -> String {
    let o = updraft(dev, &["show-artifact"]);
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn install_commit_rollback() {
    if let Some(why) = tools_missing() {
        assert!(
            std::env::var_os("UPDRAFT_REQUIRE_TOOLS").is_none(),
            "required: {why}"
        );
        eprintln!("skipped: {why}");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (sign, verify) = signing_key(work.path());
    let dev = Device::new(None, "52:54:00:5a:00:01", true, &verify);
    assert_eq!(show(&dev), "release-1\n");

    // --- 1. install, commit.
    let v2: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let art = write_artifact(work.path(), "release-2", &v2, &sign);
    let o = updraft(&dev, &["install", art.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("Reboot, then run `updraft commit`"));
    assert_eq!(env(&dev), "mender_boot_part=3\nupgrade_available=1\n");
    assert_eq!(dev.slot("b.img"), v2);
    let o = updraft(&dev, &["commit"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("has not booted yet"), "{}", text(&o));
    let o = updraft(&dev, &["install", art.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("in progress"), "{}", text(&o));
    assert_eq!(reboot(&dev), "slot=B partition=3 (trial boot)\n");
    let o = updraft(&dev, &["commit"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("Committed: release-2 stays."),
        "{}",
        text(&o)
    );
    assert_eq!(env(&dev), "mender_boot_part=3\nupgrade_available=0\n");
    assert_eq!(show(&dev), "release-2\n");
    let o = updraft(&dev, &["commit"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("no update in progress"));

    // --- 2. install release-3 into A, boot it, roll back to B.
    let art3 = write_artifact(work.path(), "release-3", b"release 3", &sign);
    let o = updraft(&dev, &["install", art3.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(dev.slot("a.img"), b"release 3");
    assert_eq!(reboot(&dev), "slot=A partition=2 (trial boot)\n");
    let o = updraft(&dev, &["rollback"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("Rolled back. Reboot"), "{}", text(&o));
    assert_eq!(env(&dev), "mender_boot_part=3\nupgrade_available=0\n");
    assert_eq!(reboot(&dev), "slot=B partition=3\n");
    assert_eq!(show(&dev), "release-2\n");
    // The next install finishes the rolled-back update first.
    let o = updraft(&dev, &["install", art3.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(env(&dev), "mender_boot_part=2\nupgrade_available=1\n");

    // --- 3. roll back before the reboot: the trial is disarmed.
    let o = updraft(&dev, &["rollback"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(env(&dev), "mender_boot_part=3\nupgrade_available=0\n");
    assert_eq!(reboot(&dev), "slot=B partition=3\n");
    assert_eq!(show(&dev), "release-2\n");
    let o = updraft(&dev, &["rollback"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    // --- 4. a tampered artifact: the reason, and nothing armed.
    let mut bytes = std::fs::read(&art3).unwrap();
    let n = bytes.len();
    bytes[n - 1500] ^= 0x40;
    let bad = work.path().join("bad.mender");
    std::fs::write(&bad, bytes).unwrap();
    let o = updraft(&dev, &["install", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("the update failed"), "{}", text(&o));
    assert_eq!(env(&dev), "mender_boot_part=3\nupgrade_available=0\n");
    assert_eq!(show(&dev), "release-2\n");
}
