//! `POST /api/management/v1/deployments/artifacts/generate`, through the
//! router, on SQLite and on PostgreSQL: the artifact it stores is the one
//! `mender-artifact write module-image -T single-file` makes from the same
//! files (compared with the real tool), and bad requests get 400 naming the
//! problem and store nothing. The real `mender` client installing a
//! generated artifact is in `mender_client.rs`.
//!
//! Needs `mender-artifact`, `tar` and `openssl`; without them the tests print why and
//! pass, unless `UPDRAFT_REQUIRE_TOOLS` is set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{App, Db};
use serde_json::{json, Value};

const DEPL: &str = "/api/management/v1/deployments";

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

/// The app for `db`, or return from the test saying why not.
macro_rules! app_on {
    ($db:expr) => {
        match App::on($db).await {
            Some(app) => app,
            None => {
                eprintln!(
                    "SKIPPED on {:?}: set UPDRAFT_TEST_POSTGRES_URL to run it",
                    $db
                );
                return;
            }
        }
    };
}

fn have_tools() -> bool {
    let ok = [
        ("mender-artifact", "--version"),
        ("tar", "--version"),
        ("openssl", "version"),
    ]
    .iter()
    .all(|(t, arg)| {
        Command::new(t)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !ok && std::env::var_os("UPDRAFT_REQUIRE_TOOLS").is_some() {
        panic!("UPDRAFT_REQUIRE_TOOLS is set but mender-artifact, tar or openssl is missing");
    }
    ok
}

/// Multipart parts: name and content.
type Parts<'a> = Vec<(&'a str, &'a [u8])>;

/// A multipart body with `parts` in order; a part named `file` is sent as
/// a file upload.
fn multipart(parts: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "XupdraftGENERATEx";
    let mut body = Vec::new();
    for (name, value) in parts {
        let disposition = if *name == "file" {
            "form-data; name=\"file\"; filename=\"upload.bin\"\r\nContent-Type: application/octet-stream"
                .to_owned()
        } else {
            format!("form-data; name=\"{name}\"")
        };
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(value);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn generate(app: &App, token: Option<&str>, parts: &[(&str, &[u8])]) -> common::Resp {
    let (content_type, body) = multipart(parts);
    let mut b = axum::http::Request::post(format!("{DEPL}/artifacts/generate"))
        .header("content-type", content_type)
        .header("host", "updraft.test");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    app.call(b.body(axum::body::Body::from(body)).unwrap())
        .await
}

/// Download a stored artifact through its link.
async fn download(app: &App, token: &str, id: &str) -> Vec<u8> {
    let r = app
        .req(
            "GET",
            &format!("{DEPL}/artifacts/{id}/download"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let uri = r.json()["uri"].as_str().unwrap().to_owned();
    let path = &uri[uri.find("/api/").unwrap()..];
    let r = app.req("GET", path, None, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.body
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `mender-artifact read`, without the lines that carry file times.
fn read_artifact(path: &Path) -> String {
    run(Command::new("mender-artifact").arg("read").arg(path))
        .lines()
        .filter(|l| !l.trim_start().starts_with("modified:"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A member of the artifact's header (`header.tar.gz`).
fn header_member(artifact: &Path, name: &str) -> String {
    run(Command::new("sh").arg("-c").arg(format!(
        "tar -xOf '{}' header.tar.gz | tar -xzO {name}",
        artifact.display()
    )))
}

/// The data tar's listing (mode, owner, size, name) and each file's bytes.
fn payload(artifact: &Path) -> (Vec<String>, Vec<(String, Vec<u8>)>) {
    let dir = tempfile::tempdir().unwrap();
    let listing = run(Command::new("sh").arg("-c").arg(format!(
        "tar -xOf '{}' data/0000.tar.gz | tar -tvz",
        artifact.display()
    )));
    let listing: Vec<String> = listing
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            format!("{} {} {} {}", f[0], f[1], f[2], f[5])
        })
        .collect();
    run(Command::new("sh").arg("-c").arg(format!(
        "tar -xOf '{}' data/0000.tar.gz | tar -xz -C '{}'",
        artifact.display(),
        dir.path().display()
    )));
    let files = listing
        .iter()
        .map(|l| {
            let name = l.rsplit(' ').next().unwrap().to_owned();
            let bytes = std::fs::read(dir.path().join(&name)).unwrap();
            (name, bytes)
        })
        .collect();
    (listing, files)
}

/// What is left in the artifact directory besides stored artifacts.
fn leftovers(app: &App) -> Vec<String> {
    std::fs::read_dir(app.data.path().join("artifacts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".mender"))
        .collect()
}

on_both!(generated_artifact_is_what_mender_artifact_writes);
async fn generated_artifact_is_what_mender_artifact_writes(db: Db) {
    if !have_tools() {
        eprintln!("SKIPPED: mender-artifact, tar or openssl is missing");
        return;
    }
    let app = app_on!(db);
    let admin = app.login().await;
    // Not text, and larger than a gzip chunk: every byte must come through.
    let content: Vec<u8> = (0..700_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let r = generate(
        &app,
        Some(&admin),
        &[
            ("name", b"config-7"),
            ("description", b"made by generate"),
            // Both of Mender's forms: a comma list and a repeated part.
            ("device_types_compatible", b"board-a,board-b"),
            ("device_types_compatible", b"board-c"),
            ("type", b"single_file"),
            (
                "args",
                br#"{"filename":"app.conf","dest_dir":"/etc/updraft-test"}"#,
            ),
            ("file", &content),
            // After the file: never read.
            ("name", b"ignored"),
        ],
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(r.body.is_empty());
    let location = r.headers["location"].to_str().unwrap().to_owned();
    let id = location
        .strip_prefix("./management/v1/deployments/artifacts/")
        .unwrap_or_else(|| panic!("Location {location}"))
        .to_owned();
    assert!(leftovers(&app).is_empty(), "{:?}", leftovers(&app));

    // The artifact object, as for an upload.
    let r = app
        .req("GET", &format!("{DEPL}/artifacts/{id}"), Some(&admin), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let a = r.json();
    assert_eq!(a["name"], "config-7");
    assert_eq!(a["description"], "made by generate");
    assert_eq!(
        a["device_types_compatible"],
        json!(["board-a", "board-b", "board-c"])
    );
    assert_eq!(a["signed"], false);
    assert_eq!(a["updates"][0]["type_info"]["type"], "single-file");
    let files: Vec<&str> = a["updates"][0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["dest_dir", "filename", "permissions", "app.conf"]);

    // (a) The downloaded artifact, read by the real mender-artifact, is the
    // one it writes itself from the same files, as Mender's
    // single-file-artifact-gen calls it.
    let work = tempfile::tempdir().unwrap();
    let ours = work.path().join("ours.mender");
    std::fs::write(&ours, download(&app, &admin, &id).await).unwrap();
    run(Command::new("mender-artifact").arg("validate").arg(&ours));
    let theirs_dir = work.path().join("files");
    std::fs::create_dir(&theirs_dir).unwrap();
    for (name, bytes) in [
        ("dest_dir", b"/etc/updraft-test\n".to_vec()),
        ("filename", b"app.conf\n".to_vec()),
        ("permissions", b"644\n".to_vec()),
        ("app.conf", content.clone()),
    ] {
        use std::os::unix::fs::PermissionsExt;
        let p = theirs_dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let theirs = work.path().join("theirs.mender");
    run(Command::new("mender-artifact")
        .current_dir(&theirs_dir)
        .args(["write", "module-image", "-T", "single-file"])
        .args(["-t", "board-a", "-t", "board-b", "-t", "board-c"])
        .args(["-n", "config-7", "-o"])
        .arg(&theirs)
        .args(["-f", "dest_dir", "-f", "filename", "-f", "permissions"])
        .args(["-f", "app.conf"]));
    let read = read_artifact(&ours);
    for want in [
        "Name: config-7",
        "Compatible devices: '[board-a board-b board-c]'",
        "Signature: no signature",
        "Type:   single-file",
        "rootfs-image.single-file.version: config-7",
        "name:     app.conf",
        "size:     700000",
    ] {
        assert!(read.contains(want), "{want:?} not in:\n{read}");
    }
    assert_eq!(read, read_artifact(&theirs));
    for member in ["header-info", "headers/0000/type-info"] {
        assert_eq!(
            header_member(&ours, member),
            header_member(&theirs, member),
            "{member}"
        );
    }
    let (listing, files) = payload(&ours);
    assert_eq!(
        listing,
        [
            "-rw-r--r-- root/root 18 dest_dir",
            "-rw-r--r-- root/root 9 filename",
            "-rw-r--r-- root/root 4 permissions",
            "-rw-r--r-- root/root 700000 app.conf",
        ]
    );
    assert_eq!((listing.clone(), files), payload(&theirs));

    // The same name and device types again: 409, as for an upload.
    let before = app.counts().await;
    let r = generate(
        &app,
        Some(&admin),
        &[
            ("name", b"config-7"),
            ("device_types_compatible", b"board-a,board-b,board-c"),
            ("type", b"single_file"),
            ("args", br#"{"filename":"x","dest_dir":"/x"}"#),
            ("file", b"x"),
        ],
    )
    .await;
    let msg = r.assert_error(409);
    assert!(msg.contains("same name and depends"), "{msg}");
    assert_eq!(app.counts().await, before);
    assert!(leftovers(&app).is_empty(), "{:?}", leftovers(&app));
}

on_both!(bad_generate_requests_get_400_and_store_nothing);
async fn bad_generate_requests_get_400_and_store_nothing(db: Db) {
    let app = app_on!(db);
    let admin = app.login().await;
    let before = app.counts().await;
    let args: &[u8] = br#"{"filename":"f.txt","dest_dir":"/opt/f"}"#;
    let good: Vec<(&str, &[u8])> = vec![
        ("name", b"gen-bad"),
        ("device_types_compatible", b"board"),
        ("type", b"single_file"),
        ("args", args),
        ("file", b"contents"),
    ];
    let with = |name: &str, value: Option<&'static [u8]>| -> Parts<'_> {
        let mut parts: Parts<'_> = Vec::new();
        for (n, v) in &good {
            if *n == name {
                if let Some(v) = value {
                    parts.push((n, v));
                }
            } else {
                parts.push((n, v));
            }
        }
        parts
    };
    let cases: Vec<(Parts<'_>, &str)> = vec![
        (with("file", None), "request does not contain the file"),
        (
            with("type", Some(b"rootfs-image")),
            "type: unsupported artifact type \"rootfs-image\"",
        ),
        (
            with("args", Some(b"{\"filename\": \"f.txt\",")),
            "args: can't parse 'args'",
        ),
        (
            with("device_types_compatible", None),
            "device_types_compatible: cannot be blank",
        ),
        (
            with("device_types_compatible", Some(b" , ")),
            "device_types_compatible: cannot be blank",
        ),
        (with("name", None), "name: cannot be blank"),
        (with("type", None), "type: cannot be blank"),
        (with("args", None), "args: cannot be blank"),
        (
            with("args", Some(br#"{"dest_dir":"/opt"}"#)),
            "destination filename can't be empty",
        ),
        (
            with("args", Some(br#"{"filename":"f","dest_dir":"opt"}"#)),
            "must be an absolute path",
        ),
        (
            with("args", Some(br#"{"filename":"../f","dest_dir":"/opt"}"#)),
            "must be a file name, not a path",
        ),
        (
            with(
                "args",
                Some(br#"{"filename":"permissions","dest_dir":"/opt"}"#),
            ),
            "taken by the single-file module's own files",
        ),
        (
            with(
                "args",
                Some(b"{\"filename\":\"f\",\"dest_dir\":\"/opt\\nx\"}"),
            ),
            "dest_dir must not contain control characters",
        ),
    ];
    for (parts, want) in &cases {
        let msg = generate(&app, Some(&admin), parts).await.assert_error(400);
        assert!(msg.contains(want), "{want:?} not in {msg:?}");
    }
    // Everything missing at once is named at once, as upstream does.
    let msg = generate(&app, Some(&admin), &[("file", b"x")])
        .await
        .assert_error(400);
    assert_eq!(
        msg,
        "device_types_compatible: cannot be blank; name: cannot be blank; type: cannot be blank."
    );
    // Not multipart: 415; no token: 401.
    let r = app
        .req(
            "POST",
            &format!("{DEPL}/artifacts/generate"),
            Some(&admin),
            Some(&json!({"name": "x"})),
        )
        .await;
    r.assert_error(415);
    generate(&app, None, &good).await.assert_error(401);

    assert_eq!(app.counts().await, before);
    assert!(leftovers(&app).is_empty(), "{:?}", leftovers(&app));
    let v: Value = app
        .req("GET", &format!("{DEPL}/artifacts"), Some(&admin), None)
        .await
        .json();
    assert_eq!(v, json!([]));
}

on_both!(generated_artifacts_are_refused_when_uploads_must_be_signed);
async fn generated_artifacts_are_refused_when_uploads_must_be_signed(db: Db) {
    // A verification key: generated artifacts are unsigned (no signing
    // key on the server), so they fail the upload check, which says why.
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("verify.pem");
    if !have_tools() {
        eprintln!("SKIPPED: mender-artifact, tar or openssl is missing");
        return;
    }
    let secret = dir.path().join("secret.pem");
    run(Command::new("openssl")
        .args([
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
        ])
        .arg(&secret));
    run(Command::new("openssl")
        .args(["ec", "-pubout", "-in"])
        .arg(&secret)
        .arg("-out")
        .arg(&key));
    let Some(app) = App::on_with(db, |c| c.artifact_verify_keys = vec![key.clone()]).await else {
        eprintln!("SKIPPED on {db:?}: set UPDRAFT_TEST_POSTGRES_URL to run it");
        return;
    };
    let admin = app.login().await;
    let before = app.counts().await;
    let msg = generate(
        &app,
        Some(&admin),
        &[
            ("name", b"gen-unsigned"),
            ("device_types_compatible", b"board"),
            ("type", b"single_file"),
            ("args", br#"{"filename":"f","dest_dir":"/opt"}"#),
            ("file", b"x"),
        ],
    )
    .await
    .assert_error(400);
    assert!(msg.contains("generated artifact is unsigned"), "{msg}");
    assert_eq!(app.counts().await, before);
    assert!(leftovers(&app).is_empty(), "{:?}", leftovers(&app));
}
