//! The proof: Debian's real `mender` client 3.4 against our server.
//!
//! One client process (its own data directory, identity script and
//! `ServerCertificate`, see `spec/mender-protocol.md` section 4) goes
//! through three deployments:
//! 1. a `single-file` artifact: `success`, and the file is in place;
//!    then one made by the server (`POST .../artifacts/generate`, as
//!    Mender's UI does) from an uploaded file: the file lands in `dest_dir`
//!    with its content and mode 0644;
//! 2. an artifact whose install fails: `failure`, with the client's log;
//! 3. a deployment aborted while the (slow) module installs: the client's
//!    next status reports get 409, it rolls back, and the device
//!    deployment ends `aborted`.
//!
//! Needs root (the identity script and update modules live at fixed system
//! paths), `mender` and `mender-artifact`. Without `mender` the test prints
//! why and passes, unless `UPDRAFT_REQUIRE_MENDER` is set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::{single_file_artifact, wait_for, TestServer};
use serde_json::{json, Value};

const IDENTITY: &str = "/usr/share/mender/identity/mender-device-identity";
const SLOW_MODULE: &str = "/usr/share/mender/modules/v3/updraft-test-slow";
const DEVICE_TYPE: &str = "updraft-test-device";

fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
}

/// `Some(reason)` when the test cannot run here.
fn missing_prerequisite() -> Option<String> {
    if !on_path("mender") {
        return Some("the `mender` client is not installed (apt-get install mender-client)".into());
    }
    if !on_path("mender-artifact") {
        return Some("`mender-artifact` is not installed".into());
    }
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some(
            "not root: the client's identity script and modules live under /usr/share/mender"
                .into(),
        );
    }
    None
}

/// Write `path` atomically with mode 0755 (other tests may read it).
fn install_script(path: &str, content: &str) {
    use std::os::unix::fs::PermissionsExt;
    let p = Path::new(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let tmp = p.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, content).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, p).unwrap();
}

/// The mender daemon; SIGTERM then SIGKILL when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        for _ in 0..20 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn deployment(server: &TestServer, token: &str, id: &str) -> Value {
    let (s, v) = server
        .get(
            token,
            &format!("/api/management/v1/deployments/deployments/{id}"),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    v
}

async fn wait_finished(server: &TestServer, token: &str, id: &str) -> Value {
    wait_for(180, "the deployment to finish", || async {
        let d = deployment(server, token, id).await;
        (d["status"] == "finished").then_some(d)
    })
    .await
}

