//! State scripts, end to end with the real tools: an artifact made by
//! Debian's `mender-artifact` with `-s` scripts, installed by the real
//! `updraft` binary (standalone), and root file system scripts from
//! `RootfsScriptsDir`. Each script appends its name to a journal, so the
//! test sees which ran, in which order.
//!
//! 1. install + reboot + commit: Download_Enter (root file system), then
//!    the artifact's ArtifactInstall_Enter, ArtifactCommit_Enter and
//!    ArtifactCommit_Leave, in Mender's order.
//! 2. An artifact whose ArtifactInstall_Enter fails (exit 1, a message on
//!    stderr): the install fails with that message, nothing is armed, and
//!    ArtifactInstall_Error and ArtifactFailure_Enter ran.
//! 3. A tampered artifact: none of its scripts ever run (verify before
//!    trust), only the root file system's.
//!
//! Needs `mkenvimage` and `mender-artifact`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{tools_missing, Device, DEVICE_TYPE, UPDRAFT};

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

fn env(dev: &Device) -> String {
    dev.boot_env(&["print", "mender_boot_part", "upgrade_available"])
}

/// A script that appends its name to `journal`, then runs `then`.
fn script(dir: &Path, name: &str, journal: &Path, then: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    std::fs::write(
        &p,
        format!("#!/bin/sh\necho {name} >> {}\n{then}\n", journal.display()),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// A signed rootfs-image artifact with these scripts, by mender-artifact.
fn artifact(dir: &Path, name: &str, key: &Path, scripts: &[PathBuf]) -> PathBuf {
    let img = dir.join(format!("{name}.img"));
    std::fs::write(&img, format!("{name} root filesystem")).unwrap();
    let out = dir.join(format!("{name}.mender"));
    let mut cmd = Command::new("mender-artifact");
    cmd.args([
        "write",
        "rootfs-image",
        "--no-progress",
        "-n",
        name,
        "-t",
        DEVICE_TYPE,
    ])
    .arg("-f")
    .arg(&img)
    .arg("-k")
    .arg(key)
    .arg("-o")
    .arg(&out);
    for s in scripts {
        cmd.arg("-s").arg(s);
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "mender-artifact: {}", text(&o));
    out
}

fn journal(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn scripts_from_the_artifact_and_the_root_file_system_run_in_mender_order() {
    let missing = tools_missing().or_else(|| {
        let ok = Command::new("mender-artifact")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        (!ok).then_some("mender-artifact (Debian package mender-artifact)")
    });
    if let Some(why) = missing {
        assert!(
            std::env::var_os("UPDRAFT_REQUIRE_TOOLS").is_none(),
            "required: {why}"
        );
        eprintln!("skipped: {why}");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // An EC P-256 key by openssl (mender-artifact wants the curve named
    // in the key).
    let (sign, verify) = (w.join("sign.pem"), w.join("verify.pem"));
    for args in [
        vec![
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
        ],
        vec!["ec", "-in", sign.to_str().unwrap(), "-pubout", "-out"],
    ] {
        let out = if args[0] == "ecparam" { &sign } else { &verify };
        let st = Command::new("openssl")
            .args(&args)
            .arg(out)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "openssl {args:?}");
    }
    let dev = Device::new(None, "52:54:00:5c:00:01", true, &verify);
    let log = w.join("journal");
    let rootfs = dev.dir.path().join("scripts");
    script(&rootfs, "Download_Enter_00", &log, "exit 0");
    let src = w.join("src");

    // --- 1. a healthy update with scripts.
    let good = [
        script(&src, "ArtifactInstall_Enter_00", &log, "exit 0"),
        script(&src, "ArtifactCommit_Enter_05_note", &log, "exit 0"),
        script(&src, "ArtifactCommit_Leave_50", &log, "exit 0"),
        script(&src, "ArtifactFailure_Enter_00", &log, "exit 0"),
    ];
    let art = artifact(w, "release-2", &sign, &good);
    let o = updraft(&dev, &["install", art.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("running state script ArtifactInstall_Enter_00"),
        "{}",
        text(&o)
    );
    assert_eq!(
        journal(&log),
        ["Download_Enter_00", "ArtifactInstall_Enter_00"]
    );
    let kept = dev.dir.path().join("data/scripts");
    assert_eq!(
        std::fs::read_to_string(kept.join("version")).unwrap(),
        "3\n",
        "kept as Mender keeps them"
    );
    dev.boot_env(&["boot", "--partitions", "2,3"]);
    let o = updraft(&dev, &["commit"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        journal(&log),
        [
            "Download_Enter_00",
            "ArtifactInstall_Enter_00",
            "ArtifactCommit_Enter_05_note",
            "ArtifactCommit_Leave_50",
        ]
    );
    std::fs::remove_file(&log).unwrap();

    // --- 2. ArtifactInstall_Enter fails: the update fails before arming.
    let failing = [
        script(
            &src.join("f"),
            "ArtifactInstall_Enter_00",
            &log,
            "echo 'the data partition is full' >&2; exit 1",
        ),
        script(&src.join("f"), "ArtifactInstall_Error_00", &log, "exit 0"),
        script(&src.join("f"), "ArtifactFailure_Enter_00", &log, "exit 0"),
    ];
    let art3 = artifact(w, "release-3", &sign, &failing);
    let o = updraft(&dev, &["install", art3.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("the data partition is full"),
        "the script's stderr is the reason: {}",
        text(&o)
    );
    assert_eq!(env(&dev), "mender_boot_part=3\nupgrade_available=0\n");
    assert_eq!(
        journal(&log),
        [
            "Download_Enter_00",
            "ArtifactInstall_Enter_00",
            "ArtifactInstall_Error_00",
            "ArtifactFailure_Enter_00",
        ]
    );
    std::fs::remove_file(&log).unwrap();

    // --- 3. a tampered artifact: its scripts never run.
    let mut bytes = std::fs::read(&art).unwrap();
    let n = bytes.len();
    bytes[n - 1500] ^= 0x40;
    let bad = w.join("bad.mender");
    std::fs::write(&bad, bytes).unwrap();
    let o = updraft(&dev, &["install", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(journal(&log), ["Download_Enter_00"]);
    assert_eq!(env(&dev), "mender_boot_part=3\nupgrade_available=0\n");
}
