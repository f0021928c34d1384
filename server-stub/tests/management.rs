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
