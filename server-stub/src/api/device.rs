//! The device API as the Mender client 3.4 speaks it
//! (`spec/mender-protocol.md` section 2): auth requests, inventory,
//! `deployments/next` in its three forms, status reports and logs.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64ct::{Base64, Encoding};
use serde::Deserialize;
use serde_json::Value;

use super::{now_s, DeviceAuth};
use crate::db::{self, RowExt};
use crate::devkey::DeviceKey;
use crate::error::{ApiError, Json, RawBody};
use crate::keys::Claims;
use crate::AppState;

/// Body of an auth request.
#[derive(Deserialize)]
pub struct AuthRequest {
    id_data: String,
    pubkey: String,
    #[serde(default)]
    #[allow(dead_code)]
    tenant_token: String,
}

/// `POST /api/devices/v1/authentication/auth_requests`: 200 + token for an
/// accepted (or preauthorised) device, 401 otherwise. The signature is
/// checked over the exact body before anything is stored.
pub async fn auth_request(
    State(st): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let req: AuthRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("failed to decode auth request: {e}")))?;
    let identity: BTreeMap<String, Value> = serde_json::from_str(&req.id_data)
        .map_err(|_| ApiError::bad_request("id_data must be a JSON object"))?;
    if identity.is_empty() {
        return Err(ApiError::bad_request("id_data must not be empty"));
    }
    let identity_map = identity;
    let identity = serde_json::to_string(&identity_map).map_err(ApiError::internal)?;
    let key = DeviceKey::from_pem(&req.pubkey).map_err(ApiError::bad_request)?;
    let sig = headers
        .get("x-men-signature")
        .ok_or_else(|| ApiError::bad_request("missing request signature header"))?;
    let sig = sig
        .to_str()
        .ok()
        .and_then(|s| Base64::decode_vec(s.trim()).ok())
        .ok_or_else(|| ApiError::bad_request("request signature is not base64"))?;
    if !key.verify(&body, &sig) {
        return Err(ApiError::unauthorized("signature verification failed"));
    }

    let now = db::now_us();
    let mut tx = st.db.begin().await?;
    let new_id = db::new_id();
    let created = sqlx::query(
        "INSERT INTO devices (id, identity, status, created_ts, updated_ts)
         VALUES ($1, $2, 'pending', $3, $3) ON CONFLICT (identity) DO NOTHING",
    )
    .bind(&new_id)
    .bind(&identity)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if created {
        super::inventory::index_identity(&mut tx, &new_id, &identity_map).await?;
    }
    let dev = sqlx::query("SELECT id, decommissioning FROM devices WHERE identity = $1")
        .bind(&identity)
        .fetch_one(&mut *tx)
        .await?;
    let device_id = dev.text("id")?;
    sqlx::query(
        "INSERT INTO auth_sets (id, device_id, identity, pubkey, status, ts)
         VALUES ($1, $2, $3, $4, 'pending', $5) ON CONFLICT (device_id, pubkey) DO NOTHING",
    )
    .bind(db::new_id())
    .bind(&device_id)
    .bind(&identity)
    .bind(key.pem())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let set = sqlx::query("SELECT id, status FROM auth_sets WHERE device_id = $1 AND pubkey = $2")
        .bind(&device_id)
        .bind(key.pem())
        .fetch_one(&mut *tx)
        .await?;
    let set_id = set.text("id")?;
    let mut status = set.text("status")?;
    if status == "preauthorized" {
        super::devauth::accept_set(&mut tx, &device_id, &set_id).await?;
        status = "accepted".into();
    }
    super::devauth::refresh_device_status(&mut tx, &device_id).await?;
    let ok = status == "accepted" && dev.int("decommissioning")? == 0;
    if ok {
        sqlx::query("UPDATE auth_sets SET token_valid = 1 WHERE id = $1")
            .bind(&set_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE devices SET check_in_ts = $1 WHERE id = $2")
            .bind(now)
            .bind(&device_id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    if !ok {
        return Err(ApiError::unauthorized("unauthorized"));
    }
    let iat = now_s();
    let ttl = i64::try_from(st.config.device_token_ttl.as_secs()).unwrap_or(i64::MAX);
    let token = st
        .keys
        .sign(&Claims {
            jti: set_id,
            sub: device_id,
            iat,
            nbf: iat,
            exp: Some(iat.saturating_add(ttl)),
            iss: "Mender".into(),
            scp: None,
            device: true,
            user: false,
        })
        .map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, "application/jwt")], token).into_response())
}