async fn device_entry(server: &TestServer, token: &str, id: &str) -> Value {
    let (s, v) = server
        .get(
            token,
            &format!("/api/management/v1/deployments/deployments/{id}/devices"),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    v[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_mender_client_deploys_fails_and_aborts() {
    if let Some(why) = missing_prerequisite() {
        if std::env::var_os("UPDRAFT_REQUIRE_MENDER").is_some() {
            panic!("UPDRAFT_REQUIRE_MENDER is set but {why}");
        }
        eprintln!("SKIPPED real_mender_client_deploys_fails_and_aborts: {why}");
        return;
    }
    let server = TestServer::start().await;
    let token = server.login().await;
    let work = tempfile::tempdir().unwrap();

    // --- the client's setup (spec section 4)
    install_script(
        IDENTITY,
        "#!/bin/sh\necho \"mac=${UPDRAFT_TEST_MAC:-52:54:00:12:34:56}\"\necho \"serial=${UPDRAFT_TEST_SERIAL:-SN-0001}\"\n",
    );
    // A module that takes its time to install, so a deployment can be
    // aborted while the device is in it.
    install_script(
        SLOW_MODULE,
        "#!/bin/sh\ncase \"$1\" in\n  ArtifactInstall) sleep 6 ;;\n  SupportsRollback) echo Yes ;;\n  NeedsArtifactReboot) echo No ;;\nesac\nexit 0\n",
    );
    if !Path::new("/etc/mender/artifact_info").exists() {
        std::fs::create_dir_all("/etc/mender").unwrap();
        std::fs::write("/etc/mender/artifact_info", "artifact_name=release-1\n").unwrap();
    }
    let client = work.path().join("client");
    let data = client.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("device_type"),
        format!("device_type={DEVICE_TYPE}\n"),
    )
    .unwrap();
    let conf = client.join("mender.conf");
    std::fs::write(
        &conf,
        json!({
            "ServerURL": server.url,
            "ServerCertificate": server.cert,
            "TenantToken": "",
            "ArtifactVerifyKey": "",
            "UpdatePollIntervalSeconds": 1,
            "InventoryPollIntervalSeconds": 5,
            "RetryPollIntervalSeconds": 1,
            "StateScriptTimeoutSeconds": 60,
            "ModuleTimeoutSeconds": 120
        })
        .to_string(),
    )
    .unwrap();
    let serial = format!("SN-{}", std::process::id());
    let log_path = client.join("mender.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let daemon = Daemon(
        Command::new("mender")
            .arg("-c")
            .arg(&conf)
            .arg("-b")
            .arg(client.join("no-fallback.conf"))
            .arg("-d")
            .arg(&data)
            .args(["--no-syslog", "-l", "info", "daemon"])
            .env("UPDRAFT_TEST_SERIAL", &serial)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );

    // --- admission: the device shows up pending; accept it.
    let (device_id, set_id) = wait_for(60, "the device's auth request", || async {
        let (_, v) = server
            .get(&token, "/api/management/v2/devauth/devices?status=pending")
            .await;
        let d = v
            .as_array()?
            .iter()
            .find(|d| d["identity_data"]["serial"] == serial.as_str())?
            .clone();
        Some((
            d["id"].as_str()?.to_owned(),
            d["auth_sets"][0]["id"].as_str()?.to_owned(),
        ))
    })
    .await;
    let r = server
        .send_json(
            reqwest::Method::PUT,
            &token,
            &format!("/api/management/v2/devauth/devices/{device_id}/auth/{set_id}/status"),
            &json!({"status": "accepted"}),
        )
        .await;
    assert_eq!(r.status(), 204);
    // The device authenticates and sends its inventory.
    wait_for(60, "the device's check-in", || async {
        let (_, d) = server
            .get(
                &token,
                &format!("/api/management/v2/devauth/devices/{device_id}"),
            )
            .await;
        (d["status"] == "accepted" && d.get("check_in_time").is_some()).then_some(())
    })
    .await;

    // --- 1. success: the file lands where the artifact says.
    let dest = work.path().join("installed");
    let art = single_file_artifact(
        work.path(),
        "hello-1",
        dest.to_str().unwrap(),
        "hello.txt",
        "hello from updraft\n",
        DEVICE_TYPE,
    );
    let (s, _) = server.upload(&token, &art).await;
    assert_eq!(s, 201);
    let dep = server
        .deploy(&token, "hello", "hello-1", &[&device_id])
        .await;
    let d = wait_finished(&server, &token, &dep).await;
    assert_eq!(
        d["statistics"]["status"]["success"],
        1,
        "{d}\nclient log: {}",
        tail(&log_path)
    );
    assert_eq!(
        device_entry(&server, &token, &dep).await["status"],
        "success"
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("hello.txt")).unwrap(),
        "hello from updraft\n"
    );

    // --- 1b. generated by the server from a raw file, as Mender's UI asks.
    let gen_dest = work.path().join("generated");
    let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let form = reqwest::multipart::Form::new()
        .text("name", "generated-1")
        .text("description", "from the generate endpoint")
        .text("device_types_compatible", DEVICE_TYPE)
        .text("type", "single_file")
        .text(
            "args",
            json!({"filename": "payload.bin", "dest_dir": gen_dest}).to_string(),
        )
        .part(
            "file",
            reqwest::multipart::Part::bytes(content.clone()).file_name("upload.bin"),
        );
    let r = server
        .http
        .post(format!(
            "{}/api/management/v1/deployments/artifacts/generate",
            server.url
        ))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let dep = server
        .deploy(&token, "generated", "generated-1", &[&device_id])
        .await;
    let d = wait_finished(&server, &token, &dep).await;
    assert_eq!(
        d["statistics"]["status"]["success"],
        1,
        "{d}\nclient log: {}",
        tail(&log_path)
    );
    assert_eq!(
        std::fs::read(gen_dest.join("payload.bin")).unwrap(),
        content
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(gen_dest.join("payload.bin"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
    }

    // --- 2. failure: an empty dest_dir makes the single-file module exit 1.
    let art = single_file_artifact(work.path(), "broken-1", "", "x.txt", "x", DEVICE_TYPE);
    assert_eq!(server.upload(&token, &art).await.0, 201);
    let dep = server
        .deploy(&token, "broken", "broken-1", &[&device_id])
        .await;
    let d = wait_finished(&server, &token, &dep).await;
    assert_eq!(d["statistics"]["status"]["failure"], 1, "{d}");
    let entry = wait_for(30, "the failure log", || async {
        let e = device_entry(&server, &token, &dep).await;
        (e["log"] == true).then_some(e)
    })
    .await;
    assert_eq!(entry["status"], "failure");
    let r = server
        .http
        .get(format!(
            "{}/api/management/v1/deployments/deployments/{dep}/devices/{device_id}/log",
            server.url
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("error: "), "{text}");
    assert!(
        text.contains("exit status 1"),
        "the module's failure is in the log:\n{text}"
    );
    // The device still runs hello-1.
    assert_eq!(
        std::fs::read_to_string(dest.join("hello.txt")).unwrap(),
        "hello from updraft\n"
    );

    // --- 3. abort while the slow module installs: 409 to the client.
    let dir = work.path().join("slow");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("payload.bin"), "slow").unwrap();
    let art = work.path().join("slow.mender");
    let st = Command::new("mender-artifact")
        .current_dir(&dir)
        .args([
            "write",
            "module-image",
            "-T",
            "updraft-test-slow",
            "-f",
            "payload.bin",
            "-n",
            "slow-1",
            "-t",
            DEVICE_TYPE,
            "-o",
        ])
        .arg(&art)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(server.upload(&token, &art).await.0, 201);
    let dep = server.deploy(&token, "slow", "slow-1", &[&device_id]).await;
    wait_for(60, "the device to start installing", || async {
        let (_, v) = server
            .get(
                &token,
                &format!("/api/management/v1/deployments/deployments/{dep}/devices"),
            )
            .await;
        (v[0]["status"] == "installing").then_some(())
    })
    .await;
    let r = server
        .send_json(
            reqwest::Method::PUT,
            &token,
            &format!("/api/management/v1/deployments/deployments/{dep}/status"),
            &json!({"status": "aborted"}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let d = deployment(&server, &token, &dep).await;
    assert_eq!(d["status"], "finished");
    assert_eq!(d["statistics"]["status"]["aborted"], 1);
    wait_for(60, "the client to see the abort", || async {
        tail(&log_path)
            .contains("deployment aborted at the backend")
            .then_some(())
    })
    .await;
    // The client rolls back and reports `failure`, which gets 409 as well
    // (as upstream answers for an aborted device deployment), so it keeps
    // its log; the device deployment stays `aborted`.
    wait_for(60, "the client's rejected failure report", || async {
        tail(&log_path)
            .contains("Failed to send status to server: fatal error: deployment was aborted")
            .then_some(())
    })
    .await;
    assert_eq!(
        device_entry(&server, &token, &dep).await["status"],
        "aborted"
    );

    drop(daemon);
}

fn tail(path: &Path) -> String {
    let s = std::fs::read(path).unwrap_or_default();
    let s = String::from_utf8_lossy(&s);
    s.lines()
        .filter(|l| !l.contains("GLib"))
        .collect::<Vec<_>>()
        .join("\n")
}
