//! inventory (`/api/management/v1/inventory`): devices with their
//! attributes, attribute filters, static groups
//! (`spec/mender-management-api.md` section 4).
//!
//! A device's attributes are built from its `devices` row: `identity`
//! (its identity data and `status`), `inventory` (what it uploaded),
//! `system` (`group`, `created_ts`, `updated_ts`, `check_in_time`), `tags`
//! (set by users, with an ETag). So that
//! filters run in SQL, identity, inventory and tag values are also indexed in
//! `device_attributes`, one row per value (per element of an array value),
//! kept in step by the writers of those columns.
//!
//! Updraft differences: filters on `system` attributes other than `group`
//! and timestamp-typed matching are refused (400); without `sort` devices
//! come in ID order; tags are capped at 100 a device.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json as AxumJson;
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};

use super::{Paging, UserAuth};
use crate::db::{self, RowExt, Sql};
use crate::error::{ApiError, Json};
use crate::AppState;

/// Rows for the values of one attribute: (text, number).
fn index_values(v: &Value) -> Vec<(String, Option<f64>)> {
    match v {
        Value::String(s) => vec![(s.clone(), None)],
        Value::Number(n) => vec![(n.to_string(), n.as_f64())],
        Value::Array(items) => items.iter().flat_map(index_values).collect(),
        other => vec![(other.to_string(), None)],
    }
}

/// Replace the indexed values of one scope of a device.
pub(crate) async fn index_scope(
    tx: &mut Transaction<'static, Any>,
    device_id: &str,
    scope: &str,
    attrs: &BTreeMap<String, Value>,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM device_attributes WHERE device_id = $1 AND scope = $2")
        .bind(device_id)
        .bind(scope)
        .execute(&mut **tx)
        .await?;
    let rows: Vec<(&str, String, Option<f64>)> = attrs
        .iter()
        .flat_map(|(name, v)| {
            index_values(v)
                .into_iter()
                .map(move |(t, n)| (name.as_str(), t, n))
        })
        .collect();
    // 5 values a row; 200 rows keep a statement far below both databases'
    // placeholder limits.
    for chunk in rows.chunks(200) {
        let mut sql = Sql::new(
            "INSERT INTO device_attributes (device_id, scope, name, value_text, value_num) VALUES ",
        );
        let mut first = true;
        for (name, text, num) in chunk {
            let marks = [
                sql.arg(device_id),
                sql.arg(scope),
                sql.arg(*name),
                sql.arg(text.clone()),
                match num {
                    Some(n) => sql.arg(*n),
                    None => "NULL".to_owned(),
                },
            ];
            if !first {
                sql.push(", ");
            }
            first = false;
            sql.push(&format!("({})", marks.join(", ")));
        }
        sql.push(" ON CONFLICT DO NOTHING");
        sql.query().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Index a new device's identity data.
pub(crate) async fn index_identity(
    tx: &mut Transaction<'static, Any>,
    device_id: &str,
    identity: &BTreeMap<String, Value>,
) -> Result<(), ApiError> {
    Ok(index_scope(tx, device_id, "identity", identity).await?)
}

fn parse_map(s: &str) -> BTreeMap<String, Value> {
    serde_json::from_str(s).unwrap_or_default()
}

/// Index every device once (databases made before the index existed);
/// a `settings` mark says it is done.
pub async fn backfill(pool: &db::Pool) -> Result<(), sqlx::Error> {
    if db::setting(pool, "attributes_indexed").await?.is_some() {
        return Ok(());
    }
    let rows = sqlx::query("SELECT id, identity, inventory FROM devices")
        .fetch_all(pool)
        .await?;
    for r in &rows {
        let id = r.text("id")?;
        let mut tx = pool.begin().await?;
        index_scope(&mut tx, &id, "identity", &parse_map(&r.text("identity")?)).await?;
        index_scope(&mut tx, &id, "inventory", &parse_map(&r.text("inventory")?)).await?;
        tx.commit().await?;
    }
    db::setting_or_insert(pool, "attributes_indexed", "1").await?;
    Ok(())
}

// ------------------------------------------------------------ endpoints

const SCOPES: &[&str] = &["identity", "inventory", "system", "tags"];
const GROUP_CHARS: &str =
    "Group name can only contain: upper/lowercase alphanum, -(dash), _(underscore)";

fn check_group(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 1024
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(GROUP_CHARS))
    }
}

