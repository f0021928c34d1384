//! The real `updraft-server` binary with `--config FILE`: it listens where
//! the file says and uses the file's data directory and admin email, flags
//! override the file, and a bad file (missing, malformed, an unknown key, a
//! value of the wrong kind, an unusable key file) stops it with a message
//! naming the problem before anything is created.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_updraft-server");
const PASSWORD: &str = "config file test password";

/// The binary, with none of the environment variables that set what a
/// test's file or flags should.
fn server_cmd(cwd: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(cwd);
    for var in [
        "UPDRAFT_CONFIG",
        "UPDRAFT_LISTEN",
        "UPDRAFT_DATA_DIR",
        "UPDRAFT_DATABASE_URL",
        "UPDRAFT_ADMIN_EMAIL",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("UPDRAFT_ADMIN_PASSWORD", PASSWORD);
    cmd
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A running server process, killed when dropped.
struct Running {
    child: Child,
    /// The address from its "Updraft server on https://..." line.
    announced: String,
    /// What it wrote to stderr so far.
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `cmd` and wait (at most 60 s) for the line saying where it
/// listens.
fn start(mut cmd: Command) -> Running {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr_pipe = child.stderr.take().unwrap();
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = stderr.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr_pipe).lines() {
            let Ok(line) = line else { break };
            eprintln!("server: {line}");
            let mut all = sink.lock().unwrap();
            all.push_str(&line);
            all.push('\n');
        }
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("Updraft server on https://") {
                let addr = rest.split_whitespace().next().unwrap_or("").to_owned();
                let _ = tx.send(addr);
            }
        }
    });
    let mut running = Running {
        child,
        announced: String::new(),
        stderr,
    };
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(addr) => running.announced = addr,
        Err(_) => {
            let status = running.child.try_wait().ok().flatten();
            let stderr = running.stderr.lock().unwrap().clone();
            panic!("the server did not announce its address (exit status: {status:?}): {stderr}");
        }
    }
    running
}

