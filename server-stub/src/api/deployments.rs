//! deployments (`/api/management/v1/deployments`): artifacts, releases and
//! deployments (`spec/mender-management-api.md` section 3), and the
//! deployment logic behind the device API's `next` and status reports
//! (section 6.3).
//!
//! Lists filter, sort and page in SQL and build their objects with a fixed
//! number of queries per page (statistics and artifact IDs of a whole page
//! at once). Releases are grouped from one query over the artifacts.
//!
//! Updraft differences: the 409 for a duplicate artifact carries no
//! `metadata` member; name and description filters are case-insensitive
//! substring matches; direct upload answers 501 saying to upload an
//! artifact instead (`POST .../artifacts/generate` is in
//! [`super::generate`]); the enterprise fields
//! (`retries`, `phases`, `max_devices`, `update_control_map`) are not
//! implemented (the fields are ignored).

use std::collections::{BTreeMap, HashMap};

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json as AxumJson;
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};

use super::UserAuth;
use crate::artifacts::{self, UploadError};
use crate::db::{self, RowExt, Sql};
use crate::error::{ApiError, Json};
use crate::AppState;

/// Final device deployment statuses.
pub const FINAL: &[&str] = &[
    "success",
    "failure",
    "aborted",
    "noartifact",
    "already-installed",
    "decommissioned",
];

const ALL_STATUSES: &[&str] = &[
    "success",
    "pending",
    "downloading",
    "installing",
    "rebooting",
    "failure",
    "noartifact",
    "already-installed",
    "aborted",
    "decommissioned",
    "pause_before_installing",
    "pause_before_committing",
    "pause_before_rebooting",
];

pub(super) fn created(location: String) -> Response {
    (StatusCode::CREATED, [(header::LOCATION, location)]).into_response()
}

fn uuid_param(id: &str) -> Result<(), ApiError> {
    if db::is_uuid(id) {
        Ok(())
    } else {
        Err(ApiError::bad_request("ID is not a valid UUID"))
    }
}

// ------------------------------------------------------------ artifacts

/// `POST /artifacts` (multipart: `size`?, `description`?, `artifact_id`?,
/// then `artifact`): 201; 400 naming the problem for an invalid artifact,
/// or, with verification keys, one not signed by any of them.
pub async fn upload_artifact(
    State(st): State<AppState>,
    _user: UserAuth,
    mp: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let mut mp = mp.map_err(|_| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Bad Content-Type, expected 'multipart/form-data'",
        )
    })?;
    let multipart_err = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Artifact file too large")
        } else {
            ApiError::bad_request(format!("malformed multipart request: {}", e.body_text()))
        }
    };
    let mut description = String::new();
    let mut artifact_id: Option<String> = None;
    let mut declared_size: Option<u64> = None;
    let max = st.config.max_artifact_size;
    while let Some(mut field) = mp.next_field().await.map_err(multipart_err)? {
        match field.name().unwrap_or("") {
            "size" => {
                let t = field.text().await.map_err(multipart_err)?;
                let n: u64 = t
                    .trim()
                    .parse()
                    .map_err(|_| ApiError::bad_request("size: not a number"))?;
                if n > max {
                    return Err(ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "Artifact file too large",
                    ));
                }
                declared_size = Some(n);
            }
            "description" => {
                description = field.text().await.map_err(multipart_err)?;
                if description.len() > 4096 {
                    return Err(ApiError::bad_request("description: too long"));
                }
            }
            "artifact_id" => {
                let t = field.text().await.map_err(multipart_err)?.trim().to_owned();
                uuid_param(&t)?;
                artifact_id = Some(t.to_lowercase());
            }
            "artifact" => {
                let id = artifact_id.take().unwrap_or_else(db::new_id);
                let part = st.artifact_dir.join(format!("{id}.part"));
                // Removes the partial file however this handler ends (even
                // when the client goes away mid-upload); renamed on success.
                let _guard = PartFile(part.clone());
                let (tx, handle) = artifacts::spawn_check(part.clone(), st.verify_keys.clone());
                let mut total: u64 = 0;
                let mut failure = None;
                loop {
                    match field.chunk().await {
                        Ok(Some(chunk)) => {
                            total += chunk.len() as u64;
                            if total > max {
                                failure = Some(ApiError::new(
                                    StatusCode::PAYLOAD_TOO_LARGE,
                                    "Artifact file too large",
                                ));
                                break;
                            }
                            if tx.send(chunk).await.is_err() {
                                break; // the checker stopped: its error follows
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            failure = Some(multipart_err(e));
                            break;
                        }
                    }
                }
                drop(tx);
                let checked = handle.await.map_err(ApiError::internal)?;
                let result = match (failure, checked) {
                    (Some(e), _) => Err(e),
                    (None, Err(UploadError::Invalid(msg))) => Err(ApiError::bad_request(msg)),
                    (None, Err(UploadError::Io(e))) => {
                        Err(ApiError::internal(format_args!("storing artifact: {e}")))
                    }
                    (None, Ok((parsed, size))) => match declared_size {
                        Some(n) if n != size => Err(ApiError::bad_request(format!(
                            "artifact is {size} bytes but the size part says {n}"
                        ))),
                        _ => Ok((parsed, size)),
                    },
                };
                let (parsed, size) = result?;
                store_artifact(&st, &id, &part, &description, &parsed, size).await?;
                return Ok(created(format!(
                    "./management/v1/deployments/artifacts/{id}"
                )));
            }
            _ => {}
        }
    }
    Err(ApiError::bad_request(
        "request does not contain the artifact file",
    ))
}

/// Deletes an upload's `.part` file when dropped (a no-op once renamed).
pub(super) struct PartFile(pub(super) std::path::PathBuf);

