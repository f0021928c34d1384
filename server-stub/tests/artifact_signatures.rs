//! Artifact signature checks on upload, on SQLite and on PostgreSQL, with
//! keys made by `openssl` and artifacts written and signed by Debian's
//! `mender-artifact` (RSA 3072 and ECDSA P-256) at test time.
//!
//! With verification keys, uploads that are unsigned, signed by another
//! key, or changed after signing get 400 naming the problem and store
//! nothing (no row, no file); without keys, signed artifacts are accepted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{App, Db};
use serde_json::Value;

const ARTIFACTS: &str = "/api/management/v1/deployments/artifacts";

/// Run a test on SQLite and on PostgreSQL (the latter when
/// `UPDRAFT_TEST_POSTGRES_URL` is set; see `common::postgres_base`).
macro_rules! on_both {
    ($name:ident) => {
        mod $name {
            use super::*;
            #[tokio::test]
            async fn sqlite() {
                super::$name(Db::Sqlite).await
            }
            #[tokio::test]
            async fn postgres() {
                super::$name(Db::Postgres).await
            }
        }
    };
}

/// The fixtures, or return from the test saying why not.
macro_rules! fixtures_or_skip {
    () => {
        match fixtures() {
            Some(f) => f,
            None => return,
        }
    };
}

/// The app with these verification keys, or return from the test.
macro_rules! app_with_keys {
    ($db:expr, $keys:expr) => {{
        let keys: Vec<PathBuf> = $keys;
        match App::on_with($db, |c| c.artifact_verify_keys = keys).await {
            Some(app) => app,
            None => {
                eprintln!(
                    "SKIPPED on {:?}: set UPDRAFT_TEST_POSTGRES_URL to run it",
                    $db
                );
                return;
            }
        }
    }};
}

fn on_path(tool: &str, arg: &str) -> bool {
    Command::new(tool)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Keys and artifacts shared by every test of this file.
struct Fixtures {
    /// RSA 3072: the public key as PKCS#1 (`RSA PUBLIC KEY`).
    rsa_pkcs1_pub: PathBuf,
    /// The same RSA key as SPKI (`PUBLIC KEY`).
    rsa_spki_pub: PathBuf,
    /// ECDSA P-256, SPKI.
    ec_pub: PathBuf,
    /// The RSA private key (not a public key: must be refused).
    rsa_private: PathBuf,
    /// A P-384 public key (a curve Mender artifacts cannot use).
    p384_pub: PathBuf,
    signed_rsa: PathBuf,
    signed_ec: PathBuf,
    unsigned: PathBuf,
    /// Signed by an RSA 3072 key the server does not know.
    stranger_rsa: PathBuf,
    /// Signed by a P-256 key the server does not know.
    stranger_ec: PathBuf,
    /// Signed with the RSA key, then one manifest checksum changed.
    tampered_manifest: PathBuf,
    /// Signed with the RSA key, then one payload byte changed.
    tampered_payload: PathBuf,
}

/// What the single-file payload holds: found again to tamper with it.
const MARKER: &str = "payload-bytes-under-signature";

/// `mender-artifact write module-image -T single-file`, uncompressed (so a
/// test can change bytes), signed with `key` when given.
fn write_artifact(dir: &Path, name: &str, key: Option<&Path>) -> PathBuf {
    let work = dir.join(format!("{name}.d"));
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("dest_dir"), "/tmp/updraft-signature-test").unwrap();
    std::fs::write(work.join("filename"), "f.txt").unwrap();
    std::fs::write(work.join("permissions"), "644").unwrap();
    std::fs::write(work.join("f.txt"), format!("{MARKER} of {name}\n")).unwrap();
    let out = dir.join(format!("{name}.mender"));
    let mut cmd = Command::new("mender-artifact");
    cmd.current_dir(&work)
        .args(["write", "module-image", "-T", "single-file"])
        .args(["-f", "dest_dir", "-f", "filename", "-f", "permissions"])
        .args(["-f", "f.txt", "-n", name, "-t", "sig-test-device"])
        .args(["--compression", "none", "-o"])
        .arg(&out);
    if let Some(k) = key {
        cmd.arg("-k").arg(k);
    }
    run(&mut cmd);
    out
}

/// Copy `src` to `dst`, changing the first byte after the first `needle`.
fn tamper(src: &Path, dst: &Path, needle: &[u8]) {
    let mut bytes = std::fs::read(src).unwrap();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{needle:?} not in {}", src.display()))
        + needle.len();
    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    std::fs::write(dst, bytes).unwrap();
}

fn rsa_key(dir: &Path, name: &str) -> PathBuf {
    // PKCS#1 (`-traditional`): the form mender-artifact 3.9 signs with.
    let key = dir.join(format!("{name}.key"));
    run(Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&key)
        .arg("3072"));
    key
}

