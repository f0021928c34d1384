//! The management API beyond admission and deployments, through the router
//! (no sockets), on SQLite and on PostgreSQL: users, logout, personal access
//! tokens, preauthorisation, device lists with filters and paging,
//! inventory and groups, group and all-device deployments, releases,
//! per-device history, statistics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{App, Db, Resp, SimDevice, ADMIN, PASSWORD};
use serde_json::{json, Value};

const USERADM: &str = "/api/management/v1/useradm";
const DEVAUTH: &str = "/api/management/v2/devauth";
const INVENTORY: &str = "/api/management/v1/inventory";
const DEPL: &str = "/api/management/v1/deployments";
const NEXT_V2: &str = "/api/devices/v2/deployments/device/deployments/next";

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

/// Admit `dev`: first auth is pending (401), accept its auth set, then a
/// token. Returns (device ID, token).
async fn admit(app: &App, admin: &str, dev: &SimDevice) -> (String, String) {
    let r = dev.auth(app).await;
    assert_eq!(r.assert_error(401), "unauthorized");
    let identity: Value = serde_json::from_str(&dev.identity).unwrap();
    let list = app
        .req(
            "GET",
            &format!("{DEVAUTH}/devices?status=pending&per_page=500"),
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
            &format!("{DEVAUTH}/devices/{id}/auth/{aid}/status"),
            Some(admin),
            Some(&json!({"status": "accepted"})),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let r = dev.auth(app).await;
    assert_eq!(r.status, 200, "{}", r.text());
    (id.to_owned(), r.text())
}

/// The JWT's payload, decoded.
fn claims(token: &str) -> Value {
    use base64ct::Encoding;
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64ct::Base64UrlUnpadded::decode_vec(part).unwrap()).unwrap()
}

/// The ID at the end of a 201's `Location`.
fn location_id(r: &Resp) -> String {
    assert_eq!(r.status, 201, "{}", r.text());
    let loc = r.headers["location"].to_str().unwrap();
    loc.rsplit('/').next().unwrap().to_owned()
}

