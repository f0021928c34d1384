//! The routes: Mender's device API (`/api/devices/...`) and management API
//! (`/api/management/...`), plus the token checks they share.
//!
//! Device and user tokens are both our JWTs but are told apart by their
//! `mender.device` / `mender.user` claims, so neither opens the other's API.

pub mod deployments;
pub mod devauth;
pub mod device;
pub mod generate;
pub mod inventory;
pub mod useradm;

use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::routing::{delete, get, patch, post, put};
use axum::Router;

use crate::db::{self, RowExt};
use crate::error::ApiError;
use crate::AppState;

/// All routes, with the request-ID/error middleware and body limits.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.max_body_size;
    let artifact_limit = usize::try_from(state.config.max_artifact_size)
        .unwrap_or(usize::MAX)
        .saturating_add(1 << 20);
    const DEV: &str = "/api/devices/v1";
    const DEPL: &str = "/api/management/v1/deployments";
    const DEVAUTH: &str = "/api/management/v2/devauth";
    const USERADM: &str = "/api/management/v1/useradm";
    const INV: &str = "/api/management/v1/inventory";

    let upload = Router::new()
        .route(
            &format!("{DEPL}/artifacts"),
            post(deployments::upload_artifact).get(deployments::list_artifacts),
        )
        .route(
            &format!("{DEPL}/artifacts/generate"),
            post(generate::generate_artifact),
        )
        .layer(DefaultBodyLimit::max(artifact_limit));

    Router::new()
        // Device API.
        .route(
            &format!("{DEV}/authentication/auth_requests"),
            post(device::auth_request),
        )
        .route(
            &format!("{DEV}/inventory/device/attributes"),
            put(device::inventory_put).patch(device::inventory_patch),
        )
        .route(
            "/api/devices/v2/deployments/device/deployments/next",
            post(device::next_v2),
        )
        .route(
            &format!("{DEV}/deployments/device/deployments/next"),
            post(device::next_v1_post).get(device::next_v1_get),
        )
        .route(
            &format!("{DEV}/deployments/device/deployments/{{id}}/status"),
            put(device::status),
        )
        .route(
            &format!("{DEV}/deployments/device/deployments/{{id}}/log"),
            put(device::log),
        )
        .route(
            &format!("{DEV}/download/{{id}}"),
            get(crate::artifacts::download),
        )
        // useradm.
        .route(&format!("{USERADM}/auth/login"), post(useradm::login))
        .route(&format!("{USERADM}/auth/logout"), post(useradm::logout))
        .route(
            &format!("{USERADM}/users"),
            get(useradm::list_users).post(useradm::create_user),
        )
        .route(
            &format!("{USERADM}/users/{{id}}"),
            get(useradm::get_user)
                .put(useradm::update_user)
                .delete(useradm::delete_user),
        )
        .route(
            &format!("{USERADM}/settings"),
            get(useradm::get_settings).post(useradm::save_settings),
        )
        .route(
            &format!("{USERADM}/settings/me"),
            get(useradm::get_my_settings).post(useradm::save_my_settings),
        )
        .route(
            &format!("{USERADM}/settings/tokens"),
            get(useradm::list_tokens).post(useradm::create_token),
        )
        .route(
            &format!("{USERADM}/settings/tokens/{{id}}"),
            delete(useradm::delete_token),
        )
        // devauth.
        .route(
            &format!("{DEVAUTH}/devices"),
            get(devauth::list_devices).post(devauth::preauthorize),
        )
        .route(
            &format!("{DEVAUTH}/devices/search"),
            post(devauth::search_devices),
        )
        .route(
            &format!("{DEVAUTH}/tokens/{{jti}}"),
            delete(devauth::revoke_token),
        )
        .route(&format!("{DEVAUTH}/limits/{{name}}"), get(devauth::limit))
        .route(
            &format!("{DEVAUTH}/devices/count"),
            get(devauth::count_devices),
        )
        .route(
            &format!("{DEVAUTH}/devices/{{id}}"),
            get(devauth::get_device).delete(devauth::decommission),
        )
        .route(
            &format!("{DEVAUTH}/devices/{{id}}/auth/{{aid}}/status"),
            put(devauth::set_auth_status).get(devauth::get_auth_status),
        )
        .route(
            &format!("{DEVAUTH}/devices/{{id}}/auth/{{aid}}"),
            delete(devauth::delete_auth_set),
        )
        // inventory.
        .route(&format!("{INV}/devices"), get(inventory::list_devices))
        .route(
            &format!("{INV}/devices/{{id}}"),
            get(inventory::get_device).delete(inventory::clear_device),
        )
        .route(
            &format!("{INV}/devices/{{id}}/tags"),
            put(inventory::put_tags).patch(inventory::patch_tags),
        )
        .route(
            &format!("{INV}/devices/{{id}}/group"),
            get(inventory::get_group).put(inventory::set_group),
        )
        .route(
            &format!("{INV}/devices/{{id}}/group/{{name}}"),
            delete(inventory::unset_group),
        )
        .route(&format!("{INV}/groups"), get(inventory::list_groups))
        .route(
            &format!("{INV}/groups/{{name}}"),
            delete(inventory::delete_group),
        )
        .route(
            &format!("{INV}/groups/{{name}}/devices"),
            get(inventory::group_devices)
                .patch(inventory::add_to_group)
                .delete(inventory::remove_from_group),
        )
        .route(
            "/api/management/v2/inventory/filters/attributes",
            get(inventory::filter_attributes),
        )
        .route(
            "/api/management/v2/inventory/filters/search",
            post(inventory::search),
        )
        // deployments.
        .route(
            &format!("{DEPL}/artifacts/list"),
            get(deployments::list_artifacts_paged),
        )
        .route(
            &format!("{DEPL}/artifacts/{{id}}"),
            get(deployments::get_artifact)
                .put(deployments::edit_artifact)
                .delete(deployments::delete_artifact),
        )
        .route(
            &format!("{DEPL}/artifacts/{{id}}/download"),
            get(deployments::artifact_link),
        )
        .route(
            &format!("{DEPL}/artifacts/directupload"),
            post(deployments::direct_upload),
        )
        .route(
            &format!("{DEPL}/artifacts/directupload/{{id}}/complete"),
            post(deployments::direct_upload),
        )
        .route(
            &format!("{DEPL}/deployments"),
            post(deployments::create_deployment).get(deployments::list_deployments),
        )
        .route(
            &format!("{DEPL}/deployments/group/{{name}}"),
            post(deployments::create_group_deployment),
        )
        .route(
            &format!("{DEPL}/deployments/{{id}}"),
            get(deployments::get_deployment),
        )
        .route(
            &format!("{DEPL}/deployments/{{id}}/status"),
            put(deployments::abort),
        )
        .route(
            &format!("{DEPL}/deployments/{{id}}/statistics"),
            get(deployments::statistics),
        )
        .route(
            &format!("{DEPL}/deployments/{{id}}/devices"),
            get(deployments::deployment_devices),
        )
        .route(
            &format!("{DEPL}/deployments/{{id}}/devices/list"),
            get(deployments::deployment_devices_list),
        )
        .route(
            &format!("{DEPL}/deployments/statistics/list"),
            post(deployments::statistics_list),
        )
        .route(
            &format!("{DEPL}/deployments/devices/{{id}}"),
            get(deployments::device_history).delete(deployments::abort_device),
        )
        .route(
            &format!("{DEPL}/deployments/devices/{{id}}/history"),
            delete(deployments::delete_device_history),
        )
        .route(
            &format!("{DEPL}/deployments/releases"),
            get(deployments::releases_v1),
        )
        .route(
            &format!("{DEPL}/deployments/releases/list"),
            get(deployments::releases_v1_list),
        )
        .route(
            "/api/management/v2/deployments/deployments/releases",
            get(deployments::releases_v2).delete(deployments::delete_releases),
        )
        .route(
            "/api/management/v2/deployments/deployments/releases/{name}",
            patch(deployments::patch_release),
        )
        .route(
            "/api/management/v2/deployments/deployments/releases/{name}/tags",
            put(deployments::put_release_tags),
        )
        .route(
            &format!("{DEPL}/limits/storage"),
            get(deployments::storage_limit),
        )
        .route(
            &format!("{DEPL}/deployments/{{id}}/device_list"),
            get(deployments::device_list),
        )
        .route(
            &format!("{DEPL}/deployments/{{id}}/devices/{{devid}}/log"),
            get(deployments::device_log),
        )
        .layer(DefaultBodyLimit::max(body_limit))
        .merge(upload)
        .fallback(|| async { ApiError::not_found("Resource not found") })
        .layer(axum::middleware::from_fn(crate::error::request_id))
        .with_state(state)
}