impl Drop for PartFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Record a checked artifact (the reader's findings) and move its
/// `.part` file into place: 409 for a name and depends clash.
pub(super) async fn store_artifact(
    st: &AppState,
    id: &str,
    part: &std::path::Path,
    description: &str,
    parsed: &artifacts::Parsed,
    size: u64,
) -> Result<(), ApiError> {
    let mut info = parsed.info.clone();
    info["device_types_compatible"] = json!(parsed.device_types);
    info["signed"] = json!(parsed.signed);
    let mut tx = st.db.begin().await?;
    let clash = sqlx::query("SELECT id FROM artifacts WHERE name = $1 AND depends_key = $2")
        .bind(&parsed.name)
        .bind(parsed.depends_key())
        .fetch_optional(&mut *tx)
        .await?;
    let dup_id = sqlx::query("SELECT id FROM artifacts WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    if clash.is_some() {
        return Err(ApiError::conflict(
            "an artifact with the same name and depends already exists",
        ));
    }
    if dup_id.is_some() {
        return Err(ApiError::conflict(
            "an artifact with this ID already exists",
        ));
    }
    sqlx::query(
        "INSERT INTO artifacts (id, name, description, depends_key, info, size, modified_ts)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(&parsed.name)
    .bind(description)
    .bind(parsed.depends_key())
    .bind(info.to_string())
    .bind(i64::try_from(size).unwrap_or(i64::MAX))
    .bind(db::now_us())
    .execute(&mut *tx)
    .await
    .map_err(|e| match e.as_database_error() {
        Some(d) if d.is_unique_violation() => {
            ApiError::conflict("an artifact with the same name and depends already exists")
        }
        _ => e.into(),
    })?;
    tokio::fs::rename(part, artifacts::artifact_path(&st.artifact_dir, id)).await?;
    tx.commit().await?;
    Ok(())
}

/// The artifacts matching the `name`, `description`, `device_type`
/// filters (case-insensitive substrings), sorted by name. One query.
async fn filtered_artifacts(st: &AppState, q: &[(String, String)]) -> Result<Vec<Value>, ApiError> {
    let rows = sqlx::query("SELECT * FROM artifacts ORDER BY name, id")
        .fetch_all(&st.db)
        .await?;
    let want = |k: &str| {
        q.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.to_lowercase())
    };
    let (name, desc, dt) = (want("name"), want("description"), want("device_type"));
    let mut out = Vec::new();
    for r in &rows {
        let a = artifacts::artifact_json(r)?;
        let has = |field: &str, needle: &Option<String>| {
            needle.as_ref().is_none_or(|n| match &a[field] {
                Value::String(s) => s.to_lowercase().contains(n.as_str()),
                Value::Array(v) => v.iter().any(|x| {
                    x.as_str()
                        .is_some_and(|s| s.to_lowercase().contains(n.as_str()))
                }),
                _ => false,
            })
        };
        if has("name", &name) && has("description", &desc) && has("device_types_compatible", &dt) {
            out.push(a);
        }
    }
    Ok(out)
}

/// `GET /artifacts` (filters `name`, `description`, `device_type`:
/// case-insensitive substrings), sorted by name; not paged.
pub async fn list_artifacts(
    State(st): State<AppState>,
    _user: UserAuth,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<AxumJson<Vec<Value>>, ApiError> {
    Ok(AxumJson(filtered_artifacts(&st, &q).await?))
}

/// `GET /artifacts/list`: the same filters, paged, `sort` `name:asc`
/// (default), `name:desc`, `modified:asc`, `modified:desc`; `Link` and
/// `X-Total-Count`.
pub async fn list_artifacts_paged(
    State(st): State<AppState>,
    _user: UserAuth,
    uri: Uri,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let paging = super::Paging::from_query(&q)?;
    let sort = q
        .iter()
        .find(|(k, _)| k == "sort")
        .map(|(_, v)| v.as_str())
        .unwrap_or("name:asc");
    let mut all = filtered_artifacts(&st, &q).await?;
    let field = |a: &Value, k: &str| a[k].as_str().unwrap_or_default().to_owned();
    match sort {
        "name:asc" | "name" => {}
        "name:desc" => all.reverse(),
        "modified:asc" | "modified" => all.sort_by_key(|a| field(a, "modified")),
        "modified:desc" => {
            all.sort_by_key(|a| field(a, "modified"));
            all.reverse();
        }
        other => return Err(ApiError::bad_request(format!("invalid sort {other}"))),
    }
    let total = all.len() as i64;
    let page: Vec<Value> = all
        .into_iter()
        .skip(usize::try_from(paging.offset()).unwrap_or(usize::MAX))
        .take(usize::try_from(paging.per_page).unwrap_or(0))
        .collect();
    let has_next = paging.offset().saturating_add(paging.per_page) < total;
    Ok(super::paged(
        page,
        super::links(uri.path(), &q, paging, has_next),
        Some(total),
    ))
}

/// Body of `PUT /artifacts/{id}`.
#[derive(Deserialize)]
pub struct ArtifactEdit {
    #[serde(default)]
    description: Option<String>,
}

/// `PUT /artifacts/{id}` `{"description"}`: 204; 422 once a device was
/// given the artifact.
pub async fn edit_artifact(
    State(st): State<AppState>,
    _user: UserAuth,
    Path(id): Path<String>,
    Json(body): Json<ArtifactEdit>,
) -> Result<StatusCode, ApiError> {
    artifact_row(&st, &id).await?;
    let description = body.description.unwrap_or_default();
    if description.len() > 4096 {
        return Err(ApiError::bad_request("description: too long"));
    }
    let used = sqlx::query("SELECT id FROM device_deployments WHERE artifact_id = $1 LIMIT 1")
        .bind(&id)
        .fetch_optional(&st.db)
        .await?;
    if used.is_some() {
        return Err(ApiError::unprocessable(
            "Image has already been used in deployment",
        ));
    }
    sqlx::query("UPDATE artifacts SET description = $1, modified_ts = $2 WHERE id = $3")
        .bind(description)
        .bind(db::now_us())
        .bind(&id)
        .execute(&st.db)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn artifact_row(st: &AppState, id: &str) -> Result<sqlx::any::AnyRow, ApiError> {
    uuid_param(id)?;
    sqlx::query("SELECT * FROM artifacts WHERE id = $1")
        .bind(id)
        .fetch_optional(&st.db)
        .await?
        .ok_or_else(|| ApiError::not_found("Resource not found"))
}

/// `GET /artifacts/{id}`.
pub async fn get_artifact(
    State(st): State<AppState>,
    _user: UserAuth,
    Path(id): Path<String>,
) -> Result<AxumJson<Value>, ApiError> {
    Ok(AxumJson(artifacts::artifact_json(
        &artifact_row(&st, &id).await?,
    )?))
}

/// `GET /artifacts/{id}/download`: `{"uri", "expire"}`.
pub async fn artifact_link(
    State(st): State<AppState>,
    _user: UserAuth,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<AxumJson<Value>, ApiError> {
    artifact_row(&st, &id).await?;
    let base = artifacts::base_url(&st, &headers)?;
    let (uri, expire) = artifacts::signed_link(&st, &base, &id);
    Ok(AxumJson(
        json!({ "uri": uri, "expire": db::rfc3339(expire.saturating_mul(1_000_000)) }),
    ))
}

/// `DELETE /artifacts/{id}`: 204; 409 while an active deployment uses it.
pub async fn delete_artifact(
    State(st): State<AppState>,
    _user: UserAuth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let name = artifact_row(&st, &id).await?.text("name")?;
    let mut tx = st.db.begin().await?;
    let used = sqlx::query(
        "SELECT dd.id FROM device_deployments dd JOIN deployments d ON d.id = dd.deployment_id
         WHERE dd.artifact_id = $1 AND dd.finished_ts IS NULL AND d.finished_ts IS NULL",
    )
    .bind(&id)
    .fetch_optional(&mut *tx)
    .await?;
    if used.is_some() {
        return Err(ApiError::conflict("Artifact is used in active deployment"));
    }
    sqlx::query("DELETE FROM artifacts WHERE id = $1")
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    // The release's notes and tags go with its last artifact.
    sqlx::query(
        "DELETE FROM releases WHERE name = $1
         AND NOT EXISTS (SELECT 1 FROM artifacts WHERE name = $1)",
    )
    .bind(&name)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    match tokio::fs::remove_file(artifacts::artifact_path(&st.artifact_dir, &id)).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------ deployments

/// Body of `POST /deployments`.
#[derive(Deserialize)]
pub struct NewDeployment {
    name: String,
    artifact_name: String,
    #[serde(default)]
    devices: Option<Vec<String>>,
    #[serde(default)]
    all_devices: bool,
    #[serde(default)]
    force_installation: bool,
}

async fn create(
    st: &AppState,
    body: NewDeployment,
    group: Option<String>,
) -> Result<Response, ApiError> {
    for (what, v) in [("name", &body.name), ("artifact_name", &body.artifact_name)] {
        if v.is_empty() || v.len() > 4096 {
            return Err(ApiError::bad_request(format!(
                "{what}: must be 1 to 4096 characters"
            )));
        }
    }
    let mut tx = st.db.begin().await?;
    let devices: Vec<String> = match (&group, &body.devices, body.all_devices) {
        (Some(_), Some(_), _) | (Some(_), _, true) => {
            return Err(ApiError::bad_request(
                "Invalid deployments definition: devices and all_devices are not allowed for group deployments",
            ))
        }
        (Some(g), None, false) => sqlx::query("SELECT id FROM devices WHERE status = 'accepted' AND group_name = $1")
            .bind(g)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.text("id"))
            .collect::<Result<_, _>>()?,
        (None, Some(_), true) => {
            return Err(ApiError::bad_request(
                "Invalid deployments definition: list of devices provided togheter with all_devices flag",
            ))
        }
        (None, Some(list), false) if !list.is_empty() => {
            let mut l = list.clone();
            l.sort();
            l.dedup();
            l
        }
        (None, None, true) => sqlx::query("SELECT id FROM devices WHERE status = 'accepted'")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.text("id"))
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(ApiError::bad_request(
                "Invalid deployments definition: provide list of devices or set all_devices flag",
            ))
        }
    };
    if devices.is_empty() {
        return Err(ApiError::bad_request("No devices for the deployment"));
    }
    if devices.iter().any(|d| d.is_empty() || d.len() > 128) {
        return Err(ApiError::bad_request("devices: invalid device ID"));
    }
    let has_artifact = sqlx::query("SELECT id FROM artifacts WHERE name = $1")
        .bind(&body.artifact_name)
        .fetch_optional(&mut *tx)
        .await?;
    if has_artifact.is_none() {
        return Err(ApiError::unprocessable("No artifact for the deployment"));
    }
    // The same definition still running: 409.
    let twins = sqlx::query(
        "SELECT id FROM deployments WHERE finished_ts IS NULL AND name = $1 AND artifact_name = $2
           AND force_installation = $3 AND all_devices = $4 AND COALESCE(group_name, '') = $5",
    )
    .bind(&body.name)
    .bind(&body.artifact_name)
    .bind(i64::from(body.force_installation))
    .bind(i64::from(body.all_devices))
    .bind(group.clone().unwrap_or_default())
    .fetch_all(&mut *tx)
    .await?;
    for t in &twins {
        let same = if group.is_some() || body.all_devices {
            true
        } else {
            let mut targets: Vec<String> =
                sqlx::query("SELECT device_id FROM deployment_targets WHERE deployment_id = $1")
                    .bind(t.text("id")?)
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(|r| r.text("device_id"))
                    .collect::<Result<_, _>>()?;
            targets.sort();
            targets == devices
        };
        if same {
            return Err(ApiError::conflict(
                "Invalid deployment definition: there is already an active deployment with the same parameters",
            ));
        }
    }
    let id = db::new_id();
    sqlx::query(
        "INSERT INTO deployments (id, name, artifact_name, created_ts, max_devices, force_installation, all_devices, group_name)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&id)
    .bind(&body.name)
    .bind(&body.artifact_name)
    .bind(db::now_us())
    .bind(devices.len() as i64)
    .bind(i64::from(body.force_installation))
    .bind(i64::from(body.all_devices))
    .bind(group)
    .execute(&mut *tx)
    .await?;
    for chunk in devices.chunks(500) {
        let mut sql = Sql::new("INSERT INTO deployment_targets (deployment_id, device_id) VALUES ");
        let dep = sql.arg(id.as_str());
        let values: Vec<String> = chunk
            .iter()
            .map(|d| format!("({dep}, {})", sql.arg(d.as_str())))
            .collect();
        sql.push(&values.join(", "));
        sql.query().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(created(format!(
        "./management/v1/deployments/deployments/{id}"
    )))
}

/// `POST /deployments`: for a device list or all accepted devices; 201.
pub async fn create_deployment(
    State(st): State<AppState>,
    _user: UserAuth,
    Json(body): Json<NewDeployment>,
) -> Result<Response, ApiError> {
    create(&st, body, None).await
}

/// `POST /deployments/group/{name}`: for the accepted devices of a group.
pub async fn create_group_deployment(
    State(st): State<AppState>,
    _user: UserAuth,
    Path(name): Path<String>,
    Json(body): Json<NewDeployment>,
) -> Result<Response, ApiError> {
    create(&st, body, Some(name)).await
}

fn zero_stats() -> serde_json::Map<String, Value> {
    ALL_STATUSES
        .iter()
        .map(|s| ((*s).into(), json!(0)))
        .collect()
}

/// The per-status counts of each of `ids` (every key present): one query.
async fn stats_of(
    st: &AppState,
    ids: &[String],
) -> Result<HashMap<String, serde_json::Map<String, Value>>, ApiError> {
    let mut out: HashMap<String, serde_json::Map<String, Value>> =
        ids.iter().map(|id| (id.clone(), zero_stats())).collect();
    if ids.is_empty() {
        return Ok(out);
    }
    let mut sql =
        Sql::new("SELECT deployment_id, status, COUNT(*) AS n FROM device_deployments WHERE");
    sql.push_in("deployment_id", ids.iter().map(String::as_str))
        .push(" GROUP BY deployment_id, status");
    for r in &sql.query().fetch_all(&st.db).await? {
        if let Some(m) = out.get_mut(&r.text("deployment_id")?) {
            m.insert(r.text("status")?, json!(r.int("n")?));
        }
    }
    Ok(out)
}

/// Deployment objects for `rows` of `deployments`, in order: two more
/// queries (statistics, artifact IDs) whatever their number.
async fn deployments_json(st: &AppState, rows: &[AnyRow]) -> Result<Vec<Value>, ApiError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = rows
        .iter()
        .map(|r| r.text("id"))
        .collect::<Result<_, _>>()?;
    let mut counts = stats_of(st, &ids).await?;
    let names: Vec<String> = rows
        .iter()
        .map(|r| r.text("artifact_name"))
        .collect::<Result<_, _>>()?;
    let mut sql = Sql::new("SELECT id, name FROM artifacts WHERE");
    sql.push_in("name", names.iter().map(String::as_str))
        .push(" ORDER BY id");
    let mut artifact_ids: HashMap<String, Vec<String>> = HashMap::new();
    for a in &sql.query().fetch_all(&st.db).await? {
        artifact_ids
            .entry(a.text("name")?)
            .or_default()
            .push(a.text("id")?);
    }
    let mut out = Vec::with_capacity(rows.len());
    for ((r, id), name) in rows.iter().zip(ids).zip(names) {
        let counts = counts.remove(&id).unwrap_or_else(zero_stats);
        let n = |k: &str| counts.get(k).and_then(Value::as_i64).unwrap_or(0);
        let finished = r.opt_int("finished_ts")?;
        let status = if finished.is_some() {
            "finished"
        } else if ALL_STATUSES.iter().any(|s| *s != "pending" && n(s) > 0) {
            "inprogress"
        } else {
            "pending"
        };
        let device_count: i64 = counts.values().filter_map(Value::as_i64).sum();
        let mut v = json!({
            "id": id,
            "name": r.text("name")?,
            "artifact_name": name,
            "created": db::rfc3339(r.int("created_ts")?),
            "status": status,
            "device_count": device_count,
            "max_devices": r.int("max_devices")?,
            "artifacts": artifact_ids.get(&name).cloned().unwrap_or_default(),
            "type": "software",
            "statistics": { "status": counts, "total_size": 0 },
        });
        if let Some(f) = finished {
            v["finished"] = json!(db::rfc3339(f));
        }
        if let Some(g) = r.opt_text("group_name")? {
            v["groups"] = json!([g]);
        }
        if r.int("force_installation")? != 0 {
            v["force_installation"] = json!(true);
        }
        if r.int("all_devices")? != 0 {
            v["all_devices"] = json!(true);
        }
        out.push(v);
    }
    Ok(out)
}

async fn deployment_row(st: &AppState, id: &str) -> Result<AnyRow, ApiError> {
    uuid_param(id)?;
    sqlx::query("SELECT * FROM deployments WHERE id = $1")
        .bind(id)
        .fetch_optional(&st.db)
        .await?
        .ok_or_else(|| ApiError::not_found("Resource not found"))
}

/// SQL for a deployment status (`d` = the deployments row), as derived in
/// section 6.3 of the spec.
fn status_condition(status: &str) -> &'static str {
    match status {
        "finished" => "d.finished_ts IS NOT NULL",
        "inprogress" => concat!(
            "d.finished_ts IS NULL AND EXISTS (SELECT 1 FROM device_deployments x ",
            "WHERE x.deployment_id = d.id AND x.status <> 'pending')"
        ),
        _ => concat!(
            "d.finished_ts IS NULL AND NOT EXISTS (SELECT 1 FROM device_deployments x ",
            "WHERE x.deployment_id = d.id AND x.status <> 'pending')"
        ),
    }
}

fn unix_seconds(q: &[(String, String)], key: &str) -> Result<Option<i64>, ApiError> {
    match q.iter().find(|(k, _)| k == key) {
        None => Ok(None),
        Some((_, v)) => v
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("{key}: not a Unix time in seconds"))),
    }
}

