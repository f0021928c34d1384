//! A device made of files, for the daemon's and the standalone commands'
//! tests: two slot images, a redundant U-Boot env made by `mkenvimage`,
//! Mender's device files, and a config pointing at them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::json;

pub const DEVICE_TYPE: &str = "updraft-e2e-board";
pub const UPDRAFT: &str = env!("CARGO_BIN_EXE_updraft");

pub fn tools_missing() -> Option<&'static str> {
    let ok = Command::new("mkenvimage")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    (!ok).then_some("mkenvimage is not installed (apt-get install u-boot-tools)")
}

/// A device made of files.
pub struct Device {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub fw_config: PathBuf,
    pub log: PathBuf,
}

impl Device {
    pub fn new(
        server: Option<(&str, &Path)>,
        mac: &str,
        health_ok: bool,
        verify_key: &Path,
    ) -> Device {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        std::fs::write(p("a.img"), b"release-1 root filesystem").unwrap();
        std::fs::write(p("b.img"), b"").unwrap();
        std::fs::write(p("device_type"), format!("device_type={DEVICE_TYPE}\n")).unwrap();
        std::fs::write(p("artifact_info"), "artifact_name=release-1\n").unwrap();
        let id = p("identity");
        std::fs::write(&id, format!("#!/bin/sh\necho mac={mac}\n")).unwrap();
        std::fs::set_permissions(&id, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        std::fs::create_dir(p("inventory")).unwrap();
        // The env as a U-Boot build would ship it: redundant, 16 KiB.
        std::fs::write(
            p("env.txt"),
            "mender_boot_part=2\nmender_boot_part_hex=2\nupgrade_available=0\nbootcount=0\n\
             bootlimit=1\n",
        )
        .unwrap();
        for copy in ["env1", "env2"] {
            let st = Command::new("mkenvimage")
                .args(["-r", "-s", "0x4000", "-o"])
                .arg(p(copy))
                .arg(p("env.txt"))
                .status()
                .unwrap();
            assert!(st.success());
        }
        let fw_config = p("fw_env.config");
        std::fs::write(
            &fw_config,
            format!(
                "{} 0x0 0x4000\n{} 0x0 0x4000\n",
                p("env1").display(),
                p("env2").display()
            ),
        )
        .unwrap();
        let health = if health_ok {
            json!(["true"])
        } else {
            json!(["sh", "-c", "echo 'the app did not start' >&2; exit 1"])
        };
        let config = p("updraft.conf");
        let mut conf = json!({
            "UpdatePollIntervalSeconds": 1,
            "InventoryPollIntervalSeconds": 3600,
            "RetryPollIntervalSeconds": 1,
            "RootfsPartA": p("a.img"),
            "RootfsPartB": p("b.img"),
            "BootPartitions": [2, 3],
            "ArtifactVerifyKey": verify_key,
            "DataDir": p("data"),
            "DeviceTypeFile": p("device_type"),
            "ArtifactInfoFile": p("artifact_info"),
            "IdentityScript": id,
            "InventoryScriptsDir": p("inventory"),
            "RootfsScriptsDir": p("scripts"),
            "BootLoader": "uboot",
            "FwEnvConfig": fw_config,
            "RebootCommand": ["true"],
            "HealthCheckCommand": health,
        });
        if let Some((url, cert)) = server {
            conf["ServerURL"] = json!(url);
            conf["ServerCertificate"] = json!(cert);
        }
        std::fs::write(&config, conf.to_string()).unwrap();
        let log = p("daemon.log");
        Device {
            dir,
            config,
            fw_config,
            log,
        }
    }

    pub fn boot_env(&self, args: &[&str]) -> String {
        let out = Command::new(UPDRAFT)
            .arg("boot-env")
            .args(args)
            .arg("-c")
            .arg(&self.fw_config)
            .arg("--lock-file")
            .arg(self.dir.path().join("lock"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "boot-env {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Power on: the boot script runs, then the daemon.
    pub fn power_on(&self) -> Child {
        let booted = self.boot_env(&["boot", "--partitions", "2,3"]);
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        std::io::Write::write_all(&mut log, format!("--- boot: {booted}").as_bytes()).unwrap();
        Command::new(UPDRAFT)
            .args(["daemon", "-v", "-c"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn slot(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join(name)).unwrap()
    }
}

pub fn signing_key(dir: &Path) -> (PathBuf, PathBuf) {
    use p256::pkcs8::{EncodePublicKey, LineEnding};
    let secret = p256::SecretKey::random(&mut rand_core::OsRng);
    let private = dir.join("sign.key");
    let public = dir.join("sign.pub");
    std::fs::write(
        &private,
        secret.to_sec1_pem(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    std::fs::write(
        &public,
        secret
            .public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
    )
    .unwrap();
    (private, public)
}

pub fn write_artifact(dir: &Path, name: &str, payload: &[u8], key: &Path) -> PathBuf {
    let img = dir.join(format!("{name}.img"));
    std::fs::write(&img, payload).unwrap();
    let out = dir.join(format!("{name}.mender"));
    let st = Command::new(UPDRAFT)
        .args([
            "artifact",
            "write",
            "rootfs-image",
            "--no-progress",
            "-n",
            name,
            "-t",
        ])
        .arg(DEVICE_TYPE)
        .arg("-f")
        .arg(&img)
        .arg("-k")
        .arg(key)
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    out
}