async fn users(app: &App, token: &str) -> Value {
    let r = app
        .req("GET", &format!("{USERADM}/users"), Some(token), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

on_both!(users_are_managed_and_their_tokens_revoked);
async fn users_are_managed_and_their_tokens_revoked(db: Db) {
    let app = app_on!(db);
    let admin = app.login().await;
    let admin_id = claims(&admin)["sub"].as_str().unwrap().to_owned();

    // Create: Location users/<id>; the email is stored lower-case.
    let r = app
        .req(
            "POST",
            &format!("{USERADM}/users"),
            Some(&admin),
            Some(&json!({"email": "Bob@Example.COM", "password": "bob's secret"})),
        )
        .await;
    let bob_id = location_id(&r);
    assert_eq!(
        r.headers["location"].to_str().unwrap(),
        format!("users/{bob_id}")
    );
    let bob = app.login_as("bob@example.com", "bob's secret").await;
    assert_eq!(bob.status, 200, "{}", bob.text());
    let bob = bob.text();
    let me = app
        .req("GET", &format!("{USERADM}/users/me"), Some(&bob), None)
        .await
        .json();
    assert_eq!(me["id"], bob_id.as_str());
    assert_eq!(me["email"], "bob@example.com");
    assert!(me["login_ts"].is_string());
    assert!(me.get("password").is_none() && me.get("password_hash").is_none());
    let shown = app
        .req(
            "GET",
            &format!("{USERADM}/users/{bob_id}"),
            Some(&admin),
            None,
        )
        .await
        .json();
    assert_eq!(shown["email"], "bob@example.com");

    // Bad creations change nothing.
    let before = users(&app, &admin).await;
    for (body, status, msg) in [
        (
            json!({"email": "BOB@example.com", "password": "another one"}),
            422,
            "user with a given email already exists",
        ),
        (
            json!({"email": "carol@example.com", "password": "short"}),
            422,
            "password: must be minimum 8 characters long",
        ),
        (
            json!({"email": "not an email", "password": "long enough"}),
            400,
            "",
        ),
        (json!({"email": "carol@example.com"}), 400, ""),
        (json!(["carol@example.com"]), 400, ""),
    ] {
        let r = app
            .req(
                "POST",
                &format!("{USERADM}/users"),
                Some(&admin),
                Some(&body),
            )
            .await;
        let m = r.assert_error(status);
        assert!(m.contains(msg), "{m}");
    }
    let r = app
        .call(
            axum::http::Request::post(format!("{USERADM}/users"))
                .header("authorization", format!("Bearer {admin}"))
                .header("content-type", "text/plain")
                .body(axum::body::Body::from(
                    r#"{"email":"carol@example.com","password":"long enough"}"#,
                ))
                .unwrap(),
        )
        .await;
    r.assert_error(415);
    assert_eq!(users(&app, &admin).await, before);
    assert_eq!(before.as_array().unwrap().len(), 2);

    // List filters.
    let r = app
        .req(
            "GET",
            &format!("{USERADM}/users?email=BOB@example.com"),
            Some(&admin),
            None,
        )
        .await
        .json();
    assert_eq!(r.as_array().unwrap().len(), 1);
    assert_eq!(r[0]["id"], bob_id.as_str());
    let r = app
        .req(
            "GET",
            &format!("{USERADM}/users?id={bob_id}&id={admin_id}"),
            Some(&admin),
            None,
        )
        .await
        .json();
    assert_eq!(r.as_array().unwrap().len(), 2);
    let later = common_now() + 3600;
    let r = app
        .req(
            "GET",
            &format!("{USERADM}/users?created_after={later}"),
            Some(&admin),
            None,
        )
        .await
        .json();
    assert_eq!(r, json!([]));
    let r = app
        .req(
            "GET",
            &format!("{USERADM}/users?created_before={later}&updated_after=0"),
            Some(&admin),
            None,
        )
        .await
        .json();
    assert_eq!(r.as_array().unwrap().len(), 2);
    app.req(
        "GET",
        &format!("{USERADM}/users?created_after=yesterday"),
        Some(&admin),
        None,
    )
    .await
    .assert_error(400);

    // Updates: nobody sets another user's password; one's own password and
    // email need the current password; nothing changes on a refusal.
    let put = |id: String, token: String, body: Value| {
        let app = &app;
        async move {
            app.req(
                "PUT",
                &format!("{USERADM}/users/{id}"),
                Some(&token),
                Some(&body),
            )
            .await
        }
    };
    let m = put(
        bob_id.clone(),
        admin.clone(),
        json!({"password": "admin sets it"}),
    )
    .await
    .assert_error(422);
    assert_eq!(m, "password cannot be modified");
    let m = put(
        "me".into(),
        admin.clone(),
        json!({"password": "new admin pw"}),
    )
    .await
    .assert_error(422);
    assert_eq!(m, "current password mismatch");
    let m = put(
        "me".into(),
        admin.clone(),
        json!({"password": "new admin pw", "current_password": "wrong one!"}),
    )
    .await
    .assert_error(422);
    assert_eq!(m, "current password mismatch");
    put(
        "me".into(),
        admin.clone(),
        json!({"password": "short", "current_password": PASSWORD}),
    )
    .await
    .assert_error(422);
    let m = put(
        "me".into(),
        admin.clone(),
        json!({"current_password": PASSWORD}),
    )
    .await
    .assert_error(400);
    assert_eq!(m, "no update information provided");
    put(
        admin_id.clone(),
        admin.clone(),
        json!({"email": "bob@example.com", "current_password": PASSWORD}),
    )
    .await
    .assert_error(422);
    put(
        "00000000-0000-4000-8000-000000000000".into(),
        admin.clone(),
        json!({"email": "x@example.com"}),
    )
    .await
    .assert_error(404);
    assert_eq!(users(&app, &admin).await, before);
    assert_eq!(app.login_as(ADMIN, PASSWORD).await.status, 200);

    // A good password change: the token used stays valid, the admin's
    // other sessions are revoked, only the new password logs in.
    let other_session = app.login().await;
    let r = put(
        "me".into(),
        admin.clone(),
        json!({"password": "new admin pw", "current_password": PASSWORD}),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(
        app.req("GET", &format!("{USERADM}/users/me"), Some(&admin), None)
            .await
            .status,
        200
    );
    app.req(
        "GET",
        &format!("{USERADM}/users/me"),
        Some(&other_session),
        None,
    )
    .await
    .assert_error(401);
    app.login_as(ADMIN, PASSWORD).await.assert_error(401);
    assert_eq!(app.login_as(ADMIN, "new admin pw").await.status, 200);

    // The admin changes bob's email: bob's tokens are revoked.
    let r = put(
        bob_id.clone(),
        admin.clone(),
        json!({"email": "robert@example.com"}),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text());
    app.req("GET", &format!("{USERADM}/users/me"), Some(&bob), None)
        .await
        .assert_error(401);
    app.login_as("bob@example.com", "bob's secret")
        .await
        .assert_error(401);
    let bob = app.login_as("robert@example.com", "bob's secret").await;
    assert_eq!(bob.status, 200);
    let bob = bob.text();
    let shown = app
        .req("GET", &format!("{USERADM}/users/me"), Some(&bob), None)
        .await
        .json();
    assert_eq!(shown["email"], "robert@example.com");
    assert_ne!(shown["updated_ts"], shown["created_ts"]);

    // Delete: 204, the user's tokens die with it; again 204; then 404.
    for _ in 0..2 {
        let r = app
            .req(
                "DELETE",
                &format!("{USERADM}/users/{bob_id}"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(r.status, 204, "{}", r.text());
    }
    app.req("GET", &format!("{USERADM}/users/me"), Some(&bob), None)
        .await
        .assert_error(401);
    let m = app
        .req(
            "GET",
            &format!("{USERADM}/users/{bob_id}"),
            Some(&admin),
            None,
        )
        .await
        .assert_error(404);
    assert_eq!(m, "user not found");
    assert_eq!(users(&app, &admin).await.as_array().unwrap().len(), 1);
}

fn common_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

on_both!(logout_revokes_only_that_token);
async fn logout_revokes_only_that_token(db: Db) {
    let app = app_on!(db);
    let a = app.login().await;
    let b = app.login().await;
    let r = app
        .req("POST", &format!("{USERADM}/auth/logout"), Some(&a), None)
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert!(r.body.is_empty());
    app.req("GET", &format!("{DEVAUTH}/devices"), Some(&a), None)
        .await
        .assert_error(401);
    app.req("POST", &format!("{USERADM}/auth/logout"), Some(&a), None)
        .await
        .assert_error(401);
    let r = app
        .req("GET", &format!("{DEVAUTH}/devices"), Some(&b), None)
        .await;
    assert_eq!(r.status, 200);
}

async fn create_pat(app: &App, token: &str, body: Value) -> Resp {
    app.req(
        "POST",
        &format!("{USERADM}/settings/tokens"),
        Some(token),
        Some(&body),
    )
    .await
}

async fn pats(app: &App, token: &str) -> Value {
    let r = app
        .req(
            "GET",
            &format!("{USERADM}/settings/tokens"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

on_both!(personal_access_tokens);
async fn personal_access_tokens(db: Db) {
    let app = app_on!(db);
    let admin = app.login().await;

    // Create one expiring in a day: a raw JWT with that expiry.
    let r = create_pat(&app, &admin, json!({"name": "ci", "expires_in": 86400})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.headers["content-type"], "application/jwt");
    let ci = r.text();
    let c = claims(&ci);
    assert_eq!(c["mender.user"], true);
    assert_eq!(c["sub"], claims(&admin)["sub"]);
    let exp = c["exp"].as_i64().unwrap();
    assert!((exp - common_now() - 86400).abs() < 60, "{c}");
    // One that never expires.
    let r = create_pat(&app, &admin, json!({"name": "forever"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let forever = r.text();
    assert!(claims(&forever).get("exp").is_none());

    // Listed, without the token itself; no last use yet.
    let list = pats(&app, &admin).await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let ci_item = list.iter().find(|t| t["name"] == "ci").unwrap();
    assert_eq!(ci_item["id"], c["jti"]);
    assert!(ci_item["expiration_date"].is_string());
    assert!(ci_item.get("last_used").is_none());
    let forever_item = list.iter().find(|t| t["name"] == "forever").unwrap();
    assert!(forever_item.get("expiration_date").is_none());
    assert!(!list.iter().any(|t| t.to_string().contains(&ci)));

    // It works on the management API (and is then marked used), never on
    // the device API.
    let r = app
        .req("GET", &format!("{DEVAUTH}/devices"), Some(&ci), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let list = pats(&app, &forever).await;
    let ci_item = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "ci")
        .unwrap()
        .clone();
    assert!(ci_item["last_used"].is_string(), "{ci_item}");
    app.req(
        "POST",
        NEXT_V2,
        Some(&ci),
        Some(&json!({"device_provides": {"artifact_name": "a", "device_type": "b"}})),
    )
    .await
    .assert_error(401);
    app.req(
        "PUT",
        "/api/devices/v1/inventory/device/attributes",
        Some(&forever),
        Some(&json!([{"name": "a", "value": "b"}])),
    )
    .await
    .assert_error(401);

    // A device token never opens the management API.
    let dev = SimDevice::ed25519("02:00:00:00:01:01");
    let (_, device_token) = admit(&app, &admin, &dev).await;
    for path in [
        format!("{USERADM}/settings/tokens"),
        format!("{USERADM}/users/me"),
        "/api/management/v1/deployments/deployments".to_owned(),
        format!("{INVENTORY}/devices"),
    ] {
        app.req("GET", &path, Some(&device_token), None)
            .await
            .assert_error(401);
    }
    create_pat(&app, &device_token, json!({"name": "sneaky"}))
        .await
        .assert_error(401);

    // Refusals change nothing.
    let before = pats(&app, &admin).await;
    let m = create_pat(&app, &admin, json!({"name": "ci"}))
        .await
        .assert_error(409);
    assert_eq!(m, "Personal Access Token with a given name already exists");
    for body in [
        json!({"name": "late", "expires_in": 31_536_001}),
        json!({"name": "neg", "expires_in": -1}),
        json!({"name": "", "expires_in": 60}),
        json!({"name": "x".repeat(4096)}),
        json!({"expires_in": 60}),
        json!({"name": "half", "expires_in": 1.5}),
    ] {
        create_pat(&app, &admin, body).await.assert_error(400);
    }
    assert_eq!(pats(&app, &admin).await, before);

    // Logins beyond the session limit do not push PATs out.
    for _ in 0..11 {
        app.login().await;
    }
    let r = app
        .req("GET", &format!("{USERADM}/users/me"), Some(&ci), None)
        .await;
    assert_eq!(r.status, 200);
    // (while the first session was the oldest of 12 and is gone)
    app.req("GET", &format!("{USERADM}/users/me"), Some(&admin), None)
        .await
        .assert_error(401);
    let admin = app.login().await;

    // At most 10 per user.
    for i in 2..10 {
        let r = create_pat(&app, &admin, json!({"name": format!("t{i}")})).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    create_pat(&app, &admin, json!({"name": "eleventh"}))
        .await
        .assert_error(422);
    assert_eq!(pats(&app, &admin).await.as_array().unwrap().len(), 10);

    // Revoke: 204, the token is dead at once, the others live; 204 again.
    let jti = c["jti"].as_str().unwrap();
    for _ in 0..2 {
        let r = app
            .req(
                "DELETE",
                &format!("{USERADM}/settings/tokens/{jti}"),
                Some(&forever),
                None,
            )
            .await;
        assert_eq!(r.status, 204, "{}", r.text());
    }
    app.req("GET", &format!("{DEVAUTH}/devices"), Some(&ci), None)
        .await
        .assert_error(401);
    assert_eq!(
        app.req("GET", &format!("{DEVAUTH}/devices"), Some(&forever), None)
            .await
            .status,
        200
    );
    assert_eq!(pats(&app, &admin).await.as_array().unwrap().len(), 9);

    // Another user neither sees nor revokes the admin's tokens.
    let r = app
        .req(
            "POST",
            &format!("{USERADM}/users"),
            Some(&admin),
            Some(&json!({"email": "eve@example.com", "password": "eve's password"})),
        )
        .await;
    location_id(&r);
    let eve = app
        .login_as("eve@example.com", "eve's password")
        .await
        .text();
    assert_eq!(pats(&app, &eve).await, json!([]));
    let forever_jti = claims(&forever)["jti"].as_str().unwrap().to_owned();
    let r = app
        .req(
            "DELETE",
            &format!("{USERADM}/settings/tokens/{forever_jti}"),
            Some(&eve),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        app.req("GET", &format!("{DEVAUTH}/devices"), Some(&forever), None)
            .await
            .status,
        200
    );
    // Eve may reuse a name the admin has.
    let r = create_pat(&app, &eve, json!({"name": "forever"})).await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Logging out with a PAT revokes it like a session.
    let r = app
        .req(
            "POST",
            &format!("{USERADM}/auth/logout"),
            Some(&forever),
            None,
        )
        .await;
    assert_eq!(r.status, 202);
    app.req("GET", &format!("{DEVAUTH}/devices"), Some(&forever), None)
        .await
        .assert_error(401);
}

fn identity(dev: &SimDevice) -> Value {
    serde_json::from_str(&dev.identity).unwrap()
}

async fn preauth(app: &App, admin: &str, body: &Value) -> Resp {
    app.req(
        "POST",
        &format!("{DEVAUTH}/devices"),
        Some(admin),
        Some(body),
    )
    .await
}

fn link_fields(r: &Resp) -> Vec<String> {
    r.headers
        .get_all("link")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

async fn device(app: &App, admin: &str, id: &str) -> Value {
    let r = app
        .req("GET", &format!("{DEVAUTH}/devices/{id}"), Some(admin), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

on_both!(preauthorized_devices_are_accepted_at_once);
async fn preauthorized_devices_are_accepted_at_once(db: Db) {
    let app = app_on!(db);
    let admin = app.login().await;
    let dev = SimDevice::ed25519("02:00:00:00:02:01");
    let r = preauth(
        &app,
        &admin,
        &json!({"identity_data": identity(&dev), "pubkey": dev.pubkey_pem}),
    )
    .await;
    let id = location_id(&r);
    assert_eq!(
        r.headers["location"].to_str().unwrap(),
        format!("devices/{id}")
    );
    let d = device(&app, &admin, &id).await;
    assert_eq!(d["status"], "preauthorized");
    assert_eq!(d["identity_data"], identity(&dev));
    assert_eq!(d["auth_sets"].as_array().unwrap().len(), 1);
    assert_eq!(d["auth_sets"][0]["status"], "preauthorized");
    assert_eq!(d["auth_sets"][0]["pubkey"], dev.pubkey_pem.as_str());

    // The same identity with another key is only pending (401); the device
    // stays preauthorised.
    let impostor = SimDevice::ed25519("02:00:00:00:02:01");
    impostor.auth(&app).await.assert_error(401);
    let d = device(&app, &admin, &id).await;
    assert_eq!(d["status"], "preauthorized");
    let statuses: Vec<&str> = d["auth_sets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.len(), 2);
    assert!(statuses.contains(&"pending") && statuses.contains(&"preauthorized"));

    // The real device gets a token on its first request and works.
    let r = dev.auth(&app).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.text();
    let r = app
        .req(
            "POST",
            NEXT_V2,
            Some(&token),
            Some(&json!({"device_provides": {"artifact_name": "a", "device_type": "b"}})),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let d = device(&app, &admin, &id).await;
    assert_eq!(d["status"], "accepted");

    // Preauthorising a known identity: 409 whose body is that device.
    let before = app.counts().await;
    let r = preauth(
        &app,
        &admin,
        &json!({"identity_data": identity(&dev), "pubkey": dev.pubkey_pem}),
    )
    .await;
    r.assert_error(409);
    let body = r.json();
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["status"], "accepted");
    assert!(body["auth_sets"].is_array());

    // Bad bodies: 400, nothing stored.
    for body in [
        json!({"identity_data": {}, "pubkey": dev.pubkey_pem}),
        json!({"identity_data": {"mac": "x"}}),
        json!({"pubkey": dev.pubkey_pem}),
        json!({"identity_data": "mac=x", "pubkey": dev.pubkey_pem}),
        json!({"identity_data": {"mac": "x"}, "pubkey": "not a key"}),
        json!({"identity_data": {"mac": "x"}, "pubkey": dev.pubkey_pem.replace("PUBLIC", "PRIVATE")}),
    ] {
        preauth(&app, &admin, &body).await.assert_error(400);
    }
    assert_eq!(app.counts().await, before);

    // force: a new key for the known identity is preauthorised on the same
    // device; the device keeps its accepted set until the new key shows up,
    // which is then accepted at once (and the old one rejected).
    let rotated = SimDevice::p256("02:00:00:00:02:01");
    let r = preauth(
        &app,
        &admin,
        &json!({"identity_data": identity(&dev), "pubkey": rotated.pubkey_pem, "force": true}),
    )
    .await;
    assert_eq!(location_id(&r), id);
    let d = device(&app, &admin, &id).await;
    assert_eq!(d["status"], "accepted");
    assert_eq!(d["auth_sets"].as_array().unwrap().len(), 3);
    let r = rotated.auth(&app).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let d = device(&app, &admin, &id).await;
    let accepted: Vec<&Value> = d["auth_sets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "accepted")
        .collect();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0]["pubkey"], rotated.pubkey_pem.as_str());
    app.req(
        "POST",
        NEXT_V2,
        Some(&token),
        Some(&json!({"device_provides": {"artifact_name": "a", "device_type": "b"}})),
    )
    .await
    .assert_error(401);

    // Deleting the preauthorised set of a never-seen device removes it.
    let ghost = SimDevice::ed25519("02:00:00:00:02:09");
    let r = preauth(
        &app,
        &admin,
        &json!({"identity_data": identity(&ghost), "pubkey": ghost.pubkey_pem}),
    )
    .await;
    let gid = location_id(&r);
    let g = device(&app, &admin, &gid).await;
    let aid = g["auth_sets"][0]["id"].as_str().unwrap();
    let r = app
        .req(
            "DELETE",
            &format!("{DEVAUTH}/devices/{gid}/auth/{aid}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    app.req(
        "GET",
        &format!("{DEVAUTH}/devices/{gid}"),
        Some(&admin),
        None,
    )
    .await
    .assert_error(404);
}

on_both!(device_lists_filter_and_page);
async fn device_lists_filter_and_page(db: Db) {
    let app = app_on!(db);
    let admin = app.login().await;
    // 3 pending, 2 preauthorised, 1 accepted, 1 rejected.
    let mut pending = Vec::new();
    for i in 0..3 {
        let d = SimDevice::ed25519(&format!("02:00:00:00:03:0{i}"));
        d.auth(&app).await.assert_error(401);
        pending.push(d);
    }
    for i in 0..2 {
        let d = SimDevice::ed25519(&format!("02:00:00:00:04:0{i}"));
        let r = preauth(
            &app,
            &admin,
            &json!({"identity_data": identity(&d), "pubkey": d.pubkey_pem}),
        )
        .await;
        location_id(&r);
    }
    let acc = SimDevice::ed25519("02:00:00:00:05:00");
    let (acc_id, acc_token) = admit(&app, &admin, &acc).await;
    let rej = SimDevice::ed25519("02:00:00:00:06:00");
    let (rej_id, _) = admit(&app, &admin, &rej).await;
    let rej_set = device(&app, &admin, &rej_id).await["auth_sets"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .req(
            "PUT",
            &format!("{DEVAUTH}/devices/{rej_id}/auth/{rej_set}/status"),
            Some(&admin),
            Some(&json!({"status": "rejected"})),
        )
        .await;
    assert_eq!(r.status, 204);

    // All of them, sorted by status then ID, on one page: only `first`.
    let r = app
        .req("GET", &format!("{DEVAUTH}/devices"), Some(&admin), None)
        .await;
    let all = r.json();
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 7);
    let keys: Vec<(String, String)> = all
        .iter()
        .map(|d| {
            (
                d["status"].as_str().unwrap().to_owned(),
                d["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(
        link_fields(&r),
        [format!(
            "<{DEVAUTH}/devices?page=1&per_page=20>; rel=\"first\""
        )]
    );
    assert!(r.headers.get("x-total-count").is_none());
    // Every device carries its own auth sets (one query for all of them).
    for d in all {
        let sets = d["auth_sets"].as_array().unwrap();
        assert_eq!(sets.len(), 1, "{d}");
        assert_eq!(sets[0]["identity_data"], d["identity_data"]);
    }

    // Paging pending ones two at a time.
    let r = app
        .req(
            "GET",
            &format!("{DEVAUTH}/devices?status=pending&per_page=2"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    let p1 = r.json();
    assert_eq!(p1.as_array().unwrap().len(), 2);
    assert_eq!(
        link_fields(&r),
        [
            format!("<{DEVAUTH}/devices?page=2&per_page=2&status=pending>; rel=\"next\""),
            format!("<{DEVAUTH}/devices?page=1&per_page=2&status=pending>; rel=\"first\""),
        ]
    );
    let r = app
        .req(
            "GET",
            &format!("{DEVAUTH}/devices?per_page=2&status=pending&page=2"),
            Some(&admin),
            None,
        )
        .await;
    let p2 = r.json();
    assert_eq!(p2.as_array().unwrap().len(), 1);
    assert_eq!(
        link_fields(&r),
        [
            format!("<{DEVAUTH}/devices?page=1&per_page=2&status=pending>; rel=\"prev\""),
            format!("<{DEVAUTH}/devices?page=1&per_page=2&status=pending>; rel=\"first\""),
        ]
    );
    let mut ids: Vec<&str> = p1
        .as_array()
        .unwrap()
        .iter()
        .chain(p2.as_array().unwrap())
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    ids.dedup();
    assert_eq!(ids.len(), 3);
    let r = app
        .req(
            "GET",
            &format!("{DEVAUTH}/devices?status=pending&per_page=2&page=3"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.json(), json!([]));

    // Several statuses, IDs.
    let r = app
        .req(
            "GET",
            &format!("{DEVAUTH}/devices?status=accepted&status=rejected"),
            Some(&admin),
            None,
        )
        .await
        .json();
    let got: Vec<&str> = r
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [acc_id.as_str(), rej_id.as_str()]);
    let r = app
        .req(
            "GET",
            &format!("{DEVAUTH}/devices?id={rej_id}&id={acc_id}&id=nonexistent"),
            Some(&admin),
            None,
        )
        .await
        .json();
    assert_eq!(r.as_array().unwrap().len(), 2);
    let r = app
        .req(
            "GET",
            &format!("{DEVAUTH}/devices?id={rej_id}&status=accepted"),
            Some(&admin),
            None,
        )
        .await
        .json();
    assert_eq!(r, json!([]));
    // The same through search (string or list values).
    let r = app
        .req(
            "POST",
            &format!("{DEVAUTH}/devices/search?per_page=1"),
            Some(&admin),
            Some(&json!({"status": ["preauthorized", "pending"]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    assert_eq!(r.json()[0]["status"], "pending");
    assert!(link_fields(&r)[0].contains("rel=\"next\""));
    let r = app
        .req(
            "POST",
            &format!("{DEVAUTH}/devices/search"),
            Some(&admin),
            Some(&json!({"id": acc_id})),
        )
        .await
        .json();
    assert_eq!(r.as_array().unwrap().len(), 1);

    // Counts.
    for (q, n) in [
        ("", 7),
        ("?status=pending", 3),
        ("?status=preauthorized", 2),
        ("?status=accepted", 1),
        ("?status=rejected", 1),
        ("?status=noauth", 0),
    ] {
        let r = app
            .req(
                "GET",
                &format!("{DEVAUTH}/devices/count{q}"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(r.json(), json!({ "count": n }), "{q}");
    }

    // Bad filters and paging: 400.
    for q in [
        "devices?status=bogus",
        "devices?per_page=501",
        "devices?per_page=0",
        "devices?page=0",
        "devices?page=x",
        "devices/count?status=bogus",
    ] {
        app.req("GET", &format!("{DEVAUTH}/{q}"), Some(&admin), None)
            .await
            .assert_error(400);
    }
    app.req(
        "POST",
        &format!("{DEVAUTH}/devices/search"),
        Some(&admin),
        Some(&json!({"status": "bogus"})),
    )
    .await
    .assert_error(400);
    // ... and as a form.
    let form = |body: String, ct: &'static str| {
        axum::http::Request::post(format!("{DEVAUTH}/devices/search"))
            .header("authorization", format!("Bearer {admin}"))
            .header("content-type", ct)
            .body(axum::body::Body::from(body))
            .unwrap()
    };
    let r = app
        .call(form(
            format!("status=accepted&status=rejected&id={acc_id}"),
            "application/x-www-form-urlencoded",
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(ids_of(&r), [acc_id.as_str()]);
    app.call(form(
        "status=bogus".into(),
        "application/x-www-form-urlencoded",
    ))
    .await
    .assert_error(400);
    app.call(form("status=pending".into(), "text/plain"))
        .await
        .assert_error(415);
    let many: Vec<String> = (0..1001).map(|i| format!("id-{i}")).collect();
    app.req(
        "POST",
        &format!("{DEVAUTH}/devices/search"),
        Some(&admin),
        Some(&json!({ "id": many })),
    )
    .await
    .assert_error(400);
    let r = app
        .req(
            "POST",
            &format!("{DEVAUTH}/devices/search"),
            Some(&admin),
            Some(&json!({ "id": many[..1000] })),
        )
        .await;
    assert_eq!(r.json(), json!([]));

    // Revoking one device token: the device re-authenticates.
    let acc_set = device(&app, &admin, &acc_id).await["auth_sets"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .req(
            "DELETE",
            &format!("{DEVAUTH}/tokens/{acc_set}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    let provides = json!({"device_provides": {"artifact_name": "a", "device_type": "b"}});
    app.req("POST", NEXT_V2, Some(&acc_token), Some(&provides))
        .await
        .assert_error(401);
    app.req(
        "DELETE",
        &format!("{DEVAUTH}/tokens/{acc_set}"),
        Some(&admin),
        None,
    )
    .await
    .assert_error(404);
    let r = acc.auth(&app).await;
    assert_eq!(r.status, 200);
    let r = app
        .req("POST", NEXT_V2, Some(&r.text()), Some(&provides))
        .await;
    assert_eq!(r.status, 204);

    let r = app
        .req(
            "GET",
            &format!("{DEVAUTH}/limits/max_devices"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.json(), json!({"limit": 0}));
    app.req(
        "GET",
        &format!("{DEVAUTH}/limits/other"),
        Some(&admin),
        None,
    )
    .await
    .assert_error(400);
}

fn have_mender_artifact() -> bool {
    std::process::Command::new("mender-artifact")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Upload a single-file artifact named `name` for `device_type`.
async fn upload(app: &App, admin: &str, work: &std::path::Path, name: &str, device_type: &str) {
    let file = common::single_file_artifact(work, name, "/tmp/x", "f.txt", name, device_type);
    let r = app.upload(admin, &std::fs::read(&file).unwrap()).await;
    assert_eq!(r.status, 201, "{}", r.text());
}

async fn create_deployment(app: &App, admin: &str, path: &str, body: Value) -> Resp {
    app.req(
        "POST",
        &format!("{DEPL}/deployments{path}"),
        Some(admin),
        Some(&body),
    )
    .await
}

fn provides(name: &str, device_type: &str) -> Value {
    json!({"device_provides": {"artifact_name": name, "device_type": device_type}})
}

on_both!(deployment_lists_filter_and_page);
async fn deployment_lists_filter_and_page(db: Db) {
    if !have_mender_artifact() {
        eprintln!("SKIPPED: mender-artifact is not installed");
        return;
    }
    let app = app_on!(db);
    let admin = app.login().await;
    let work = tempfile::tempdir().unwrap();
    upload(&app, &admin, work.path(), "rel-1", "board").await;
    upload(&app, &admin, work.path(), "rel-2", "board").await;
    let a = SimDevice::ed25519("02:00:00:00:07:01");
    let b = SimDevice::ed25519("02:00:00:00:07:02");
    let (a_id, a_token) = admit(&app, &admin, &a).await;
    let (b_id, _) = admit(&app, &admin, &b).await;

    // Five deployments, oldest first: Alpha (rel-1, a) picked up and
    // downloading; Beta (rel-2, b) aborted; three pending.
    let mut ids = Vec::new();
    for (name, artifact, devices) in [
        ("Alpha", "rel-1", vec![a_id.as_str()]),
        ("Beta", "rel-2", vec![b_id.as_str()]),
        ("gamma 100%", "rel-2", vec![a_id.as_str(), b_id.as_str()]),
        ("delta", "rel-1", vec![b_id.as_str()]),
        ("epsilon", "rel-2", vec![a_id.as_str()]),
    ] {
        let r = create_deployment(
            &app,
            &admin,
            "",
            json!({"name": name, "artifact_name": artifact, "devices": devices}),
        )
        .await;
        ids.push(location_id(&r));
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let r = app
        .req(
            "POST",
            NEXT_V2,
            Some(&a_token),
            Some(&provides("rel-0", "board")),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["id"], ids[0].as_str());
    let r = app
        .req(
            "PUT",
            &format!(
                "/api/devices/v1/deployments/device/deployments/{}/status",
                ids[0]
            ),
            Some(&a_token),
            Some(&json!({"status": "downloading"})),
        )
        .await;
    assert_eq!(r.status, 204);
    let r = app
        .req(
            "PUT",
            &format!("{DEPL}/deployments/{}/status", ids[1]),
            Some(&admin),
            Some(&json!({"status": "aborted"})),
        )
        .await;
    assert_eq!(r.status, 204);

    let list = |q: &'static str| {
        let app = &app;
        let admin = admin.clone();
        async move {
            let r = app
                .req("GET", &format!("{DEPL}/deployments{q}"), Some(&admin), None)
                .await;
            assert_eq!(r.status, 200, "{q}: {}", r.text());
            r
        }
    };
    let names = |r: &Resp| -> Vec<String> {
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap().to_owned())
            .collect()
    };

    // Newest first, paged, with the total and links.
    let r = list("?per_page=2").await;
    assert_eq!(names(&r), ["epsilon", "delta"]);
    assert_eq!(r.headers["x-total-count"], "5");
    assert_eq!(
        link_fields(&r),
        [
            format!("<{DEPL}/deployments?page=2&per_page=2>; rel=\"next\""),
            format!("<{DEPL}/deployments?page=1&per_page=2>; rel=\"first\""),
        ]
    );
    let r = list("?per_page=2&page=3").await;
    assert_eq!(names(&r), ["Alpha"]);
    assert_eq!(link_fields(&r).len(), 2); // prev, first
    let r = list("?sort=asc&per_page=2&page=2").await;
    assert_eq!(names(&r), ["gamma 100%", "delta"]);

    // Each listed object is exactly what GET shows (statistics and
    // artifacts belong to their own deployment).
    let r = list("").await;
    for d in r.json().as_array().unwrap() {
        let one = app
            .req(
                "GET",
                &format!("{DEPL}/deployments/{}", d["id"].as_str().unwrap()),
                Some(&admin),
                None,
            )
            .await
            .json();
        assert_eq!(*d, one);
    }
    let by_name = |n: &str| {
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == n)
            .unwrap()
            .clone()
    };
    let alpha = by_name("Alpha");
    assert_eq!(alpha["status"], "inprogress");
    assert_eq!(alpha["device_count"], 1);
    assert_eq!(alpha["statistics"]["status"]["downloading"], 1);
    assert_eq!(alpha["artifacts"].as_array().unwrap().len(), 1);
    let beta = by_name("Beta");
    assert_eq!(beta["status"], "finished");
    assert_eq!(beta["statistics"]["status"]["downloading"], 0);
    assert_ne!(alpha["artifacts"], beta["artifacts"]);
    assert_eq!(by_name("gamma 100%")["max_devices"], 2);

    // Filters.
    assert_eq!(names(&list("?status=inprogress").await), ["Alpha"]);
    assert_eq!(names(&list("?status=finished").await), ["Beta"]);
    assert_eq!(names(&list("?status=aborted").await), ["Beta"]);
    assert_eq!(
        names(&list("?status=pending&sort=asc").await),
        ["gamma 100%", "delta", "epsilon"]
    );
    let r = list("?status=pending&per_page=1&page=2").await;
    assert_eq!(r.headers["x-total-count"], "3");
    assert_eq!(names(&r), ["delta"]);
    assert_eq!(names(&list("?search=ALPHA").await), ["Alpha"]);
    assert_eq!(
        names(&list("?search=rel-1&sort=asc").await),
        ["Alpha", "delta"]
    );
    assert_eq!(names(&list("?search=100%25").await), ["gamma 100%"]);
    assert!(names(&list("?search=a%25a").await).is_empty());
    assert!(names(&list("?search=_").await).is_empty());
    assert_eq!(list("?type=software").await.headers["x-total-count"], "5");
    assert!(names(&list("?type=configuration").await).is_empty());
    let later = common_now() + 3600;
    let r = app
        .req(
            "GET",
            &format!("{DEPL}/deployments?created_after={later}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.json(), json!([]));
    let r = app
        .req(
            "GET",
            &format!("{DEPL}/deployments?created_before={later}&created_after=0"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.headers["x-total-count"], "5");
    for q in [
        "?status=bogus",
        "?type=firmware",
        "?sort=sideways",
        "?created_after=today",
        "?per_page=501",
    ] {
        app.req("GET", &format!("{DEPL}/deployments{q}"), Some(&admin), None)
            .await
            .assert_error(400);
    }

    // Statistics of several at once.
    let r = app
        .req(
            "POST",
            &format!("{DEPL}/deployments/statistics/list"),
            Some(&admin),
            Some(&json!({"deployment_ids": [ids[0], ids[2], "00000000-0000-4000-8000-000000000000"]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v.as_array().unwrap().len(), 2);
    let s0 = v
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == ids[0].as_str())
        .unwrap();
    assert_eq!(s0["stats"]["downloading"], 1);
    assert_eq!(s0["stats"].as_object().unwrap().len(), 13);
    let r = app
        .req(
            "GET",
            &format!("{DEPL}/deployments/{}/statistics", ids[0]),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.json(), s0["stats"]);
    app.req(
        "POST",
        &format!("{DEPL}/deployments/statistics/list"),
        Some(&admin),
        Some(&json!({"deployment_ids": ["00000000-0000-4000-8000-000000000000"]})),
    )
    .await
    .assert_error(404);
    app.req(
        "POST",
        &format!("{DEPL}/deployments/statistics/list"),
        Some(&admin),
        Some(&json!({"deployment_ids": ["nope"]})),
    )
    .await
    .assert_error(400);

    // A deployment's devices, paged and filtered.
    let r = app
        .req(
            "GET",
            &format!(
                "{DEPL}/deployments/{}/devices/list?status=downloading",
                ids[0]
            ),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.headers["x-total-count"], "1");
    assert_eq!(r.json()[0]["id"], a_id.as_str());
    assert_eq!(r.json()[0]["image"]["name"], "rel-1");
    for (status, n) in [("active", "1"), ("finished", "0"), ("success", "0")] {
        let r = app
            .req(
                "GET",
                &format!("{DEPL}/deployments/{}/devices/list?status={status}", ids[0]),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(r.headers["x-total-count"], n, "{status}");
    }
    app.req(
        "GET",
        &format!("{DEPL}/deployments/{}/devices/list?status=bogus", ids[0]),
        Some(&admin),
        None,
    )
    .await
    .assert_error(400);
}

const DEVICE_INVENTORY: &str = "/api/devices/v1/inventory/device/attributes";

/// IDs of the devices of an inventory list answer.
fn ids_of(r: &Resp) -> Vec<String> {
    r.json()
        .as_array()
        .unwrap_or_else(|| panic!("{}", r.text()))
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn attr<'a>(device: &'a Value, scope: &str, name: &str) -> Option<&'a Value> {
    device["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["scope"] == scope && a["name"] == name)
        .map(|a| &a["value"])
}

on_both!(inventory_filters_groups_and_group_deployments);
async fn inventory_filters_groups_and_group_deployments(db: Db) {
    if !have_mender_artifact() {
        eprintln!("SKIPPED: mender-artifact is not installed");
        return;
    }
    let app = app_on!(db);
    let admin = app.login().await;
    let work = tempfile::tempdir().unwrap();
    upload(&app, &admin, work.path(), "rel-2", "board").await;
    let devs: Vec<SimDevice> = (1..=3)
        .map(|i| SimDevice::ed25519(&format!("02:00:00:00:08:0{i}")))
        .collect();
    let mut ids = Vec::new();
    let mut tokens = Vec::new();
    for d in &devs {
        let (id, t) = admit(&app, &admin, d).await;
        ids.push(id);
        tokens.push(t);
    }
    let (a, b, c) = (ids[0].clone(), ids[1].clone(), ids[2].clone());
    let pending = SimDevice::ed25519("02:00:00:00:08:09");
    pending.auth(&app).await.assert_error(401);
    let inv_of = |i: usize| -> Value {
        match i {
            0 => {
                json!([{"name": "artifact_name", "value": "rel-1"}, {"name": "device_type", "value": "board"},
                        {"name": "kernel", "value": 5}, {"name": "tags", "value": ["x", "y"]}])
            }
            1 => {
                json!([{"name": "artifact_name", "value": "rel-2"}, {"name": "device_type", "value": "board"},
                        {"name": "kernel", "value": "6.1"}])
            }
            _ => {
                json!([{"name": "artifact_name", "value": "rel-1"}, {"name": "device_type", "value": "other"}])
            }
        }
    };
    for (i, t) in tokens.iter().enumerate() {
        let r = app
            .req("PUT", DEVICE_INVENTORY, Some(t), Some(&inv_of(i)))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // A PATCH merges (and the index follows).
    let r = app
        .req(
            "PATCH",
            DEVICE_INVENTORY,
            Some(&tokens[2]),
            Some(&json!([{"name": "rootfs-image.version", "value": "v7"}])),
        )
        .await;
    assert_eq!(r.status, 200);

    let list = |q: String| {
        let app = &app;
        let admin = admin.clone();
        async move {
            app.req(
                "GET",
                &format!("{INVENTORY}/devices{q}"),
                Some(&admin),
                None,
            )
            .await
        }
    };

    // Everything, the pending device included, with attributes of every scope.
    let r = list(String::new()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.headers["x-total-count"], "4");
    assert_eq!(ids_of(&r).len(), 4);
    let one = app
        .req(
            "GET",
            &format!("{INVENTORY}/devices/{a}"),
            Some(&admin),
            None,
        )
        .await
        .json();
    assert_eq!(attr(&one, "identity", "status"), Some(&json!("accepted")));
    assert_eq!(
        attr(&one, "identity", "mac"),
        Some(&json!("02:00:00:00:08:01"))
    );
    assert_eq!(
        attr(&one, "inventory", "artifact_name"),
        Some(&json!("rel-1"))
    );
    assert_eq!(attr(&one, "inventory", "kernel"), Some(&json!(5)));
    assert_eq!(attr(&one, "inventory", "tags"), Some(&json!(["x", "y"])));
    assert!(attr(&one, "system", "created_ts").is_some());
    assert!(attr(&one, "system", "check_in_time").is_some());
    assert!(attr(&one, "system", "group").is_none());
    assert!(r.json().as_array().unwrap().contains(&one));
    let m = app
        .req(
            "GET",
            &format!("{INVENTORY}/devices/nope"),
            Some(&admin),
            None,
        )
        .await
        .assert_error(404);
    assert_eq!(m, "Device not found");

    // The fleet's software versions, by attribute.
    for (q, want) in [
        ("?artifact_name=rel-1", vec![a.clone(), c.clone()]),
        ("?inventory/artifact_name=eq:rel-2", vec![b.clone()]),
        ("?artifact_name=rel-1&device_type=board", vec![a.clone()]),
        ("?rootfs-image.version=v7", vec![c.clone()]),
        ("?kernel=5", vec![a.clone()]),
        ("?kernel=5.0", vec![a.clone()]),
        ("?kernel=6.1", vec![b.clone()]),
        ("?tags=y", vec![a.clone()]),
        ("?identity/mac=02:00:00:00:08:02", vec![b.clone()]),
        (
            "?identity/status=accepted&artifact_name=rel-1",
            vec![a.clone(), c.clone()],
        ),
        ("?artifact_name=rel-3", vec![]),
        ("?kernel=5%25", vec![]),
    ] {
        let r = list(q.to_owned()).await;
        assert_eq!(r.status, 200, "{q}: {}", r.text());
        assert_eq!(sorted(ids_of(&r)), sorted(want.clone()), "{q}");
        assert_eq!(r.headers["x-total-count"], want.len().to_string(), "{q}");
    }
    let r = list("?identity/status=pending".into()).await;
    assert_eq!(ids_of(&r).len(), 1);
    // Sorting by an attribute: those without it come last.
    let r = list("?sort=artifact_name:asc".into()).await;
    let order = ids_of(&r);
    assert_eq!(
        sorted(order[..2].to_vec()),
        sorted(vec![a.clone(), c.clone()])
    );
    assert_eq!(order[2], b);
    let r = list("?sort=artifact_name:desc&per_page=1".into()).await;
    assert_eq!(ids_of(&r), [b.as_str()]);
    assert_eq!(r.headers["x-total-count"], "4");
    assert_eq!(
        link_fields(&r),
        [
            format!(
                "<{INVENTORY}/devices?page=2&per_page=1&sort=artifact_name%3Adesc>; rel=\"next\""
            ),
            format!(
                "<{INVENTORY}/devices?page=1&per_page=1&sort=artifact_name%3Adesc>; rel=\"first\""
            ),
        ]
    );
    for q in [
        "?bogus/x=1",
        "?system/created_ts=1",
        "?has_group=maybe",
        "?group=bad%20name",
        "?per_page=600",
    ] {
        list(q.into()).await.assert_error(400);
    }
    // Attribute names with their device counts.
    let r = app
        .req(
            "GET",
            "/api/management/v2/inventory/filters/attributes",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let names = r.json();
    let art = names
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "artifact_name")
        .unwrap();
    assert_eq!(art["count"], 3);
    assert_eq!(art["scope"], "inventory");

    // Groups.
    let put_group = |id: String, g: Value| {
        let app = &app;
        let admin = admin.clone();
        async move {
            app.req(
                "PUT",
                &format!("{INVENTORY}/devices/{id}/group"),
                Some(&admin),
                Some(&g),
            )
            .await
        }
    };
    assert_eq!(
        put_group(a.clone(), json!({"group": "staging"}))
            .await
            .status,
        204
    );
    let before = list(String::new()).await.json();
    let m = put_group(b.clone(), json!({"group": "bad name!"}))
        .await
        .assert_error(400);
    assert!(m.starts_with("Group name can only contain"), "{m}");
    put_group(b.clone(), json!({"group": ""}))
        .await
        .assert_error(400);
    put_group(b.clone(), json!({"name": "staging"}))
        .await
        .assert_error(400);
    put_group("nope".into(), json!({"group": "staging"}))
        .await
        .assert_error(404);
    let patch = |g: &str, body: Value| {
        let app = &app;
        let admin = admin.clone();
        let path = format!("{INVENTORY}/groups/{g}/devices");
        async move { app.req("PATCH", &path, Some(&admin), Some(&body)).await }
    };
    patch("staging", json!([])).await.assert_error(400);
    patch("staging", json!({"id": a})).await.assert_error(400);
    patch("bad%20name", json!([b])).await.assert_error(400);
    assert_eq!(list(String::new()).await.json(), before);

    let r = app
        .req(
            "GET",
            &format!("{INVENTORY}/devices/{a}/group"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.json(), json!({"group": "staging"}));
    let r = app
        .req(
            "GET",
            &format!("{INVENTORY}/devices/{b}/group"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.json(), json!({"group": null}));
    let pending_id = ids_of(&list("?identity/status=pending".into()).await)[0].clone();
    let r = patch("staging", json!([b, pending_id, "nope"])).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"updated_count": 2, "matched_count": 2}));
    let r = patch("staging", json!([b, a])).await;
    assert_eq!(r.json(), json!({"updated_count": 0, "matched_count": 2}));
    assert_eq!(
        put_group(c.clone(), json!({"group": "prod_1"}))
            .await
            .status,
        204
    );

    let r = app
        .req("GET", &format!("{INVENTORY}/groups"), Some(&admin), None)
        .await;
    assert_eq!(r.json(), json!(["prod_1", "staging"]));
    let r = app
        .req(
            "GET",
            &format!("{INVENTORY}/groups?status=pending"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.json(), json!(["staging"]));
    let r = app
        .req(
            "GET",
            &format!("{INVENTORY}/groups?status=rejected"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.json(), json!([]));
    let r = app
        .req(
            "GET",
            &format!("{INVENTORY}/groups/staging/devices?per_page=2"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.headers["x-total-count"], "3");
    assert_eq!(r.json().as_array().unwrap().len(), 2);
    assert!(r.json()[0].is_string());
    assert_eq!(link_fields(&r).len(), 2);
    let r = app
        .req(
            "GET",
            &format!("{INVENTORY}/groups/staging/devices?per_page=2&page=2"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    let m = app
        .req(
            "GET",
            &format!("{INVENTORY}/groups/nobody/devices"),
            Some(&admin),
            None,
        )
        .await
        .assert_error(404);
    assert_eq!(m, "group not found");
    assert_eq!(ids_of(&list("?group=staging".into()).await).len(), 3);
    assert_eq!(
        ids_of(&list("?system/group=prod_1".into()).await),
        [c.as_str()]
    );
    assert_eq!(ids_of(&list("?has_group=true".into()).await).len(), 4);
    assert!(ids_of(&list("?has_group=false".into()).await).is_empty());
    let one = app
        .req(
            "GET",
            &format!("{INVENTORY}/devices/{a}"),
            Some(&admin),
            None,
        )
        .await
        .json();
    assert_eq!(attr(&one, "system", "group"), Some(&json!("staging")));

    // A group deployment targets the group's accepted devices, resolved
    // now; the same definition again is a 409.
    let body = json!({"name": "to staging", "artifact_name": "rel-2"});
    let r = create_deployment(&app, &admin, "/group/staging", body.clone()).await;
    let dep = location_id(&r);
    assert_eq!(
        r.headers["location"].to_str().unwrap(),
        format!("./management/v1/deployments/deployments/{dep}")
    );
    let targets = |dep: String| {
        let app = &app;
        let admin = admin.clone();
        async move {
            let r = app
                .req(
                    "GET",
                    &format!("{DEPL}/deployments/{dep}/device_list"),
                    Some(&admin),
                    None,
                )
                .await;
            let mut v: Vec<String> = serde_json::from_value(r.json()).unwrap();
            v.sort();
            v
        }
    };
    assert_eq!(
        targets(dep.clone()).await,
        sorted(vec![a.clone(), b.clone()])
    );
    let d = app
        .req(
            "GET",
            &format!("{DEPL}/deployments/{dep}"),
            Some(&admin),
            None,
        )
        .await
        .json();
    assert_eq!(d["groups"], json!(["staging"]));
    assert_eq!(d["max_devices"], 2);
    let m = create_deployment(&app, &admin, "/group/staging", body.clone())
        .await
        .assert_error(409);
    assert!(m.contains("already an active deployment"), "{m}");
    create_deployment(
        &app,
        &admin,
        "/group/staging",
        json!({"name": "x", "artifact_name": "rel-2", "all_devices": true}),
    )
    .await
    .assert_error(400);
    let m = create_deployment(
        &app,
        &admin,
        "/group/nobody",
        json!({"name": "x", "artifact_name": "rel-2"}),
    )
    .await
    .assert_error(400);
    assert_eq!(m, "No devices for the deployment");
    // Later group changes do not touch it; the device gets it.
    let r = app
        .req(
            "DELETE",
            &format!("{INVENTORY}/groups/staging/devices"),
            Some(&admin),
            Some(&json!([b])),
        )
        .await;
    assert_eq!(r.json(), json!({"updated_count": 1}));
    assert_eq!(
        targets(dep.clone()).await,
        sorted(vec![a.clone(), b.clone()])
    );
    let r = app
        .req(
            "POST",
            NEXT_V2,
            Some(&tokens[1]),
            Some(&provides("rel-1", "board")),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["id"], dep.as_str());

    // All devices: every accepted one, not the pending one.
    let r = create_deployment(
        &app,
        &admin,
        "",
        json!({"name": "everyone", "artifact_name": "rel-2", "all_devices": true}),
    )
    .await;
    let all = location_id(&r);
    assert_eq!(
        targets(all).await,
        sorted(vec![a.clone(), b.clone(), c.clone()])
    );
    create_deployment(
        &app,
        &admin,
        "",
        json!({"name": "everyone", "artifact_name": "rel-2", "all_devices": true}),
    )
    .await
    .assert_error(409);
    // A device list: the same list again is a 409, another list is not.
    let r = create_deployment(
        &app,
        &admin,
        "",
        json!({"name": "two", "artifact_name": "rel-2", "devices": [c, a]}),
    )
    .await;
    location_id(&r);
    create_deployment(
        &app,
        &admin,
        "",
        json!({"name": "two", "artifact_name": "rel-2", "devices": [a, c]}),
    )
    .await
    .assert_error(409);
    let r = create_deployment(
        &app,
        &admin,
        "",
        json!({"name": "two", "artifact_name": "rel-2", "devices": [a]}),
    )
    .await;
    location_id(&r);

    // Leaving groups.
    let r = app
        .req(
            "DELETE",
            &format!("{INVENTORY}/devices/{a}/group/prod_1"),
            Some(&admin),
            None,
        )
        .await;
    r.assert_error(404);
    let r = app
        .req(
            "DELETE",
            &format!("{INVENTORY}/devices/{a}/group/staging"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    let r = app
        .req(
            "DELETE",
            &format!("{INVENTORY}/groups/staging"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.json(), json!({"updated_count": 1}));
    let r = app
        .req("GET", &format!("{INVENTORY}/groups"), Some(&admin), None)
        .await;
    assert_eq!(r.json(), json!(["prod_1"]));

    // Clearing a device's inventory keeps its identity.
    let r = app
        .req(
            "DELETE",
            &format!("{INVENTORY}/devices/{a}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        ids_of(&list("?artifact_name=rel-1".into()).await),
        [c.as_str()]
    );
    let one = app
        .req(
            "GET",
            &format!("{INVENTORY}/devices/{a}"),
            Some(&admin),
            None,
        )
        .await
        .json();
    assert!(attr(&one, "inventory", "artifact_name").is_none());
    assert_eq!(
        attr(&one, "identity", "mac"),
        Some(&json!("02:00:00:00:08:01"))
    );

    // Decommissioning removes the device from inventory and its index.
    let r = app
        .req(
            "DELETE",
            &format!("{DEVAUTH}/devices/{c}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    assert!(ids_of(&list("?artifact_name=rel-1".into()).await).is_empty());
    app.req(
        "GET",
        &format!("{INVENTORY}/devices/{c}"),
        Some(&admin),
        None,
    )
    .await
    .assert_error(404);
}

on_both!(attribute_index_is_rebuilt_for_older_databases);
async fn attribute_index_is_rebuilt_for_older_databases(db: Db) {
    let app = app_on!(db);
    let admin = app.login().await;
    let dev = SimDevice::ed25519("02:00:00:00:09:01");
    let (id, token) = admit(&app, &admin, &dev).await;
    let r = app
        .req(
            "PUT",
            DEVICE_INVENTORY,
            Some(&token),
            Some(&json!([{"name": "artifact_name", "value": "old-1"}])),
        )
        .await;
    assert_eq!(r.status, 200);
    // A database from before the index: no index rows, no mark.
    let pool = app.server.state().db.clone();
    sqlx::query("DELETE FROM device_attributes")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM settings WHERE name = 'attributes_indexed'")
        .execute(&pool)
        .await
        .unwrap();
    let r = app
        .req(
            "GET",
            &format!("{INVENTORY}/devices?artifact_name=old-1"),
            Some(&admin),
            None,
        )
        .await;
    assert!(ids_of(&r).is_empty());
    let url = app.database_url();
    let App { data, server, .. } = app;
    drop(server);
    pool.close().await;
    let app = App::open(data, |c| c.database_url = url).await;
    let admin = app.login().await;
    for q in ["artifact_name=old-1", "identity/mac=02:00:00:00:09:01"] {
        let r = app
            .req(
                "GET",
                &format!("{INVENTORY}/devices?{q}"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(ids_of(&r), [id.as_str()], "{q}");
    }
}

on_both!(releases_history_and_per_device_abort);
async fn releases_history_and_per_device_abort(db: Db) {
    if !have_mender_artifact() {
        eprintln!("SKIPPED: mender-artifact is not installed");
        return;
    }
    let app = app_on!(db);
    let admin = app.login().await;
    let work = tempfile::tempdir().unwrap();
    upload(&app, &admin, work.path(), "rel-1", "board").await;
    let other = tempfile::tempdir().unwrap();
    upload(&app, &admin, other.path(), "rel-1", "other-board").await;
    upload(&app, &admin, work.path(), "rel-2", "board").await;

    // Releases, v2: lower-case keys, paged, filtered, sorted.
    let rel = |q: &'static str| {
        let app = &app;
        let admin = admin.clone();
        async move {
            let r = app
                .req(
                    "GET",
                    &format!("/api/management/v2/deployments/deployments/releases{q}"),
                    Some(&admin),
                    None,
                )
                .await;
            assert_eq!(r.status, 200, "{q}: {}", r.text());
            r
        }
    };
    let names = |r: &Resp, key: &str| -> Vec<String> {
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x[key].as_str().unwrap().to_owned())
            .collect()
    };
    let r = rel("").await;
    assert_eq!(names(&r, "name"), ["rel-1", "rel-2"]);
    assert_eq!(r.headers["x-total-count"], "2");
    let v = r.json();
    assert_eq!(v[0]["artifacts_count"], 2);
    assert_eq!(v[0]["artifacts"].as_array().unwrap().len(), 2);
    assert!(v[0]["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["name"] == "rel-1"));
    assert_eq!(v[1]["artifacts_count"], 1);
    assert_eq!(v[0]["tags"], json!([]));
    assert!(v[0]["modified"].is_string());
    let r = rel("?per_page=1&page=2").await;
    assert_eq!(names(&r, "name"), ["rel-2"]);
    assert_eq!(link_fields(&r).len(), 2);
    assert_eq!(
        names(&rel("?sort=name:desc").await, "name"),
        ["rel-2", "rel-1"]
    );
    assert_eq!(
        names(&rel("?sort=artifacts_count:asc").await, "name"),
        ["rel-2", "rel-1"]
    );
    assert_eq!(
        names(&rel("?sort=modified:desc").await, "name"),
        ["rel-2", "rel-1"]
    );
    assert_eq!(names(&rel("?device_type=other").await, "name"), ["rel-1"]);
    assert_eq!(names(&rel("?name=REL-2").await, "name"), ["rel-2"]);
    assert!(names(&rel("?tag=stable").await, "name").is_empty());
    assert_eq!(
        names(&rel("?update_type=single-file").await, "name").len(),
        2
    );
    assert!(names(&rel("?update_type=rootfs-image").await, "name").is_empty());
    app.req(
        "GET",
        "/api/management/v2/deployments/deployments/releases?sort=size",
        Some(&admin),
        None,
    )
    .await
    .assert_error(400);
    // v1: capitalised keys; unpaged and paged forms.
    let r = app
        .req(
            "GET",
            &format!("{DEPL}/deployments/releases"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(names(&r, "Name"), ["rel-1", "rel-2"]);
    assert_eq!(r.json()[0]["ArtifactsCount"], 2);
    assert!(r.headers.get("x-total-count").is_none());
    let r = app
        .req(
            "GET",
            &format!("{DEPL}/deployments/releases/list?per_page=1"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(names(&r, "Name"), ["rel-1"]);
    assert_eq!(r.headers["x-total-count"], "2");

    let r = app
        .req("GET", &format!("{DEPL}/limits/storage"), Some(&admin), None)
        .await;
    assert_eq!(r.json(), json!({"limit": 0, "usage": 0}));

    // A device's history: rel-1 to success, then rel-2 under way.
    let dev = SimDevice::ed25519("02:00:00:00:0a:01");
    let (id, token) = admit(&app, &admin, &dev).await;
    let status = |dep: String, s: &'static str| {
        let app = &app;
        let token = token.clone();
        async move {
            app.req(
                "PUT",
                &format!("/api/devices/v1/deployments/device/deployments/{dep}/status"),
                Some(&token),
                Some(&json!({"status": s})),
            )
            .await
        }
    };
    let r = create_deployment(
        &app,
        &admin,
        "",
        json!({"name": "first", "artifact_name": "rel-1", "devices": [id]}),
    )
    .await;
    let first = location_id(&r);
    let r = app
        .req(
            "POST",
            NEXT_V2,
            Some(&token),
            Some(&provides("rel-0", "board")),
        )
        .await;
    assert_eq!(r.json()["id"], first.as_str());
    assert_eq!(status(first.clone(), "success").await.status, 204);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let r = create_deployment(
        &app,
        &admin,
        "",
        json!({"name": "second", "artifact_name": "rel-2", "devices": [id]}),
    )
    .await;
    let second = location_id(&r);
    let r = app
        .req(
            "POST",
            NEXT_V2,
            Some(&token),
            Some(&provides("rel-1", "board")),
        )
        .await;
    assert_eq!(r.json()["id"], second.as_str());
    assert_eq!(status(second.clone(), "downloading").await.status, 204);

    let hist = |q: &'static str| {
        let app = &app;
        let admin = admin.clone();
        let id = id.clone();
        async move {
            app.req(
                "GET",
                &format!("{DEPL}/deployments/devices/{id}{q}"),
                Some(&admin),
                None,
            )
            .await
        }
    };
    let r = hist("").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.headers["x-total-count"], "2");
    let v = r.json();
    assert_eq!(v[0]["deployment"]["id"], second.as_str());
    assert_eq!(v[0]["deployment"]["status"], "inprogress");
    assert_eq!(v[0]["device"]["id"], id.as_str());
    assert_eq!(v[0]["device"]["status"], "downloading");
    assert_eq!(v[0]["device"]["image"]["name"], "rel-2");
    assert_eq!(v[0]["device"]["created"], v[0]["deployment"]["created"]);
    assert_eq!(v[1]["deployment"]["id"], first.as_str());
    assert_eq!(v[1]["deployment"]["status"], "finished");
    assert_eq!(v[1]["device"]["status"], "success");
    assert!(v[1]["device"]["finished"].is_string());
    assert!(v[0]["id"].is_string() && v[0]["id"] != v[1]["id"]);
    let r = hist("?status=success").await;
    assert_eq!(r.headers["x-total-count"], "1");
    assert_eq!(r.json()[0]["deployment"]["id"], first.as_str());
    let r = hist("?per_page=1&page=2").await;
    assert_eq!(r.json()[0]["deployment"]["id"], first.as_str());
    assert_eq!(link_fields(&r).len(), 2);
    hist("?per_page=21").await.assert_error(400);
    hist("?status=bogus").await.assert_error(400);

    // Aborting the device's deployments: the running one ends aborted (the
    // device is told with 409), the finished one stays.
    let r = app
        .req(
            "DELETE",
            &format!("{DEPL}/deployments/devices/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    status(second.clone(), "installing").await.assert_error(409);
    let d = app
        .req(
            "GET",
            &format!("{DEPL}/deployments/{second}"),
            Some(&admin),
            None,
        )
        .await
        .json();
    assert_eq!(d["statistics"]["status"]["aborted"], 1);
    assert_eq!(d["status"], "finished");
    let r = hist("?status=finished").await;
    assert_eq!(r.headers["x-total-count"], "2");
    let r = app
        .req(
            "DELETE",
            &format!("{DEPL}/deployments/devices/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    let r = hist("?status=success").await;
    assert_eq!(r.headers["x-total-count"], "1");
}

on_both!(inventory_v2_search);
async fn inventory_v2_search(db: Db) {
    let app = app_on!(db);
    let admin = app.login().await;
    let mut ids = Vec::new();
    for (i, (art, kernel)) in [("rel-1", 5), ("rel-2", 6), ("rel-1", 7)]
        .iter()
        .enumerate()
    {
        let d = SimDevice::ed25519(&format!("02:00:00:00:0b:0{i}"));
        let (id, t) = admit(&app, &admin, &d).await;
        let r = app
            .req(
                "PUT",
                DEVICE_INVENTORY,
                Some(&t),
                Some(&json!([{"name": "artifact_name", "value": art}, {"name": "kernel", "value": kernel}])),
            )
            .await;
        assert_eq!(r.status, 200);
        ids.push(id);
    }
    let r = app
        .req(
            "PUT",
            &format!("{INVENTORY}/devices/{}/group", ids[2]),
            Some(&admin),
            Some(&json!({"group": "canary"})),
        )
        .await;
    assert_eq!(r.status, 204);
    let search = |body: Value| {
        let app = &app;
        let admin = admin.clone();
        async move {
            app.req(
                "POST",
                "/api/management/v2/inventory/filters/search",
                Some(&admin),
                Some(&body),
            )
            .await
        }
    };
    let f = |scope: &str, attribute: &str, kind: &str, value: Value| json!({"scope": scope, "attribute": attribute, "type": kind, "value": value});
    for (filters, want) in [
        (
            vec![f("inventory", "artifact_name", "$eq", json!("rel-1"))],
            vec![0, 2],
        ),
        (
            vec![f("inventory", "artifact_name", "$nin", json!(["rel-1"]))],
            vec![1],
        ),
        (
            vec![f("inventory", "artifact_name", "$ne", json!("rel-2"))],
            vec![0, 2],
        ),
        (
            vec![f("inventory", "kernel", "$in", json!([5, 6]))],
            vec![0, 1],
        ),
        (vec![f("inventory", "kernel", "$eq", json!(7))], vec![2]),
        (vec![f("system", "group", "$eq", json!("canary"))], vec![2]),
        (
            vec![f("system", "group", "$exists", json!(false))],
            vec![0, 1],
        ),
        (
            vec![f("inventory", "nothing", "$exists", json!(true))],
            vec![],
        ),
        (
            vec![
                f("identity", "status", "$eq", json!("accepted")),
                f("inventory", "artifact_name", "$eq", json!("rel-1")),
                f("system", "group", "$nin", json!(["canary"])),
            ],
            vec![0],
        ),
    ] {
        let r = search(json!({"filters": filters})).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let mut want: Vec<String> = want.iter().map(|i: &usize| ids[*i].clone()).collect();
        want.sort();
        assert_eq!(sorted(ids_of(&r)), want, "{filters:?}");
        assert_eq!(r.headers["x-total-count"], want.len().to_string());
    }
    // Sort, page, chosen attributes, IDs, free text.
    let r = search(json!({
        "sort": [{"scope": "inventory", "attribute": "kernel", "order": "desc"}],
        "per_page": 2, "page": 1,
        "attributes": [{"scope": "inventory", "attribute": "kernel"}]
    }))
    .await;
    assert_eq!(ids_of(&r), [ids[2].as_str(), ids[1].as_str()]);
    assert_eq!(r.headers["x-total-count"], "3");
    let attrs = r.json()[0]["attributes"].clone();
    assert_eq!(
        attrs,
        json!([{"name": "kernel", "value": 7, "scope": "inventory"}])
    );
    let r = search(json!({"device_ids": [ids[1]]})).await;
    assert_eq!(ids_of(&r), [ids[1].as_str()]);
    let r = search(json!({"text": "REL-2"})).await;
    assert_eq!(ids_of(&r), [ids[1].as_str()]);
    for body in [
        json!({"filters": [f("inventory", "a", "$regex", json!("x"))]}),
        json!({"filters": [f("nowhere", "a", "$eq", json!("x"))]}),
        json!({"filters": [f("inventory", "a", "$in", json!("x"))]}),
        json!({"filters": [f("inventory", "a", "$eq", json!({"x": 1}))]}),
        json!({"per_page": 0}),
        json!({"page": 0}),
        json!({"sort": [{"scope": "inventory", "attribute": "a", "order": "up"}]}),
    ] {
        search(body).await.assert_error(400);
    }
}

on_both!(ui_settings_with_etags);
async fn ui_settings_with_etags(db: Db) {
    let app = app_on!(db);
    let admin = app.login().await;
    for path in ["settings", "settings/me"] {
        let url = format!("{USERADM}/{path}");
        let r = app.req("GET", &url, Some(&admin), None).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json(), json!({}));
        assert!(r.headers.get("etag").is_none());
        let r = app
            .req(
                "POST",
                &url,
                Some(&admin),
                Some(&json!({"theme": "dark", "n": 1})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let r = app.req("GET", &url, Some(&admin), None).await;
        assert_eq!(r.json(), json!({"theme": "dark", "n": 1}));
        let etag = r.headers["etag"].to_str().unwrap().to_owned();
        // A stale If-Match: 412, nothing changed; a fresh one: saved.
        let post = |tag: &str, body: Value| {
            axum::http::Request::post(url.clone())
                .header("authorization", format!("Bearer {admin}"))
                .header("content-type", "application/json")
                .header("if-match", tag)
                .body(axum::body::Body::from(body.to_string()))
                .unwrap()
        };
        app.call(post("stale", json!({"theme": "light"})))
            .await
            .assert_error(412);
        app.req(
            "POST",
            &url,
            Some(&admin),
            Some(&json!(["not", "an", "object"])),
        )
        .await
        .assert_error(400);
        let r = app.req("GET", &url, Some(&admin), None).await;
        assert_eq!(r.json(), json!({"theme": "dark", "n": 1}));
        let r = app.call(post(&etag, json!({"theme": "light"}))).await;
        assert_eq!(r.status, 201);
        let r = app.req("GET", &url, Some(&admin), None).await;
        assert_eq!(r.json(), json!({"theme": "light"}));
        assert_ne!(r.headers["etag"].to_str().unwrap(), etag);
    }
    // Another user's own settings are their own.
    let r = app
        .req(
            "POST",
            &format!("{USERADM}/users"),
            Some(&admin),
            Some(&json!({"email": "zoe@example.com", "password": "zoe's password"})),
        )
        .await;
    location_id(&r);
    let zoe = app
        .login_as("zoe@example.com", "zoe's password")
        .await
        .text();
    let r = app
        .req("GET", &format!("{USERADM}/settings/me"), Some(&zoe), None)
        .await;
    assert_eq!(r.json(), json!({}));
    let r = app
        .req("GET", &format!("{USERADM}/settings"), Some(&zoe), None)
        .await;
    assert_eq!(r.json(), json!({"theme": "light"}));
}

on_both!(artifact_list_paged_and_edited);
async fn artifact_list_paged_and_edited(db: Db) {
    if !have_mender_artifact() {
        eprintln!("SKIPPED: mender-artifact is not installed");
        return;
    }
    let app = app_on!(db);
    let admin = app.login().await;
    let work = tempfile::tempdir().unwrap();
    for n in ["b-art", "a-art", "c-art"] {
        upload(&app, &admin, work.path(), n, "board").await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let list = |q: &'static str| {
        let app = &app;
        let admin = admin.clone();
        async move {
            let r = app
                .req(
                    "GET",
                    &format!("{DEPL}/artifacts/list{q}"),
                    Some(&admin),
                    None,
                )
                .await;
            assert_eq!(r.status, 200, "{q}: {}", r.text());
            r
        }
    };
    let names = |r: &Resp| -> Vec<String> {
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let r = list("?per_page=2").await;
    assert_eq!(names(&r), ["a-art", "b-art"]);
    assert_eq!(r.headers["x-total-count"], "3");
    assert_eq!(link_fields(&r).len(), 2);
    assert_eq!(
        names(&list("?sort=name:desc").await),
        ["c-art", "b-art", "a-art"]
    );
    assert_eq!(
        names(&list("?sort=modified:asc").await),
        ["b-art", "a-art", "c-art"]
    );
    assert_eq!(names(&list("?name=C-A").await), ["c-art"]);
    app.req(
        "GET",
        &format!("{DEPL}/artifacts/list?sort=size"),
        Some(&admin),
        None,
    )
    .await
    .assert_error(400);

    // Editing the description.
    let id = list("?name=a-art").await.json()[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .req(
            "PUT",
            &format!("{DEPL}/artifacts/{id}"),
            Some(&admin),
            Some(&json!({"description": "the A one"})),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let a = app
        .req("GET", &format!("{DEPL}/artifacts/{id}"), Some(&admin), None)
        .await
        .json();
    assert_eq!(a["description"], "the A one");
    app.req(
        "PUT",
        &format!("{DEPL}/artifacts/{id}"),
        Some(&admin),
        Some(&json!({"description": "x".repeat(4097)})),
    )
    .await
    .assert_error(400);
    app.req(
        "PUT",
        &format!("{DEPL}/artifacts/not-a-uuid"),
        Some(&admin),
        Some(&json!({"description": "x"})),
    )
    .await
    .assert_error(400);
    app.req(
        "PUT",
        &format!("{DEPL}/artifacts/00000000-0000-4000-8000-000000000000"),
        Some(&admin),
        Some(&json!({"description": "x"})),
    )
    .await
    .assert_error(404);
    // Once a device was given it: 422.
    let dev = SimDevice::ed25519("02:00:00:00:0c:01");
    let (did, token) = admit(&app, &admin, &dev).await;
    let r = create_deployment(
        &app,
        &admin,
        "",
        json!({"name": "d", "artifact_name": "a-art", "devices": [did]}),
    )
    .await;
    location_id(&r);
    let r = app
        .req("POST", NEXT_V2, Some(&token), Some(&provides("x", "board")))
        .await;
    assert_eq!(r.status, 200);
    app.req(
        "PUT",
        &format!("{DEPL}/artifacts/{id}"),
        Some(&admin),
        Some(&json!({"description": "too late"})),
    )
    .await
    .assert_error(422);
    let a = app
        .req("GET", &format!("{DEPL}/artifacts/{id}"), Some(&admin), None)
        .await
        .json();
    assert_eq!(a["description"], "the A one");
}

on_both!(device_tags_with_etags);
async fn device_tags_with_etags(db: Db) {
    let app = app_on!(db);
    let admin = app.login().await;
    let a = SimDevice::ed25519("02:00:00:00:0d:01");
    let b = SimDevice::ed25519("02:00:00:00:0d:02");
    let (a_id, _) = admit(&app, &admin, &a).await;
    let (b_id, _) = admit(&app, &admin, &b).await;
    let tags = |method: &'static str, id: String, body: Value, tag: Option<String>| {
        let app = &app;
        let admin = admin.clone();
        async move {
            let mut req = axum::http::Request::builder()
                .method(method)
                .uri(format!("{INVENTORY}/devices/{id}/tags"))
                .header("authorization", format!("Bearer {admin}"))
                .header("content-type", "application/json");
            if let Some(t) = tag {
                req = req.header("if-match", t);
            }
            app.call(req.body(axum::body::Body::from(body.to_string())).unwrap())
                .await
        }
    };
    let show = |id: String| {
        let app = &app;
        let admin = admin.clone();
        async move {
            app.req(
                "GET",
                &format!("{INVENTORY}/devices/{id}"),
                Some(&admin),
                None,
            )
            .await
        }
    };
    assert!(show(a_id.clone()).await.headers.get("etag").is_none());
    let r = tags(
        "PUT",
        a_id.clone(),
        json!([{"name": "env", "value": "test", "description": "where"}, {"name": "owner", "value": "qa"}]),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = show(a_id.clone()).await;
    let etag = r.headers["etag"].to_str().unwrap().to_owned();
    let d = r.json();
    assert_eq!(attr(&d, "tags", "env"), Some(&json!("test")));
    assert_eq!(attr(&d, "tags", "owner"), Some(&json!("qa")));
    let env = d["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["scope"] == "tags" && x["name"] == "env")
        .unwrap()
        .clone();
    assert_eq!(env["description"], "where");
    assert!(env["timestamp"].is_string());

    // A stale ETag or a bad body: refused, nothing changed.
    tags(
        "PATCH",
        a_id.clone(),
        json!([{"name": "env", "value": "prod"}]),
        Some("stale".into()),
    )
    .await
    .assert_error(412);
    tags(
        "PUT",
        a_id.clone(),
        json!([{"name": "", "value": "x"}]),
        None,
    )
    .await
    .assert_error(400);
    tags(
        "PUT",
        a_id.clone(),
        json!([{"name": "n", "value": 5}]),
        None,
    )
    .await
    .assert_error(400);
    tags(
        "PUT",
        "nope".into(),
        json!([{"name": "n", "value": "v"}]),
        None,
    )
    .await
    .assert_error(404);
    let r = show(a_id.clone()).await;
    assert_eq!(r.json(), d);
    assert_eq!(r.headers["etag"].to_str().unwrap(), etag);

    // PATCH upserts (with the right ETag); PUT replaces.
    let r = tags(
        "PATCH",
        a_id.clone(),
        json!([{"name": "env", "value": "prod"}]),
        Some(etag.clone()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = show(a_id.clone()).await;
    assert_ne!(r.headers["etag"].to_str().unwrap(), etag);
    let d = r.json();
    assert_eq!(attr(&d, "tags", "env"), Some(&json!("prod")));
    assert_eq!(attr(&d, "tags", "owner"), Some(&json!("qa")));
    let r = tags(
        "PUT",
        b_id.clone(),
        json!([{"name": "env", "value": "test"}]),
        None,
    )
    .await;
    assert_eq!(r.status, 200);

    // Tags filter like any attribute.
    let r = app
        .req(
            "GET",
            &format!("{INVENTORY}/devices?tags/env=prod"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(ids_of(&r), [a_id.as_str()]);
    let r = app
        .req(
            "GET",
            &format!("{INVENTORY}/devices?tags/env=test"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(ids_of(&r), [b_id.as_str()]);
    let r = tags("PUT", a_id.clone(), json!([]), None).await;
    assert_eq!(r.status, 200);
    let d = show(a_id.clone()).await.json();
    assert!(attr(&d, "tags", "env").is_none());
    let r = app
        .req(
            "GET",
            &format!("{INVENTORY}/devices?tags/env=prod"),
            Some(&admin),
            None,
        )
        .await;
    assert!(ids_of(&r).is_empty());
}

on_both!(first_release_databases_are_upgraded);
async fn first_release_databases_are_upgraded(db: Db) {
    use updraft_server::db::RowExt;
    let data = tempfile::tempdir().unwrap();
    let url = match db {
        Db::Sqlite => format!("sqlite://{}/updraft.db?mode=rwc", data.path().display()),
        Db::Postgres => match common::postgres_base() {
            Some(base) => common::fresh_postgres_db(&base).await,
            None => {
                eprintln!("SKIPPED on {db:?}: set UPDRAFT_TEST_POSTGRES_URL to run it");
                return;
            }
        },
    };
    {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        for stmt in [
            "CREATE TABLE user_tokens (jti TEXT PRIMARY KEY, user_id TEXT NOT NULL,
                name TEXT, created_ts BIGINT NOT NULL, exp BIGINT)",
            "CREATE TABLE devices (id TEXT PRIMARY KEY, identity TEXT NOT NULL UNIQUE,
                status TEXT NOT NULL, decommissioning BIGINT NOT NULL DEFAULT 0,
                created_ts BIGINT NOT NULL, updated_ts BIGINT NOT NULL, check_in_ts BIGINT,
                inventory TEXT NOT NULL DEFAULT '[]', inventory_ts BIGINT, group_name TEXT)",
            "CREATE TABLE device_deployments (id TEXT PRIMARY KEY,
                deployment_id TEXT NOT NULL, device_id TEXT NOT NULL, status TEXT NOT NULL,
                substate TEXT, artifact_id TEXT, created_ts BIGINT NOT NULL,
                started_ts BIGINT, finished_ts BIGINT, log TEXT,
                UNIQUE (deployment_id, device_id))",
            "CREATE INDEX device_deployments_device ON device_deployments (device_id)",
            "INSERT INTO devices (id, identity, status, created_ts, updated_ts, inventory)
                VALUES ('dev-1', '{\"mac\":\"m1\"}', 'accepted', 1, 1, '{\"artifact_name\":\"r1\"}')",
            "INSERT INTO device_deployments (id, deployment_id, device_id, status, created_ts,
                finished_ts) VALUES ('dd-1', 'dep-1', 'dev-1', 'success', 1, 2)",
        ] {
            sqlx::query(stmt).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }
    for _ in 0..2 {
        let u = url.clone();
        let app = App::open(tempfile::tempdir().unwrap(), |c| c.database_url = Some(u)).await;
        let admin = app.login().await;
        let r = app
            .req(
                "GET",
                &format!("{INVENTORY}/devices?artifact_name=r1"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(ids_of(&r), ["dev-1"]);
        let r = app
            .req(
                "GET",
                &format!("{DEPL}/deployments/devices/dev-1"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(r.headers["x-total-count"], "1", "{}", r.text());
        let row = sqlx::query("SELECT status, deleted_ts FROM device_deployments")
            .fetch_one(&app.server.state().db)
            .await
            .unwrap();
        assert_eq!(row.text("status").unwrap(), "success");
        assert_eq!(row.opt_int("deleted_ts").unwrap(), None);
        let App { server, .. } = app;
        server.state().db.close().await;
    }
}

on_both!(history_reset_lets_a_device_run_a_deployment_again);
async fn history_reset_lets_a_device_run_a_deployment_again(db: Db) {
    if !have_mender_artifact() {
        eprintln!("SKIPPED: mender-artifact is not installed");
        return;
    }
    let app = app_on!(db);
    let admin = app.login().await;
    let work = tempfile::tempdir().unwrap();
    upload(&app, &admin, work.path(), "rel-9", "board").await;
    let a = SimDevice::ed25519("02:00:00:00:0e:01");
    let b = SimDevice::ed25519("02:00:00:00:0e:02");
    let (a_id, a_token) = admit(&app, &admin, &a).await;
    let (b_id, _) = admit(&app, &admin, &b).await;
    let r = create_deployment(
        &app,
        &admin,
        "",
        json!({"name": "again", "artifact_name": "rel-9", "devices": [a_id, b_id]}),
    )
    .await;
    let dep = location_id(&r);
    let next = || {
        let app = &app;
        let t = a_token.clone();
        async move {
            app.req("POST", NEXT_V2, Some(&t), Some(&provides("rel-0", "board")))
                .await
        }
    };
    let report = |s: &'static str| {
        let app = &app;
        let t = a_token.clone();
        let dep = dep.clone();
        async move {
            app.req(
                "PUT",
                &format!("/api/devices/v1/deployments/device/deployments/{dep}/status"),
                Some(&t),
                Some(&json!({"status": s})),
            )
            .await
        }
    };
    assert_eq!(next().await.json()["id"], dep.as_str());
    assert_eq!(report("success").await.status, 204);
    assert_eq!(next().await.status, 204);

    // Reset: the finished row stays, marked deleted; the device takes the
    // (still running) deployment again.
    let r = app
        .req(
            "DELETE",
            &format!("{DEPL}/deployments/devices/{a_id}/history"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let h = app
        .req(
            "GET",
            &format!("{DEPL}/deployments/devices/{a_id}"),
            Some(&admin),
            None,
        )
        .await
        .json();
    assert_eq!(h.as_array().unwrap().len(), 1);
    assert!(h[0]["device"]["deleted"].is_string());
    assert_eq!(next().await.json()["id"], dep.as_str());
    let d = app
        .req(
            "GET",
            &format!("{DEPL}/deployments/{dep}"),
            Some(&admin),
            None,
        )
        .await
        .json();
    assert_eq!(d["status"], "inprogress");
    assert_eq!(d["statistics"]["status"]["pending"], 1);
    assert_eq!(d["statistics"]["status"]["success"], 1);
    assert_eq!(report("installing").await.status, 204);
    assert_eq!(report("success").await.status, 204);
    // Device B has not finished, so the deployment has not either.
    let d = app
        .req(
            "GET",
            &format!("{DEPL}/deployments/{dep}"),
            Some(&admin),
            None,
        )
        .await
        .json();
    assert_eq!(d["status"], "inprogress", "{d}");
    let h = app
        .req(
            "GET",
            &format!("{DEPL}/deployments/devices/{a_id}"),
            Some(&admin),
            None,
        )
        .await
        .json();
    assert_eq!(h.as_array().unwrap().len(), 2);
    assert!(h[0]["device"].get("deleted").is_none());
    assert_eq!(h[0]["device"]["status"], "success");
    let r = app
        .req(
            "GET",
            &format!("{DEPL}/deployments/{dep}/devices/list"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.headers["x-total-count"], "2");
    assert_eq!(next().await.status, 204);
}

on_both!(release_notes_tags_and_deletion);
async fn release_notes_tags_and_deletion(db: Db) {
    if !have_mender_artifact() {
        eprintln!("SKIPPED: mender-artifact is not installed");
        return;
    }
    let app = app_on!(db);
    let admin = app.login().await;
    let work = tempfile::tempdir().unwrap();
    upload(&app, &admin, work.path(), "rel-a", "board").await;
    upload(&app, &admin, work.path(), "rel-b", "board").await;
    let other = tempfile::tempdir().unwrap();
    upload(&app, &admin, other.path(), "rel-b", "other").await;
    const V2: &str = "/api/management/v2/deployments/deployments/releases";
    let list = |q: &'static str| {
        let app = &app;
        let admin = admin.clone();
        async move {
            let r = app
                .req("GET", &format!("{V2}{q}"), Some(&admin), None)
                .await;
            assert_eq!(r.status, 200, "{}", r.text());
            r.json()
        }
    };
    let r = app
        .req(
            "PUT",
            &format!("{V2}/rel-a/tags"),
            Some(&admin),
            Some(&json!(["Stable", "lts", "stable"])),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let r = app
        .req(
            "PATCH",
            &format!("{V2}/rel-a"),
            Some(&admin),
            Some(&json!({"notes": "first LTS"})),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let v = list("?name=rel-a").await;
    assert_eq!(v[0]["tags"], json!(["lts", "stable"]));
    assert_eq!(v[0]["notes"], "first LTS");
    // Notes and tags are kept apart.
    let r = app
        .req(
            "PUT",
            &format!("{V2}/rel-a/tags"),
            Some(&admin),
            Some(&json!(["lts"])),
        )
        .await;
    assert_eq!(r.status, 204);
    let v = list("?name=rel-a").await;
    assert_eq!(v[0]["tags"], json!(["lts"]));
    assert_eq!(v[0]["notes"], "first LTS");
    let v = list("?tag=LTS").await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["name"], "rel-a");
    assert_eq!(list("?tag=nightly").await, json!([]));
    assert_eq!(list("?name=rel-b").await[0]["tags"], json!([]));

    // Refusals change nothing.
    let many: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
    for (method, path, body, status) in [
        ("PUT", "rel-a/tags", json!(many), 400),
        ("PUT", "rel-a/tags", json!([""]), 400),
        ("PUT", "rel-a/tags", json!({"tags": []}), 400),
        ("PUT", "nope/tags", json!(["x"]), 404),
        ("PATCH", "rel-a", json!({"notes": "n".repeat(1025)}), 400),
        ("PATCH", "nope", json!({"notes": "x"}), 404),
    ] {
        app.req(method, &format!("{V2}/{path}"), Some(&admin), Some(&body))
            .await
            .assert_error(status);
    }
    let v = list("?name=rel-a").await;
    assert_eq!(v[0]["tags"], json!(["lts"]));
    assert_eq!(v[0]["notes"], "first LTS");

    // Deletion: refused while an unfinished deployment uses the release.
    let dev = SimDevice::ed25519("02:00:00:00:0f:01");
    let (did, _) = admit(&app, &admin, &dev).await;
    let r = create_deployment(
        &app,
        &admin,
        "",
        json!({"name": "uses b", "artifact_name": "rel-b", "devices": [did]}),
    )
    .await;
    let dep = location_id(&r);
    app.req(
        "DELETE",
        &format!("{V2}?name=rel-a&name=rel-b"),
        Some(&admin),
        None,
    )
    .await
    .assert_error(409);
    assert_eq!(list("").await.as_array().unwrap().len(), 2);
    app.req("DELETE", V2, Some(&admin), None)
        .await
        .assert_error(400);
    let r = app
        .req(
            "PUT",
            &format!("{DEPL}/deployments/{dep}/status"),
            Some(&admin),
            Some(&json!({"status": "aborted"})),
        )
        .await;
    assert_eq!(r.status, 204);
    let files = || {
        std::fs::read_dir(app.data.path().join("artifacts"))
            .unwrap()
            .count()
    };
    assert_eq!(files(), 3);
    let r = app
        .req("DELETE", &format!("{V2}?name=rel-b"), Some(&admin), None)
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(files(), 1);
    let v = list("").await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    let r = app
        .req(
            "GET",
            &format!("{DEPL}/artifacts?name=rel-b"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.json(), json!([]));

    // Deleting a release's last artifact drops its notes and tags.
    let aid = v[0]["artifacts"][0]["id"].as_str().unwrap().to_owned();
    let r = app
        .req(
            "DELETE",
            &format!("{DEPL}/artifacts/{aid}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    upload(
        &app,
        &admin,
        tempfile::tempdir().unwrap().path(),
        "rel-a",
        "board",
    )
    .await;
    let v = list("").await;
    assert_eq!(v[0]["tags"], json!([]));
    assert_eq!(v[0]["notes"], "");
}

on_both!(direct_upload_says_it_is_not_supported);
async fn direct_upload_says_it_is_not_supported(db: Db) {
    let app = app_on!(db);
    let admin = app.login().await;
    let before = app.counts().await;
    let boundary = "XupdraftGENx";
    let mut body = String::new();
    for (name, value) in [
        ("name", "generated-1"),
        ("device_types_compatible", "board"),
        ("type", "single_file"),
        ("args", r#"{"filename":"f.txt","dest_dir":"/tmp"}"#),
        ("file", "contents"),
    ] {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    let post = |path: String, token: Option<&str>| {
        let mut b = axum::http::Request::post(path).header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        );
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        b.body(axum::body::Body::from(body.clone())).unwrap()
    };
    let direct = format!("{DEPL}/artifacts/directupload");
    let complete = format!("{DEPL}/artifacts/directupload/{}/complete", unknown_id());

    // Without a token: 401, as for every management call.
    for path in [&direct, &complete] {
        app.call(post(path.clone(), None)).await.assert_error(401);
    }
    for path in [&direct, &complete] {
        let msg = app
            .call(post(path.clone(), Some(&admin)))
            .await
            .assert_error(501);
        assert!(msg.contains("direct upload is not supported"), "{msg}");
    }
    // Nothing was made, and an artifact ID route still reads IDs.
    assert_eq!(app.counts().await, before);
    app.req(
        "GET",
        &format!("{DEPL}/artifacts/{}", unknown_id()),
        Some(&admin),
        None,
    )
    .await
    .assert_error(404);
}

/// A well-formed artifact ID no artifact has.
fn unknown_id() -> String {
    "0c13a0e6-6b58-4f3c-9a0b-2c1d3e4f5a6b".to_owned()
}