/// One inventory attribute.
#[derive(Deserialize)]
pub struct Attribute {
    name: String,
    value: Value,
}

fn check_attributes(attrs: Vec<Attribute>) -> Result<BTreeMap<String, Value>, ApiError> {
    let mut out = BTreeMap::new();
    for a in attrs {
        if a.name.is_empty() || a.name.len() > 1024 {
            return Err(ApiError::bad_request(
                "attribute name must be 1 to 1024 characters",
            ));
        }
        let ok = match &a.value {
            Value::String(_) | Value::Number(_) => true,
            Value::Array(v) => v.iter().all(Value::is_string) || v.iter().all(Value::is_number),
            _ => false,
        };
        if !ok {
            return Err(ApiError::bad_request(format!(
                "attribute {}: value must be a string, a number, or an array of strings or of numbers",
                a.name
            )));
        }
        out.insert(a.name, a.value);
    }
    Ok(out)
}

async fn store_inventory(
    st: &AppState,
    device_id: &str,
    attrs: Vec<Attribute>,
    merge: bool,
) -> Result<StatusCode, ApiError> {
    let mut new = check_attributes(attrs)?;
    let mut tx = st.db.begin().await?;
    if merge {
        let row = sqlx::query("SELECT inventory FROM devices WHERE id = $1")
            .bind(device_id)
            .fetch_one(&mut *tx)
            .await?;
        let old: BTreeMap<String, Value> =
            serde_json::from_str(&row.text("inventory")?).unwrap_or_default();
        for (k, v) in old {
            new.entry(k).or_insert(v);
        }
    }
    sqlx::query("UPDATE devices SET inventory = $1, inventory_ts = $2 WHERE id = $3")
        .bind(serde_json::to_string(&new).map_err(ApiError::internal)?)
        .bind(db::now_us())
        .bind(device_id)
        .execute(&mut *tx)
        .await?;
    super::inventory::index_scope(&mut tx, device_id, "inventory", &new).await?;
    tx.commit().await?;
    Ok(StatusCode::OK)
}

/// `PUT /api/devices/v1/inventory/device/attributes`: replaces the device's
/// inventory; 200 (exactly, the client demands it).
pub async fn inventory_put(
    State(st): State<AppState>,
    dev: DeviceAuth,
    Json(attrs): Json<Vec<Attribute>>,
) -> Result<StatusCode, ApiError> {
    store_inventory(&st, &dev.device_id, attrs, false).await
}

/// `PATCH` of the same: updates the named attributes only.
pub async fn inventory_patch(
    State(st): State<AppState>,
    dev: DeviceAuth,
    Json(attrs): Json<Vec<Attribute>>,
) -> Result<StatusCode, ApiError> {
    store_inventory(&st, &dev.device_id, attrs, true).await
}

fn provides_from(
    map: serde_json::Map<String, Value>,
) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    for (k, v) in map {
        match v {
            Value::String(s) => {
                out.insert(k, s);
            }
            Value::Null => {}
            _ => {
                return Err(ApiError::bad_request(format!(
                    "device provides: {k} must be a string"
                )))
            }
        }
    }
    for required in ["device_type", "artifact_name"] {
        if out.get(required).is_none_or(|v| v.is_empty()) {
            return Err(ApiError::bad_request(format!(
                "missing parameter: {required}"
            )));
        }
    }
    Ok(out)
}

