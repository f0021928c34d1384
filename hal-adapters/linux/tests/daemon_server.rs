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

use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;
use common::{signing_key, tools_missing, write_artifact, Device};

const ADMIN: &str = "admin@example.com";
const PASSWORD: &str = "correct horse battery";

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
    let dev = Device::new(Some((&server.url, &server.cert)), mac, true, &verify);
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
    let dev = Device::new(Some((&server.url, &server.cert)), mac, false, &verify);
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