fn attribute(name: &str, value: Value, scope: &str) -> Value {
    json!({ "name": name, "value": value, "scope": scope })
}

/// The inventory device object (section 4.1) of a `devices` row.
pub(crate) fn device_json(r: &AnyRow) -> Result<Value, ApiError> {
    let mut attrs = vec![attribute("status", json!(r.text("status")?), "identity")];
    for (k, v) in parse_map(&r.text("identity")?) {
        attrs.push(attribute(&k, v, "identity"));
    }
    for (k, v) in parse_map(&r.text("inventory")?) {
        attrs.push(attribute(&k, v, "inventory"));
    }
    if let Some(tags) = r.opt_text("tags")? {
        if let Ok(Value::Array(tags)) = serde_json::from_str::<Value>(&tags) {
            attrs.extend(tags);
        }
    }
    if let Some(g) = r.opt_text("group_name")? {
        attrs.push(attribute("group", json!(g), "system"));
    }
    let created = r.int("created_ts")?;
    let updated = r
        .int("updated_ts")?
        .max(r.opt_int("inventory_ts")?.unwrap_or(0));
    attrs.push(attribute(
        "created_ts",
        json!(db::rfc3339(created)),
        "system",
    ));
    attrs.push(attribute(
        "updated_ts",
        json!(db::rfc3339(updated)),
        "system",
    ));
    if let Some(t) = r.opt_int("check_in_ts")? {
        attrs.push(attribute("check_in_time", json!(db::rfc3339(t)), "system"));
    }
    Ok(json!({
        "id": r.text("id")?,
        "updated_ts": db::rfc3339(updated),
        "attributes": attrs,
    }))
}

/// `[<scope>/]<name>`, the scope defaulting to `inventory`.
fn scoped(key: &str) -> Result<(&str, &str), ApiError> {
    let (scope, name) = match key.split_once('/') {
        Some((s, n)) => (s, n),
        None => ("inventory", key),
    };
    if !SCOPES.contains(&scope) {
        return Err(ApiError::bad_request(format!(
            "unknown attribute scope {scope} (identity, inventory, system or tags)"
        )));
    }
    if name.is_empty() {
        return Err(ApiError::bad_request(format!(
            "attribute name missing in {key}"
        )));
    }
    Ok((scope, name))
}

/// `AND <the device has attribute scope/name equal to value>`: as text, or
/// as a number when the value reads as one.
fn push_attribute_eq(sql: &mut Sql, scope: &str, name: &str, value: &str) -> Result<(), ApiError> {
    push_attribute_in(sql, scope, name, &[value.to_owned()], false)
}

/// `AND <the device's attribute scope/name equals one of values>` (with
/// `negate`: equals none of them, or the device lacks it). Values compare
/// as text, and as numbers when they read as numbers.
fn push_attribute_in(
    sql: &mut Sql,
    scope: &str,
    name: &str,
    values: &[String],
    negate: bool,
) -> Result<(), ApiError> {
    if values.is_empty() {
        sql.push(if negate { "" } else { " AND 1 = 0" });
        return Ok(());
    }
    let not = if negate { "NOT " } else { "" };
    match (scope, name) {
        ("identity", "status") => {
            sql.push(&format!(" AND {not}"))
                .push_in("d.status", values.iter().map(String::as_str));
        }
        ("system", "group") => {
            if negate {
                sql.push(" AND (d.group_name IS NULL OR NOT")
                    .push_in("d.group_name", values.iter().map(String::as_str))
                    .push(")");
            } else {
                sql.push(" AND")
                    .push_in("d.group_name", values.iter().map(String::as_str));
            }
        }
        ("system", other) => {
            return Err(ApiError::bad_request(format!(
                "filtering on system/{other} is not supported (only system/group)"
            )))
        }
        _ => {
            let (s, n) = (sql.arg(scope), sql.arg(name));
            let mut alts = Vec::new();
            for v in values {
                alts.push(format!("a.value_text = {}", sql.arg(v.as_str())));
                if let Some(f) = v.trim().parse::<f64>().ok().filter(|f| f.is_finite()) {
                    alts.push(format!("a.value_num = {}", sql.arg(f)));
                }
            }
            sql.push(&format!(
                " AND {not}EXISTS (SELECT 1 FROM device_attributes a WHERE a.device_id = d.id
                   AND a.scope = {s} AND a.name = {n} AND ({}))",
                alts.join(" OR ")
            ));
        }
    }
    Ok(())
}

