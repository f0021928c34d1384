//! deviceauth v2 (`/api/management/v2/devauth`): listing devices and
//! admitting them (`spec/mender-management-api.md` section 2).
//!
//! Updraft differences: decommissioning is synchronous (the device and its
//! auth sets are gone when 204 is answered); 404s carry the usual error body;
//! the preauthorisation 409 is the existing device with `error` and
//! `request_id` added; a forced preauthorisation's `Location` names the
//! existing device (upstream: a fresh, unused ID); `max_devices` is always 0
//! (no limit).

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json as AxumJson};
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};

use super::{Paging, UserAuth};
use crate::db::{self, RowExt, Sql};
use crate::devkey::DeviceKey;
use crate::error::{ApiError, Json, RawBody, RequestId};
use crate::AppState;

pub(crate) const DEVICE_STATUSES: &[&str] =
    &["pending", "accepted", "rejected", "preauthorized", "noauth"];

/// Recompute a device's status from its auth sets.
pub(crate) async fn refresh_device_status(
    tx: &mut Transaction<'static, Any>,
    device_id: &str,
) -> Result<String, ApiError> {
    let rows = sqlx::query("SELECT status FROM auth_sets WHERE device_id = $1")
        .bind(device_id)
        .fetch_all(&mut **tx)
        .await?;
    let statuses: Vec<String> = rows
        .iter()
        .map(|r| r.text("status"))
        .collect::<Result<_, _>>()?;
    let status = ["accepted", "preauthorized", "pending", "rejected"]
        .into_iter()
        .find(|s| statuses.iter().any(|x| x == s))
        .unwrap_or("noauth");
    sqlx::query("UPDATE devices SET status = $1, updated_ts = $2 WHERE id = $3 AND status <> $1")
        .bind(status)
        .bind(db::now_us())
        .bind(device_id)
        .execute(&mut **tx)
        .await?;
    Ok(status.to_owned())
}

/// Accept one auth set: every other accepted set of the device is rejected
/// (and its token revoked).
pub(crate) async fn accept_set(
    tx: &mut Transaction<'static, Any>,
    device_id: &str,
    set_id: &str,
) -> Result<(), ApiError> {
    sqlx::query(
        "UPDATE auth_sets SET status = 'rejected', token_valid = 0
         WHERE device_id = $1 AND id <> $2 AND status = 'accepted'",
    )
    .bind(device_id)
    .bind(set_id)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE auth_sets SET status = 'accepted' WHERE id = $1")
        .bind(set_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn parse_json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or(Value::Null)
}

/// Device objects for `rows` of `devices`, in order: one more query for all
/// of their auth sets.
pub(crate) async fn devices_json(st: &AppState, rows: &[AnyRow]) -> Result<Vec<Value>, ApiError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = rows
        .iter()
        .map(|r| r.text("id"))
        .collect::<Result<_, _>>()?;
    let mut sql =
        Sql::new("SELECT id, device_id, identity, pubkey, status, ts FROM auth_sets WHERE");
    sql.push_in("device_id", ids.iter().map(String::as_str))
        .push(" ORDER BY ts, id");
    let mut sets: HashMap<String, Vec<Value>> = HashMap::new();
    for s in &sql.query().fetch_all(&st.db).await? {
        sets.entry(s.text("device_id")?).or_default().push(json!({
            "id": s.text("id")?,
            "identity_data": parse_json(&s.text("identity")?),
            "pubkey": s.text("pubkey")?,
            "ts": db::rfc3339(s.int("ts")?),
            "status": s.text("status")?,
        }));
    }
    let mut out = Vec::with_capacity(rows.len());
    for (row, id) in rows.iter().zip(ids) {
        let auth_sets = sets.remove(&id).unwrap_or_default();
        let mut v = json!({
            "id": id,
            "identity_data": parse_json(&row.text("identity")?),
            "status": row.text("status")?,
            "decommissioning": row.int("decommissioning")? != 0,
            "created_ts": db::rfc3339(row.int("created_ts")?),
            "updated_ts": db::rfc3339(row.int("updated_ts")?),
            "auth_sets": auth_sets,
        });
        if let Some(t) = row.opt_int("check_in_ts")? {
            v["check_in_time"] = json!(db::rfc3339(t));
        }
        out.push(v);
    }
    Ok(out)
}

fn check_statuses(statuses: &[&str]) -> Result<(), ApiError> {
    match statuses.iter().find(|s| !DEVICE_STATUSES.contains(s)) {
        Some(bad) => Err(ApiError::bad_request(format!(
            "filter status must be one of: pending, accepted, rejected, preauthorized, noauth (got {bad})"
        ))),
        None => Ok(()),
    }
}