/// Unix seconds now.
pub(crate) fn now_s() -> i64 {
    db::now_us() / 1_000_000
}

fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let v = v
        .to_str()
        .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
    let (scheme, token) = v
        .split_once(' ')
        .ok_or_else(|| ApiError::unauthorized("malformed Authorization header"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::unauthorized("malformed Authorization header"));
    }
    Ok(Some(token.trim()))
}

fn cookie_jwt(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("JWT="))
}

/// An authenticated device (its token verified, its auth set accepted).
#[derive(Debug, Clone)]
pub struct DeviceAuth {
    /// The device ID (`sub`).
    pub device_id: String,
    /// The auth set ID (`jti`).
    pub auth_set_id: String,
}

impl FromRequestParts<AppState> for DeviceAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers)?
            .ok_or_else(|| ApiError::unauthorized("authorization not present in header"))?;
        let claims = st
            .keys
            .verify(token, now_s())
            .map_err(|_| ApiError::unauthorized("invalid jwt"))?;
        if !claims.device || claims.user {
            return Err(ApiError::unauthorized("invalid jwt"));
        }
        let row = sqlx::query(
            "SELECT a.status, a.token_valid, d.decommissioning, d.check_in_ts
             FROM auth_sets a JOIN devices d ON d.id = a.device_id
             WHERE a.id = $1 AND a.device_id = $2",
        )
        .bind(&claims.jti)
        .bind(&claims.sub)
        .fetch_optional(&st.db)
        .await?
        .ok_or_else(|| ApiError::unauthorized("unauthorized"))?;
        if row.text("status")? != "accepted"
            || row.int("token_valid")? != 1
            || row.int("decommissioning")? != 0
        {
            return Err(ApiError::unauthorized("unauthorized"));
        }
        // Check-in time, written at most once a minute per device.
        let now = db::now_us();
        if row
            .opt_int("check_in_ts")?
            .is_none_or(|t| now - t > 60_000_000)
        {
            sqlx::query("UPDATE devices SET check_in_ts = $1 WHERE id = $2")
                .bind(now)
                .bind(&claims.sub)
                .execute(&st.db)
                .await?;
        }
        Ok(DeviceAuth {
            device_id: claims.sub,
            auth_set_id: claims.jti,
        })
    }
}

