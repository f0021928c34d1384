//! useradm (`/api/management/v1/useradm`): the first admin account, login
//! and logout, users, personal access tokens
//! (`spec/mender-management-api.md` section 1).
//!
//! Passwords are argon2id hashes (PHC strings). Failed logins are counted per
//! email: after [`crate::Config::login_attempts_per_minute`] failures in a
//! minute, further attempts get 429 until the minute is over.
//!
//! Every token (login session or personal access token) is a row of
//! `user_tokens` keyed by its `jti`; a token verifies only while its row
//! exists, so deleting rows revokes tokens: logout deletes one, a user
//! update deletes all of that user's others, a user's deletion all of them.
//! Expired rows are swept when the user next creates or lists tokens.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json as AxumJson;
use base64ct::{Base64, Encoding};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{now_s, UserAuth};
use crate::db::{self, RowExt, Sql};
use crate::error::{body_bytes, ApiError, Json};
use crate::keys::Claims;
use crate::{AppState, Config};

/// Hash a password (argon2id, random salt).
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Create the admin account when there is no user yet. Returns the email
/// when created, and the generated password when none was configured.
pub async fn ensure_admin(
    pool: &db::Pool,
    config: &Config,
) -> Result<(Option<String>, Option<String>), String> {
    let n = sqlx::query("SELECT COUNT(*) AS n FROM users")
        .fetch_one(pool)
        .await
        .and_then(|r| r.int("n"))
        .map_err(|e| e.to_string())?;
    if n > 0 {
        return Ok((None, None));
    }
    let email = config.admin_email.trim().to_lowercase();
    if !email.contains('@') {
        return Err(format!("admin email {email:?} is not an email address"));
    }
    let (password, generated) = match &config.admin_password {
        Some(p) if p.len() >= 8 => (p.clone(), None),
        Some(_) => return Err("the admin password must be at least 8 characters".into()),
        None => {
            let p = crate::random_token(15).map_err(|e| e.0)?;
            (p.clone(), Some(p))
        }
    };
    let hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| e.to_string())??;
    let now = db::now_us();
    let res = sqlx::query(
        "INSERT INTO users (id, email, password_hash, created_ts, updated_ts)
         VALUES ($1, $2, $3, $4, $4) ON CONFLICT (email) DO NOTHING",
    )
    .bind(db::new_id())
    .bind(&email)
    .bind(hash)
    .bind(now)
    .execute(pool)
    .await
    .map_err(|e| e.to_string())?;
    if res.rows_affected() == 0 {
        // Another server process made it first.
        return Ok((None, None));
    }
    Ok((Some(email), generated))
}

#[derive(Deserialize, Default)]
struct LoginBody {
    #[serde(default)]
    no_expiry: bool,
}

fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = Base64::decode_vec(b64.trim()).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (email, password) = s.split_once(':')?;
    Some((email.trim().to_lowercase(), password.to_owned()))
}

fn rate_limited(st: &AppState, email: &str, now: i64) -> bool {
    let Ok(map) = st.login_failures.lock() else {
        return false;
    };
    map.get(email)
        .is_some_and(|(start, n)| now - start < 60 && *n >= st.config.login_attempts_per_minute)
}

fn record_failure(st: &AppState, email: &str, now: i64) {
    if let Ok(mut map) = st.login_failures.lock() {
        if map.len() > 100_000 {
            map.retain(|_, (start, _)| now - *start < 60);
        }
        let e = map.entry(email.to_owned()).or_insert((now, 0));
        if now - e.0 >= 60 {
            *e = (now, 0);
        }
        e.1 += 1;
    }
}

