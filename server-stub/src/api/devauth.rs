//! deviceauth v2 (`/api/management/v2/devauth`): listing devices and
//! admitting them (`spec/mender-management-api.md` section 2).
//!
//! Updraft differences: decommissioning is synchronous (the device and its
//! auth sets are gone when 204 is answered); 404s carry the usual error body.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json as AxumJson;
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};

use super::{Paging, UserAuth};
use crate::db::{self, RowExt};
use crate::error::{ApiError, Json};
use crate::AppState;

const DEVICE_STATUSES: &[&str] = &["pending", "accepted", "rejected", "preauthorized", "noauth"];

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

async fn device_json(st: &AppState, row: &AnyRow) -> Result<Value, ApiError> {
    let id = row.text("id")?;
    let sets = sqlx::query("SELECT id, identity, pubkey, status, ts FROM auth_sets WHERE device_id = $1 ORDER BY ts, id")
        .bind(&id)
        .fetch_all(&st.db)
        .await?;
    let mut auth_sets = Vec::new();
    for s in &sets {
        auth_sets.push(json!({
            "id": s.text("id")?,
            "identity_data": parse_json(&s.text("identity")?),
            "pubkey": s.text("pubkey")?,
            "ts": db::rfc3339(s.int("ts")?),
            "status": s.text("status")?,
        }));
    }
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
    Ok(v)
}

/// `GET /devices?status=..&id=..&page=..&per_page=..`.
pub async fn list_devices(
    State(st): State<AppState>,
    _user: UserAuth,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<AxumJson<Vec<Value>>, ApiError> {
    let paging = Paging::from_query(&q)?;
    let statuses: Vec<&str> = q
        .iter()
        .filter(|(k, _)| k == "status")
        .map(|(_, v)| v.as_str())
        .collect();
    if let Some(bad) = statuses.iter().find(|s| !DEVICE_STATUSES.contains(s)) {
        return Err(ApiError::bad_request(format!(
            "filter status must be one of: pending, accepted, rejected, preauthorized, noauth (got {bad})"
        )));
    }
    let ids: Vec<&str> = q
        .iter()
        .filter(|(k, _)| k == "id")
        .map(|(_, v)| v.as_str())
        .collect();
    // Filters are few and small: filter in SQL by status, then by id here.
    let rows = sqlx::query("SELECT * FROM devices ORDER BY status, id")
        .fetch_all(&st.db)
        .await?;
    let mut out = Vec::new();
    let mut skipped = 0;
    for r in &rows {
        let status = r.text("status")?;
        let id = r.text("id")?;
        if (!statuses.is_empty() && !statuses.contains(&status.as_str()))
            || (!ids.is_empty() && !ids.contains(&id.as_str()))
        {
            continue;
        }
        if skipped < paging.offset() {
            skipped += 1;
            continue;
        }
        if out.len() as i64 >= paging.per_page {
            break;
        }
        out.push(device_json(&st, r).await?);
    }
    Ok(AxumJson(out))
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
    Ok(AxumJson(device_json(&st, &row).await?))
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