/// `GET /deployments`: paged, newest first (`sort=asc`: oldest first);
/// filters `status`, `type`, `search` (case-insensitive substring of the
/// name or artifact name), `created_after`, `created_before` (Unix
/// seconds, inclusive). `Link` and `X-Total-Count`; four queries a page.
pub async fn list_deployments(
    State(st): State<AppState>,
    _user: UserAuth,
    uri: Uri,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let paging = super::Paging::from_query(&q)?;
    let one = |key: &str| q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let status = match one("status") {
        None => None,
        Some("aborted") => Some("finished"),
        Some(s @ ("pending" | "inprogress" | "finished")) => Some(s),
        Some(other) => return Err(ApiError::bad_request(format!("unknown status {other}"))),
    };
    let desc = match one("sort") {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "sort: must be asc or desc, not {other}"
            )))
        }
    };
    let mut filter = Sql::new(" WHERE 1 = 1");
    match one("type") {
        None | Some("software") => {}
        Some("configuration") => {
            filter.push(" AND 1 = 0");
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "type: must be software or configuration, not {other}"
            )))
        }
    }
    if let Some(s) = status {
        filter.push(&format!(" AND {}", status_condition(s)));
    }
    if let Some(text) = one("search").filter(|t| !t.trim().is_empty()) {
        let p = filter.arg(db::like_pattern(&text.trim().to_lowercase()));
        filter.push(&format!(
            " AND (LOWER(d.name) LIKE {p} ESCAPE '\\' OR LOWER(d.artifact_name) LIKE {p} ESCAPE '\\')"
        ));
    }
    if let Some(t) = unix_seconds(&q, "created_after")? {
        let p = filter.arg(t.saturating_mul(1_000_000));
        filter.push(&format!(" AND d.created_ts >= {p}"));
    }
    if let Some(t) = unix_seconds(&q, "created_before")? {
        let p = filter.arg(t.saturating_mul(1_000_000).saturating_add(999_999));
        filter.push(&format!(" AND d.created_ts <= {p}"));
    }
    let mut count = Sql::new("SELECT COUNT(*) AS n FROM deployments d");
    count.extend(&filter);
    let total = count.query().fetch_one(&st.db).await?.int("n")?;
    let mut sql = Sql::new("SELECT d.* FROM deployments d");
    sql.extend(&filter);
    let limit = sql.arg(paging.per_page);
    let offset = sql.arg(paging.offset());
    sql.push(&format!(
        " ORDER BY d.created_ts {dir}, d.id {dir} LIMIT {limit} OFFSET {offset}",
        dir = if desc { "DESC" } else { "ASC" }
    ));
    let rows = sql.query().fetch_all(&st.db).await?;
    let items = deployments_json(&st, &rows).await?;
    let has_next = paging.offset().saturating_add(paging.per_page) < total;
    Ok(super::paged(
        items,
        super::links(uri.path(), &q, paging, has_next),
        Some(total),
    ))
}