/// `POST /auth/login` with HTTP Basic auth: 200, `application/jwt`, the raw
/// token. 401 for a wrong email or password, 429 when rate-limited.
pub async fn login(
    State(st): State<AppState>,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    let (email, password) = basic_auth(req.headers())
        .ok_or_else(|| ApiError::unauthorized("invalid or missing auth header"))?;
    let body = body_bytes(req, &()).await?;
    let opts: LoginBody = if body.iter().all(u8::is_ascii_whitespace) {
        LoginBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("failed to decode request body: {e}")))?
    };
    let now = now_s();
    if rate_limited(&st, &email, now) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed login attempts; try again in a minute",
        ));
    }
    let row = sqlx::query("SELECT id, password_hash FROM users WHERE email = $1")
        .bind(&email)
        .fetch_optional(&st.db)
        .await?;
    let (user_id, hash) = match &row {
        Some(r) => (Some(r.text("id")?), Some(r.text("password_hash")?)),
        None => (None, None),
    };
    // Hash even for unknown users, so timing does not tell them apart.
    let ok = tokio::task::spawn_blocking(move || match hash {
        Some(h) => verify_password(&password, &h),
        None => {
            static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            let h =
                DUMMY.get_or_init(|| hash_password("not anybody's password").unwrap_or_default());
            let _ = verify_password(&password, h);
            false
        }
    })
    .await
    .map_err(ApiError::internal)?;
    let Some(user_id) = user_id.filter(|_| ok) else {
        record_failure(&st, &email, now);
        return Err(ApiError::unauthorized("unauthorized"));
    };
    let jti = db::new_id();
    let ttl = i64::try_from(st.config.user_token_ttl.as_secs()).unwrap_or(i64::MAX);
    let exp = (!opts.no_expiry).then(|| now.saturating_add(ttl));
    let token = st
        .keys
        .sign(&Claims {
            jti: jti.clone(),
            sub: user_id.clone(),
            iat: now,
            nbf: now,
            exp,
            iss: "mender.useradm".into(),
            scp: Some("mender.*".into()),
            device: false,
            user: true,
        })
        .map_err(ApiError::internal)?;
    let mut tx = st.db.begin().await?;
    sqlx::query("INSERT INTO user_tokens (jti, user_id, created_ts, exp) VALUES ($1, $2, $3, $4)")
        .bind(&jti)
        .bind(&user_id)
        .bind(db::now_us())
        .bind(exp)
        .execute(&mut *tx)
        .await?;
    // At most 10 login sessions per user: drop the oldest.
    sqlx::query(
        "DELETE FROM user_tokens WHERE user_id = $1 AND name IS NULL AND jti NOT IN
         (SELECT jti FROM user_tokens WHERE user_id = $1 AND name IS NULL ORDER BY created_ts DESC LIMIT 10)",
    )
    .bind(&user_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE users SET login_ts = $1 WHERE id = $2")
        .bind(db::now_us())
        .bind(&user_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(([(header::CONTENT_TYPE, "application/jwt")], token).into_response())
}

/// `POST /auth/logout`: revokes the presented token; 202.
pub async fn logout(State(st): State<AppState>, user: UserAuth) -> Result<StatusCode, ApiError> {
    sqlx::query("DELETE FROM user_tokens WHERE jti = $1")
        .bind(&user.jti)
        .execute(&st.db)
        .await?;
    Ok(StatusCode::ACCEPTED)
}

fn user_json(r: &sqlx::any::AnyRow) -> Result<Value, ApiError> {
    let mut v = json!({
        "id": r.text("id")?,
        "email": r.text("email")?,
        "created_ts": db::rfc3339(r.int("created_ts")?),
        "updated_ts": db::rfc3339(r.int("updated_ts")?),
    });
    if let Some(t) = r.opt_int("login_ts")? {
        v["login_ts"] = json!(db::rfc3339(t));
    }
    Ok(v)
}

/// `GET /users/{id}` (`me` = the caller).
pub async fn get_user(
    State(st): State<AppState>,
    user: UserAuth,
    Path(id): Path<String>,
) -> Result<AxumJson<Value>, ApiError> {
    let id = if id == "me" { user.user_id } else { id };
    let r = sqlx::query("SELECT * FROM users WHERE id = $1")
        .bind(&id)
        .fetch_optional(&st.db)
        .await?
        .ok_or_else(|| ApiError::not_found("user not found"))?;
    Ok(AxumJson(user_json(&r)?))
}

/// `GET /users` with optional filters `id`, `email` (both repeatable),
/// `created_after`, `created_before`, `updated_after`, `updated_before`
/// (Unix seconds, inclusive); not paged.
pub async fn list_users(
    State(st): State<AppState>,
    _user: UserAuth,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<AxumJson<Vec<Value>>, ApiError> {
    let mut sql = Sql::new("SELECT * FROM users WHERE 1 = 1");
    let values = |key: &str| -> Vec<String> {
        q.iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let ids = values("id");
    super::check_filter_len(ids.len(), "id")?;
    super::check_filter_len(values("email").len(), "email")?;
    if !ids.is_empty() {
        sql.push(" AND").push_in("id", ids);
    }
    let emails: Vec<String> = values("email").iter().map(|e| e.to_lowercase()).collect();
    if !emails.is_empty() {
        sql.push(" AND").push_in("email", emails);
    }
    for (key, column, op) in [
        ("created_after", "created_ts", ">="),
        ("created_before", "created_ts", "<="),
        ("updated_after", "updated_ts", ">="),
        ("updated_before", "updated_ts", "<="),
    ] {
        for v in values(key) {
            let secs: i64 = v
                .trim()
                .parse()
                .map_err(|_| ApiError::bad_request(format!("{key}: not a Unix time in seconds")))?;
            // Stored times are microseconds; "before" covers the whole second.
            let us = if op == "<=" {
                secs.saturating_mul(1_000_000).saturating_add(999_999)
            } else {
                secs.saturating_mul(1_000_000)
            };
            let mark = sql.arg(us);
            sql.push(&format!(" AND {column} {op} {mark}"));
        }
    }
    sql.push(" ORDER BY created_ts, id");
    let rows = sql.query().fetch_all(&st.db).await?;
    Ok(AxumJson(
        rows.iter().map(user_json).collect::<Result<_, _>>()?,
    ))
}

/// True for a plain `local@domain.tld` address in ASCII.
fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c);
    email.len() <= 254
        && !local.is_empty()
        && local.len() <= 64
        && local.chars().all(atext)
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && domain.contains('.')
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn check_email(email: &str) -> Result<String, ApiError> {
    let email = email.trim().to_lowercase();
    if valid_email(&email) {
        Ok(email)
    } else {
        Err(ApiError::bad_request(
            "email: must be a valid email address",
        ))
    }
}

fn check_password(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < 8 {
        return Err(ApiError::unprocessable(
            "password: must be minimum 8 characters long",
        ));
    }
    if password.len() > 4096 {
        return Err(ApiError::bad_request(
            "password: must be at most 4096 bytes long",
        ));
    }
    Ok(())
}

async fn hash_blocking(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
}

async fn verify_blocking(password: String, hash: String) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .map_err(ApiError::internal)
}

const EMAIL_TAKEN: &str = "user with a given email already exists";

/// Body of `POST /users`.
#[derive(Deserialize)]
pub struct NewUser {
    email: String,
    password: String,
}

/// `POST /users`: 201, `Location: users/<id>`; 422 for a short password or
/// a taken email.
pub async fn create_user(
    State(st): State<AppState>,
    _user: UserAuth,
    Json(body): Json<NewUser>,
) -> Result<Response, ApiError> {
    let email = check_email(&body.email)?;
    check_password(&body.password)?;
    let hash = hash_blocking(body.password).await?;
    let id = db::new_id();
    let now = db::now_us();
    sqlx::query(
        "INSERT INTO users (id, email, password_hash, created_ts, updated_ts)
         VALUES ($1, $2, $3, $4, $4)",
    )
    .bind(&id)
    .bind(&email)
    .bind(hash)
    .bind(now)
    .execute(&st.db)
    .await
    .map_err(|e| {
        if db::is_unique_violation(&e) {
            ApiError::unprocessable(EMAIL_TAKEN)
        } else {
            e.into()
        }
    })?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("users/{id}"))],
    )
        .into_response())
}