/// An authenticated user (management token verified and not revoked).
#[derive(Debug, Clone)]
pub struct UserAuth {
    /// The user ID (`sub`).
    pub user_id: String,
    /// The token ID (`jti`).
    pub jti: String,
}

impl FromRequestParts<AppState> for UserAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        let token = match bearer(&parts.headers)? {
            Some(t) => t,
            None => cookie_jwt(&parts.headers)
                .ok_or_else(|| ApiError::unauthorized("authorization not present in header"))?,
        };
        let claims = st
            .keys
            .verify(token, now_s())
            .map_err(|_| ApiError::unauthorized("invalid jwt"))?;
        if !claims.user
            || claims.device
            || claims.jti.is_empty()
            || claims.sub.is_empty()
            || claims.iss.is_empty()
            || claims.scp.as_deref().is_none_or(str::is_empty)
        {
            return Err(ApiError::unauthorized("invalid jwt"));
        }
        let found = sqlx::query(
            "SELECT t.name, t.last_used FROM user_tokens t JOIN users u ON u.id = t.user_id
             WHERE t.jti = $1 AND t.user_id = $2",
        )
        .bind(&claims.jti)
        .bind(&claims.sub)
        .fetch_optional(&st.db)
        .await?
        .ok_or_else(|| ApiError::unauthorized("unauthorized"))?;
        // A personal access token's last use, written at most every 5 min.
        let now = db::now_us();
        if found.opt_text("name")?.is_some()
            && found
                .opt_int("last_used")?
                .is_none_or(|t| now - t > 300_000_000)
        {
            sqlx::query("UPDATE user_tokens SET last_used = $1 WHERE jti = $2")
                .bind(now)
                .bind(&claims.jti)
                .execute(&st.db)
                .await?;
        }
        Ok(UserAuth {
            user_id: claims.sub,
            jti: claims.jti,
        })
    }
}

/// `page` / `per_page` query values, checked.
#[derive(Debug, Clone, Copy)]
pub struct Paging {
    /// From 1.
    pub page: i64,
    /// 1..=500.
    pub per_page: i64,
}