/// `AND <the device has (or, negated, lacks) attribute scope/name>`.
fn push_attribute_exists(
    sql: &mut Sql,
    scope: &str,
    name: &str,
    exists: bool,
) -> Result<(), ApiError> {
    let not = if exists { "" } else { "NOT " };
    match (scope, name) {
        ("identity", "status") | ("system", "created_ts" | "updated_ts") => {
            sql.push(if exists { "" } else { " AND 1 = 0" });
        }
        ("system", "group") => {
            sql.push(if exists {
                " AND d.group_name IS NOT NULL"
            } else {
                " AND d.group_name IS NULL"
            });
        }
        ("system", "check_in_time") => {
            sql.push(if exists {
                " AND d.check_in_ts IS NOT NULL"
            } else {
                " AND d.check_in_ts IS NULL"
            });
        }
        ("system", other) => {
            return Err(ApiError::bad_request(format!(
                "filtering on system/{other} is not supported"
            )))
        }
        _ => {
            let (s, n) = (sql.arg(scope), sql.arg(name));
            sql.push(&format!(
                " AND {not}EXISTS (SELECT 1 FROM device_attributes a WHERE a.device_id = d.id
                   AND a.scope = {s} AND a.name = {n})"
            ));
        }
    }
    Ok(())
}

/// `ORDER BY` for `sort=[<scope>/]<name>[:asc|:desc]` (default `desc`).
fn order_by(sql: &mut Sql, sort: Option<&str>) -> Result<String, ApiError> {
    let Some(sort) = sort else {
        return Ok(" ORDER BY d.id".into());
    };
    let (attr, dir) = match sort.rsplit_once(':') {
        Some((a, "asc")) => (a, "ASC"),
        Some((a, "desc")) => (a, "DESC"),
        _ => (sort, "DESC"),
    };
    let (scope, name) = scoped(attr)?;
    let by = match (scope, name) {
        ("identity", "status") => format!("d.status {dir}"),
        ("system", "group") => format!("(d.group_name IS NULL), d.group_name {dir}"),
        ("system", "created_ts") => format!("d.created_ts {dir}"),
        ("system", "updated_ts") => format!("d.updated_ts {dir}"),
        ("system", "check_in_time") => format!("(d.check_in_ts IS NULL), d.check_in_ts {dir}"),
        ("system", other) => {
            return Err(ApiError::bad_request(format!(
                "sorting on system/{other} is not supported"
            )))
        }
        _ => {
            let (s, n) = (sql.arg(scope), sql.arg(name));
            let sub = |col: &str| {
                format!(
                    "(SELECT MIN(a.{col}) FROM device_attributes a
                      WHERE a.device_id = d.id AND a.scope = {s} AND a.name = {n})"
                )
            };
            // Devices without the attribute last, on both databases;
            // numbers by value, then text.
            format!(
                "({} IS NULL), {} {dir}, {} {dir}",
                sub("value_text"),
                sub("value_num"),
                sub("value_text")
            )
        }
    };
    Ok(format!(" ORDER BY {by}, d.id"))
}

