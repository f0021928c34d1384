//! `updraft-server`: the thin binary around [`updraft_server::run`].
//!
//! ```text
//! updraft-server [--config FILE] [--listen 127.0.0.1:8443] [--data-dir ./updraft-data]
//!                [--database-url URL] [--cert FILE --key FILE] [--key-dir DIR]
//!                [--signing-key-id N] [--public-url URL] [--admin-email EMAIL]
//!                [--artifact-verify-key FILE]... [--log-level LEVEL]
//! ```
//!
//! Settings come from, in order of precedence: the flags (or their
//! environment variables), the JSON config file given with `--config` (or
//! `UPDRAFT_CONFIG`), the defaults. The file holds the flags' keys:
//!
//! | key | flag (environment) | default |
//! | --- | --- | --- |
//! | `listen` | `--listen` (`UPDRAFT_LISTEN`) | `127.0.0.1:8443` |
//! | `data_dir` | `--data-dir` (`UPDRAFT_DATA_DIR`) | `./updraft-data` |
//! | `database_url` | `--database-url` (`UPDRAFT_DATABASE_URL`) | SQLite `<data_dir>/updraft.db` |
//! | `cert`, `key` | `--cert`, `--key` | self-signed `<data_dir>/tls/server.{crt,key}` |
//! | `key_dir` | `--key-dir` | `<data_dir>/keys` |
//! | `signing_key_id` | `--signing-key-id` | the highest key ID |
//! | `public_url` | `--public-url` | the listen address |
//! | `admin_email` | `--admin-email` (`UPDRAFT_ADMIN_EMAIL`) | `admin@updraft.local` |
//! | `artifact_verify_keys` (a list) | `--artifact-verify-key`, repeatable | none: signatures not required |
//! | `log_level` | `--log-level` | `info` |
//!
//! Relative paths in the file are relative to the file's directory; a key
//! the file should not have is an error. Given flags replace the file's
//! value (`--artifact-verify-key` replaces the whole list). The first admin
//! account's password comes from `UPDRAFT_ADMIN_PASSWORD` only (a generated
//! one is printed once otherwise). See [`updraft_server::config_file`].
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use updraft_server::config_file::{self, FileConfig};

const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
const DEFAULT_DATA_DIR: &str = "./updraft-data";

/// Updraft server: Mender-compatible device and management API over HTTPS.
///
/// Flags override the config file; the file overrides the defaults.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// JSON config file with the flags' settings (keys `listen`,
    /// `data_dir`, ...; see the README).
    #[arg(long, value_name = "FILE", env = "UPDRAFT_CONFIG")]
    config: Option<PathBuf>,
    /// Address and port to listen on (HTTPS only) [default: 127.0.0.1:8443].
    #[arg(long, env = "UPDRAFT_LISTEN")]
    listen: Option<SocketAddr>,
    /// Data directory: SQLite database, artifacts, certificate, keys
    /// [default: ./updraft-data].
    #[arg(long, env = "UPDRAFT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Database URL (`sqlite://FILE` or `postgres://...`); default: SQLite in the data directory.
    #[arg(long, env = "UPDRAFT_DATABASE_URL")]
    database_url: Option<String>,
    /// TLS certificate chain (PEM), with --key; default: a self-signed one made on first start.
    #[arg(long)]
    cert: Option<PathBuf>,
    /// TLS private key (PEM), with --cert.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Directory of token signing keys `private.id.<N>.pem`; default: `<data-dir>/keys`.
    #[arg(long)]
    key_dir: Option<PathBuf>,
    /// Which `private.id.<N>.pem` signs new tokens (default: highest N).
    #[arg(long)]
    signing_key_id: Option<u64>,
    /// Base URL for download links (default: the listen address).
    #[arg(long)]
    public_url: Option<String>,
    /// PEM public key (RSA or ECDSA P-256; SPKI or PKCS#1) that uploaded
    /// artifacts must be signed with; repeat for several. Default: none,
    /// signed and unsigned artifacts are accepted.
    #[arg(long = "artifact-verify-key", value_name = "FILE")]
    artifact_verify_keys: Vec<PathBuf>,
    /// Email of the admin account made on first start [default: admin@updraft.local].
    #[arg(long, env = "UPDRAFT_ADMIN_EMAIL")]
    admin_email: Option<String>,
    /// Log level: error, warn, info, debug, trace [default: info].
    #[arg(long, value_parser = config_file::log_level)]
    log_level: Option<tracing::Level>,
}

/// The merged settings.
struct Settings {
    listen: SocketAddr,
    log_level: tracing::Level,
    config: updraft_server::Config,
}

/// Flags over the file over the defaults.
fn settings(args: Args) -> Result<Settings, String> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path).map_err(|e| e.to_string())?,
        None => FileConfig::default(),
    };
    let listen = match args.listen.or(file.listen) {
        Some(a) => a,
        None => DEFAULT_LISTEN
            .parse()
            .map_err(|e| format!("the default listen address: {e}"))?,
    };
    let log_level = match (args.log_level, &file.log_level) {
        (Some(l), _) => l,
        (None, Some(l)) => config_file::log_level(l)?,
        (None, None) => tracing::Level::INFO,
    };
    let data_dir = args
        .data_dir
        .or(file.data_dir)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let mut config = updraft_server::Config::new(data_dir);
    config.database_url = args.database_url.or(file.database_url);
    config.cert = args.cert.or(file.cert);
    config.key = args.key.or(file.key);
    config.key_dir = args.key_dir.or(file.key_dir);
    config.signing_key_id = args.signing_key_id.or(file.signing_key_id);
    config.public_url = args.public_url.or(file.public_url);
    if let Some(email) = args.admin_email.or(file.admin_email) {
        config.admin_email = email;
    }
    config.artifact_verify_keys = if args.artifact_verify_keys.is_empty() {
        file.artifact_verify_keys.unwrap_or_default()
    } else {
        args.artifact_verify_keys
    };
    // Read from the environment only: a password on the command line
    // would show in `ps`.
    config.admin_password = std::env::var("UPDRAFT_ADMIN_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty());
    Ok(Settings {
        listen,
        log_level,
        config,
    })
}

fn main() -> ExitCode {
    let settings = match settings(Args::parse()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("updraft-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing_subscriber::fmt()
        .with_max_level(settings.log_level)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("updraft-server: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("updraft-server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> Result<(), Box<dyn std::error::Error>> {
    let Settings { listen, config, .. } = settings;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("listening on {listen}: {e}"))?;
    let server = updraft_server::Server::open(config).await?;
    let setup = server.setup();
    if setup.cert_generated {
        println!(
            "Generated a self-signed certificate: {}",
            setup.cert_path.display()
        );
    }
    if let Some(email) = &setup.admin_created {
        match &setup.generated_password {
            Some(p) => println!(
                "Created the admin account {email} with password: {p}\n(shown once; set UPDRAFT_ADMIN_PASSWORD on first start to choose it)"
            ),
            None => println!("Created the admin account {email}."),
        }
    }
    let addr = listener.local_addr()?;
    println!(
        "Updraft server on https://{addr} (trust {}). Log in:\n  curl --cacert {} -u EMAIL:PASSWORD -X POST https://{addr}/api/management/v1/useradm/auth/login",
        setup.cert_path.display(),
        setup.cert_path.display()
    );
    server
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down");
        })
        .await?;
    Ok(())
}
