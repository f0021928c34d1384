//! # updraft-server
//!
//! The Updraft server: device authentication, artifacts, deployments and
//! inventory behind a Mender-compatible device and management API, served
//! over HTTPS only.
//!
//! The binary is thin; this library does the work, in the shape of
//! mini-redis: [`Server::open`] prepares everything a first start needs
//! (data directory, database and schema, the self-signed certificate, token
//! keys, the first admin account), and [`Server::serve`] answers on a
//! listener until a shutdown future completes. [`run`] does both.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = updraft_server::Config::new("./updraft-data");
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
//! updraft_server::run(config, listener, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! Modules:
//! * [`api`]: the routes (device API, management API);
//! * [`artifacts`]: upload checking with `updraft-core`'s reader (and
//!   signature verification when keys are configured), storage, signed
//!   download links with `Range`;
//! * [`config_file`]: the binary's JSON config file;
//! * [`db`]: the database (SQLite by default) and its schema;
//! * [`keys`]: token signing keys and JWTs;
//! * [`devkey`]: device public keys and auth request signatures;
//! * [`error`]: the one error type and Mender's error bodies;
//! * [`tls`]: the certificate and the HTTPS accept loop.
#![forbid(unsafe_code)]

pub mod api;
pub mod artifacts;
pub mod config_file;
pub mod db;
pub mod devkey;
pub mod error;
pub mod keys;
pub mod tls;

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::net::TcpListener;

/// Everything the server can be told. [`Config::new`] gives the embedded
/// defaults for a data directory.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Holds the SQLite database, artifacts, the certificate and keys.
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`; default: `<data_dir>/updraft.db`.
    pub database_url: Option<String>,
    /// TLS certificate (PEM); default: self-signed `<data_dir>/tls/server.crt`.
    pub cert: Option<PathBuf>,
    /// TLS private key (PEM); default: `<data_dir>/tls/server.key`.
    pub key: Option<PathBuf>,
    /// Token keys `private.id.<N>.pem`; default: `<data_dir>/keys`.
    pub key_dir: Option<PathBuf>,
    /// Which key signs new tokens; default: the highest `N`.
    pub signing_key_id: Option<u64>,
    /// Email of the admin account made on first start.
    pub admin_email: String,
    /// Its password; `None`: a random one, reported once by [`Server::setup`].
    pub admin_password: Option<String>,
    /// Base URL put in download links, e.g. `https://updates.example.com`;
    /// default: the listener's address, else the request's `Host`.
    pub public_url: Option<String>,
    /// Largest artifact accepted by upload, bytes.
    pub max_artifact_size: u64,
    /// Largest other request body, bytes.
    pub max_body_size: usize,
    /// Lifetime of artifact download links.
    pub download_link_ttl: Duration,
    /// Lifetime of device tokens.
    pub device_token_ttl: Duration,
    /// Lifetime of user login tokens.
    pub user_token_ttl: Duration,
    /// Failed logins per email within a minute before further attempts get
    /// 429 for the rest of that minute.
    pub login_attempts_per_minute: u32,
    /// PEM public keys (SPKI RSA or ECDSA P-256, or PKCS#1 RSA) that
    /// artifact signatures are checked with. With any, an upload must be
    /// signed by one of them; empty: signed and unsigned uploads are both
    /// accepted.
    pub artifact_verify_keys: Vec<PathBuf>,
}

impl Config {
    /// Defaults for `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            database_url: None,
            cert: None,
            key: None,
            key_dir: None,
            signing_key_id: None,
            admin_email: "admin@updraft.local".into(),
            admin_password: None,
            public_url: None,
            max_artifact_size: 10 << 30,
            max_body_size: 1 << 20,
            download_link_ttl: Duration::from_secs(900),
            device_token_ttl: Duration::from_secs(7 * 24 * 3600),
            user_token_ttl: Duration::from_secs(7 * 24 * 3600),
            login_attempts_per_minute: 10,
            artifact_verify_keys: Vec::new(),
        }
    }

    /// The certificate path in use.
    pub fn cert_path(&self) -> PathBuf {
        self.cert
            .clone()
            .unwrap_or_else(|| self.data_dir.join("tls").join("server.crt"))
    }

    /// The TLS key path in use.
    pub fn key_path(&self) -> PathBuf {
        self.key
            .clone()
            .unwrap_or_else(|| self.data_dir.join("tls").join("server.key"))
    }
}

/// Why the server could not start.
#[derive(Debug)]
pub struct StartError(pub String);

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// What [`Server::open`] did on this start.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Setup {
    /// The certificate clients must trust.
    pub cert_path: PathBuf,
    /// True when it was generated now.
    pub cert_generated: bool,
    /// Set when the admin account was created now.
    pub admin_created: Option<String>,
    /// The generated admin password, when one was generated (show it once).
    pub generated_password: Option<String>,
    /// The key ID that signs tokens.
    pub signing_key_id: u64,
}