/// `GET /devices`: paged; `group`, `has_group`, `sort`, and every other
/// key an attribute filter `[<scope>/]<name>=[eq:]<value>`. `Link` and
/// `X-Total-Count`; two queries a page.
pub async fn list_devices(
    State(st): State<AppState>,
    _user: UserAuth,
    uri: Uri,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let paging = Paging::from_query(&q)?;
    let mut filter = Sql::new(" WHERE 1 = 1");
    let mut sort = None;
    for (k, v) in &q {
        match k.as_str() {
            "page" | "per_page" => {}
            "sort" => sort = Some(v.as_str()),
            "group" => {
                check_group(v)?;
                let p = filter.arg(v.as_str());
                filter.push(&format!(" AND d.group_name = {p}"));
            }
            "has_group" => match v.as_str() {
                "true" => {
                    filter.push(" AND d.group_name IS NOT NULL");
                }
                "false" => {
                    filter.push(" AND d.group_name IS NULL");
                }
                _ => return Err(ApiError::bad_request("has_group: must be true or false")),
            },
            key => {
                let (scope, name) = scoped(key)?;
                let value = v.strip_prefix("eq:").unwrap_or(v);
                push_attribute_eq(&mut filter, scope, name, value)?;
            }
        }
    }
    let mut count = Sql::new("SELECT COUNT(*) AS n FROM devices d");
    count.extend(&filter);
    let total = count.query().fetch_one(&st.db).await?.int("n")?;
    let mut sql = Sql::new("SELECT d.* FROM devices d");
    sql.extend(&filter);
    let order = order_by(&mut sql, sort)?;
    let (limit, offset) = (sql.arg(paging.per_page), sql.arg(paging.offset()));
    sql.push(&format!("{order} LIMIT {limit} OFFSET {offset}"));
    let items: Vec<Value> = sql
        .query()
        .fetch_all(&st.db)
        .await?
        .iter()
        .map(device_json)
        .collect::<Result<_, _>>()?;
    let has_next = paging.offset().saturating_add(paging.per_page) < total;
    Ok(super::paged(
        items,
        super::links(uri.path(), &q, paging, has_next),
        Some(total),
    ))
}

async fn device_row(st: &AppState, id: &str) -> Result<AnyRow, ApiError> {
    sqlx::query("SELECT * FROM devices WHERE id = $1")
        .bind(id)
        .fetch_optional(&st.db)
        .await?
        .ok_or_else(|| ApiError::not_found("Device not found"))
}

/// `GET /devices/{id}`, with the `ETag` of its tags once it has any.
pub async fn get_device(
    State(st): State<AppState>,
    _user: UserAuth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let row = device_row(&st, &id).await?;
    let mut resp = AxumJson(device_json(&row)?).into_response();
    if let Some(etag) = row
        .opt_text("tags_etag")?
        .and_then(|e| HeaderValue::from_str(&e).ok())
    {
        resp.headers_mut().insert(header::ETAG, etag);
    }
    Ok(resp)
}

/// One tag in a `PUT`/`PATCH` of a device's tags.
#[derive(Deserialize)]
pub struct Tag {
    name: String,
    value: String,
    #[serde(default)]
    description: Option<String>,
}

/// Most tags one device may carry.
const MAX_TAGS: usize = 100;

async fn write_tags(
    st: &AppState,
    id: &str,
    headers: &HeaderMap,
    new: Vec<Tag>,
    replace: bool,
) -> Result<StatusCode, ApiError> {
    for t in &new {
        if t.name.is_empty() || t.name.len() > 1024 {
            return Err(ApiError::bad_request(
                "tag name must be 1 to 1024 characters",
            ));
        }
        if t.value.len() > 4096 || t.description.as_ref().is_some_and(|d| d.len() > 4096) {
            return Err(ApiError::bad_request(format!(
                "tag {}: value and description must be at most 4096 characters",
                t.name
            )));
        }
    }
    let if_match = headers.get(header::IF_MATCH).map(|v| {
        v.to_str()
            .unwrap_or_default()
            .trim()
            .trim_matches('"')
            .to_owned()
    });
    let mut tx = st.db.begin().await?;
    let row = sqlx::query("SELECT tags, tags_etag FROM devices WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| ApiError::not_found("Device not found"))?;
    if let Some(want) = if_match {
        if row.opt_text("tags_etag")?.as_deref() != Some(want.as_str()) {
            return Err(ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "ETag does not match",
            ));
        }
    }
    let mut tags: Vec<Value> = if replace {
        Vec::new()
    } else {
        row.opt_text("tags")?
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    };
    let now = db::rfc3339(db::now_us());
    for t in new {
        tags.retain(|old| old["name"] != t.name.as_str());
        let mut v = json!({"name": t.name, "value": t.value, "scope": "tags", "timestamp": now});
        if let Some(d) = t.description {
            v["description"] = json!(d);
        }
        tags.push(v);
    }
    if tags.len() > MAX_TAGS {
        return Err(ApiError::bad_request(format!(
            "a device may carry at most {MAX_TAGS} tags"
        )));
    }
    let index: BTreeMap<String, Value> = tags
        .iter()
        .filter_map(|t| Some((t["name"].as_str()?.to_owned(), t["value"].clone())))
        .collect();
    sqlx::query("UPDATE devices SET tags = $1, tags_etag = $2, inventory_ts = $3 WHERE id = $4")
        .bind(Value::Array(tags).to_string())
        .bind(db::new_id())
        .bind(db::now_us())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    index_scope(&mut tx, id, "tags", &index).await?;
    tx.commit().await?;
    Ok(StatusCode::OK)
}