/// Log in over HTTPS at `addr`, trusting `cert`; the status.
async fn login(addr: &str, cert: &Path, email: &str) -> u16 {
    let pem = std::fs::read(cert).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let r = http
        .post(format!(
            "https://{addr}/api/management/v1/useradm/auth/login"
        ))
        .basic_auth(email, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    if status == 200 {
        assert_eq!(r.headers()["content-type"], "application/jwt");
        assert_eq!(r.text().await.unwrap().split('.').count(), 3);
    }
    status
}

fn write_config(dir: &Path, value: &serde_json::Value) -> PathBuf {
    let path = dir.join("updraft-server.json");
    std::fs::write(&path, serde_json::to_string_pretty(value).unwrap()).unwrap();
    path
}

#[tokio::test]
async fn the_file_says_where_to_listen_and_what_to_use() {
    let tmp = tempfile::tempdir().unwrap();
    let etc = tmp.path().join("etc");
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    let port = free_port();
    // `data_dir` is relative: to the file's directory, not the working one.
    let file = write_config(
        &etc,
        &json!({
            "listen": format!("127.0.0.1:{port}"),
            "data_dir": "data",
            "admin_email": "ops@example.com",
            "log_level": "warn",
        }),
    );
    let mut cmd = server_cmd(&elsewhere);
    cmd.arg("--config").arg(&file);
    let server = start(cmd);
    assert_eq!(server.announced, format!("127.0.0.1:{port}"));
    let cert = etc.join("data/tls/server.crt");
    assert!(cert.exists());
    assert!(etc.join("data/updraft.db").exists());
    assert!(!elsewhere.join("data").exists());
    assert!(!elsewhere.join("updraft-data").exists());
    // HTTPS on that port, with the file's admin email.
    let addr = format!("127.0.0.1:{port}");
    assert_eq!(login(&addr, &cert, "ops@example.com").await, 200);
    assert_eq!(login(&addr, &cert, "admin@updraft.local").await, 401);
    // `log_level: warn`: the "listening on" line (info) is not logged; it
    // is at the default level (see `flags_override_the_file`).
    let log = server.stderr.lock().unwrap().clone();
    assert!(!log.contains("listening on"), "{log}");
}

#[tokio::test]
async fn flags_override_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (file_port, flag_port) = (free_port(), free_port());
    let file = write_config(
        tmp.path(),
        &json!({
            "listen": format!("127.0.0.1:{file_port}"),
            "data_dir": "from-file",
            "admin_email": "ops@example.com",
        }),
    );
    let mut cmd = server_cmd(tmp.path());
    cmd.arg("--config")
        .arg(&file)
        .arg("--listen")
        .arg(format!("127.0.0.1:{flag_port}"))
        .args(["--data-dir", "from-flag"]);
    let server = start(cmd);
    assert_eq!(server.announced, format!("127.0.0.1:{flag_port}"));
    assert!(!tmp.path().join("from-file").exists());
    let cert = tmp.path().join("from-flag/tls/server.crt");
    // What no flag overrode still comes from the file.
    let addr = format!("127.0.0.1:{flag_port}");
    assert_eq!(login(&addr, &cert, "ops@example.com").await, 200);
    // No log level anywhere: info, so "listening on" is logged.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server.stderr.lock().unwrap().contains("listening on") {
        assert!(Instant::now() < deadline, "no info-level log line");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Run the binary expecting it to stop on its own (at most 60 s); its
/// stderr.
fn run_to_failure(mut cmd: Command) -> String {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server started instead of refusing its config");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!status.success(), "exit status {status}: {stderr}");
    stderr
}

#[test]
fn bad_config_files_stop_the_server_and_say_why() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dir.join("data");
    let listen = format!("127.0.0.1:{}", free_port());
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "malformed.json",
            format!("{{\"listen\": \"{listen}\",\n\"data_dir\": \"data\"\n"),
            vec!["EOF", "line 3"],
        ),
        (
            "unknown-key.json",
            json!({"listen": listen, "data_dir": "data", "lissten": "0.0.0.0:1"}).to_string(),
            vec!["unknown field `lissten`", "expected one of `listen`"],
        ),
        (
            "bad-address.json",
            json!({"data_dir": "data", "listen": "localhost"}).to_string(),
            vec!["`listen`", "socket address"],
        ),
        (
            "bad-type.json",
            json!({"data_dir": "data", "listen": listen, "signing_key_id": "one"}).to_string(),
            vec!["`signing_key_id`", "invalid type"],
        ),
        (
            "bad-level.json",
            json!({"data_dir": "data", "listen": listen, "log_level": "chatty"}).to_string(),
            vec!["`log_level`", "chatty"],
        ),
        (
            "array.json",
            json!([listen, "data"]).to_string(),
            vec!["a JSON object of settings"],
        ),
        (
            "missing-verify-key.json",
            json!({"data_dir": "data", "listen": listen, "artifact_verify_keys": ["nope.pub"]})
                .to_string(),
            vec!["artifact verification key", "nope.pub", "No such file"],
        ),
        (
            "half-tls.json",
            json!({"data_dir": "data", "listen": listen, "cert": "server.crt"}).to_string(),
            vec!["certificate and key go together"],
        ),
    ];
    for (name, text, wanted) in cases {
        let path = dir.join(name);
        std::fs::write(&path, &text).unwrap();
        let mut cmd = server_cmd(dir);
        cmd.arg("--config").arg(&path);
        let stderr = run_to_failure(cmd);
        // Problems in the file name the file; the other two name what is
        // wrong with the settings it gave.
        if !matches!(name, "missing-verify-key.json" | "half-tls.json") {
            let named = format!("config file {}: ", path.display());
            assert!(
                stderr.contains(&named),
                "{name}: {named:?} not in {stderr:?}"
            );
        }
        for w in wanted {
            assert!(stderr.contains(w), "{name}: {w:?} not in {stderr:?}");
        }
        assert!(!data.exists(), "{name}: the data directory was created");
    }

    // A config file that is not there.
    let missing = dir.join("not-there.json");
    let mut cmd = server_cmd(dir);
    cmd.arg("--config").arg(&missing);
    let stderr = run_to_failure(cmd);
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
    assert!(stderr.contains("No such file"), "{stderr}");
    assert!(!dir.join("updraft-data").exists());
}