/// Shared state of all handlers.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The contents of [`AppState`].
pub struct Inner {
    /// The database.
    pub db: db::Pool,
    /// Token keys.
    pub keys: keys::Keys,
    /// The configuration.
    pub config: Config,
    /// Where artifact files are stored.
    pub artifact_dir: PathBuf,
    /// HMAC key of download links (shared through the database).
    pub link_key: ring::hmac::Key,
    /// Base URL for links, once the listener is known.
    pub public_url: OnceLock<String>,
    /// Failed logins: email -> (window start, Unix s; count).
    pub login_failures: Mutex<std::collections::HashMap<String, (i64, u32)>>,
    /// Artifact verification keys, loaded from
    /// [`Config::artifact_verify_keys`].
    pub verify_keys: Arc<[updraft_core::crypto::VerifyingKey]>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// A prepared server: see the [crate docs](crate).
pub struct Server {
    state: AppState,
    tls: Arc<rustls::ServerConfig>,
    setup: Setup,
}

impl Server {
    /// Prepare the data directory, database, certificate, keys and admin
    /// account.
    pub async fn open(config: Config) -> Result<Server, StartError> {
        // Keys first: a bad key file stops the start before anything is
        // created.
        let verify_keys: Arc<[_]> = artifacts::load_verify_keys(&config.artifact_verify_keys)
            .map_err(|e| StartError(e.to_string()))?
            .into();
        if !verify_keys.is_empty() {
            tracing::info!(
                "uploads must be signed by one of {} artifact verification key(s)",
                verify_keys.len()
            );
        }
        if config.cert.is_some() != config.key.is_some() {
            return Err(StartError(
                "the TLS certificate and key go together: give both (--cert and --key, \
                 or the config file's cert and key) or neither"
                    .into(),
            ));
        }
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir).map_err(|e| StartError(format!("{}: {e}", dir.display())))?;
        let artifact_dir = dir.join("artifacts");
        std::fs::create_dir_all(&artifact_dir)
            .map_err(|e| StartError(format!("{}: {e}", artifact_dir.display())))?;

        let (cert, key) = (config.cert_path(), config.key_path());
        let cert_generated = match (&config.cert, &config.key) {
            (None, None) => tls::ensure_self_signed(&cert, &key)?,
            _ => false,
        };
        let tls = tls::server_config(&cert, &key)?;

        let key_dir = config.key_dir.clone().unwrap_or_else(|| dir.join("keys"));
        let keys =
            keys::Keys::load(&key_dir, config.signing_key_id).map_err(|e| StartError(e.0))?;

        let url = config
            .database_url
            .clone()
            .unwrap_or_else(|| db::sqlite_url(dir));
        let pool = db::open(&url)
            .await
            .map_err(|e| StartError(format!("database: {e}")))?;
        api::inventory::backfill(&pool)
            .await
            .map_err(|e| StartError(format!("database: indexing attributes: {e}")))?;

        let fresh = random_token(32)?;
        let link_secret = db::setting_or_insert(&pool, "link_key", &fresh)
            .await
            .map_err(|e| StartError(format!("database: {e}")))?;
        let link_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, link_secret.as_bytes());

        let (admin_created, generated_password) = api::useradm::ensure_admin(&pool, &config)
            .await
            .map_err(|e| StartError(format!("creating the admin account: {e}")))?;

        let setup = Setup {
            cert_path: cert,
            cert_generated,
            admin_created,
            generated_password,
            signing_key_id: keys.signing_id(),
        };
        let public_url = OnceLock::new();
        if let Some(u) = &config.public_url {
            let _ = public_url.set(u.trim_end_matches('/').to_owned());
        }
        let state = AppState(Arc::new(Inner {
            db: pool,
            keys,
            config,
            artifact_dir,
            link_key,
            public_url,
            login_failures: Mutex::new(Default::default()),
            verify_keys,
        }));
        Ok(Server { state, tls, setup })
    }

    /// What this start did (generated certificate, admin password).
    pub fn setup(&self) -> &Setup {
        &self.setup
    }

    /// The handlers' shared state.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The router, for serving elsewhere or for tests without sockets.
    pub fn router(&self) -> axum::Router {
        api::router(self.state.clone())
    }

    /// Serve HTTPS on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        if let Ok(addr) = listener.local_addr() {
            if !addr.ip().is_unspecified() {
                let _ = self.state.public_url.set(format!("https://{addr}"));
            }
            tracing::info!("listening on https://{addr}");
        }
        let app = self.router();
        tls::serve(listener, self.tls, app, shutdown).await
    }
}

/// Open and serve: see [`Server::open`] and [`Server::serve`].
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), StartError> {
    let server = Server::open(config).await?;
    server
        .serve(listener, shutdown)
        .await
        .map_err(|e| StartError(format!("serving: {e}")))
}

/// `n` random bytes, base64url.
pub(crate) fn random_token(n: usize) -> Result<String, StartError> {
    use base64ct::Encoding;
    use ring::rand::SecureRandom;
    let mut b = vec![0u8; n];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| StartError("the system random generator failed".into()))?;
    Ok(base64ct::Base64UrlUnpadded::encode_string(&b))
}

/// Write a file readable only by its owner.
pub(crate) fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}