/// `GET /deployments/{id}`.
pub async fn get_deployment(
    State(st): State<AppState>,
    _user: UserAuth,
    Path(id): Path<String>,
) -> Result<AxumJson<Value>, ApiError> {
    let r = deployment_row(&st, &id).await?;
    let mut v = deployments_json(&st, &[r]).await?;
    Ok(AxumJson(v.pop().unwrap_or(Value::Null)))
}

/// `GET /deployments/{id}/statistics`.
pub async fn statistics(
    State(st): State<AppState>,
    _user: UserAuth,
    Path(id): Path<String>,
) -> Result<AxumJson<Value>, ApiError> {
    deployment_row(&st, &id).await?;
    let mut all = stats_of(&st, std::slice::from_ref(&id)).await?;
    Ok(AxumJson(Value::Object(
        all.remove(&id).unwrap_or_else(zero_stats),
    )))
}

const DEVICE_ITEM_SQL: &str =
    "SELECT dd.*, a.id AS a_id, a.name, a.description, a.depends_key, a.info, a.size, a.modified_ts
     FROM device_deployments dd LEFT JOIN artifacts a ON a.id = dd.artifact_id";

/// A device-deployment item (section 3.7) from a [`DEVICE_ITEM_SQL`] row.
fn device_item(r: &AnyRow, created: &str) -> Result<Value, ApiError> {
    let mut v = json!({
        "id": r.text("device_id")?,
        "status": r.text("status")?,
        "created": created,
        "log": r.opt_text("log")?.is_some(),
    });
    if let Some(t) = r.opt_int("started_ts")? {
        v["started"] = json!(db::rfc3339(t));
    }
    if let Some(t) = r.opt_int("finished_ts")? {
        v["finished"] = json!(db::rfc3339(t));
    }
    if let Some(s) = r.opt_text("substate")? {
        v["substate"] = json!(s);
    }
    if let Some(t) = r.opt_int("deleted_ts")? {
        v["deleted"] = json!(db::rfc3339(t));
    }
    if let Some(aid) = r.opt_text("a_id")? {
        let mut img = r.json("info")?;
        img["id"] = json!(aid);
        img["name"] = json!(r.text("name")?);
        let desc = r.text("description")?;
        if !desc.is_empty() {
            img["description"] = json!(desc);
        }
        img["size"] = json!(r.int("size")?);
        img["modified"] = json!(db::rfc3339(r.int("modified_ts")?));
        v["image"] = img;
    }
    Ok(v)
}

/// SQL for a device-deployment `status` filter: one status, or `pause`,
/// `active`, `finished`.
fn device_status_condition(sql: &mut Sql, status: &str) -> Result<(), ApiError> {
    match status {
        "pause" => {
            sql.push(" AND dd.status LIKE 'pause%'");
        }
        "active" => {
            sql.push(" AND dd.finished_ts IS NULL");
        }
        "finished" => {
            sql.push(" AND dd.finished_ts IS NOT NULL");
        }
        s if ALL_STATUSES.contains(&s) => {
            let p = sql.arg(s);
            sql.push(&format!(" AND dd.status = {p}"));
        }
        other => return Err(ApiError::bad_request(format!("unknown status {other}"))),
    }
    Ok(())
}

