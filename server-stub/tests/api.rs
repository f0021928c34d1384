//! The API through the router (no sockets): admission and tokens, a whole
//! deployment by a simulated device, bad requests that must change
//! nothing, artifact checks, download links, key rotation, login limits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{single_file_artifact, App, Db, SimDevice};
use serde_json::{json, Value};

const NEXT_V2: &str = "/api/devices/v2/deployments/device/deployments/next";
const INVENTORY: &str = "/api/devices/v1/inventory/device/attributes";

/// Admit `dev`: first auth is pending (401), accept its auth set, then a
/// token. Returns (device ID, token).
async fn admit(app: &App, admin: &str, dev: &SimDevice) -> (String, String) {
    let r = dev.auth(app).await;
    assert_eq!(r.assert_error(401), "unauthorized");
    let identity: Value = serde_json::from_str(&dev.identity).unwrap();
    let list = app
        .req(
            "GET",
            "/api/management/v2/devauth/devices?status=pending",
            Some(admin),
            None,
        )
        .await
        .json();
    let d = list
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["identity_data"] == identity)
        .unwrap()
        .clone();
    let (id, aid) = (
        d["id"].as_str().unwrap(),
        d["auth_sets"][0]["id"].as_str().unwrap(),
    );
    let r = app
        .req(
            "PUT",
            &format!("/api/management/v2/devauth/devices/{id}/auth/{aid}/status"),
            Some(admin),
            Some(&json!({"status": "accepted"})),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let r = dev.auth(app).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.headers["content-type"], "application/jwt");
    (id.to_owned(), r.text())
}

