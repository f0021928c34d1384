//! End to end: our daemon (`updraft daemon`, the real binary) on a device
//! made of files (two slot images, a redundant U-Boot env made by
//! `mkenvimage`, the state file) against our server, started in-process.
//!
//! Each "boot" runs the boot script's logic on the env (`updraft boot-env
//! boot`, what U-Boot does with `scripts/boot.cmd`), then starts the daemon
//! until it runs its reboot command (`true` here) and exits. The test
//! plays the operator through the management API: accept the device,
//! upload a signed artifact, deploy it, and watch the deployment.
//!
//! 1. A healthy image: the deployment ends `success`, slot B holds the
//!    payload, the env boots B for good, and the daemon reports the new
//!    artifact as installed.
//! 2. An image whose health check fails: the daemon rolls back, the
//!    device boots A again, and the deployment ends `failure` with the
//!    daemon's log.
//!
//! Needs `mkenvimage` (Debian `u-boot-tools`); without it the test says why
//! and passes, unless `UPDRAFT_REQUIRE_TOOLS` is set (the test command sets
//! it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const ADMIN: &str = "admin@example.com";
const PASSWORD: &str = "correct horse battery";
const DEVICE_TYPE: &str = "updraft-e2e-board";
const UPDRAFT: &str = env!("CARGO_BIN_EXE_updraft");

struct Server {
    url: String,
    cert: PathBuf,
    _data: tempfile::TempDir,
    _rt: tokio::runtime::Runtime,
    http: ureq::Agent,
    token: String,
}

impl Server {
    fn start() -> Server {
        let data = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mut config = updraft_server::Config::new(data.path());
        config.admin_email = ADMIN.into();
        config.admin_password = Some(PASSWORD.into());
        let (url, cert) = rt.block_on(async {
            let server = updraft_server::Server::open(config).await.unwrap();
            let cert = server.setup().cert_path.clone();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("https://{}", listener.local_addr().unwrap());
            tokio::spawn(async move {
                server
                    .serve(listener, std::future::pending::<()>())
                    .await
                    .unwrap();
            });
            (url, cert)
        });
        let pem = std::fs::read(&cert).unwrap();
        let roots = ureq::tls::parse_pem(&pem)
            .filter_map(|i| match i {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c.to_owned()),
                _ => None,
            })
            .collect::<Vec<_>>();
        let http: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
                    .build(),
            )
            .build()
            .into();
        let mut s = Server {
            url,
            cert,
            _data: data,
            _rt: rt,
            http,
            token: String::new(),
        };
        let basic = base64(&format!("{ADMIN}:{PASSWORD}"));
        let mut r = s
            .http
            .post(format!("{}/api/management/v1/useradm/auth/login", s.url))
            .header("Authorization", format!("Basic {basic}"))
            .send_empty()
            .unwrap();
        assert_eq!(r.status(), 200);
        s.token = r.body_mut().read_to_string().unwrap();
        s
    }

    fn get(&self, path: &str) -> Value {
        let mut r = self
            .http
            .get(format!("{}{path}", self.url))
            .header("Authorization", format!("Bearer {}", self.token))
            .call()
            .unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
    }

    fn get_text(&self, path: &str) -> String {
        let mut r = self
            .http
            .get(format!("{}{path}", self.url))
            .header("Authorization", format!("Bearer {}", self.token))
            .call()
            .unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
        r.body_mut().read_to_string().unwrap()
    }

    /// Sends JSON; returns the status and the `Location` header.
    fn send(&self, method: &str, path: &str, body: &Value) -> (u16, String) {
        let url = format!("{}{path}", self.url);
        let auth = format!("Bearer {}", self.token);
        let r = match method {
            "PUT" => self.http.put(&url),
            _ => self.http.post(&url),
        }
        .header("Authorization", &auth)
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .unwrap();
        let loc = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (r.status().as_u16(), loc)
    }

    fn upload(&self, artifact: &Path) {
        let bytes = std::fs::read(artifact).unwrap();
        let boundary = "updraft-e2e-boundary-7f3a";
        let mut body = Vec::new();
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"size\"\r\n\r\n{}\r\n\
                 --{boundary}\r\nContent-Disposition: form-data; name=\"artifact\"; \
                 filename=\"a.mender\"\r\nContent-Type: application/octet-stream\r\n\r\n",
                bytes.len()
            )
            .as_bytes(),
        );
        body.extend_from_slice(&bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let mut r = self
            .http
            .post(format!(
                "{}/api/management/v1/deployments/artifacts",
                self.url
            ))
            .header("Authorization", format!("Bearer {}", self.token))
            .header(
                "Content-Type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .send(&body[..])
            .unwrap();
        let status = r.status().as_u16();
        assert_eq!(
            status,
            201,
            "upload: {}",
            r.body_mut().read_to_string().unwrap_or_default()
        );
    }

    fn deploy(&self, name: &str, artifact: &str, device: &str) -> String {
        let (status, loc) = self.send(
            "POST",
            "/api/management/v1/deployments/deployments",
            &json!({"name": name, "artifact_name": artifact, "devices": [device]}),
        );
        assert_eq!(status, 201);
        loc.rsplit('/').next().unwrap().to_owned()
    }
}

fn base64(s: &str) -> String {
    use base64ct::Encoding;
    base64ct::Base64::encode_string(s.as_bytes())
}

fn tools_missing() -> Option<&'static str> {
    let ok = Command::new("mkenvimage")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    (!ok).then_some("mkenvimage is not installed (apt-get install u-boot-tools)")
}

/// A device made of files.
struct Device {
    dir: tempfile::TempDir,
    config: PathBuf,
    fw_config: PathBuf,
    log: PathBuf,
}