/// Body of `next` v2.
#[derive(Deserialize)]
pub struct NextV2 {
    device_provides: serde_json::Map<String, Value>,
}

/// `POST /api/devices/v2/deployments/device/deployments/next`.
pub async fn next_v2(
    State(st): State<AppState>,
    dev: DeviceAuth,
    headers: HeaderMap,
    Json(body): Json<NextV2>,
) -> Result<Response, ApiError> {
    let provides = provides_from(body.device_provides)?;
    crate::api::deployments::next_for_device(&st, &dev.device_id, &provides, &headers).await
}

/// `POST /api/devices/v1/deployments/device/deployments/next`.
pub async fn next_v1_post(
    State(st): State<AppState>,
    dev: DeviceAuth,
    headers: HeaderMap,
    Json(body): Json<serde_json::Map<String, Value>>,
) -> Result<Response, ApiError> {
    let provides = provides_from(body)?;
    crate::api::deployments::next_for_device(&st, &dev.device_id, &provides, &headers).await
}

/// `GET /api/devices/v1/deployments/device/deployments/next?artifact_name=..&device_type=..`.
pub async fn next_v1_get(
    State(st): State<AppState>,
    dev: DeviceAuth,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let provides = provides_from(q.into_iter().map(|(k, v)| (k, Value::String(v))).collect())?;
    crate::api::deployments::next_for_device(&st, &dev.device_id, &provides, &headers).await
}

/// Body of a status report.
#[derive(Deserialize)]
pub struct StatusReport {
    status: String,
    #[serde(default)]
    substate: Option<String>,
}

/// Status values a device may report.
pub const DEVICE_STATUSES: &[&str] = &[
    "downloading",
    "installing",
    "rebooting",
    "success",
    "failure",
    "already-installed",
    "pause_before_installing",
    "pause_before_committing",
    "pause_before_rebooting",
];

/// `PUT /api/devices/v1/deployments/device/deployments/{id}/status`: 204;
/// 409 once the deployment was aborted.
pub async fn status(
    State(st): State<AppState>,
    dev: DeviceAuth,
    Path(id): Path<String>,
    Json(report): Json<StatusReport>,
) -> Result<StatusCode, ApiError> {
    if !DEVICE_STATUSES.contains(&report.status.as_str()) {
        return Err(ApiError::bad_request(format!(
            "unknown status: {}",
            report.status
        )));
    }
    if report.substate.as_ref().is_some_and(|s| s.len() > 4096) {
        return Err(ApiError::bad_request("substate is too long"));
    }
    crate::api::deployments::device_status(
        &st,
        &id,
        &dev.device_id,
        &report.status,
        report.substate.as_deref(),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One deployment log message.
#[derive(Deserialize, serde::Serialize)]
pub struct LogMessage {
    level: String,
    message: String,
    timestamp: String,
}

/// Body of a deployment log upload.
#[derive(Deserialize)]
pub struct LogBody {
    messages: Vec<LogMessage>,
}

/// `PUT /api/devices/v1/deployments/device/deployments/{id}/log`: 204.
pub async fn log(
    State(st): State<AppState>,
    dev: DeviceAuth,
    Path(id): Path<String>,
    Json(body): Json<LogBody>,
) -> Result<StatusCode, ApiError> {
    if body.messages.is_empty() {
        return Err(ApiError::bad_request("messages: empty"));
    }
    let text = serde_json::to_string(&body.messages).map_err(ApiError::internal)?;
    let res = sqlx::query(
        "UPDATE device_deployments SET log = $1
         WHERE deployment_id = $2 AND device_id = $3 AND deleted_ts IS NULL",
    )
    .bind(text)
    .bind(&id)
    .bind(&dev.device_id)
    .execute(&st.db)
    .await?;
    if res.rows_affected() == 0 {
        return Err(ApiError::not_found("deployment not found"));
    }
    Ok(StatusCode::NO_CONTENT)
}
