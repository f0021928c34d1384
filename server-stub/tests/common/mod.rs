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

/// A server used through its router, without sockets.
pub struct App {
    pub router: axum::Router,
    pub server: updraft_server::Server,
    pub data: tempfile::TempDir,
}

/// A response: status, headers, body.
pub struct Resp {
    pub status: u16,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// Asserts Mender's error body with the response's request ID.
    pub fn assert_error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{}", self.text());
        let v = self.json();
        let id = self.headers["x-men-requestid"].to_str().unwrap();
        assert_eq!(v["request_id"], id, "{v}");
        let msg = v["error"].as_str().unwrap().to_owned();
        assert!(!msg.is_empty());
        msg
    }
}

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server for tests (`UPDRAFT_TEST_POSTGRES_URL`, e.g.
/// `postgres://updraft_test:updraft_test@127.0.0.1:5432/postgres`), or
/// `None` (the test then prints why it is skipped, or fails when
/// `UPDRAFT_REQUIRE_POSTGRES` is set).
pub fn postgres_base() -> Option<String> {
    match std::env::var("UPDRAFT_TEST_POSTGRES_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            if std::env::var_os("UPDRAFT_REQUIRE_POSTGRES").is_some() {
                panic!("UPDRAFT_REQUIRE_POSTGRES is set but UPDRAFT_TEST_POSTGRES_URL is not");
            }
            None
        }
    }
}

/// A fresh, empty database on the test PostgreSQL server; its URL.
pub async fn fresh_postgres_db(base: &str) -> String {
    use sqlx::ConnectOptions;
    let name = format!("updraft_t_{}", uuid::Uuid::new_v4().simple());
    let opts: sqlx::postgres::PgConnectOptions = base.parse().unwrap();
    let mut conn = opts.connect().await.unwrap();
    sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let (prefix, _) = base.rsplit_once('/').unwrap();
    format!("{prefix}/{name}")
}

impl App {
    pub async fn new() -> App {
        Self::open(tempfile::tempdir().unwrap(), |_| {}).await
    }

    /// A new app on `db`; `None` when that database is not available here.
    pub async fn on(db: Db) -> Option<App> {
        Self::on_with(db, |_| {}).await
    }

    pub async fn on_with(db: Db, tweak: impl FnOnce(&mut updraft_server::Config)) -> Option<App> {
        let url = match db {
            Db::Sqlite => None,
            Db::Postgres => Some(fresh_postgres_db(&postgres_base()?).await),
        };
        Some(
            Self::open(tempfile::tempdir().unwrap(), |c| {
                c.database_url = url;
                tweak(c);
            })
            .await,
        )
    }

    /// This app's configuration's database URL, for reopening.
    pub fn database_url(&self) -> Option<String> {
        self.server.state().config.database_url.clone()
    }

    pub async fn open(
        data: tempfile::TempDir,
        tweak: impl FnOnce(&mut updraft_server::Config),
    ) -> App {
        let mut config = updraft_server::Config::new(data.path());
        config.admin_email = ADMIN.into();
        config.admin_password = Some(PASSWORD.into());
        tweak(&mut config);
        let server = updraft_server::Server::open(config).await.unwrap();
        let router = server.router();
        App {
            router,
            server,
            data,
        }
    }

    pub async fn call(&self, req: axum::http::Request<axum::body::Body>) -> Resp {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes().to_vec();
        Resp {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        }
    }

    /// A request with optional bearer token and JSON body.
    pub async fn req(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Resp {
        let mut b = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "updraft.test");
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let body = match body {
            Some(v) => {
                b = b.header("content-type", "application/json");
                axum::body::Body::from(v.to_string())
            }
            None => axum::body::Body::empty(),
        };
        self.call(b.body(body).unwrap()).await
    }

    pub async fn login(&self) -> String {
        let r = self.login_as(ADMIN, PASSWORD).await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.text()
    }

