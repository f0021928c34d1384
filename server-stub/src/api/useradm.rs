//! useradm (`/api/management/v1/useradm`): the first admin account, login
//! and logout (`spec/mender-management-api.md` section 1).
//!
//! Passwords are argon2id hashes (PHC strings). Failed logins are counted per
//! email: after [`crate::Config::login_attempts_per_minute`] failures in a
//! minute, further attempts get 429 until the minute is over.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json as AxumJson;
use base64ct::{Base64, Encoding};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{now_s, UserAuth};
use crate::db::{self, RowExt};
use crate::error::{body_bytes, ApiError};
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
    let mut v = json!({
        "id": r.text("id")?,
        "email": r.text("email")?,
        "created_ts": db::rfc3339(r.int("created_ts")?),
        "updated_ts": db::rfc3339(r.int("updated_ts")?),
    });
    if let Some(t) = r.opt_int("login_ts")? {
        v["login_ts"] = json!(db::rfc3339(t));
    }
    Ok(AxumJson(v))
}