/// One page of devices with these statuses and IDs (either may be empty:
/// no filter), sorted by status then ID, as upstream sorts them. Two
/// queries whatever the page size.
async fn device_page(
    st: &AppState,
    uri: &Uri,
    q: &[(String, String)],
    statuses: &[&str],
    ids: &[&str],
) -> Result<Response, ApiError> {
    let paging = Paging::from_query(q)?;
    check_statuses(statuses)?;
    super::check_filter_len(statuses.len(), "status")?;
    super::check_filter_len(ids.len(), "id")?;
    let mut sql = Sql::new("SELECT * FROM devices WHERE 1 = 1");
    if !statuses.is_empty() {
        sql.push(" AND").push_in("status", statuses.iter().copied());
    }
    if !ids.is_empty() {
        sql.push(" AND").push_in("id", ids.iter().copied());
    }
    let limit = sql.arg(paging.per_page + 1);
    let offset = sql.arg(paging.offset());
    sql.push(&format!(
        " ORDER BY status, id LIMIT {limit} OFFSET {offset}"
    ));
    let mut rows = sql.query().fetch_all(&st.db).await?;
    let has_next = rows.len() as i64 > paging.per_page;
    rows.truncate(usize::try_from(paging.per_page).unwrap_or(0));
    let devices = devices_json(st, &rows).await?;
    Ok(super::paged(
        devices,
        super::links(uri.path(), q, paging, has_next),
        None,
    ))
}

/// `GET /devices?status=..&id=..&page=..&per_page=..` (both filters
/// repeatable): `Link` fields, no total.
pub async fn list_devices(
    State(st): State<AppState>,
    _user: UserAuth,
    uri: Uri,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let statuses = super::query_values(&q, "status");
    let ids = super::query_values(&q, "id");
    device_page(&st, &uri, &q, &statuses, &ids).await
}

/// A string or a list of strings.
#[derive(Deserialize, Default)]
#[serde(untagged)]
pub enum OneOrMany {
    /// None given.
    #[default]
    None,
    /// One.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl OneOrMany {
    fn values(&self) -> Vec<&str> {
        match self {
            OneOrMany::None => Vec::new(),
            OneOrMany::One(s) => vec![s.as_str()],
            OneOrMany::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// Body of `POST /devices/search`.
#[derive(Deserialize, Default)]
pub struct SearchBody {
    #[serde(default)]
    status: OneOrMany,
    #[serde(default)]
    id: OneOrMany,
}

/// `POST /devices/search` with JSON `{"status": .., "id": ..}` (each a
/// string or a list) or the same as a form (`status=..&id=..`, keys
/// repeatable); paged by the query like `GET /devices`.
pub async fn search_devices(
    State(st): State<AppState>,
    _user: UserAuth,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<Vec<(String, String)>>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let mime = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase());
    let (statuses, ids): (Vec<String>, Vec<String>) = if body.is_empty() {
        (Vec::new(), Vec::new())
    } else if mime.as_deref() == Some("application/json") {
        let b: SearchBody = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("failed to decode request body: {e}")))?;
        let own = |v: Vec<&str>| v.into_iter().map(str::to_owned).collect();
        (own(b.status.values()), own(b.id.values()))
    } else if mime.as_deref() == Some("application/x-www-form-urlencoded") {
        let text = std::str::from_utf8(&body)
            .map_err(|_| ApiError::bad_request("form body is not UTF-8"))?;
        let fake = Uri::try_from(format!("/?{}", text.trim()))
            .map_err(|_| ApiError::bad_request("malformed form body"))?;
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&fake)
            .map_err(|_| ApiError::bad_request("malformed form body"))?;
        let pick = |key: &str| -> Vec<String> {
            pairs
                .iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .collect()
        };
        (pick("status"), pick("id"))
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Bad Content-Type, expected 'application/json' or 'application/x-www-form-urlencoded'",
        ));
    };
    let statuses: Vec<&str> = statuses.iter().map(String::as_str).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    device_page(&st, &uri, &q, &statuses, &ids).await
}

/// Query of the count call.
#[derive(Deserialize)]
pub struct CountQuery {
    status: Option<String>,
}

/// `GET /devices/count?status=..`.
pub async fn count_devices(
    State(st): State<AppState>,
    _user: UserAuth,
    Query(q): Query<CountQuery>,
) -> Result<AxumJson<Value>, ApiError> {
    let count: i64 = match &q.status {
        Some(s) if !DEVICE_STATUSES.contains(&s.as_str()) => {
            return Err(ApiError::bad_request(
                "status must be one of: pending, accepted, rejected, preauthorized, noauth",
            ))
        }
        Some(s) => sqlx::query("SELECT COUNT(*) AS n FROM devices WHERE status = $1")
            .bind(s)
            .fetch_one(&st.db)
            .await?
            .int("n")?,
        None => sqlx::query("SELECT COUNT(*) AS n FROM devices")
            .fetch_one(&st.db)
            .await?
            .int("n")?,
    };
    Ok(AxumJson(json!({ "count": count })))
}