/// `GET /deployments/{id}/devices` (deprecated, unpaged): the devices that
/// picked the deployment up, with their status.
pub async fn deployment_devices(
    State(st): State<AppState>,
    _user: UserAuth,
    Path(id): Path<String>,
) -> Result<AxumJson<Vec<Value>>, ApiError> {
    let d = deployment_row(&st, &id).await?;
    let created = db::rfc3339(d.int("created_ts")?);
    let rows = sqlx::query(&format!(
        "{DEVICE_ITEM_SQL} WHERE dd.deployment_id = $1 ORDER BY dd.device_id, dd.created_ts"
    ))
    .bind(&id)
    .fetch_all(&st.db)
    .await?;
    Ok(AxumJson(
        rows.iter()
            .map(|r| device_item(r, &created))
            .collect::<Result<_, _>>()?,
    ))
}

/// `GET /deployments/{id}/devices/list`: the same, paged, optional
/// `status` filter; `Link` and `X-Total-Count`.
pub async fn deployment_devices_list(
    State(st): State<AppState>,
    _user: UserAuth,
    uri: Uri,
    Path(id): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let paging = super::Paging::from_query(&q)?;
    let d = deployment_row(&st, &id).await?;
    let created = db::rfc3339(d.int("created_ts")?);
    let mut filter = Sql::new(" WHERE dd.deployment_id = ");
    let p = filter.arg(id.as_str());
    filter.push(&p);
    if let Some((_, s)) = q.iter().find(|(k, _)| k == "status") {
        device_status_condition(&mut filter, s)?;
    }
    let mut count = Sql::new("SELECT COUNT(*) AS n FROM device_deployments dd");
    count.extend(&filter);
    let total = count.query().fetch_one(&st.db).await?.int("n")?;
    let mut sql = Sql::new(DEVICE_ITEM_SQL);
    sql.extend(&filter);
    let (limit, offset) = (sql.arg(paging.per_page), sql.arg(paging.offset()));
    sql.push(&format!(
        " ORDER BY dd.device_id, dd.created_ts LIMIT {limit} OFFSET {offset}"
    ));
    let items: Vec<Value> = sql
        .query()
        .fetch_all(&st.db)
        .await?
        .iter()
        .map(|r| device_item(r, &created))
        .collect::<Result<_, _>>()?;
    let has_next = paging.offset().saturating_add(paging.per_page) < total;
    Ok(super::paged(
        items,
        super::links(uri.path(), &q, paging, has_next),
        Some(total),
    ))
}

/// Body of `POST /deployments/statistics/list`.
#[derive(Deserialize)]
pub struct StatsListBody {
    deployment_ids: Vec<String>,
}

/// `POST /deployments/statistics/list` `{"deployment_ids": [..]}` (1-100
/// UUIDs): `[{"id", "stats"}]` for those that exist; 404 when none does.
pub async fn statistics_list(
    State(st): State<AppState>,
    _user: UserAuth,
    Json(body): Json<StatsListBody>,
) -> Result<AxumJson<Value>, ApiError> {
    let mut ids = body.deployment_ids;
    if ids.is_empty() {
        // Upstream's quirk, kept: an empty list is answered with `{}`.
        return Ok(AxumJson(json!({})));
    }
    if ids.len() > 100 {
        return Err(ApiError::bad_request("deployment_ids: at most 100 IDs"));
    }
    for id in &ids {
        uuid_param(id)?;
    }
    ids.sort();
    ids.dedup();
    let mut sql = Sql::new("SELECT id FROM deployments WHERE");
    sql.push_in("id", ids.iter().map(String::as_str))
        .push(" ORDER BY id");
    let found: Vec<String> = sql
        .query()
        .fetch_all(&st.db)
        .await?
        .iter()
        .map(|r| r.text("id"))
        .collect::<Result<_, _>>()?;
    if found.is_empty() {
        return Err(ApiError::not_found("Resource not found"));
    }
    let mut stats = stats_of(&st, &found).await?;
    let out: Vec<Value> = found
        .into_iter()
        .map(|id| {
            let s = stats.remove(&id).unwrap_or_else(zero_stats);
            json!({ "id": id, "stats": s })
        })
        .collect();
    Ok(AxumJson(Value::Array(out)))
}

/// `GET /deployments/{id}/device_list`: the targeted device IDs.
pub async fn device_list(
    State(st): State<AppState>,
    _user: UserAuth,
    Path(id): Path<String>,
) -> Result<AxumJson<Vec<String>>, ApiError> {
    deployment_row(&st, &id).await?;
    let ids = sqlx::query(
        "SELECT device_id FROM deployment_targets WHERE deployment_id = $1 ORDER BY device_id",
    )
    .bind(&id)
    .fetch_all(&st.db)
    .await?
    .iter()
    .map(|r| r.text("device_id"))
    .collect::<Result<_, _>>()?;
    Ok(AxumJson(ids))
}

/// Go's default time format from an RFC 3339 `...Z` timestamp.
fn go_time(ts: &str) -> String {
    match ts.strip_suffix('Z') {
        Some(t) if t.contains('T') => format!("{} +0000 UTC", t.replacen('T', " ", 1)),
        _ => ts.to_owned(),
    }
}