impl Paging {
    /// Parse from the query (defaults 1 and 20).
    pub fn from_query(q: &[(String, String)]) -> Result<Paging, ApiError> {
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let page = match get("page") {
            None => 1,
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|p| *p >= 1)
                .ok_or_else(|| ApiError::bad_request("Can't parse param page"))?,
        };
        let per_page = match get("per_page") {
            None => 20,
            Some(v) => {
                let n = v
                    .parse::<i64>()
                    .map_err(|_| ApiError::bad_request("Can't parse param per_page"))?;
                if !(1..=500).contains(&n) {
                    return Err(ApiError::bad_request("Param per_page is out of bounds"));
                }
                n
            }
        };
        Ok(Paging { page, per_page })
    }
    /// Rows to skip.
    pub fn offset(&self) -> i64 {
        (self.page - 1).saturating_mul(self.per_page)
    }
}

/// Go's `url.QueryEscape`: unreserved bytes as they are, space as `+`,
/// everything else `%XX`.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The `Link` header fields of a paged answer, as Mender writes them: one
/// field per relation, `prev` (page > 1), `next` (`has_next`), `first`;
/// each a relative URL of `path` and the request's query with `page` and
/// `per_page` set, keys sorted (values of one key keep their order).
pub fn links(
    path: &str,
    query: &[(String, String)],
    paging: Paging,
    has_next: bool,
) -> Vec<(header::HeaderName, header::HeaderValue)> {
    let url = |page: i64| {
        let mut pairs: Vec<(&str, String)> = query
            .iter()
            .filter(|(k, _)| k != "page" && k != "per_page")
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        pairs.push(("page", page.to_string()));
        pairs.push(("per_page", paging.per_page.to_string()));
        pairs.sort_by(|a, b| a.0.cmp(b.0));
        let q: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
            .collect();
        format!("{path}?{}", q.join("&"))
    };
    let mut rels = Vec::new();
    if paging.page > 1 {
        rels.push((paging.page - 1, "prev"));
    }
    if has_next {
        rels.push((paging.page.saturating_add(1), "next"));
    }
    rels.push((1, "first"));
    rels.into_iter()
        .filter_map(|(page, rel)| {
            header::HeaderValue::from_str(&format!("<{}>; rel=\"{rel}\"", url(page)))
                .ok()
                .map(|v| (header::LINK, v))
        })
        .collect()
}

/// A paged JSON answer: `Link` fields and, when given, `X-Total-Count`.
pub fn paged<T: serde::Serialize>(
    items: T,
    links: Vec<(header::HeaderName, header::HeaderValue)>,
    total: Option<i64>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut resp = axum::Json(items).into_response();
    let h = resp.headers_mut();
    for (name, value) in links {
        h.append(name, value);
    }
    if let Some(n) = total {
        h.insert("x-total-count", header::HeaderValue::from(n));
    }
    resp
}

/// Most values one filter may list (IDs, statuses, ...): bounds the size
/// of the statement built from them.
pub const MAX_FILTER_VALUES: usize = 1000;

/// 400 when a filter lists more than [`MAX_FILTER_VALUES`] values.
pub fn check_filter_len(n: usize, what: &str) -> Result<(), ApiError> {
    if n > MAX_FILTER_VALUES {
        return Err(ApiError::bad_request(format!(
            "{what}: at most {MAX_FILTER_VALUES} values"
        )));
    }
    Ok(())
}

/// The values of a repeatable query key, in order.
pub fn query_values<'a>(q: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    q.iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_fields_as_mender_writes_them() {
        let q = vec![
            ("status".to_owned(), "pending".to_owned()),
            ("page".to_owned(), "2".to_owned()),
            ("id".to_owned(), "a b&c".to_owned()),
            ("id".to_owned(), "0".to_owned()),
        ];
        let l = links(
            "/x",
            &q,
            Paging {
                page: 2,
                per_page: 20,
            },
            true,
        );
        let v: Vec<&str> = l.iter().map(|(_, v)| v.to_str().unwrap_or("")).collect();
        assert_eq!(
            v,
            [
                "</x?id=a+b%26c&id=0&page=1&per_page=20&status=pending>; rel=\"prev\"",
                "</x?id=a+b%26c&id=0&page=3&per_page=20&status=pending>; rel=\"next\"",
                "</x?id=a+b%26c&id=0&page=1&per_page=20&status=pending>; rel=\"first\"",
            ]
        );
        let l = links(
            "/x",
            &[],
            Paging {
                page: 1,
                per_page: 5,
            },
            false,
        );
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].1, "</x?page=1&per_page=5>; rel=\"first\"");
    }
}