/// `GET /devices/{id}`.
pub async fn get_device(
    State(st): State<AppState>,
    _user: UserAuth,
    Path(id): Path<String>,
) -> Result<AxumJson<Value>, ApiError> {
    let row = sqlx::query("SELECT * FROM devices WHERE id = $1")
        .bind(&id)
        .fetch_optional(&st.db)
        .await?
        .ok_or_else(|| ApiError::not_found("device not found"))?;
    let mut v = devices_json(&st, &[row]).await?;
    Ok(AxumJson(v.pop().unwrap_or(Value::Null)))
}

/// Body of `POST /devices` (preauthorisation).
#[derive(Deserialize)]
pub struct PreauthBody {
    identity_data: BTreeMap<String, Value>,
    pubkey: String,
    #[serde(default)]
    force: bool,
}

/// `POST /devices`: preauthorise an identity and key. 201 with
/// `Location: devices/<id>`; the device is accepted on its first auth
/// request with exactly that identity and key. An identity already known:
/// 409 whose body is that device (plus `error` and `request_id`), unless
/// `force`, which adds (or re-arms) a preauthorised auth set on it.
pub async fn preauthorize(
    State(st): State<AppState>,
    _user: UserAuth,
    Extension(rid): Extension<RequestId>,
    Json(body): Json<PreauthBody>,
) -> Result<Response, ApiError> {
    if body.identity_data.is_empty() {
        return Err(ApiError::bad_request("identity_data: must not be empty"));
    }
    let identity = serde_json::to_string(&body.identity_data).map_err(ApiError::internal)?;
    let key = DeviceKey::from_pem(&body.pubkey).map_err(ApiError::bad_request)?;
    let now = db::now_us();
    let mut tx = st.db.begin().await?;
    let new_id = db::new_id();
    let inserted = sqlx::query(
        "INSERT INTO devices (id, identity, status, created_ts, updated_ts)
         VALUES ($1, $2, 'preauthorized', $3, $3) ON CONFLICT (identity) DO NOTHING",
    )
    .bind(&new_id)
    .bind(&identity)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    let device_id = if inserted {
        sqlx::query(
            "INSERT INTO auth_sets (id, device_id, identity, pubkey, status, ts)
             VALUES ($1, $2, $3, $4, 'preauthorized', $5)",
        )
        .bind(db::new_id())
        .bind(&new_id)
        .bind(&identity)
        .bind(key.pem())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        crate::api::inventory::index_identity(&mut tx, &new_id, &body.identity_data).await?;
        new_id
    } else {
        let existing = sqlx::query("SELECT * FROM devices WHERE identity = $1")
            .bind(&identity)
            .fetch_one(&mut *tx)
            .await?;
        let id = existing.text("id")?;
        if !body.force {
            tx.rollback().await?;
            let mut v = devices_json(&st, &[existing])
                .await?
                .pop()
                .unwrap_or(Value::Null);
            v["error"] = json!("device already exists");
            v["request_id"] = json!(rid.0);
            return Ok((StatusCode::CONFLICT, AxumJson(v)).into_response());
        }
        // An accepted set with this key stays accepted; any other becomes
        // preauthorised (its token, if any, revoked).
        sqlx::query(
            "UPDATE auth_sets SET status = 'preauthorized', token_valid = 0
             WHERE device_id = $1 AND pubkey = $2 AND status <> 'accepted'",
        )
        .bind(&id)
        .bind(key.pem())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO auth_sets (id, device_id, identity, pubkey, status, ts)
             VALUES ($1, $2, $3, $4, 'preauthorized', $5) ON CONFLICT (device_id, pubkey) DO NOTHING",
        )
        .bind(db::new_id())
        .bind(&id)
        .bind(&identity)
        .bind(key.pem())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        refresh_device_status(&mut tx, &id).await?;
        id
    };
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("devices/{device_id}"))],
    )
        .into_response())
}