    /// A login attempt with these credentials.
    pub async fn login_as(&self, email: &str, password: &str) -> Resp {
        use base64ct::Encoding;
        let basic = base64ct::Base64::encode_string(format!("{email}:{password}").as_bytes());
        self.call(
            axum::http::Request::post("/api/management/v1/useradm/auth/login")
                .header("authorization", format!("Basic {basic}"))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
    }

    /// Upload an artifact's bytes (multipart).
    pub async fn upload(&self, token: &str, bytes: &[u8]) -> Resp {
        let boundary = "XupdraftBOUNDARYx";
        let mut body = Vec::new();
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"description\"\r\n\r\nfrom a test\r\n").as_bytes(),
        );
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"artifact\"; filename=\"a.mender\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        self.call(
            axum::http::Request::post("/api/management/v1/deployments/artifacts")
                .header("authorization", format!("Bearer {token}"))
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(axum::body::Body::from(body))
                .unwrap(),
        )
        .await
    }

    /// Row counts of the tables a bad request must not touch.
    pub async fn counts(&self) -> Vec<(String, Value)> {
        let token = self.login().await;
        let mut out = Vec::new();
        for path in [
            "/api/management/v2/devauth/devices?per_page=500",
            "/api/management/v1/deployments/artifacts",
            "/api/management/v1/deployments/deployments?per_page=500",
        ] {
            let r = self.req("GET", path, Some(&token), None).await;
            assert_eq!(r.status, 200);
            out.push((path.to_owned(), r.json()));
        }
        out
    }
}

/// A simulated device with an Ed25519 or P-256 key.
pub struct SimDevice {
    pub identity: String,
    pub pubkey_pem: String,
    key: SimKey,
}

enum SimKey {
    Ed(ring::signature::Ed25519KeyPair),
    Ec(ring::signature::EcdsaKeyPair),
}

impl SimDevice {
    pub fn ed25519(mac: &str) -> SimDevice {
        use ring::signature::KeyPair;
        let rng = ring::rand::SystemRandom::new();
        let doc = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let kp = ring::signature::Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
        let mut der = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        der.extend_from_slice(kp.public_key().as_ref());
        SimDevice {
            identity: serde_json::json!({ "mac": mac }).to_string(),
            pubkey_pem: pem_rfc7468::encode_string("PUBLIC KEY", pem_rfc7468::LineEnding::LF, &der)
                .unwrap(),
            key: SimKey::Ed(kp),
        }
    }

    pub fn p256(mac: &str) -> SimDevice {
        use ring::signature::{KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
        let rng = ring::rand::SystemRandom::new();
        let doc =
            ring::signature::EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
                .unwrap();
        let kp = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            doc.as_ref(),
            &rng,
        )
        .unwrap();
        let mut der = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        der.extend_from_slice(kp.public_key().as_ref());
        SimDevice {
            identity: serde_json::json!({ "mac": mac }).to_string(),
            pubkey_pem: pem_rfc7468::encode_string("PUBLIC KEY", pem_rfc7468::LineEnding::LF, &der)
                .unwrap(),
            key: SimKey::Ec(kp),
        }
    }

    /// The auth request body, as the Mender client writes it (trailing `\n`).
    pub fn auth_body(&self) -> Vec<u8> {
        let mut b = serde_json::json!({"id_data": self.identity, "tenant_token": "", "pubkey": self.pubkey_pem})
            .to_string()
            .into_bytes();
        b.push(b'\n');
        b
    }

    pub fn sign(&self, body: &[u8]) -> String {
        use base64ct::Encoding;
        let sig = match &self.key {
            SimKey::Ed(kp) => kp.sign(body).as_ref().to_vec(),
            SimKey::Ec(kp) => kp
                .sign(&ring::rand::SystemRandom::new(), body)
                .unwrap()
                .as_ref()
                .to_vec(),
        };
        base64ct::Base64::encode_string(&sig)
    }

    /// POST an auth request; returns the response.
    pub async fn auth(&self, app: &App) -> Resp {
        let body = self.auth_body();
        let sig = self.sign(&body);
        app.call(
            axum::http::Request::post("/api/devices/v1/authentication/auth_requests")
                .header("content-type", "application/json")
                .header("x-men-signature", sig)
                .body(axum::body::Body::from(body))
                .unwrap(),
        )
        .await
    }
}