/// Body of `PUT /users/{id}`.
#[derive(Deserialize)]
pub struct UserUpdate {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    current_password: Option<String>,
}

/// `PUT /users/{id}` (`me` = the caller): 204. Only users themselves may
/// set their password, and changing one's own email or password needs
/// `current_password`. Every other token of the user is revoked; the one
/// used for this request stays valid.
pub async fn update_user(
    State(st): State<AppState>,
    user: UserAuth,
    Path(id): Path<String>,
    Json(body): Json<UserUpdate>,
) -> Result<StatusCode, ApiError> {
    let id = if id == "me" { user.user_id.clone() } else { id };
    if body.email.is_none() && body.password.is_none() {
        return Err(ApiError::bad_request("no update information provided"));
    }
    let email = body.email.as_deref().map(check_email).transpose()?;
    if let Some(p) = &body.password {
        check_password(p)?;
    }
    let row = sqlx::query("SELECT email, password_hash FROM users WHERE id = $1")
        .bind(&id)
        .fetch_optional(&st.db)
        .await?
        .ok_or_else(|| ApiError::not_found("user not found"))?;
    let own = id == user.user_id;
    if body.password.is_some() && !own {
        return Err(ApiError::unprocessable("password cannot be modified"));
    }
    let current_email = row.text("email")?;
    let email_changes = email.as_ref().is_some_and(|e| *e != current_email);
    if own && (body.password.is_some() || email_changes) {
        let ok = match body.current_password {
            Some(cur) => verify_blocking(cur, row.text("password_hash")?).await?,
            None => false,
        };
        if !ok {
            return Err(ApiError::unprocessable("current password mismatch"));
        }
    }
    let hash = match body.password {
        Some(p) => Some(hash_blocking(p).await?),
        None => None,
    };
    let mut tx = st.db.begin().await?;
    sqlx::query(
        "UPDATE users SET email = COALESCE($1, email), password_hash = COALESCE($2, password_hash),
            updated_ts = $3 WHERE id = $4",
    )
    .bind(email)
    .bind(hash)
    .bind(db::now_us())
    .bind(&id)
    .execute(&mut *tx)
    .await
    .map_err(|e| {
        if db::is_unique_violation(&e) {
            ApiError::unprocessable(EMAIL_TAKEN)
        } else {
            e.into()
        }
    })?;
    sqlx::query("DELETE FROM user_tokens WHERE user_id = $1 AND jti <> $2")
        .bind(&id)
        .bind(&user.jti)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /users/{id}`: 204 (also when there was no such user); all of
/// the user's tokens are revoked with it.
pub async fn delete_user(
    State(st): State<AppState>,
    _user: UserAuth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut tx = st.db.begin().await?;
    sqlx::query("DELETE FROM user_tokens WHERE user_id = $1")
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM settings WHERE name = $1")
        .bind(format!("ui_settings:user:{id}"))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------ settings

/// Most keys in a settings object.
const MAX_SETTINGS_KEYS: usize = 1024;

fn settings_key(user: Option<&UserAuth>) -> String {
    match user {
        None => "ui_settings".into(),
        Some(u) => format!("ui_settings:user:{}", u.user_id),
    }
}

async fn load_settings(st: &AppState, key: &str) -> Result<Response, ApiError> {
    let Some(stored) = db::setting(&st.db, key).await? else {
        return Ok(AxumJson(json!({})).into_response());
    };
    let v: Value = serde_json::from_str(&stored).map_err(ApiError::internal)?;
    let mut resp = AxumJson(v["settings"].clone()).into_response();
    if let Some(etag) = v["etag"]
        .as_str()
        .and_then(|e| header::HeaderValue::from_str(e).ok())
    {
        resp.headers_mut().insert(header::ETAG, etag);
    }
    Ok(resp)
}

async fn store_settings(
    st: &AppState,
    key: &str,
    headers: &HeaderMap,
    settings: Value,
) -> Result<StatusCode, ApiError> {
    let Value::Object(map) = &settings else {
        return Err(ApiError::bad_request("settings must be a JSON object"));
    };
    if map.len() > MAX_SETTINGS_KEYS {
        return Err(ApiError::bad_request(format!(
            "settings: at most {MAX_SETTINGS_KEYS} keys"
        )));
    }
    let if_match = headers.get(header::IF_MATCH).map(|v| {
        v.to_str()
            .unwrap_or_default()
            .trim()
            .trim_matches('"')
            .to_owned()
    });
    let stored = json!({ "etag": db::new_id(), "settings": settings }).to_string();
    let mut tx = st.db.begin().await?;
    let current = sqlx::query("SELECT value FROM settings WHERE name = $1")
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.text("value"))
        .transpose()?;
    if let Some(want) = if_match {
        let etag = current
            .as_deref()
            .and_then(|c| serde_json::from_str::<Value>(c).ok())
            .and_then(|v| v["etag"].as_str().map(str::to_owned));
        if etag.as_deref() != Some(want.as_str()) {
            return Err(ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "The resource has been modified by someone else (ETag mismatch)",
            ));
        }
    }
    sqlx::query(
        "INSERT INTO settings (name, value) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )
    .bind(key)
    .bind(stored)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(StatusCode::CREATED)
}

/// `GET /settings`: the global UI settings (`{}` until saved), `ETag`.
pub async fn get_settings(
    State(st): State<AppState>,
    _user: UserAuth,
) -> Result<Response, ApiError> {
    load_settings(&st, &settings_key(None)).await
}

/// `POST /settings`: replaces them; 201; 412 on an `If-Match` mismatch.
pub async fn save_settings(
    State(st): State<AppState>,
    _user: UserAuth,
    headers: HeaderMap,
    Json(v): Json<Value>,
) -> Result<StatusCode, ApiError> {
    store_settings(&st, &settings_key(None), &headers, v).await
}

/// `GET /settings/me`: the caller's own settings.
pub async fn get_my_settings(
    State(st): State<AppState>,
    user: UserAuth,
) -> Result<Response, ApiError> {
    load_settings(&st, &settings_key(Some(&user))).await
}

/// `POST /settings/me`: replaces the caller's own settings; 201.
pub async fn save_my_settings(
    State(st): State<AppState>,
    user: UserAuth,
    headers: HeaderMap,
    Json(v): Json<Value>,
) -> Result<StatusCode, ApiError> {
    store_settings(&st, &settings_key(Some(&user)), &headers, v).await
}

// ------------------------------------------------------------ personal access tokens

/// Most personal access tokens one user may hold.
const MAX_TOKENS: i64 = 10;
/// Longest lifetime of a personal access token, seconds (one year).
const MAX_EXPIRES_IN: i64 = 31_536_000;

/// Body of `POST /settings/tokens`.
#[derive(Deserialize)]
pub struct NewToken {
    name: String,
    #[serde(default)]
    expires_in: Option<i64>,
}

async fn sweep_expired(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    user_id: &str,
) -> Result<(), ApiError> {
    sqlx::query("DELETE FROM user_tokens WHERE user_id = $1 AND exp IS NOT NULL AND exp < $2")
        .bind(user_id)
        .bind(now_s())
        .execute(ex)
        .await?;
    Ok(())
}

/// `POST /settings/tokens` `{"name", "expires_in"}`: 200, `application/jwt`,
/// the token (shown only this once). `expires_in` 0 or absent: never
/// expires.
pub async fn create_token(
    State(st): State<AppState>,
    user: UserAuth,
    Json(body): Json<NewToken>,
) -> Result<Response, ApiError> {
    let name = body.name;
    if name.trim().is_empty() || name.len() >= 4096 {
        return Err(ApiError::bad_request(
            "name: must be 1 to 4095 characters long",
        ));
    }
    let expires_in = body.expires_in.unwrap_or(0);
    if !(0..=MAX_EXPIRES_IN).contains(&expires_in) {
        return Err(ApiError::bad_request(format!(
            "expires_in: must be between 0 and {MAX_EXPIRES_IN} seconds"
        )));
    }
    let now = now_s();
    let exp = (expires_in > 0).then(|| now + expires_in);
    let jti = db::new_id();
    let token = st
        .keys
        .sign(&Claims {
            jti: jti.clone(),
            sub: user.user_id.clone(),
            iat: now,
            nbf: now,
            exp,
            iss: "mender.useradm".into(),
            scp: Some("mender.*".into()),
            device: false,
            user: true,
        })
        .map_err(ApiError::internal)?;
    let mut tx = st.db.begin().await?;
    sweep_expired(&mut *tx, &user.user_id).await?;
    let rows = sqlx::query("SELECT name FROM user_tokens WHERE user_id = $1 AND name IS NOT NULL")
        .bind(&user.user_id)
        .fetch_all(&mut *tx)
        .await?;
    for r in &rows {
        if r.text("name")? == name {
            return Err(ApiError::conflict(
                "Personal Access Token with a given name already exists",
            ));
        }
    }
    if rows.len() as i64 >= MAX_TOKENS {
        return Err(ApiError::unprocessable(
            "maximum number of personal access tokens reached for this user",
        ));
    }
    sqlx::query(
        "INSERT INTO user_tokens (jti, user_id, name, created_ts, exp) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&jti)
    .bind(&user.user_id)
    .bind(&name)
    .bind(db::now_us())
    .bind(exp)
    .execute(&mut *tx)
    .await
    .map_err(|e| {
        if db::is_unique_violation(&e) {
            ApiError::conflict("Personal Access Token with a given name already exists")
        } else {
            e.into()
        }
    })?;
    tx.commit().await?;
    Ok(([(header::CONTENT_TYPE, "application/jwt")], token).into_response())
}

/// `GET /settings/tokens`: the caller's personal access tokens.
pub async fn list_tokens(
    State(st): State<AppState>,
    user: UserAuth,
) -> Result<AxumJson<Vec<Value>>, ApiError> {
    sweep_expired(&st.db, &user.user_id).await?;
    let rows = sqlx::query(
        "SELECT jti, name, created_ts, exp, last_used FROM user_tokens
         WHERE user_id = $1 AND name IS NOT NULL ORDER BY created_ts, jti",
    )
    .bind(&user.user_id)
    .fetch_all(&st.db)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let mut v = json!({
            "id": r.text("jti")?,
            "name": r.text("name")?,
            "created_ts": db::rfc3339(r.int("created_ts")?),
        });
        if let Some(exp) = r.opt_int("exp")? {
            v["expiration_date"] = json!(db::rfc3339(exp.saturating_mul(1_000_000)));
        }
        if let Some(t) = r.opt_int("last_used")? {
            v["last_used"] = json!(db::rfc3339(t));
        }
        out.push(v);
    }
    Ok(AxumJson(out))
}

/// `DELETE /settings/tokens/{id}`: revokes one of the caller's personal
/// access tokens; 204 (also when there was none).
pub async fn delete_token(
    State(st): State<AppState>,
    user: UserAuth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    sqlx::query("DELETE FROM user_tokens WHERE jti = $1 AND user_id = $2 AND name IS NOT NULL")
        .bind(&id)
        .bind(&user.user_id)
        .execute(&st.db)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