fn ec_key(dir: &Path, name: &str, curve: &str) -> PathBuf {
    let key = dir.join(format!("{name}.key"));
    run(Command::new("openssl")
        .args(["ecparam", "-genkey", "-noout", "-name", curve, "-out"])
        .arg(&key));
    key
}

/// `openssl <kind> -in KEY <extra> -out PUB`.
fn public_key(key: &Path, kind: &str, extra: &str, out: PathBuf) -> PathBuf {
    run(Command::new("openssl")
        .args([kind, "-in"])
        .arg(key)
        .arg(extra)
        .arg("-out")
        .arg(&out));
    out
}

fn make_fixtures() -> Fixtures {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifact-signatures");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let rsa = rsa_key(&dir, "rsa");
    let ec = ec_key(&dir, "ec", "prime256v1");
    let stranger_rsa_key = rsa_key(&dir, "stranger-rsa");
    let stranger_ec_key = ec_key(&dir, "stranger-ec", "prime256v1");
    let p384 = ec_key(&dir, "p384", "secp384r1");

    let signed_rsa = write_artifact(&dir, "signed-rsa", Some(&rsa));
    let to_tamper = write_artifact(&dir, "tamper-me", Some(&rsa));
    let tampered_manifest = dir.join("tampered-manifest.mender");
    // The manifest lists `<sha256>  <name>`: change the first hex digit of
    // the `header.tar` entry's checksum, which the signature covers (not
    // `version`'s: that one is compared as soon as the manifest ends,
    // before `manifest.sig` is read).
    let manifest = std::process::Command::new("tar")
        .arg("xOf")
        .arg(&to_tamper)
        .arg("manifest")
        .output()
        .unwrap();
    assert!(manifest.status.success());
    let manifest = String::from_utf8(manifest.stdout).unwrap();
    let line = manifest
        .lines()
        .find(|l| l.ends_with("  header.tar"))
        .unwrap()
        .to_owned();
    let mut changed = line.clone().into_bytes();
    changed[0] = if changed[0] == b'0' { b'1' } else { b'0' };
    let mut bytes = std::fs::read(&to_tamper).unwrap();
    let at = bytes
        .windows(line.len())
        .position(|w| w == line.as_bytes())
        .unwrap();
    bytes[at..at + changed.len()].copy_from_slice(&changed);
    std::fs::write(&tampered_manifest, bytes).unwrap();
    let tampered_payload = dir.join("tampered-payload.mender");
    tamper(&to_tamper, &tampered_payload, MARKER.as_bytes());

    Fixtures {
        rsa_pkcs1_pub: public_key(&rsa, "rsa", "-RSAPublicKey_out", dir.join("rsa1.pub")),
        rsa_spki_pub: public_key(&rsa, "rsa", "-pubout", dir.join("rsa.pub")),
        ec_pub: public_key(&ec, "ec", "-pubout", dir.join("ec.pub")),
        rsa_private: rsa,
        p384_pub: public_key(&p384, "ec", "-pubout", dir.join("p384.pub")),
        signed_rsa,
        signed_ec: write_artifact(&dir, "signed-ec", Some(&ec)),
        unsigned: write_artifact(&dir, "unsigned", None),
        stranger_rsa: write_artifact(&dir, "stranger-rsa", Some(&stranger_rsa_key)),
        stranger_ec: write_artifact(&dir, "stranger-ec", Some(&stranger_ec_key)),
        tampered_manifest,
        tampered_payload,
    }
}

/// The fixtures, made once per run; `None` (the test skips) without
/// `mender-artifact` or `openssl`, unless `UPDRAFT_REQUIRE_TOOLS` is set.
fn fixtures() -> Option<&'static Fixtures> {
    static FIXTURES: OnceLock<Option<Fixtures>> = OnceLock::new();
    FIXTURES
        .get_or_init(|| {
            let have = on_path("mender-artifact", "--version") && on_path("openssl", "version");
            if !have {
                if std::env::var_os("UPDRAFT_REQUIRE_TOOLS").is_some() {
                    panic!(
                        "UPDRAFT_REQUIRE_TOOLS is set but mender-artifact or openssl is missing"
                    );
                }
                eprintln!("SKIPPED: mender-artifact and openssl are needed");
                return None;
            }
            Some(make_fixtures())
        })
        .as_ref()
}