/// `PUT /devices/{id}/tags` `[{"name", "value", "description"?}]`:
/// replaces the device's tags; 200; 412 when `If-Match` is not their ETag.
pub async fn put_tags(
    State(st): State<AppState>,
    _user: UserAuth,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(tags): Json<Vec<Tag>>,
) -> Result<StatusCode, ApiError> {
    write_tags(&st, &id, &headers, tags, true).await
}

/// `PATCH /devices/{id}/tags`: adds or updates the named tags; 200.
pub async fn patch_tags(
    State(st): State<AppState>,
    _user: UserAuth,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(tags): Json<Vec<Tag>>,
) -> Result<StatusCode, ApiError> {
    write_tags(&st, &id, &headers, tags, false).await
}

/// `DELETE /devices/{id}`: forgets what the device uploaded (its
/// `inventory` attributes); 204.
pub async fn clear_device(
    State(st): State<AppState>,
    _user: UserAuth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut tx = st.db.begin().await?;
    sqlx::query("UPDATE devices SET inventory = '{}', inventory_ts = $1 WHERE id = $2")
        .bind(db::now_us())
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    index_scope(&mut tx, &id, "inventory", &BTreeMap::new()).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /devices/{id}/group`: `{"group": name}` or `{"group": null}`.
pub async fn get_group(
    State(st): State<AppState>,
    _user: UserAuth,
    Path(id): Path<String>,
) -> Result<AxumJson<Value>, ApiError> {
    let r = device_row(&st, &id).await?;
    Ok(AxumJson(json!({ "group": r.opt_text("group_name")? })))
}

/// Body of `PUT /devices/{id}/group`.
#[derive(Deserialize)]
pub struct GroupBody {
    group: String,
}

/// `PUT /devices/{id}/group` `{"group": name}`: puts the device in that
/// group (out of any other); 204.
pub async fn set_group(
    State(st): State<AppState>,
    _user: UserAuth,
    Path(id): Path<String>,
    Json(body): Json<GroupBody>,
) -> Result<StatusCode, ApiError> {
    check_group(&body.group)?;
    let res = sqlx::query("UPDATE devices SET group_name = $1 WHERE id = $2")
        .bind(&body.group)
        .bind(&id)
        .execute(&st.db)
        .await?;
    if res.rows_affected() == 0 {
        return Err(ApiError::not_found("Device not found"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /devices/{id}/group/{name}`: 204; 404 unless the device is in
/// that group.
pub async fn unset_group(
    State(st): State<AppState>,
    _user: UserAuth,
    Path((id, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let res = sqlx::query("UPDATE devices SET group_name = NULL WHERE id = $1 AND group_name = $2")
        .bind(&id)
        .bind(&name)
        .execute(&st.db)
        .await?;
    if res.rows_affected() == 0 {
        return Err(ApiError::not_found("Device not found in that group"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Query of `GET /groups`.
#[derive(Deserialize)]
pub struct GroupsQuery {
    status: Option<String>,
}

/// `GET /groups` (`status`: only groups with devices in that status): the
/// group names, sorted.
pub async fn list_groups(
    State(st): State<AppState>,
    _user: UserAuth,
    Query(q): Query<GroupsQuery>,
) -> Result<AxumJson<Vec<String>>, ApiError> {
    let mut sql = Sql::new("SELECT DISTINCT group_name FROM devices WHERE group_name IS NOT NULL");
    if let Some(s) = &q.status {
        if !super::devauth::DEVICE_STATUSES.contains(&s.as_str()) {
            return Err(ApiError::bad_request(
                "status must be one of: pending, accepted, rejected, preauthorized, noauth",
            ));
        }
        let p = sql.arg(s.as_str());
        sql.push(&format!(" AND status = {p}"));
    }
    sql.push(" ORDER BY group_name");
    let names = sql
        .query()
        .fetch_all(&st.db)
        .await?
        .iter()
        .map(|r| r.text("group_name"))
        .collect::<Result<_, _>>()?;
    Ok(AxumJson(names))
}

/// `GET /groups/{name}/devices`: the IDs of its devices, paged; `Link`
/// and `X-Total-Count`; 404 when no device is in it.
pub async fn group_devices(
    State(st): State<AppState>,
    _user: UserAuth,
    uri: Uri,
    Path(name): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    check_group(&name)?;
    let paging = Paging::from_query(&q)?;
    let total = sqlx::query("SELECT COUNT(*) AS n FROM devices WHERE group_name = $1")
        .bind(&name)
        .fetch_one(&st.db)
        .await?
        .int("n")?;
    if total == 0 {
        return Err(ApiError::not_found("group not found"));
    }
    let ids: Vec<String> =
        sqlx::query("SELECT id FROM devices WHERE group_name = $1 ORDER BY id LIMIT $2 OFFSET $3")
            .bind(&name)
            .bind(paging.per_page)
            .bind(paging.offset())
            .fetch_all(&st.db)
            .await?
            .iter()
            .map(|r| r.text("id"))
            .collect::<Result<_, _>>()?;
    let has_next = paging.offset().saturating_add(paging.per_page) < total;
    Ok(super::paged(
        ids,
        super::links(uri.path(), &q, paging, has_next),
        Some(total),
    ))
}

fn device_ids(ids: &[String]) -> Result<(), ApiError> {
    if ids.is_empty() {
        return Err(ApiError::bad_request("the list of device IDs is empty"));
    }
    if ids.iter().any(|i| i.is_empty() || i.len() > 128) {
        return Err(ApiError::bad_request("invalid device ID in the list"));
    }
    Ok(())
}

/// `PATCH /groups/{name}/devices` `[ids]`: puts those devices in the
/// group; `{"updated_count", "matched_count"}`.
pub async fn add_to_group(
    State(st): State<AppState>,
    _user: UserAuth,
    Path(name): Path<String>,
    Json(ids): Json<Vec<String>>,
) -> Result<AxumJson<Value>, ApiError> {
    check_group(&name)?;
    device_ids(&ids)?;
    let mut tx = st.db.begin().await?;
    let mut matched = 0;
    let mut updated = 0;
    for chunk in ids.chunks(500) {
        let mut count = Sql::new("SELECT COUNT(*) AS n FROM devices WHERE");
        count.push_in("id", chunk.iter().map(String::as_str));
        matched += count.query().fetch_one(&mut *tx).await?.int("n")?;
        let mut sql = Sql::new("UPDATE devices SET group_name = ");
        let g = sql.arg(name.as_str());
        sql.push(&format!(
            "{g} WHERE (group_name IS NULL OR group_name <> {g}) AND"
        ))
        .push_in("id", chunk.iter().map(String::as_str));
        updated += sql.query().execute(&mut *tx).await?.rows_affected();
    }
    tx.commit().await?;
    Ok(AxumJson(
        json!({ "updated_count": updated, "matched_count": matched }),
    ))
}

/// `DELETE /groups/{name}/devices` `[ids]`: takes those devices out of the
/// group; `{"updated_count"}`.
pub async fn remove_from_group(
    State(st): State<AppState>,
    _user: UserAuth,
    Path(name): Path<String>,
    Json(ids): Json<Vec<String>>,
) -> Result<AxumJson<Value>, ApiError> {
    check_group(&name)?;
    device_ids(&ids)?;
    let mut tx = st.db.begin().await?;
    let mut updated = 0;
    for chunk in ids.chunks(500) {
        let mut sql = Sql::new("UPDATE devices SET group_name = NULL WHERE group_name = ");
        let g = sql.arg(name.as_str());
        sql.push(&format!("{g} AND"))
            .push_in("id", chunk.iter().map(String::as_str));
        updated += sql.query().execute(&mut *tx).await?.rows_affected();
    }
    tx.commit().await?;
    Ok(AxumJson(json!({ "updated_count": updated })))
}

/// `DELETE /groups/{name}`: the group is removed from all its devices;
/// `{"updated_count"}`.
pub async fn delete_group(
    State(st): State<AppState>,
    _user: UserAuth,
    Path(name): Path<String>,
) -> Result<AxumJson<Value>, ApiError> {
    check_group(&name)?;
    let res = sqlx::query("UPDATE devices SET group_name = NULL WHERE group_name = $1")
        .bind(&name)
        .execute(&st.db)
        .await?;
    Ok(AxumJson(json!({ "updated_count": res.rows_affected() })))
}

/// `GET /api/management/v2/inventory/filters/attributes`: the attribute
/// names seen, with how many devices have each, most common first.
pub async fn filter_attributes(
    State(st): State<AppState>,
    _user: UserAuth,
) -> Result<AxumJson<Vec<Value>>, ApiError> {
    let rows = sqlx::query(
        "SELECT scope, name, COUNT(DISTINCT device_id) AS n FROM device_attributes
         GROUP BY scope, name ORDER BY n DESC, scope, name LIMIT 500",
    )
    .fetch_all(&st.db)
    .await?;
    let mut out = vec![
        json!({"name": "status", "scope": "identity", "count": sqlx::query("SELECT COUNT(*) AS n FROM devices").fetch_one(&st.db).await?.int("n")?}),
    ];
    for r in &rows {
        out.push(json!({"name": r.text("name")?, "scope": r.text("scope")?, "count": r.int("n")?}));
    }
    Ok(AxumJson(out))
}

/// One predicate of a v2 search.
#[derive(Deserialize)]
pub struct Predicate {
    scope: String,
    attribute: String,
    #[serde(rename = "type")]
    kind: String,
    value: Value,
}

/// A sort key of a v2 search.
#[derive(Deserialize)]
pub struct SortKey {
    scope: String,
    attribute: String,
    #[serde(default)]
    order: Option<String>,
}

/// An attribute a v2 search returns.
#[derive(Deserialize)]
pub struct Selection {
    scope: String,
    attribute: String,
}

/// Body of `POST /api/management/v2/inventory/filters/search`.
#[derive(Deserialize)]
pub struct SearchBody {
    #[serde(default)]
    page: Option<i64>,
    #[serde(default)]
    per_page: Option<i64>,
    #[serde(default)]
    filters: Vec<Predicate>,
    #[serde(default)]
    sort: Vec<SortKey>,
    #[serde(default)]
    attributes: Option<Vec<Selection>>,
    #[serde(default)]
    device_ids: Vec<String>,
    #[serde(default)]
    text: Option<String>,
}

/// A predicate's value as the text(s) it compares with.
fn predicate_values(p: &Predicate) -> Result<Vec<String>, ApiError> {
    let one = |v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(ApiError::bad_request(format!(
            "invalid value for {}/{}",
            p.scope, p.attribute
        ))),
    };
    match (&p.value, p.kind.as_str()) {
        (Value::Array(items), "$in" | "$nin") => items.iter().map(one).collect(),
        (_, "$in" | "$nin") => Err(ApiError::bad_request(format!(
            "{} needs an array value ({}/{})",
            p.kind, p.scope, p.attribute
        ))),
        (v, _) => Ok(vec![one(v)?]),
    }
}

/// `POST /api/management/v2/inventory/filters/search`: devices matching
/// every predicate (`$eq`, `$ne`, `$in`, `$nin`, `$exists`), `device_ids`
/// and `text` (a substring of any identity or inventory value); `sort` by
/// its first key; `attributes` limits what is returned. `X-Total-Count`,
/// no `Link` (as upstream). Two queries.
pub async fn search(
    State(st): State<AppState>,
    _user: UserAuth,
    Json(body): Json<SearchBody>,
) -> Result<Response, ApiError> {
    let page = body.page.unwrap_or(1);
    let per_page = body.per_page.unwrap_or(20);
    if page < 1 {
        return Err(ApiError::bad_request("Can't parse param page"));
    }
    if !(1..=500).contains(&per_page) {
        return Err(ApiError::bad_request("Param per_page is out of bounds"));
    }
    let paging = Paging { page, per_page };
    super::check_filter_len(body.filters.len(), "filters")?;
    super::check_filter_len(body.device_ids.len(), "device_ids")?;
    for f in &body.filters {
        if let Value::Array(v) = &f.value {
            super::check_filter_len(v.len(), "filter value")?;
        }
    }
    let mut filter = Sql::new(" WHERE 1 = 1");
    for p in &body.filters {
        if !SCOPES.contains(&p.scope.as_str()) || p.attribute.is_empty() {
            return Err(ApiError::bad_request(format!(
                "invalid filter predicate {}/{}",
                p.scope, p.attribute
            )));
        }
        let (scope, name) = (p.scope.as_str(), p.attribute.as_str());
        match p.kind.as_str() {
            "$eq" | "$in" => {
                push_attribute_in(&mut filter, scope, name, &predicate_values(p)?, false)?
            }
            "$ne" | "$nin" => {
                push_attribute_in(&mut filter, scope, name, &predicate_values(p)?, true)?
            }
            "$exists" => {
                let exists = p
                    .value
                    .as_bool()
                    .ok_or_else(|| ApiError::bad_request("$exists needs true or false"))?;
                push_attribute_exists(&mut filter, scope, name, exists)?
            }
            other => {
                return Err(ApiError::bad_request(format!(
                "invalid filter predicate type {other} (supported: $eq, $ne, $in, $nin, $exists)"
            )))
            }
        }
    }
    if !body.device_ids.is_empty() {
        filter
            .push(" AND")
            .push_in("d.id", body.device_ids.iter().map(String::as_str));
    }
    if let Some(text) = body
        .text
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        let p = filter.arg(db::like_pattern(&text.to_lowercase()));
        filter.push(&format!(
            " AND (LOWER(d.id) LIKE {p} ESCAPE '\\' OR EXISTS (SELECT 1 FROM device_attributes a
               WHERE a.device_id = d.id AND LOWER(a.value_text) LIKE {p} ESCAPE '\\'))"
        ));
    }
    let mut count = Sql::new("SELECT COUNT(*) AS n FROM devices d");
    count.extend(&filter);
    let total = count.query().fetch_one(&st.db).await?.int("n")?;
    let mut sql = Sql::new("SELECT d.* FROM devices d");
    sql.extend(&filter);
    let sort = body.sort.first().map(|k| {
        format!(
            "{}/{}:{}",
            k.scope,
            k.attribute,
            k.order.as_deref().unwrap_or("asc")
        )
    });
    if let Some(k) = body.sort.first() {
        if !SCOPES.contains(&k.scope.as_str())
            || !matches!(k.order.as_deref(), None | Some("asc" | "desc"))
        {
            return Err(ApiError::bad_request("invalid sort key"));
        }
    }
    let order = order_by(&mut sql, sort.as_deref())?;
    let (limit, offset) = (sql.arg(paging.per_page), sql.arg(paging.offset()));
    sql.push(&format!("{order} LIMIT {limit} OFFSET {offset}"));
    let mut items: Vec<Value> = sql
        .query()
        .fetch_all(&st.db)
        .await?
        .iter()
        .map(device_json)
        .collect::<Result<_, _>>()?;
    if let Some(sel) = &body.attributes {
        for d in &mut items {
            if let Some(attrs) = d["attributes"].as_array_mut() {
                attrs.retain(|a| {
                    sel.iter().any(|s| {
                        a["scope"] == s.scope.as_str() && a["name"] == s.attribute.as_str()
                    })
                });
            }
        }
    }
    Ok(super::paged(items, Vec::new(), Some(total)))
}