fn provides(name: &str, device_type: &str) -> Value {
    json!({"device_provides": {"artifact_name": name, "device_type": device_type}, "update_control_map": true})
}

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
        app_on!($db, |_| {})
    };
    ($db:expr, $tweak:expr) => {
        match App::on_with($db, $tweak).await {
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

fn have_mender_artifact() -> bool {
    std::process::Command::new("mender-artifact")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

on_both!(admission_tokens_and_their_apis);
async fn admission_tokens_and_their_apis(db: Db) {
    let app = app_on!(db);
    let admin = app.login().await;
    let dev = SimDevice::p256("02:00:00:00:00:01");
    let (id, token) = admit(&app, &admin, &dev).await;

    // The device API accepts the device token...
    let r = app
        .req(
            "PUT",
            INVENTORY,
            Some(&token),
            Some(
                &json!([{"name": "os", "value": "linux"}, {"name": "multi", "value": ["a", "b"]}]),
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = app
        .req(
            "PATCH",
            INVENTORY,
            Some(&token),
            Some(&json!([{"name": "kernel", "value": "6.1"}])),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = app
        .req(
            "POST",
            NEXT_V2,
            Some(&token),
            Some(&provides("release-1", "board")),
        )
        .await;
    assert_eq!(r.status, 204);
    // ...the management API does not, and the user token is no device token.
    let r = app
        .req(
            "GET",
            "/api/management/v2/devauth/devices",
            Some(&token),
            None,
        )
        .await;
    r.assert_error(401);
    let r = app
        .req(
            "POST",
            NEXT_V2,
            Some(&admin),
            Some(&provides("release-1", "board")),
        )
        .await;
    r.assert_error(401);

    let d = app
        .req(
            "GET",
            &format!("/api/management/v2/devauth/devices/{id}"),
            Some(&admin),
            None,
        )
        .await
        .json();
    assert_eq!(d["status"], "accepted");
    assert!(d["check_in_time"].is_string());
    let aid = d["auth_sets"][0]["id"].as_str().unwrap().to_owned();

    // Rejecting revokes the token at once; re-auth is refused.
    let r = app
        .req(
            "PUT",
            &format!("/api/management/v2/devauth/devices/{id}/auth/{aid}/status"),
            Some(&admin),
            Some(&json!({"status": "rejected"})),
        )
        .await;
    assert_eq!(r.status, 204);
    app.req(
        "POST",
        NEXT_V2,
        Some(&token),
        Some(&provides("release-1", "board")),
    )
    .await
    .assert_error(401);
    dev.auth(&app).await.assert_error(401);

    // Accept again, then decommission: the device is gone, its token dead,
    // and the same identity starts over as pending.
    let r = app
        .req(
            "PUT",
            &format!("/api/management/v2/devauth/devices/{id}/auth/{aid}/status"),
            Some(&admin),
            Some(&json!({"status": "accepted"})),
        )
        .await;
    assert_eq!(r.status, 204);
    let token = dev.auth(&app).await.text();
    let r = app
        .req(
            "DELETE",
            &format!("/api/management/v2/devauth/devices/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    app.req(
        "GET",
        &format!("/api/management/v2/devauth/devices/{id}"),
        Some(&admin),
        None,
    )
    .await
    .assert_error(404);
    app.req(
        "POST",
        NEXT_V2,
        Some(&token),
        Some(&provides("release-1", "board")),
    )
    .await
    .assert_error(401);
    dev.auth(&app).await.assert_error(401);
    let c = app
        .req(
            "GET",
            "/api/management/v2/devauth/devices/count?status=pending",
            Some(&admin),
            None,
        )
        .await
        .json();
    assert_eq!(c["count"], 1);

    // Logout revokes the user token.
    let r = app
        .req(
            "POST",
            "/api/management/v1/useradm/auth/logout",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 202);
    app.req(
        "GET",
        "/api/management/v2/devauth/devices",
        Some(&admin),
        None,
    )
    .await
    .assert_error(401);
}

on_both!(bad_requests_get_clear_errors_and_change_nothing);
async fn bad_requests_get_clear_errors_and_change_nothing(db: Db) {
    let app = app_on!(db);
    let admin = app.login().await;
    let dev = SimDevice::ed25519("02:00:00:00:00:02");
    let other = SimDevice::ed25519("02:00:00:00:00:03");
    let before = app.counts().await;
    let auth = |body: Vec<u8>, sig: Option<String>, ct: &'static str| {
        let mut b = axum::http::Request::post("/api/devices/v1/authentication/auth_requests")
            .header("content-type", ct);
        if let Some(s) = sig {
            b = b.header("x-men-signature", s);
        }
        b.body(axum::body::Body::from(body)).unwrap()
    };

    // Signature by another key, over other bytes, missing, not base64.
    let body = dev.auth_body();
    let msg = app
        .call(auth(
            body.clone(),
            Some(other.sign(&body)),
            "application/json",
        ))
        .await
        .assert_error(401);
    assert!(msg.contains("signature"), "{msg}");
    let trimmed = body[..body.len() - 1].to_vec();
    app.call(auth(
        body.clone(),
        Some(dev.sign(&trimmed)),
        "application/json",
    ))
    .await
    .assert_error(401);
    app.call(auth(body.clone(), None, "application/json"))
        .await
        .assert_error(400);
    app.call(auth(body.clone(), Some("!!!".into()), "application/json"))
        .await
        .assert_error(400);
    // Malformed JSON, id_data that is not an object, a key that is not one.
    let bad = b"{\"id_data\": ".to_vec();
    app.call(auth(bad.clone(), Some(dev.sign(&bad)), "application/json"))
        .await
        .assert_error(400);
    let b2 = json!({"id_data": "[1]", "pubkey": dev.pubkey_pem})
        .to_string()
        .into_bytes();
    app.call(auth(b2.clone(), Some(dev.sign(&b2)), "application/json"))
        .await
        .assert_error(400);
    let b3 = json!({"id_data": "{\"mac\":\"x\"}", "pubkey": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"})
        .to_string()
        .into_bytes();
    app.call(auth(b3.clone(), Some(dev.sign(&b3)), "application/json"))
        .await
        .assert_error(400);
    // Oversized body.
    let mut huge = dev.auth_body();
    huge.extend(std::iter::repeat_n(b' ', 2 << 20));
    app.call(auth(
        huge.clone(),
        Some(dev.sign(&huge)),
        "application/json",
    ))
    .await
    .assert_error(413);

    // Management: no JWT, garbage JWT, a JWT signed by a stranger's key.
    let devices = "/api/management/v2/devauth/devices";
    assert_eq!(
        app.req("GET", devices, None, None).await.assert_error(401),
        "authorization not present in header"
    );
    app.req("GET", devices, Some("not.a.jwt"), None)
        .await
        .assert_error(401);
    let stranger = App::new().await;
    let foreign = stranger.login().await;
    app.req("GET", devices, Some(&foreign), None)
        .await
        .assert_error(401);
    let mut parts: Vec<String> = admin.split('.').map(str::to_owned).collect();
    parts[1] = parts[1].replacen('e', "f", 1);
    app.req("GET", devices, Some(&parts.join(".")), None)
        .await
        .assert_error(401);
    // Wrong content type, malformed JSON, unknown values, unknown IDs.
    let r = app
        .call(
            axum::http::Request::post("/api/management/v1/deployments/deployments")
                .header("authorization", format!("Bearer {admin}"))
                .header("content-type", "text/plain")
                .body(axum::body::Body::from("{}"))
                .unwrap(),
        )
        .await;
    r.assert_error(415);
    let r = app
        .call(
            axum::http::Request::post("/api/management/v1/deployments/deployments")
                .header("authorization", format!("Bearer {admin}"))
                .header("content-type", "application/json")
                .body(axum::body::Body::from("{\"name\":"))
                .unwrap(),
        )
        .await;
    r.assert_error(400);
    let r = app
        .req(
            "POST",
            "/api/management/v1/deployments/deployments",
            Some(&admin),
            Some(&json!({"name": "n", "artifact_name": "nothing", "devices": ["x"]})),
        )
        .await;
    assert_eq!(r.assert_error(422), "No artifact for the deployment");
    let r = app
        .req(
            "POST",
            "/api/management/v1/deployments/deployments",
            Some(&admin),
            Some(&json!({"name": "n", "artifact_name": "a"})),
        )
        .await;
    r.assert_error(400);
    app.req(
        "GET",
        "/api/management/v2/devauth/devices?status=bogus",
        Some(&admin),
        None,
    )
    .await
    .assert_error(400);
    app.req(
        "GET",
        "/api/management/v2/devauth/devices?per_page=501",
        Some(&admin),
        None,
    )
    .await
    .assert_error(400);
    app.req(
        "GET",
        "/api/management/v2/devauth/devices/nope",
        Some(&admin),
        None,
    )
    .await
    .assert_error(404);
    app.req(
        "PUT",
        "/api/management/v2/devauth/devices/nope/auth/nope/status",
        Some(&admin),
        Some(&json!({"status": "accepted"})),
    )
    .await
    .assert_error(404);
    app.req(
        "GET",
        "/api/management/v1/deployments/deployments/not-a-uuid",
        Some(&admin),
        None,
    )
    .await
    .assert_error(400);
    app.req(
        "GET",
        "/api/management/v1/deployments/deployments/00000000-0000-4000-8000-000000000000",
        Some(&admin),
        None,
    )
    .await
    .assert_error(404);
    app.req("GET", "/no/such/route", None, None)
        .await
        .assert_error(404);
    // The framework's own rejections use the same error form.
    app.req(
        "DELETE",
        "/api/management/v1/useradm/auth/login",
        None,
        None,
    )
    .await
    .assert_error(405);
    let msg = app
        .req("GET", "/api/devices/v1/download/x?expire=soon", None, None)
        .await
        .assert_error(400);
    assert!(msg.contains("expire") || msg.contains("sig"), "{msg}");
    // Uploads: not multipart, no artifact part, not an artifact.
    let r = app
        .req(
            "POST",
            "/api/management/v1/deployments/artifacts",
            Some(&admin),
            Some(&json!({})),
        )
        .await;
    r.assert_error(415);
    let msg = app
        .upload(&admin, b"hello, I am not an artifact")
        .await
        .assert_error(400);
    assert!(msg.contains("artifact"), "{msg}");

    // A request ID given by the client comes back.
    let r = app
        .call(
            axum::http::Request::get(devices)
                .header("x-men-requestid", "my-request-42")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.headers["x-men-requestid"], "my-request-42");
    assert_eq!(r.json()["request_id"], "my-request-42");

    assert_eq!(
        app.counts().await,
        before,
        "a bad request changed the database"
    );
    // Nothing half-written in the artifact store either.
    assert_eq!(
        std::fs::read_dir(app.data.path().join("artifacts"))
            .unwrap()
            .count(),
        0
    );
}

on_both!(simulated_device_runs_a_deployment);
async fn simulated_device_runs_a_deployment(db: Db) {
    if !have_mender_artifact() {
        eprintln!("SKIPPED simulated_device_runs_a_deployment: mender-artifact is not installed");
        return;
    }
    let app = app_on!(db);
    let admin = app.login().await;
    let dev = SimDevice::ed25519("02:00:00:00:00:04");
    let (id, token) = admit(&app, &admin, &dev).await;
    let work = tempfile::tempdir().unwrap();
    let file = single_file_artifact(work.path(), "sim-2", "/tmp/x", "f.txt", "payload", "board");
    let bytes = std::fs::read(&file).unwrap();

    // Upload: checked, listed with its metadata; a second copy clashes.
    let r = app.upload(&admin, &bytes).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let aid = r.headers["location"]
        .to_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let a = app
        .req(
            "GET",
            &format!("/api/management/v1/deployments/artifacts/{aid}"),
            Some(&admin),
            None,
        )
        .await
        .json();
    assert_eq!(a["name"], "sim-2");
    assert_eq!(a["device_types_compatible"], json!(["board"]));
    assert_eq!(a["signed"], false);
    assert_eq!(a["size"], bytes.len());
    assert_eq!(a["updates"][0]["type_info"]["type"], "single-file");
    let files: Vec<&str> = a["updates"][0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["dest_dir", "filename", "permissions", "f.txt"]);
    assert_eq!(
        a["artifact_provides"]["rootfs-image.single-file.version"],
        "sim-2"
    );
    app.upload(&admin, &bytes).await.assert_error(409);
    // A truncated copy is refused, naming the problem.
    let msg = app
        .upload(&admin, &bytes[..bytes.len() / 2])
        .await
        .assert_error(400);
    assert!(
        msg.contains("truncated") || msg.contains("checksum") || msg.contains("gzip"),
        "{msg}"
    );

    let r = app
        .req(
            "POST",
            "/api/management/v1/deployments/deployments",
            Some(&admin),
            Some(&json!({"name": "sim", "artifact_name": "sim-2", "devices": [id]})),
        )
        .await;
    assert_eq!(r.status, 201);
    let dep = r.headers["location"]
        .to_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let show = |p: String| {
        let app = &app;
        let admin = admin.clone();
        async move { app.req("GET", &p, Some(&admin), None).await.json() }
    };
    let d = show(format!("/api/management/v1/deployments/deployments/{dep}")).await;
    assert_eq!(
        (
            d["status"].as_str(),
            d["device_count"].as_i64(),
            d["max_devices"].as_i64()
        ),
        (Some("pending"), Some(0), Some(1))
    );

    // The right device type: all three `next` forms hand out the same
    // deployment, with a signed link.
    let r = app
        .req(
            "POST",
            NEXT_V2,
            Some(&token),
            Some(&provides("release-1", "board")),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let next = r.json();
    assert_eq!(next["id"], dep.as_str());
    assert_eq!(next["artifact"]["artifact_name"], "sim-2");
    assert_eq!(
        next["artifact"]["device_types_compatible"],
        json!(["board"])
    );
    let uri = next["artifact"]["source"]["uri"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        uri.starts_with("https://updraft.test/api/devices/v1/download/"),
        "{uri}"
    );
    let r = app
        .req(
            "POST",
            "/api/devices/v1/deployments/device/deployments/next",
            Some(&token),
            Some(&json!({"artifact_name": "release-1", "device_type": "board"})),
        )
        .await;
    assert_eq!(r.json()["id"], dep.as_str());
    let r = app
        .req(
            "GET",
            "/api/devices/v1/deployments/device/deployments/next?artifact_name=release-1&device_type=board",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.json()["id"], dep.as_str());

    // Download: whole, resumed with Range, and refused when tampered with.
    let path = uri.trim_start_matches("https://updraft.test");
    let r = app.req("GET", path, None, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, bytes);
    let r = app
        .call(
            axum::http::Request::get(path)
                .header("range", "bytes=1000-")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &bytes[1000..]);
    assert_eq!(
        r.headers["content-range"].to_str().unwrap(),
        format!("bytes 1000-{}/{}", bytes.len() - 1, bytes.len())
    );
    let r = app
        .call(
            axum::http::Request::get(path)
                .header("range", format!("bytes={}-", bytes.len()))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, 416);
    let forged = path.replace("expire=", "expire=9");
    app.req("GET", &forged, None, None).await.assert_error(403);

    // Status reports, in the client's order; the deployment follows.
    let status_path = format!("/api/devices/v1/deployments/device/deployments/{dep}/status");
    for s in ["downloading", "downloading", "downloading", "installing"] {
        let r = app
            .req(
                "PUT",
                &status_path,
                Some(&token),
                Some(&json!({"status": s})),
            )
            .await;
        assert_eq!(r.status, 204, "{s}: {}", r.text());
    }
    let d = show(format!("/api/management/v1/deployments/deployments/{dep}")).await;
    assert_eq!(d["status"], "inprogress");
    assert_eq!(d["device_count"], 1);
    assert_eq!(d["statistics"]["status"]["installing"], 1);
    app.req(
        "PUT",
        &status_path,
        Some(&token),
        Some(&json!({"status": "bogus"})),
    )
    .await
    .assert_error(400);
    let r = app
        .req(
            "PUT",
            &status_path,
            Some(&token),
            Some(&json!({"status": "success"})),
        )
        .await;
    assert_eq!(r.status, 204);
    let d = show(format!("/api/management/v1/deployments/deployments/{dep}")).await;
    assert_eq!(d["status"], "finished");
    assert!(d["finished"].is_string());
    assert_eq!(d["statistics"]["status"]["success"], 1);
    let devs = show(format!(
        "/api/management/v1/deployments/deployments/{dep}/devices"
    ))
    .await;
    assert_eq!(devs[0]["status"], "success");
    assert_eq!(devs[0]["image"]["id"], aid.as_str());
    // Finished: no more updates for this device; the artifact can go.
    let r = app
        .req(
            "POST",
            NEXT_V2,
            Some(&token),
            Some(&provides("sim-2", "board")),
        )
        .await;
    assert_eq!(r.status, 204);

    // A deployment of what the device already runs: already-installed.
    let r = app
        .req(
            "POST",
            "/api/management/v1/deployments/deployments",
            Some(&admin),
            Some(&json!({"name": "again", "artifact_name": "sim-2", "all_devices": true})),
        )
        .await;
    assert_eq!(r.status, 201);
    let dep2 = r.headers["location"]
        .to_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let r = app
        .req(
            "POST",
            NEXT_V2,
            Some(&token),
            Some(&provides("sim-2", "board")),
        )
        .await;
    assert_eq!(r.status, 204);
    let d = show(format!("/api/management/v1/deployments/deployments/{dep2}")).await;
    assert_eq!(d["status"], "finished");
    assert_eq!(d["statistics"]["status"]["already-installed"], 1);

    // Another device type gets noartifact.
    let r = app
        .req(
            "POST",
            "/api/management/v1/deployments/deployments",
            Some(&admin),
            Some(&json!({"name": "other", "artifact_name": "sim-2", "devices": [id], "force_installation": true})),
        )
        .await;
    let dep3 = r.headers["location"]
        .to_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let r = app
        .req(
            "POST",
            NEXT_V2,
            Some(&token),
            Some(&provides("sim-2", "other-board")),
        )
        .await;
    assert_eq!(r.status, 204);
    let d = show(format!("/api/management/v1/deployments/deployments/{dep3}")).await;
    assert_eq!(d["statistics"]["status"]["noartifact"], 1);

    // Abort: the device's next report gets 409; the log still lands.
    let r = app
        .req(
            "POST",
            "/api/management/v1/deployments/deployments",
            Some(&admin),
            Some(&json!({"name": "abort-me", "artifact_name": "sim-2", "devices": [id], "force_installation": true})),
        )
        .await;
    let dep4 = r.headers["location"]
        .to_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let r = app
        .req(
            "POST",
            NEXT_V2,
            Some(&token),
            Some(&provides("sim-2", "board")),
        )
        .await;
    assert_eq!(r.json()["id"], dep4.as_str());
    let st4 = format!("/api/devices/v1/deployments/device/deployments/{dep4}/status");
    assert_eq!(
        app.req(
            "PUT",
            &st4,
            Some(&token),
            Some(&json!({"status": "downloading"}))
        )
        .await
        .status,
        204
    );
    let r = app
        .req(
            "PUT",
            &format!("/api/management/v1/deployments/deployments/{dep4}/status"),
            Some(&admin),
            Some(&json!({"status": "aborted"})),
        )
        .await;
    assert_eq!(r.status, 204);
    app.req(
        "PUT",
        &st4,
        Some(&token),
        Some(&json!({"status": "installing"})),
    )
    .await
    .assert_error(409);
    app.req(
        "PUT",
        &st4,
        Some(&token),
        Some(&json!({"status": "failure"})),
    )
    .await
    .assert_error(409);
    let log = json!({"messages": [{"level": "error", "message": "boom", "timestamp": "2026-01-02T03:04:05Z"}]});
    let r = app
        .req(
            "PUT",
            &format!("/api/devices/v1/deployments/device/deployments/{dep4}/log"),
            Some(&token),
            Some(&log),
        )
        .await;
    assert_eq!(r.status, 204);
    let r = app
        .req(
            "GET",
            &format!("/api/management/v1/deployments/deployments/{dep4}/devices/{id}/log"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.text(), "2026-01-02 03:04:05 +0000 UTC error: boom\n");
    let r = app
        .req(
            "PUT",
            &format!("/api/management/v1/deployments/deployments/{dep4}/status"),
            Some(&admin),
            Some(&json!({"status": "aborted"})),
        )
        .await;
    r.assert_error(422);
    let d = show(format!("/api/management/v1/deployments/deployments/{dep4}")).await;
    assert_eq!(d["statistics"]["status"]["aborted"], 1);

    // Deleting the artifact removes its file.
    let r = app
        .req(
            "DELETE",
            &format!("/api/management/v1/deployments/artifacts/{aid}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    assert!(!app
        .data
        .path()
        .join("artifacts")
        .join(format!("{aid}.mender"))
        .exists());
}

on_both!(keys_rotate_without_logging_anyone_out);
async fn keys_rotate_without_logging_anyone_out(db: Db) {
    let app = app_on!(db);
    let url = app.database_url();
    let old_admin = app.login().await;
    let dev = SimDevice::ed25519("02:00:00:00:00:05");
    let (_, old_dev) = admit(&app, &old_admin, &dev).await;
    let keys = app.data.path().join("keys");
    assert!(keys.join("private.id.0.pem").exists());

    // Add key 1 (ES256) and restart: key 1 signs,
    // tokens of key 0 still work.
    let rng = ring::rand::SystemRandom::new();
    let doc = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &rng,
    )
    .unwrap();
    std::fs::write(
        keys.join("private.id.1.pem"),
        pem_rfc7468::encode_string("PRIVATE KEY", pem_rfc7468::LineEnding::LF, doc.as_ref())
            .unwrap(),
    )
    .unwrap();
    let App { data, .. } = app;
    let app = App::open(data, |c| c.database_url = url.clone()).await;
    assert_eq!(app.server.setup().signing_key_id, 1);
    let new_admin = app.login().await;
    let header = |t: &str| {
        use base64ct::Encoding;
        let h = base64ct::Base64UrlUnpadded::decode_vec(t.split('.').next().unwrap()).unwrap();
        serde_json::from_slice::<Value>(&h).unwrap()
    };
    assert_eq!(
        header(&new_admin),
        json!({"alg": "ES256", "kid": 1, "typ": "JWT"})
    );
    assert_eq!(header(&old_admin)["kid"], 0);
    for t in [&old_admin, &new_admin] {
        assert_eq!(
            app.req("GET", "/api/management/v2/devauth/devices", Some(t), None)
                .await
                .status,
            200
        );
    }
    assert_eq!(
        app.req("POST", NEXT_V2, Some(&old_dev), Some(&provides("r", "b")))
            .await
            .status,
        204
    );
    let new_dev = dev.auth(&app).await.text();
    assert_eq!(header(&new_dev)["kid"], 1);

    // Retire key 0: its tokens stop working, key 1's keep working.
    std::fs::remove_file(app.data.path().join("keys").join("private.id.0.pem")).unwrap();
    let App { data, .. } = app;
    let app = App::open(data, |c| c.database_url = url.clone()).await;
    app.req(
        "GET",
        "/api/management/v2/devauth/devices",
        Some(&old_admin),
        None,
    )
    .await
    .assert_error(401);
    app.req("POST", NEXT_V2, Some(&old_dev), Some(&provides("r", "b")))
        .await
        .assert_error(401);
    assert_eq!(
        app.req(
            "GET",
            "/api/management/v2/devauth/devices",
            Some(&new_admin),
            None
        )
        .await
        .status,
        200
    );
    assert_eq!(
        app.req("POST", NEXT_V2, Some(&new_dev), Some(&provides("r", "b")))
            .await
            .status,
        204
    );
}

on_both!(failed_logins_are_rate_limited);
async fn failed_logins_are_rate_limited(db: Db) {
    let app = app_on!(db, |c| c.login_attempts_per_minute = 3);
    let login = |pw: &'static str| {
        use base64ct::Encoding;
        let basic = base64ct::Base64::encode_string(format!("{}:{pw}", common::ADMIN).as_bytes());
        axum::http::Request::post("/api/management/v1/useradm/auth/login")
            .header("authorization", format!("Basic {basic}"))
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let r = app.call(login("wrong password")).await;
    assert_eq!(r.assert_error(401), "unauthorized");
    app.call(login("wrong password")).await.assert_error(401);
    app.call(login("wrong password")).await.assert_error(401);
    // Now even the right password waits out the minute.
    app.call(login(common::PASSWORD)).await.assert_error(429);
    // Missing Basic auth.
    let r = app
        .call(
            axum::http::Request::post("/api/management/v1/useradm/auth/login")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.assert_error(401), "invalid or missing auth header");
    if db != Db::Sqlite {
        return;
    }
    // The stored hash is argon2id, never the password.
    // (SQLite in WAL mode: recent pages are in the -wal file.)
    let mut db = std::fs::read(app.data.path().join("updraft.db")).unwrap();
    db.extend(std::fs::read(app.data.path().join("updraft.db-wal")).unwrap_or_default());
    let db = String::from_utf8_lossy(&db);
    assert!(db.contains("$argon2id$"));
    assert!(!db.contains(common::PASSWORD));
}

#[tokio::test]
async fn https_only_on_a_real_socket() {
    let server = common::TestServer::start().await;
    // HTTPS works and the certificate names 127.0.0.1.
    let token = server.login().await;
    let (s, _) = server
        .get(&token, "/api/management/v2/devauth/devices")
        .await;
    assert_eq!(s, 200);
    // Plain HTTP is refused.
    let plain = server.url.replace("https://", "http://");
    let r = reqwest::get(format!("{plain}/api/management/v2/devauth/devices"))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("HTTPS only"));
    // The certificate is kept across restarts.
    let cert = std::fs::read(&server.cert).unwrap();
    let data = server.stop().await;
    let again = common::TestServer::start_in(data).await;
    assert_eq!(std::fs::read(&again.cert).unwrap(), cert);
    let (s, _) = again
        .get(&token, "/api/management/v2/devauth/devices")
        .await;
    assert_eq!(s, 200, "tokens survive a restart");
}
