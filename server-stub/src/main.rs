//! `updraft-server`: the thin binary around [`updraft_server::run`].
//!
//! ```text
//! updraft-server [--listen 127.0.0.1:8443] [--data-dir ./updraft-data]
//!                [--database-url URL] [--cert FILE --key FILE] [--key-dir DIR]
//!                [--artifact-verify-key FILE]...
//! ```
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Updraft server: Mender-compatible device and management API over HTTPS.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address and port to listen on (HTTPS only).
    #[arg(long, default_value = "127.0.0.1:8443", env = "UPDRAFT_LISTEN")]
    listen: SocketAddr,
    /// Data directory: SQLite database, artifacts, certificate, keys.
    #[arg(long, default_value = "./updraft-data", env = "UPDRAFT_DATA_DIR")]
    data_dir: PathBuf,
    /// Database URL (`sqlite://FILE` or `postgres://...`); default: SQLite in the data directory.
    #[arg(long, env = "UPDRAFT_DATABASE_URL")]
    database_url: Option<String>,
    /// TLS certificate chain (PEM); default: a self-signed one made on first start.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "cert")]
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
    /// Email of the admin account made on first start.
    #[arg(
        long,
        env = "UPDRAFT_ADMIN_EMAIL",
        default_value = "admin@updraft.local"
    )]
    admin_email: String,
    /// Log level: error, warn, info, debug, trace.
    #[arg(long, default_value = "info")]
    log_level: tracing::Level,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_max_level(args.log_level)
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
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("updraft-server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = updraft_server::Config::new(args.data_dir);
    config.database_url = args.database_url;
    config.cert = args.cert;
    config.key = args.key;
    config.key_dir = args.key_dir;
    config.signing_key_id = args.signing_key_id;
    config.public_url = args.public_url;
    config.admin_email = args.admin_email;
    config.artifact_verify_keys = args.artifact_verify_keys;
    // Read from the environment only: a password on the command line
    // would show in `ps`.
    config.admin_password = std::env::var("UPDRAFT_ADMIN_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty());

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("listening on {}: {e}", args.listen))?;
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