/// `DELETE /tokens/{jti}`: revokes one device token (`jti` = auth set
/// ID); 204, 404 when there is no such live token.
pub async fn revoke_token(
    State(st): State<AppState>,
    _user: UserAuth,
    Path(jti): Path<String>,
) -> Result<StatusCode, ApiError> {
    let res = sqlx::query("UPDATE auth_sets SET token_valid = 0 WHERE id = $1 AND token_valid = 1")
        .bind(&jti)
        .execute(&st.db)
        .await?;
    if res.rows_affected() == 0 {
        return Err(ApiError::not_found("token not found"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /limits/max_devices`: `{"limit": 0}` (no limit).
pub async fn limit(_user: UserAuth, Path(name): Path<String>) -> Result<AxumJson<Value>, ApiError> {
    if name != "max_devices" {
        return Err(ApiError::bad_request(format!("unsupported limit {name}")));
    }
    Ok(AxumJson(json!({ "limit": 0 })))
}

/// Body of an auth set status change.
#[derive(Deserialize)]
pub struct StatusBody {
    status: String,
}

/// `PUT /devices/{id}/auth/{aid}/status` with `accepted`, `rejected` or
/// `pending`: 204.
pub async fn set_auth_status(
    State(st): State<AppState>,
    _user: UserAuth,
    Path((id, aid)): Path<(String, String)>,
    Json(body): Json<StatusBody>,
) -> Result<StatusCode, ApiError> {
    let to = body.status.as_str();
    if !["accepted", "rejected", "pending"].contains(&to) {
        return Err(ApiError::bad_request("incorrect device status"));
    }
    let mut tx = st.db.begin().await?;
    let set = sqlx::query("SELECT device_id, status FROM auth_sets WHERE id = $1")
        .bind(&aid)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| ApiError::not_found("authorization set not found"))?;
    if set.text("device_id")? != id {
        return Err(ApiError::bad_request(
            "dev auth: dev ID and auth ID mismatch",
        ));
    }
    let from = set.text("status")?;
    if from == to {
        return Ok(StatusCode::NO_CONTENT);
    }
    if from == "preauthorized" {
        return Err(ApiError::bad_request("dev auth: bad request"));
    }
    match to {
        "accepted" => accept_set(&mut tx, &id, &aid).await?,
        _ => {
            sqlx::query("UPDATE auth_sets SET status = $1, token_valid = 0 WHERE id = $2")
                .bind(to)
                .bind(&aid)
                .execute(&mut *tx)
                .await?;
        }
    }
    refresh_device_status(&mut tx, &id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /devices/{id}/auth/{aid}/status`.
pub async fn get_auth_status(
    State(st): State<AppState>,
    _user: UserAuth,
    Path((id, aid)): Path<(String, String)>,
) -> Result<AxumJson<Value>, ApiError> {
    let row = sqlx::query("SELECT status FROM auth_sets WHERE id = $1 AND device_id = $2")
        .bind(&aid)
        .bind(&id)
        .fetch_optional(&st.db)
        .await?
        .ok_or_else(|| ApiError::not_found("authorization set not found"))?;
    Ok(AxumJson(json!({ "status": row.text("status")? })))
}

/// `DELETE /devices/{id}/auth/{aid}`: removes one auth set (the whole
/// device when it was preauthorised).
pub async fn delete_auth_set(
    State(st): State<AppState>,
    _user: UserAuth,
    Path((id, aid)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let mut tx = st.db.begin().await?;
    let set = sqlx::query("SELECT status FROM auth_sets WHERE id = $1 AND device_id = $2")
        .bind(&aid)
        .bind(&id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| ApiError::not_found("authorization set not found"))?;
    if set.text("status")? == "preauthorized" {
        remove_device(&mut tx, &id).await?;
    } else {
        sqlx::query("DELETE FROM auth_sets WHERE id = $1")
            .bind(&aid)
            .execute(&mut *tx)
            .await?;
        refresh_device_status(&mut tx, &id).await?;
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_device(tx: &mut Transaction<'static, Any>, id: &str) -> Result<(), ApiError> {
    let now = db::now_us();
    // Unfinished device deployments end as `decommissioned`.
    let active = sqlx::query(
        "SELECT deployment_id FROM device_deployments
         WHERE device_id = $1 AND finished_ts IS NULL",
    )
    .bind(id)
    .fetch_all(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE device_deployments SET status = 'decommissioned', finished_ts = $1
         WHERE device_id = $2 AND finished_ts IS NULL",
    )
    .bind(now)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    for r in &active {
        crate::api::deployments::maybe_finish(tx, &r.text("deployment_id")?).await?;
    }
    sqlx::query("DELETE FROM auth_sets WHERE device_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM device_attributes WHERE device_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM devices WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// `DELETE /devices/{id}`: decommission (synchronously).
pub async fn decommission(
    State(st): State<AppState>,
    _user: UserAuth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut tx = st.db.begin().await?;
    let found = sqlx::query("SELECT id FROM devices WHERE id = $1")
        .bind(&id)
        .fetch_optional(&mut *tx)
        .await?;
    if found.is_none() {
        return Err(ApiError::not_found("device not found"));
    }
    remove_device(&mut tx, &id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
