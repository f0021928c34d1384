//! One error type for every handler, and the middleware that gives each
//! response its request ID.
//!
//! A handler returns [`ApiError`]; it becomes an HTTP status plus Mender's
//! error body `{"error": "...", "request_id": "..."}`. Internal failures
//! (database, file system) are logged with the request ID and answered with
//! `500 {"error":"internal error"}`: details never reach the client.
//!
//! The request ID is the client's `X-MEN-RequestID` (when it is a sane
//! value) or a fresh UUID; [`request_id`] echoes it in the response header
//! and writes it into error bodies.

use std::borrow::Cow;
use std::fmt;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The request-ID header Mender clients send and expect back.
pub const REQUEST_ID_HEADER: &str = "x-men-requestid";

/// An error answered to a client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: Cow<'static, str>,
    /// Logged, never returned.
    internal: Option<String>,
}

impl ApiError {
    /// An error with this status and message for the client.
    pub fn new(status: StatusCode, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError {
            status,
            message: message.into(),
            internal: None,
        }
    }
    /// 400.
    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    /// 401.
    pub fn unauthorized(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }
    /// 404.
    pub fn not_found(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    /// 409.
    pub fn conflict(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }
    /// 422.
    pub fn unprocessable(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }
    /// 500 with a logged cause.
    pub fn internal(cause: impl fmt::Display) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: Cow::Borrowed("internal error"),
            internal: Some(cause.to_string()),
        }
    }
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
    /// The message the client sees.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::internal(format_args!("database: {e}"))
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        ApiError::internal(format_args!("i/o: {e}"))
    }
}

/// Carried from [`ApiError::into_response`] to the [`request_id`]
/// middleware, which renders the body once it knows the request ID.
#[derive(Clone)]
struct ErrorMessage(Cow<'static, str>, Option<String>);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = self.status.into_response();
        resp.extensions_mut()
            .insert(ErrorMessage(self.message, self.internal));
        resp
    }
}

/// The request ID of the current request (an extension set by
/// [`request_id`]).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

fn sane_request_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    ok.then(|| s.to_owned())
}

/// Middleware: picks the request ID, sets `X-MEN-RequestID` on the response
/// and renders error bodies (including the framework's own 404/405/413/415)
/// as `{"error": ..., "request_id": ...}`.
pub async fn request_id(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(sane_request_id)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let mut resp = next.run(req).await;
    let status = resp.status();
    if let Some(ErrorMessage(message, internal)) = resp.extensions_mut().remove::<ErrorMessage>() {
        if let Some(cause) = internal {
            tracing::error!(request_id = %id, %method, %path, "{cause}");
        } else {
            tracing::debug!(request_id = %id, %method, %path, %status, "{message}");
        }
        resp = error_body(status, &message, &id, resp);
    } else if status.is_client_error() || status.is_server_error() {
        // The framework's own rejections (bad path or query, 405, ...) come
        // as plain text or empty: give them the same JSON form.
        let plain = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|ct| ct.starts_with("text/plain"));
        if plain != Some(false) {
            let (parts, body) = resp.into_parts();
            let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
            let text = String::from_utf8_lossy(&text);
            let message = match (status, text.trim()) {
                (_, t) if !t.is_empty() => t.to_owned(),
                (StatusCode::NOT_FOUND, _) => "Resource not found".to_owned(),
                (StatusCode::METHOD_NOT_ALLOWED, _) => "Method not allowed".to_owned(),
                (other, _) => other.canonical_reason().unwrap_or("error").to_owned(),
            };
            resp = error_body(
                status,
                &message,
                &id,
                Response::from_parts(parts, Body::empty()),
            );
        }
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    resp
}

fn error_body(status: StatusCode, message: &str, id: &str, old: Response) -> Response {
    let body = serde_json::json!({ "error": message, "request_id": id });
    let (mut parts, _) = old.into_parts();
    parts.status = status;
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body.to_string()))
}

/// JSON body extractor whose rejections are [`ApiError`]s: 415 without a
/// JSON content type, 413 when too large, 400 when malformed.
pub struct Json<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for Json<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|ct| {
                let mut it = ct.split(';');
                let mime = it.next().unwrap_or("").trim();
                let charset_ok = it.all(|p| {
                    let p = p.trim().to_ascii_lowercase();
                    !p.starts_with("charset=") || p == "charset=utf-8" || p == "charset=\"utf-8\""
                });
                mime.eq_ignore_ascii_case("application/json") && charset_ok
            });
        let bytes = body_bytes(req, state).await?;
        if bytes.is_empty() {
            return Err(ApiError::bad_request("request body is empty"));
        }
        if is_json != Some(true) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Bad Content-Type or charset, expected 'application/json'",
            ));
        }
        serde_json::from_slice(&bytes)
            .map(Json)
            .map_err(|e| ApiError::bad_request(format!("failed to decode request body: {e}")))
    }
}

/// The request body, within the route's body limit (413 beyond it).
pub async fn body_bytes<S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<axum::body::Bytes, ApiError> {
    use axum::extract::FromRequest;
    axum::body::Bytes::from_request(req, state)
        .await
        .map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
            } else {
                ApiError::bad_request(format!("failed to read request body: {e}"))
            }
        })
}

/// Raw body bytes with the rejections of [`body_bytes`].
pub struct RawBody(pub axum::body::Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        body_bytes(req, state).await.map(RawBody)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_checked() {
        assert_eq!(
            sane_request_id(&HeaderValue::from_static("abc-123")).as_deref(),
            Some("abc-123")
        );
        assert!(sane_request_id(&HeaderValue::from_static("a b")).is_none());
        assert!(sane_request_id(&HeaderValue::from_static("")).is_none());
    }
}