/// `GET /deployments/{id}/devices/{devid}/log`: `text/plain`, one
/// `<timestamp> <level>: <message>` line per message.
pub async fn device_log(
    State(st): State<AppState>,
    _user: UserAuth,
    Path((id, devid)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    uuid_param(&id)?;
    let row = sqlx::query(
        "SELECT log FROM device_deployments WHERE deployment_id = $1 AND device_id = $2
         ORDER BY CASE WHEN deleted_ts IS NULL THEN 0 ELSE 1 END, created_ts DESC LIMIT 1",
    )
    .bind(&id)
    .bind(&devid)
    .fetch_optional(&st.db)
    .await?;
    let log = row
        .map(|r| r.opt_text("log"))
        .transpose()?
        .flatten()
        .ok_or_else(|| ApiError::not_found("Resource not found"))?;
    let messages: Vec<Value> = serde_json::from_str(&log).map_err(ApiError::internal)?;
    let mut text = String::new();
    for m in &messages {
        let s = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("");
        text.push_str(&format!(
            "{} {}: {}\n",
            go_time(s("timestamp")),
            s("level"),
            s("message")
        ));
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

/// Body of the abort call.
#[derive(Deserialize)]
pub struct AbortBody {
    status: String,
}

/// `PUT /deployments/{id}/status` with `{"status":"aborted"}`: 204. Every
/// unfinished device deployment becomes `aborted`; devices get 409 on their
/// next status report.
pub async fn abort(
    State(st): State<AppState>,
    _user: UserAuth,
    Path(id): Path<String>,
    Json(body): Json<AbortBody>,
) -> Result<StatusCode, ApiError> {
    uuid_param(&id)?;
    if body.status != "aborted" {
        return Err(ApiError::bad_request("Unexpected deployment status"));
    }
    let now = db::now_us();
    let mut tx = st.db.begin().await?;
    let res = sqlx::query(
        "UPDATE deployments SET finished_ts = $1 WHERE id = $2 AND finished_ts IS NULL",
    )
    .bind(now)
    .bind(&id)
    .execute(&mut *tx)
    .await?;
    if res.rows_affected() == 0 {
        return Err(ApiError::unprocessable("Deployment already finished"));
    }
    sqlx::query(
        "UPDATE device_deployments SET status = 'aborted', finished_ts = $1
         WHERE deployment_id = $2 AND finished_ts IS NULL",
    )
    .bind(now)
    .bind(&id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------ per device

/// `GET /deployments/devices/{device_id}`: the device's deployment
/// history, newest first; paged (`per_page` at most 20), optional `status`
/// as for a deployment's devices; `Link` and `X-Total-Count`. Five queries
/// a page.
pub async fn device_history(
    State(st): State<AppState>,
    _user: UserAuth,
    uri: Uri,
    Path(device_id): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let paging = super::Paging::from_query(&q)?;
    if paging.per_page > 20 {
        return Err(ApiError::bad_request("Param per_page is out of bounds"));
    }
    let mut filter = Sql::new(" WHERE dd.device_id = ");
    let p = filter.arg(device_id.as_str());
    filter.push(&p);
    if let Some((_, s)) = q.iter().find(|(k, _)| k == "status") {
        device_status_condition(&mut filter, s)?;
    }
    let mut count = Sql::new("SELECT COUNT(*) AS n FROM device_deployments dd");
    count.extend(&filter);
    let total = count.query().fetch_one(&st.db).await?.int("n")?;
    let mut sql = Sql::new(DEVICE_ITEM_SQL);
    sql.extend(&filter);
    let (limit, offset) = (sql.arg(paging.per_page), sql.arg(paging.offset()));
    sql.push(&format!(
        " ORDER BY dd.created_ts DESC, dd.id LIMIT {limit} OFFSET {offset}"
    ));
    let items = sql.query().fetch_all(&st.db).await?;
    let dep_ids: Vec<String> = items
        .iter()
        .map(|r| r.text("deployment_id"))
        .collect::<Result<_, _>>()?;
    let mut deployments: HashMap<String, Value> = HashMap::new();
    if !dep_ids.is_empty() {
        let mut dq = Sql::new("SELECT * FROM deployments WHERE");
        dq.push_in("id", dep_ids.iter().map(String::as_str));
        let rows = dq.query().fetch_all(&st.db).await?;
        for v in deployments_json(&st, &rows).await? {
            if let Some(id) = v["id"].as_str() {
                deployments.insert(id.to_owned(), v);
            }
        }
    }
    let mut out = Vec::with_capacity(items.len());
    for (r, dep_id) in items.iter().zip(dep_ids) {
        let d = deployments.get(&dep_id).cloned().unwrap_or(Value::Null);
        let created = d["created"].as_str().unwrap_or_default().to_owned();
        out.push(json!({
            "id": r.text("id")?,
            "deployment": d,
            "device": device_item(r, &created)?,
        }));
    }
    let has_next = paging.offset().saturating_add(paging.per_page) < total;
    Ok(super::paged(
        out,
        super::links(uri.path(), &q, paging, has_next),
        Some(total),
    ))
}

/// `DELETE /deployments/devices/{device_id}`: aborts the device's
/// unfinished device deployments; 204 (also when there are none).
pub async fn abort_device(
    State(st): State<AppState>,
    _user: UserAuth,
    Path(device_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut tx = st.db.begin().await?;
    let active: Vec<String> = sqlx::query(
        "SELECT deployment_id FROM device_deployments WHERE device_id = $1 AND finished_ts IS NULL",
    )
    .bind(&device_id)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|r| r.text("deployment_id"))
    .collect::<Result<_, _>>()?;
    sqlx::query(
        "UPDATE device_deployments SET status = 'aborted', finished_ts = $1
         WHERE device_id = $2 AND finished_ts IS NULL",
    )
    .bind(db::now_us())
    .bind(&device_id)
    .execute(&mut *tx)
    .await?;
    for d in &active {
        maybe_finish(&mut tx, d).await?;
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /deployments/devices/{device_id}/history`: marks the device's
/// finished device deployments deleted (they stay listed, with `deleted`),
/// so it may take those deployments again while they run; 204.
pub async fn delete_device_history(
    State(st): State<AppState>,
    _user: UserAuth,
    Path(device_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    sqlx::query(
        "UPDATE device_deployments SET deleted_ts = $1
         WHERE device_id = $2 AND finished_ts IS NOT NULL AND deleted_ts IS NULL",
    )
    .bind(db::now_us())
    .bind(&device_id)
    .execute(&st.db)
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /limits/storage`: `{"limit": 0, "usage": 0}` (no limit, usage not
/// counted), as the open-source server answers.
pub async fn storage_limit(_user: UserAuth) -> AxumJson<Value> {
    AxumJson(json!({"limit": 0, "usage": 0}))
}

/// `POST /artifacts/directupload` and `.../directupload/{id}/complete`: 501
/// (upstream offers them only with object storage; artifacts live in the
/// data directory here).
pub async fn direct_upload(_user: UserAuth) -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "direct upload is not supported by this server (artifacts are stored in its \
         data directory): upload to POST /api/management/v1/deployments/artifacts",
    )
}

// ------------------------------------------------------------ releases

/// Which form of the releases list.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ReleaseForm {
    /// v1 `GET .../releases`: unpaged, capitalised keys.
    V1,
    /// v1 `GET .../releases/list`: paged, capitalised keys.
    V1Paged,
    /// v2: paged, lower-case keys.
    V2,
}

async fn releases(
    st: &AppState,
    uri: &Uri,
    q: &[(String, String)],
    form: ReleaseForm,
) -> Result<Response, ApiError> {
    let paging = super::Paging::from_query(q)?;
    let one = |key: &str| {
        q.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.to_lowercase())
    };
    let (name, desc, dt, ut) = (
        one("name"),
        one("description"),
        one("device_type"),
        one("update_type"),
    );
    // `tag` (repeatable): releases carrying any of them.
    let wanted_tags: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "tag")
        .map(|(_, v)| v.to_lowercase())
        .collect();
    let (key, asc) = match one("sort").as_deref() {
        None => ("name", true),
        Some(s) => {
            let (k, d) = s.split_once(':').unwrap_or((s, "asc"));
            let k = match k {
                "name" | "tags" => "name",
                "modified" => "modified",
                "artifacts_count" => "artifacts_count",
                other => return Err(ApiError::bad_request(format!("invalid sort key {other}"))),
            };
            match d {
                "asc" => (k, true),
                "desc" => (k, false),
                other => return Err(ApiError::bad_request(format!("invalid sort order {other}"))),
            }
        }
    };
    // All artifacts in one query; releases are grouped and filtered here.
    let rows = sqlx::query("SELECT * FROM artifacts ORDER BY name, id")
        .fetch_all(&st.db)
        .await?;
    let mut groups: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in &rows {
        groups
            .entry(r.text("name")?)
            .or_default()
            .push(artifacts::artifact_json(r)?);
    }
    // Notes and tags of the releases that have any (one more query).
    let mut meta: HashMap<String, (String, Vec<String>)> = HashMap::new();
    for r in &sqlx::query("SELECT name, notes, tags FROM releases")
        .fetch_all(&st.db)
        .await?
    {
        let tags: Vec<String> = serde_json::from_str(&r.text("tags")?).unwrap_or_default();
        meta.insert(r.text("name")?, (r.text("notes")?, tags));
    }
    let contains = |v: &Value, needle: &str| {
        v.as_str()
            .is_some_and(|s| s.to_lowercase().contains(needle))
    };
    let mut list: Vec<(String, String, Vec<Value>)> = groups
        .into_iter()
        .filter(|(n, arts)| {
            (wanted_tags.is_empty()
                || meta
                    .get(n)
                    .is_some_and(|(_, tags)| tags.iter().any(|t| wanted_tags.contains(t))))
                && name
                    .as_ref()
                    .is_none_or(|w| n.to_lowercase().contains(w.as_str()))
                && desc
                    .as_ref()
                    .is_none_or(|w| arts.iter().any(|a| contains(&a["description"], w)))
                && dt.as_ref().is_none_or(|w| {
                    arts.iter().any(|a| {
                        a["device_types_compatible"]
                            .as_array()
                            .is_some_and(|v| v.iter().any(|t| contains(t, w)))
                    })
                })
                && ut.as_ref().is_none_or(|w| {
                    arts.iter().any(|a| {
                        a["updates"].as_array().is_some_and(|u| {
                            u.iter()
                                .any(|x| x["type_info"]["type"].as_str() == Some(w.as_str()))
                        })
                    })
                })
        })
        .map(|(n, arts)| {
            let modified = arts
                .iter()
                .filter_map(|a| a["modified"].as_str())
                .max()
                .unwrap_or_default()
                .to_owned();
            (n, modified, arts)
        })
        .collect();
    list.sort_by(|a, b| {
        let o = match key {
            "modified" => a.1.cmp(&b.1),
            "artifacts_count" => a.2.len().cmp(&b.2.len()),
            _ => std::cmp::Ordering::Equal,
        }
        .then_with(|| a.0.cmp(&b.0));
        if asc {
            o
        } else {
            o.reverse()
        }
    });
    let total = list.len() as i64;
    let page: Vec<_> = if form == ReleaseForm::V1 {
        list
    } else {
        list.into_iter()
            .skip(usize::try_from(paging.offset()).unwrap_or(usize::MAX))
            .take(usize::try_from(paging.per_page).unwrap_or(0))
            .collect()
    };
    let items: Vec<Value> = page
        .into_iter()
        .map(|(n, modified, arts)| {
            let count = arts.len();
            let (notes, tags) = meta.remove(&n).unwrap_or_default();
            if form == ReleaseForm::V2 {
                json!({"name": n, "modified": modified, "artifacts": arts,
                       "artifacts_count": count, "tags": tags, "notes": notes})
            } else {
                json!({"Name": n, "Modified": modified, "Artifacts": arts,
                       "ArtifactsCount": count, "tags": tags, "notes": notes})
            }
        })
        .collect();
    if form == ReleaseForm::V1 {
        return Ok(AxumJson(items).into_response());
    }
    let has_next = paging.offset().saturating_add(paging.per_page) < total;
    Ok(super::paged(
        items,
        super::links(uri.path(), q, paging, has_next),
        Some(total),
    ))
}

/// `GET /api/management/v1/deployments/deployments/releases` (deprecated;
/// unpaged, capitalised keys): artifacts grouped by name.
pub async fn releases_v1(
    State(st): State<AppState>,
    _user: UserAuth,
    uri: Uri,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    releases(&st, &uri, &q, ReleaseForm::V1).await
}

/// `GET /api/management/v1/deployments/deployments/releases/list`: the
/// same, paged (`Link`, `X-Total-Count`).
pub async fn releases_v1_list(
    State(st): State<AppState>,
    _user: UserAuth,
    uri: Uri,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    releases(&st, &uri, &q, ReleaseForm::V1Paged).await
}

/// `GET /api/management/v2/deployments/deployments/releases`: paged, with
/// lower-case keys; filters `name`, `description`, `device_type`,
/// `update_type`, `tag`; `sort` `name`, `modified`, `artifacts_count`.
pub async fn releases_v2(
    State(st): State<AppState>,
    _user: UserAuth,
    uri: Uri,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    releases(&st, &uri, &q, ReleaseForm::V2).await
}

async fn release_exists(st: &AppState, name: &str) -> Result<(), ApiError> {
    sqlx::query("SELECT id FROM artifacts WHERE name = $1 LIMIT 1")
        .bind(name)
        .fetch_optional(&st.db)
        .await?
        .map(|_| ())
        .ok_or_else(|| ApiError::not_found("release not found"))
}

/// Most tags on one release, and distinct tags over all releases.
const MAX_RELEASE_TAGS: usize = 20;
const MAX_DISTINCT_TAGS: usize = 100;

/// `PUT /api/management/v2/deployments/deployments/releases/{name}/tags`
/// `["tag", ...]`: replaces the release's tags (lower-cased, at most 20);
/// 204; 409 when more than 100 distinct tags would be in use.
pub async fn put_release_tags(
    State(st): State<AppState>,
    _user: UserAuth,
    Path(name): Path<String>,
    Json(tags): Json<Vec<String>>,
) -> Result<StatusCode, ApiError> {
    let mut tags: Vec<String> = tags.iter().map(|t| t.trim().to_lowercase()).collect();
    tags.sort();
    tags.dedup();
    if tags.len() > MAX_RELEASE_TAGS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_RELEASE_TAGS} tags per release"
        )));
    }
    if tags.iter().any(|t| t.is_empty() || t.len() > 1024) {
        return Err(ApiError::bad_request("tags must be 1 to 1024 characters"));
    }
    release_exists(&st, &name).await?;
    let mut tx = st.db.begin().await?;
    let mut distinct: std::collections::BTreeSet<String> = tags.iter().cloned().collect();
    for r in &sqlx::query("SELECT tags FROM releases WHERE name <> $1")
        .bind(&name)
        .fetch_all(&mut *tx)
        .await?
    {
        let other: Vec<String> = serde_json::from_str(&r.text("tags")?).unwrap_or_default();
        distinct.extend(other);
    }
    if distinct.len() > MAX_DISTINCT_TAGS {
        return Err(ApiError::conflict(
            "the total number of unique tags has been exceeded",
        ));
    }
    sqlx::query(
        "INSERT INTO releases (name, notes, tags) VALUES ($1, '', $2)
         ON CONFLICT (name) DO UPDATE SET tags = excluded.tags",
    )
    .bind(&name)
    .bind(serde_json::to_string(&tags).map_err(ApiError::internal)?)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of a release update.
