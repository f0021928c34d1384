//! Test helpers: a server on an ephemeral port with its own data directory,
//! an HTTPS client that trusts its certificate, and management calls.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

pub const ADMIN: &str = "admin@example.com";
pub const PASSWORD: &str = "correct horse battery";

/// A running server; stopped when dropped.
pub struct TestServer {
    pub url: String,
    pub cert: PathBuf,
    pub data: tempfile::TempDir,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        let data = tempfile::tempdir().unwrap();
        Self::start_in(data).await
    }

    pub async fn start_in(data: tempfile::TempDir) -> TestServer {
        let mut config = updraft_server::Config::new(data.path());
        config.admin_email = ADMIN.into();
        config.admin_password = Some(PASSWORD.into());
        let server = updraft_server::Server::open(config).await.unwrap();
        let cert = server.setup().cert_path.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .serve(listener, async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        let pem = std::fs::read(&cert).unwrap();
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        TestServer {
            url,
            cert,
            data,
            http,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stop serving and keep the data directory.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        std::mem::replace(&mut self.data, tempfile::tempdir().unwrap())
    }

    pub async fn login(&self) -> String {
        let r = self
            .http
            .post(format!("{}/api/management/v1/useradm/auth/login", self.url))
            .basic_auth(ADMIN, Some(PASSWORD))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/jwt");
        r.text().await.unwrap()
    }

    pub async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{}", self.url, path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn send_json(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
        body: &Value,
    ) -> reqwest::Response {
        self.http
            .request(method, format!("{}{}", self.url, path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Upload an artifact file; returns (status, id from Location or error body).
    pub async fn upload(&self, token: &str, file: &std::path::Path) -> (u16, String) {
        let bytes = std::fs::read(file).unwrap();
        let form = reqwest::multipart::Form::new()
            .text("size", bytes.len().to_string())
            .text("description", "test upload")
            .part(
                "artifact",
                reqwest::multipart::Part::bytes(bytes).file_name("a.mender"),
            );
        let r = self
            .http
            .post(format!(
                "{}/api/management/v1/deployments/artifacts",
                self.url
            ))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        if status == 201 {
            let loc = r.headers()["location"].to_str().unwrap().to_owned();
            assert!(
                loc.starts_with("./management/v1/deployments/artifacts/"),
                "{loc}"
            );
            (status, loc.rsplit('/').next().unwrap().to_owned())
        } else {
            (status, r.text().await.unwrap())
        }
    }

    /// Create a deployment for `devices`; returns its ID.
    pub async fn deploy(
        &self,
        token: &str,
        name: &str,
        artifact: &str,
        devices: &[&str],
    ) -> String {
        let r = self
            .send_json(
                reqwest::Method::POST,
                token,
                "/api/management/v1/deployments/deployments",
                &serde_json::json!({"name": name, "artifact_name": artifact, "devices": devices}),
            )
            .await;
        assert_eq!(r.status(), 201);
        let loc = r.headers()["location"].to_str().unwrap().to_owned();
        loc.rsplit('/').next().unwrap().to_owned()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Run `mender-artifact write module-image -T single-file` for a file
/// `name` with `content`, installed into `dest_dir`.
pub fn single_file_artifact(
    work: &std::path::Path,
    artifact_name: &str,
    dest_dir: &str,
    name: &str,
    content: &str,
    device_type: &str,
) -> PathBuf {
    let dir = work.join(artifact_name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("dest_dir"), dest_dir).unwrap();
    std::fs::write(dir.join("filename"), name).unwrap();
    std::fs::write(dir.join("permissions"), "644").unwrap();
    std::fs::write(dir.join(name), content).unwrap();
    let out = work.join(format!("{artifact_name}.mender"));
    let st = std::process::Command::new("mender-artifact")
        .current_dir(&dir)
        .args(["write", "module-image", "-T", "single-file"])
        .args([
            "-f",
            "dest_dir",
            "-f",
            "filename",
            "-f",
            "permissions",
            "-f",
            name,
        ])
        .args(["-n", artifact_name, "-t", device_type, "-o"])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("mender-artifact (apt-get install mender-artifact)");
    assert!(st.success());
    out
}

/// Poll `f` every 250 ms until it returns `Some`, or panic after `secs`.
pub async fn wait_for<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {secs} s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