impl Device {
    fn new(server: &Server, mac: &str, health_ok: bool, verify_key: &Path) -> Device {
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
        std::fs::write(
            &config,
            json!({
                "ServerURL": server.url,
                "ServerCertificate": server.cert,
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
                "BootLoader": "uboot",
                "FwEnvConfig": fw_config,
                "RebootCommand": ["true"],
                "HealthCheckCommand": health,
            })
            .to_string(),
        )
        .unwrap();
        let log = p("daemon.log");
        Device {
            dir,
            config,
            fw_config,
            log,
        }
    }

    fn boot_env(&self, args: &[&str]) -> String {
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
    fn power_on(&self) -> Child {
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

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn slot(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join(name)).unwrap()
    }
}

/// Runs the device (boot, daemon, reboot, ...) until `done` says so.
fn run_until(dev: &Device, secs: u64, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut child = dev.power_on();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        if done() {
            let _ = child.kill();
            let _ = child.wait();
            return;
        }
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success(), "the daemon failed:\n{}", dev.log_text());
            child = dev.power_on();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "timed out after {secs} s waiting for {what}; daemon log:\n{}",
                dev.log_text()
            );
        }
    }
}

fn accept(server: &Server, dev: &Device, mac: &str) -> String {
    let mut found = None;
    run_until(dev, 60, "the device's auth request", || {
        let v = server.get("/api/management/v2/devauth/devices?status=pending");
        found = v.as_array().and_then(|list| {
            list.iter()
                .find(|d| d["identity_data"]["mac"] == mac)
                .map(|d| {
                    (
                        d["id"].as_str().unwrap().to_owned(),
                        d["auth_sets"][0]["id"].as_str().unwrap().to_owned(),
                    )
                })
        });
        found.is_some()
    });
    let (device, set) = found.unwrap();
    let (status, _) = server.send(
        "PUT",
        &format!("/api/management/v2/devauth/devices/{device}/auth/{set}/status"),
        &json!({"status": "accepted"}),
    );
    assert_eq!(status, 204);
    device
}

fn signing_key(dir: &Path) -> (PathBuf, PathBuf) {
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

fn write_artifact(dir: &Path, name: &str, payload: &[u8], key: &Path) -> PathBuf {
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

fn device_status(server: &Server, dep: &str) -> String {
    let v = server.get(&format!(
        "/api/management/v1/deployments/deployments/{dep}/devices"
    ));
    v[0]["status"].as_str().unwrap_or_default().to_owned()
}

fn finished(server: &Server, dep: &str) -> bool {
    let v = server.get(&format!("/api/management/v1/deployments/deployments/{dep}"));
    v["status"] == "finished"
}

#[test]
fn daemon_updates_and_rolls_back_against_our_server() {
    if let Some(why) = tools_missing() {
        assert!(
            std::env::var_os("UPDRAFT_REQUIRE_TOOLS").is_none(),
            "required: {why}"
        );
        eprintln!("skipped: {why}");
        return;
    }
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let (sign, verify) = signing_key(work.path());

    // --- 1. a healthy image is installed and committed.
    let mac = "52:54:00:e2:e2:01";
    let dev = Device::new(&server, mac, true, &verify);
    let device = accept(&server, &dev, mac);
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let art = write_artifact(work.path(), "release-2", &payload, &sign);
    server.upload(&art);
    let dep = server.deploy("to release-2", "release-2", &device);
    run_until(&dev, 120, "the deployment to finish", || {
        finished(&server, &dep)
    });
    assert_eq!(
        device_status(&server, &dep),
        "success",
        "{}",
        dev.log_text()
    );
    assert_eq!(dev.slot("b.img"), payload, "slot B holds the payload");
    assert_eq!(dev.slot("a.img"), b"release-1 root filesystem");
    assert_eq!(
        dev.boot_env(&["print", "mender_boot_part", "upgrade_available"]),
        "mender_boot_part=3\nupgrade_available=0\n"
    );
    let log = dev.log_text();
    for line in [
        "update available: release-2",
        "downloaded and verified",
        "armed a trial boot of slot B",
        "health check passed",
        "committed",
        "reported success",
    ] {
        assert!(log.contains(line), "missing {line:?} in the log:\n{log}");
    }
    // The next start runs B and knows release-2 is installed.
    let before = log.len();
    run_until(&dev, 30, "the daemon's start line", || {
        dev.log_text()[before..].contains("installed: release-2")
    });
    assert!(dev.log_text()[before..].contains("running slot B"));

    // --- 2. an image that fails its health check is rolled back.
    let mac = "52:54:00:e2:e2:02";
    let dev = Device::new(&server, mac, false, &verify);
    let device = accept(&server, &dev, mac);
    let art = write_artifact(work.path(), "release-3", b"release-3 rootfs", &sign);
    server.upload(&art);
    let dep = server.deploy("to release-3", "release-3", &device);
    run_until(&dev, 120, "the deployment to finish", || {
        finished(&server, &dep)
    });
    assert_eq!(
        device_status(&server, &dep),
        "failure",
        "{}",
        dev.log_text()
    );
    assert_eq!(
        dev.boot_env(&["print", "mender_boot_part", "upgrade_available"]),
        "mender_boot_part=2\nupgrade_available=0\n",
        "back on slot A"
    );
    let log = dev.log_text();
    assert!(log.contains("health check"), "{log}");
    assert!(log.contains("rolled back"), "{log}");
    let text = server.get_text(&format!(
        "/api/management/v1/deployments/deployments/{dep}/devices/{device}/log"
    ));
    assert!(
        text.contains("the app did not start"),
        "the health check's error is in the deployment log:\n{text}"
    );
}