#[derive(Deserialize)]
pub struct ReleaseUpdate {
    notes: String,
}

/// `PATCH /api/management/v2/deployments/deployments/releases/{name}`
/// `{"notes": ...}` (at most 1024 characters): 204.
pub async fn patch_release(
    State(st): State<AppState>,
    _user: UserAuth,
    Path(name): Path<String>,
    Json(body): Json<ReleaseUpdate>,
) -> Result<StatusCode, ApiError> {
    if body.notes.chars().count() > 1024 {
        return Err(ApiError::bad_request("notes: at most 1024 characters"));
    }
    release_exists(&st, &name).await?;
    sqlx::query(
        "INSERT INTO releases (name, notes, tags) VALUES ($1, $2, '[]')
         ON CONFLICT (name) DO UPDATE SET notes = excluded.notes",
    )
    .bind(&name)
    .bind(&body.notes)
    .execute(&st.db)
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/management/v2/deployments/deployments/releases?name=..`
/// (repeatable): deletes those releases' artifacts, notes and tags; 204;
/// 409 while an unfinished deployment uses one of them (nothing deleted).
pub async fn delete_releases(
    State(st): State<AppState>,
    _user: UserAuth,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<StatusCode, ApiError> {
    let names = super::query_values(&q, "name");
    if names.is_empty() {
        return Err(ApiError::bad_request("name: at least one release name"));
    }
    super::check_filter_len(names.len(), "name")?;
    let mut tx = st.db.begin().await?;
    let mut busy = Sql::new("SELECT artifact_name FROM deployments WHERE finished_ts IS NULL AND");
    busy.push_in("artifact_name", names.iter().copied())
        .push(" LIMIT 1");
    if let Some(r) = busy.query().fetch_optional(&mut *tx).await? {
        return Err(ApiError::conflict(format!(
            "release {} is used in an active deployment",
            r.text("artifact_name")?
        )));
    }
    let mut ids = Sql::new("SELECT id FROM artifacts WHERE");
    ids.push_in("name", names.iter().copied());
    let ids: Vec<String> = ids
        .query()
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.text("id"))
        .collect::<Result<_, _>>()?;
    for table in ["artifacts", "releases"] {
        let mut del = Sql::new(&format!("DELETE FROM {table} WHERE"));
        del.push_in("name", names.iter().copied());
        del.query().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    for id in ids {
        match tokio::fs::remove_file(artifacts::artifact_path(&st.artifact_dir, &id)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Set a deployment `finished` once every targeted device is final.
pub(crate) async fn maybe_finish(
    tx: &mut Transaction<'static, Any>,
    deployment_id: &str,
) -> Result<(), ApiError> {
    let d = sqlx::query("SELECT max_devices, finished_ts FROM deployments WHERE id = $1")
        .bind(deployment_id)
        .fetch_optional(&mut **tx)
        .await?;
    let Some(d) = d else { return Ok(()) };
    if d.opt_int("finished_ts")?.is_some() {
        return Ok(());
    }
    // Devices done with it: a finished row and no live unfinished one (a
    // device whose history was reset may be running it again).
    let done = sqlx::query(
        "SELECT COUNT(DISTINCT x.device_id) AS n FROM device_deployments x
         WHERE x.deployment_id = $1 AND x.finished_ts IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM device_deployments y WHERE y.deployment_id = x.deployment_id
                AND y.device_id = x.device_id AND y.finished_ts IS NULL)",
    )
    .bind(deployment_id)
    .fetch_one(&mut **tx)
    .await?
    .int("n")?;
    let max = d.int("max_devices")?;
    if max > 0 && done >= max {
        sqlx::query(
            "UPDATE deployments SET finished_ts = $1 WHERE id = $2 AND finished_ts IS NULL",
        )
        .bind(db::now_us())
        .bind(deployment_id)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

// ------------------------------------------------------------ device side

fn update_response(
    st: &AppState,
    headers: &HeaderMap,
    deployment_id: &str,
    art: &sqlx::any::AnyRow,
) -> Result<Response, ApiError> {
    let info = art.json("info")?;
    let aid = art.text("id")?;
    let base = artifacts::base_url(st, headers)?;
    let (uri, expire) = artifacts::signed_link(st, &base, &aid);
    let body = json!({
        "id": deployment_id,
        "artifact": {
            "id": aid,
            "artifact_name": art.text("name")?,
            "source": { "uri": uri, "expire": db::rfc3339(expire.saturating_mul(1_000_000)) },
            "device_types_compatible": info.get("device_types_compatible").cloned().unwrap_or(json!([])),
        }
    });
    Ok(AxumJson(body).into_response())
}

/// The answer to `deployments/next`: the device's current deployment, or
/// the oldest unfinished deployment targeting it that is newer than the
/// last one it finished (200), or 204.
pub(crate) async fn next_for_device(
    st: &AppState,
    device_id: &str,
    provides: &BTreeMap<String, String>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let mut tx = st.db.begin().await?;
    // A deployment the device is already in the middle of.
    let current = sqlx::query(
        "SELECT dd.deployment_id, a.* FROM device_deployments dd
         JOIN deployments d ON d.id = dd.deployment_id
         JOIN artifacts a ON a.id = dd.artifact_id
         WHERE dd.device_id = $1 AND dd.finished_ts IS NULL AND d.finished_ts IS NULL
         ORDER BY dd.created_ts LIMIT 1",
    )
    .bind(device_id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(cur) = current {
        tx.commit().await?;
        return update_response(st, headers, &cur.text("deployment_id")?, &cur);
    }
    loop {
        let next = sqlx::query(
            "SELECT d.id, d.artifact_name, d.force_installation FROM deployments d
             JOIN deployment_targets t ON t.deployment_id = d.id
             WHERE t.device_id = $1 AND d.finished_ts IS NULL
               AND NOT EXISTS (SELECT 1 FROM device_deployments x WHERE x.deployment_id = d.id
                    AND x.device_id = $1 AND x.deleted_ts IS NULL)
               AND d.created_ts > COALESCE((SELECT MAX(d2.created_ts) FROM device_deployments x2
                    JOIN deployments d2 ON d2.id = x2.deployment_id
                    WHERE x2.device_id = $1 AND x2.finished_ts IS NOT NULL AND x2.deleted_ts IS NULL), -1)
             ORDER BY d.created_ts, d.id LIMIT 1",
        )
        .bind(device_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(d) = next else {
            tx.commit().await?;
            return Ok(StatusCode::NO_CONTENT.into_response());
        };
        let deployment_id = d.text("id")?;
        let artifact_name = d.text("artifact_name")?;
        let now = db::now_us();
        let insert = |status: &'static str, artifact: Option<String>, finished: Option<i64>| {
            sqlx::query(
                "INSERT INTO device_deployments (id, deployment_id, device_id, status, artifact_id, created_ts, finished_ts)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(db::new_id())
            .bind(deployment_id.clone())
            .bind(device_id.to_owned())
            .bind(status)
            .bind(artifact)
            .bind(now)
            .bind(finished)
        };
        if d.int("force_installation")? == 0
            && provides.get("artifact_name") == Some(&artifact_name)
        {
            insert("already-installed", None, Some(now))
                .execute(&mut *tx)
                .await?;
            maybe_finish(&mut tx, &deployment_id).await?;
            continue;
        }
        let candidates =
            sqlx::query("SELECT * FROM artifacts WHERE name = $1 ORDER BY modified_ts DESC, id")
                .bind(&artifact_name)
                .fetch_all(&mut *tx)
                .await?;
        let mut chosen = None;
        for a in candidates {
            let info = a.json("info")?;
            if artifacts::depends_satisfied(
                info.get("artifact_depends").unwrap_or(&Value::Null),
                provides,
            ) {
                chosen = Some(a);
                break;
            }
        }
        match chosen {
            None => {
                insert("noartifact", None, Some(now))
                    .execute(&mut *tx)
                    .await?;
                maybe_finish(&mut tx, &deployment_id).await?;
                continue;
            }
            Some(a) => {
                insert("pending", Some(a.text("id")?), None)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                return update_response(st, headers, &deployment_id, &a);
            }
        }
    }
}

/// A device's status report for its deployment.
pub(crate) async fn device_status(
    st: &AppState,
    deployment_id: &str,
    device_id: &str,
    status: &str,
    substate: Option<&str>,
) -> Result<(), ApiError> {
    let mut tx = st.db.begin().await?;
    let dd = sqlx::query(
        "SELECT id, status FROM device_deployments WHERE deployment_id = $1 AND device_id = $2
         ORDER BY CASE WHEN deleted_ts IS NULL THEN 0 ELSE 1 END, created_ts DESC LIMIT 1",
    )
    .bind(deployment_id)
    .bind(device_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::not_found("deployment not found"))?;
    let old = dd.text("status")?;
    if old == "aborted" {
        return Err(ApiError::conflict("deployment aborted"));
    }
    if FINAL.contains(&old.as_str()) {
        if old == status {
            return Ok(());
        }
        return Err(ApiError::conflict("deployment already finished"));
    }
    let now = db::now_us();
    let finished = FINAL.contains(&status).then_some(now);
    sqlx::query(
        "UPDATE device_deployments SET status = $1, substate = $2,
            started_ts = COALESCE(started_ts, $3), finished_ts = $4
         WHERE id = $5",
    )
    .bind(status)
    .bind(substate)
    .bind(now)
    .bind(finished)
    .bind(dd.text("id")?)
    .execute(&mut *tx)
    .await?;
    if finished.is_some() {
        maybe_finish(&mut tx, deployment_id).await?;
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_time_format() {
        assert_eq!(
            go_time("2026-11-22T10:25:56Z"),
            "2026-11-22 10:25:56 +0000 UTC"
        );
        assert_eq!(go_time("odd"), "odd");
    }
}