/// The artifact list and the names in the artifact directory.
async fn stored(app: &App, token: &str) -> (Value, Vec<String>) {
    let r = app.req("GET", ARTIFACTS, Some(token), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut files: Vec<String> = std::fs::read_dir(app.data.path().join("artifacts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    (r.json(), files)
}

/// Upload `file`: 201 and the stored artifact object.
async fn accepted(app: &App, token: &str, file: &Path) -> Value {
    let r = app.upload(token, &std::fs::read(file).unwrap()).await;
    assert_eq!(r.status, 201, "{}: {}", file.display(), r.text());
    let loc = r.headers["location"].to_str().unwrap();
    let id = loc.rsplit('/').next().unwrap();
    let r = app
        .req("GET", &format!("{ARTIFACTS}/{id}"), Some(token), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// Upload `file`: 400 with Mender's error body containing `why`, and
/// nothing stored (same list, same files).
async fn rejected(app: &App, token: &str, file: &Path, why: &str) {
    let before = stored(app, token).await;
    let r = app.upload(token, &std::fs::read(file).unwrap()).await;
    let msg = r.assert_error(400);
    assert!(
        msg.contains(why),
        "{}: expected {why:?} in {msg:?}",
        file.display()
    );
    assert_eq!(stored(app, token).await, before, "{}", file.display());
}

on_both!(keys_refuse_unsigned_foreign_and_tampered_artifacts);
async fn keys_refuse_unsigned_foreign_and_tampered_artifacts(db: Db) {
    let f = fixtures_or_skip!();
    // The RSA key as PKCS#1, the EC key as SPKI: both forms load.
    let app = app_with_keys!(db, vec![f.rsa_pkcs1_pub.clone(), f.ec_pub.clone()]);
    let token = app.login().await;

    // Signed by either configured key: stored, marked signed.
    let a = accepted(&app, &token, &f.signed_rsa).await;
    assert_eq!(a["name"], "signed-rsa");
    assert_eq!(a["signed"], true);
    let a = accepted(&app, &token, &f.signed_ec).await;
    assert_eq!(a["name"], "signed-ec");
    assert_eq!(a["signed"], true);
    let (list, files) = stored(&app, &token).await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files.iter().all(|f| f.ends_with(".mender")), "{files:?}");

    rejected(&app, &token, &f.unsigned, "missing signature").await;
    rejected(
        &app,
        &token,
        &f.stranger_rsa,
        "signature does not match the manifest and key",
    )
    .await;
    rejected(
        &app,
        &token,
        &f.stranger_ec,
        "signature does not match the manifest and key",
    )
    .await;
    rejected(
        &app,
        &token,
        &f.tampered_manifest,
        "signature verification failed",
    )
    .await;
    rejected(&app, &token, &f.tampered_payload, "checksum").await;

    // The rejected ones were refused for their signature, not their
    // content: without keys the untampered ones are fine.
    let open = app_with_keys!(db, vec![]);
    let token = open.login().await;
    for file in [&f.unsigned, &f.stranger_rsa, &f.stranger_ec] {
        accepted(&open, &token, file).await;
    }
}

on_both!(an_spki_rsa_key_alone_accepts_only_its_signatures);
async fn an_spki_rsa_key_alone_accepts_only_its_signatures(db: Db) {
    let f = fixtures_or_skip!();
    let app = app_with_keys!(db, vec![f.rsa_spki_pub.clone()]);
    let token = app.login().await;
    let a = accepted(&app, &token, &f.signed_rsa).await;
    assert_eq!(a["signed"], true);
    // An EC signature against the only (RSA) key.
    rejected(&app, &token, &f.signed_ec, "signature verification failed").await;
    rejected(&app, &token, &f.unsigned, "missing signature").await;
}

on_both!(without_keys_signed_and_unsigned_artifacts_are_accepted);
async fn without_keys_signed_and_unsigned_artifacts_are_accepted(db: Db) {
    let f = fixtures_or_skip!();
    let app = app_with_keys!(db, vec![]);
    let token = app.login().await;
    assert_eq!(accepted(&app, &token, &f.signed_rsa).await["signed"], true);
    assert_eq!(accepted(&app, &token, &f.signed_ec).await["signed"], true);
    assert_eq!(accepted(&app, &token, &f.unsigned).await["signed"], false);
    // Tampering is caught by the checksums even without keys.
    rejected(&app, &token, &f.tampered_payload, "checksum").await;
    let (list, _) = stored(&app, &token).await;
    assert_eq!(list.as_array().unwrap().len(), 3);
}

/// A key file that cannot be used stops the start with a message naming
/// the file and the problem, before the data directory is made.
#[tokio::test]
async fn bad_key_files_stop_the_start() {
    let f = fixtures_or_skip!();
    let tmp = tempfile::tempdir().unwrap();
    let not_pem = tmp.path().join("not-a-key.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();
    let missing = tmp.path().join("missing.pem");
    let cases = [
        (missing, "No such file"),
        (not_pem, "not a PEM public key"),
        (f.rsa_private.clone(), "private key"),
        (f.p384_pub.clone(), "unsupported elliptic curve"),
    ];
    for (key, why) in cases {
        let data = tmp.path().join("data");
        let mut config = updraft_server::Config::new(&data);
        // A good key first: every file is checked, not just the first.
        config.artifact_verify_keys = vec![f.ec_pub.clone(), key.clone()];
        let err = match updraft_server::Server::open(config).await {
            Ok(_) => panic!("{} was accepted", key.display()),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(&key.display().to_string()), "{err}");
        assert!(err.contains(why), "{why:?} not in {err:?}");
        assert!(!data.exists(), "the data directory was made for {err}");
    }
}
