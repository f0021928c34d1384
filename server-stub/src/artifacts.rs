//! Artifacts: checking an upload with `updraft-core`'s reader while it is
//! stored, and serving stored files through short-lived signed links.
//!
//! An upload streams into `<data_dir>/artifacts/<id>.part` on a blocking
//! thread that feeds every byte to [`updraft_core::artifact::Reader`]; only
//! a complete artifact whose every digest matched is renamed to
//! `<id>.mender` and recorded. The reader's error is the 400 message.
//!
//! With verification keys ([`crate::Config::artifact_verify_keys`]) the
//! reader is made with them: an unsigned artifact, one signed by another
//! key, or one whose manifest was changed after signing fails when
//! `manifest.sig` ends (before any payload byte is accepted), and a payload
//! changed after signing fails its manifest checksum, so neither is stored.
//!
//! Download links are `/api/devices/v1/download/<id>?expire=<unix s>&sig=<mac>`
//! where `mac` is HMAC-SHA256 (key shared through the database) over the ID
//! and expiry. They need no token, expire (default 900 s), and support
//! `Range` (the Mender client resumes broken downloads with `bytes=N-`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path as FsPath, PathBuf};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64ct::{Base64UrlUnpadded, Encoding};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use updraft_core::artifact::{DependValue, Event, Reader, SignatureState};
use updraft_core::crypto::VerifyingKey;

use crate::error::ApiError;
use crate::AppState;

/// One payload file as the artifact object lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileInfo {
    /// Name inside the payload.
    pub name: String,
    /// SHA-256, hex.
    pub checksum: String,
    /// Bytes.
    pub size: u64,
    /// From the data tar's mtime.
    pub date: String,
}

/// What the reader found in an uploaded artifact.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// `artifact_name`.
    pub name: String,
    /// `manifest.sig` present.
    pub signed: bool,
    /// `device_types_compatible`.
    pub device_types: Vec<String>,
    /// The artifact object's `updates`, `artifact_provides`,
    /// `artifact_depends`, `clears_artifact_provides`, `info`.
    pub info: Value,
}

impl Parsed {
    /// The depends as stored for uniqueness: canonical JSON of
    /// `artifact_depends`.
    pub fn depends_key(&self) -> String {
        self.info
            .get("artifact_depends")
            .map(|d| d.to_string())
            .unwrap_or_default()
    }
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Collects metadata from reader events.
#[derive(Default)]
struct Collect {
    parsed: Option<Parsed>,
    files: Vec<Vec<FileInfo>>,
    current: Option<(usize, String, u64, u64)>,
}

impl Collect {
    fn event(&mut self, ev: Event<'_>) {
        match ev {
            Event::Header {
                metadata,
                signature,
            } => {
                let mut provides = serde_json::Map::new();
                provides.insert("artifact_name".into(), json!(metadata.artifact_name()));
                if let Some(g) = metadata.artifact_group() {
                    provides.insert("artifact_group".into(), json!(g));
                }
                let device_types: Vec<String> =
                    metadata.device_types().map(str::to_owned).collect();
                let mut depends = serde_json::Map::new();
                depends.insert("device_type".into(), json!(device_types));
                let names: Vec<&str> = metadata.depends_artifact_names().collect();
                if !names.is_empty() {
                    depends.insert("artifact_name".into(), json!(names));
                }
                let groups: Vec<&str> = metadata.depends_groups().collect();
                if !groups.is_empty() {
                    depends.insert("artifact_group".into(), json!(groups));
                }
                let mut clears: Option<Vec<String>> = None;
                let mut updates = Vec::new();
                for p in metadata.payloads() {
                    for (k, v) in p.provides() {
                        provides.insert(k.into(), json!(v));
                    }
                    for (k, v) in p.depends() {
                        let v = match v {
                            DependValue::One(s) => json!(s),
                            DependValue::Many(list) => json!(list.iter().collect::<Vec<_>>()),
                        };
                        depends.insert(k.into(), v);
                    }
                    if let Some(c) = p.clears_provides() {
                        clears
                            .get_or_insert_with(Vec::new)
                            .extend(c.map(str::to_owned));
                    }
                    let mut u = json!({ "type_info": { "type": p.kind() }, "files": [] });
                    if let Some(md) = p.meta_data().filter(|m| !m.trim().is_empty()) {
                        if let Ok(v) = serde_json::from_str::<Value>(md) {
                            u["meta_data"] = v;
                        }
                    }
                    updates.push(u);
                }
                let mut info = json!({
                    "info": { "format": "mender", "version": 3 },
                    "updates": updates,
                    "artifact_provides": provides,
                    "artifact_depends": depends,
                });
                if let Some(c) = clears {
                    info["clears_artifact_provides"] = json!(c);
                }
                self.files = vec![Vec::new(); metadata.payload_count()];
                self.parsed = Some(Parsed {
                    name: metadata.artifact_name().to_owned(),
                    signed: !matches!(signature, SignatureState::Unsigned),
                    device_types,
                    info,
                });
            }
            Event::PayloadStart {
                payload,
                name,
                size,
                mtime,
            } => self.current = Some((payload, name.to_owned(), size, mtime)),
            Event::PayloadEnd { digest } => {
                if let Some((payload, name, size, mtime)) = self.current.take() {
                    let date = crate::db::rfc3339(
                        i64::try_from(mtime).unwrap_or(0).saturating_mul(1_000_000),
                    );
                    if let Some(list) = self.files.get_mut(payload) {
                        list.push(FileInfo {
                            name,
                            checksum: hex(&digest),
                            size,
                            date,
                        });
                    }
                }
            }
            _ => {}
        }
    }

    fn finish(self) -> Option<Parsed> {
        let mut parsed = self.parsed?;
        if let Some(updates) = parsed.info.get_mut("updates").and_then(Value::as_array_mut) {
            for (u, files) in updates.iter_mut().zip(self.files) {
                u["files"] = json!(files);
            }
        }
        Some(parsed)
    }
}

/// Why an upload failed.
#[derive(Debug)]
pub enum UploadError {
    /// The artifact is invalid: the reader's message.
    Invalid(String),
    /// Storing it failed.
    Io(std::io::Error),
}

/// A blocking sink: feed chunks, get the parsed artifact at the end. Runs on
/// its own thread (see [`spawn_check`]).
struct Checker<'k> {
    reader: Reader<'k>,
    collect: Collect,
    file: std::io::BufWriter<std::fs::File>,
    size: u64,
}

impl Checker<'_> {
    fn feed(&mut self, mut input: &[u8]) -> Result<(), UploadError> {
        self.file.write_all(input).map_err(UploadError::Io)?;
        self.size += input.len() as u64;
        loop {
            let (used, ev) = self
                .reader
                .feed(input)
                .map_err(|e| UploadError::Invalid(e.to_string()))?;
            input = &input[used..];
            match ev {
                Some(ev) => self.collect.event(ev),
                None => return Ok(()),
            }
        }
    }

    fn finish(mut self) -> Result<(Parsed, u64), UploadError> {
        self.reader
            .finish()
            .map_err(|e| UploadError::Invalid(e.to_string()))?;
        self.file.flush().map_err(UploadError::Io)?;
        self.file.get_ref().sync_all().map_err(UploadError::Io)?;
        let parsed = self
            .collect
            .finish()
            .ok_or_else(|| UploadError::Invalid("artifact has no header".into()))?;
        Ok((parsed, self.size))
    }
}

/// The checking thread's result: the artifact and its size.
pub type CheckHandle = tokio::task::JoinHandle<Result<(Parsed, u64), UploadError>>;

/// Start checking an upload into `path` on a blocking thread: send chunks
/// into the returned sender, drop it at the end, await the handle. With
/// `keys`, the artifact must be signed by one of them.
pub fn spawn_check(
    path: PathBuf,
    keys: std::sync::Arc<[VerifyingKey]>,
) -> (tokio::sync::mpsc::Sender<axum::body::Bytes>, CheckHandle) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<axum::body::Bytes>(8);
    let handle = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::create(&path).map_err(UploadError::Io)?;
        let mut checker = Checker {
            reader: Reader::with_keys(&keys),
            collect: Collect::default(),
            file: std::io::BufWriter::with_capacity(1 << 20, file),
            size: 0,
        };
        while let Some(chunk) = rx.blocking_recv() {
            checker.feed(&chunk)?;
        }
        checker.finish()
    });
    (tx, handle)
}

/// Why an artifact verification key could not be loaded.
#[derive(Debug)]
pub struct KeyFileError {
    /// The key file.
    pub path: PathBuf,
    /// What was wrong.
    pub reason: String,
}

impl std::fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "artifact verification key {}: {}",
            self.path.display(),
            self.reason
        )
    }
}

impl std::error::Error for KeyFileError {}

/// Load artifact verification keys: PEM `PUBLIC KEY` (RSA or ECDSA P-256)
/// or `RSA PUBLIC KEY`, parsed by `updraft-core`
/// ([`VerifyingKey::from_pem`]). The first bad file is the error.
pub fn load_verify_keys(paths: &[PathBuf]) -> Result<Vec<VerifyingKey>, KeyFileError> {
    paths
        .iter()
        .map(|path| {
            let err = |reason: String| KeyFileError {
                path: path.clone(),
                reason,
            };
            let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
            VerifyingKey::from_pem(&text).map_err(|e| err(e.to_string()))
        })
        .collect()
}

/// Where an artifact's file lives.
pub fn artifact_path(dir: &FsPath, id: &str) -> PathBuf {
    dir.join(format!("{id}.mender"))
}

fn mac(st: &AppState, id: &str, expire: i64) -> String {
    let tag = ring::hmac::sign(&st.link_key, format!("{id}\n{expire}").as_bytes());
    Base64UrlUnpadded::encode_string(tag.as_ref())
}

/// The base URL for links: the configured or listening address, else the
/// request's `Host`.
pub fn base_url(st: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    if let Some(u) = st.public_url.get() {
        return Ok(u.clone());
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .ok_or_else(|| ApiError::bad_request("missing or invalid Host header"))?;
    Ok(format!("https://{host}"))
}

/// A signed download link for artifact `id`: `(uri, expire unix s)`.
pub fn signed_link(st: &AppState, base: &str, id: &str) -> (String, i64) {
    let ttl = i64::try_from(st.config.download_link_ttl.as_secs()).unwrap_or(900);
    let expire = crate::api::now_s().saturating_add(ttl);
    let sig = mac(st, id, expire);
    (
        format!("{base}/api/devices/v1/download/{id}?expire={expire}&sig={sig}"),
        expire,
    )
}

/// Query of a download link.
#[derive(Deserialize)]
pub struct LinkQuery {
    expire: i64,
    sig: String,
}

/// `GET /api/devices/v1/download/{id}?expire=..&sig=..`: the artifact file,
/// 200 or 206 with `Range`; 403 for a bad or expired link.
pub async fn download(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<LinkQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let good = Base64UrlUnpadded::decode_vec(&q.sig).is_ok_and(|sig| {
        ring::hmac::verify(&st.link_key, format!("{id}\n{}", q.expire).as_bytes(), &sig).is_ok()
    });
    if !good || q.expire < crate::api::now_s() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "download link is invalid or expired",
        ));
    }
    if !crate::db::is_uuid(&id) {
        return Err(ApiError::not_found("artifact not found"));
    }
    let path = artifact_path(&st.artifact_dir, &id);
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::not_found("artifact not found"))
        }
        Err(e) => return Err(e.into()),
    };
    let len = file.metadata().await?.len();
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|r| parse_range(r, len));
    let (status, start, end) = match range {
        None => (StatusCode::OK, 0, len),
        Some(Some((s, e))) => (StatusCode::PARTIAL_CONTENT, s, e),
        Some(None) => {
            let mut resp =
                ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable")
                    .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(resp);
        }
    };
    file.seek(std::io::SeekFrom::Start(start)).await?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
        file.take(end - start),
        64 << 10,
    ));
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.mender-artifact"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{len}", end - 1)) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(resp)
}

/// Parse one `bytes=` range against a file of `len` bytes into
/// `[start, end)`; `None` when unsatisfiable or not understood.
pub fn parse_range(header: &str, len: u64) -> Option<(u64, u64)> {
    let spec = header.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // Suffix: the last `b` bytes.
        let n: u64 = b.parse().ok()?;
        if n == 0 || len == 0 {
            return None;
        }
        return Some((len.saturating_sub(n), len));
    }
    let start: u64 = a.parse().ok()?;
    if start >= len {
        return None;
    }
    let end = if b.is_empty() {
        len
    } else {
        let last: u64 = b.parse().ok()?;
        if last < start {
            return None;
        }
        last.saturating_add(1).min(len)
    };
    Some((start, end))
}

/// Parse a stored artifact's JSON columns into the artifact object.
pub fn artifact_json(row: &sqlx::any::AnyRow) -> Result<Value, ApiError> {
    use crate::db::RowExt;
    let mut v = row.json("info")?;
    v["id"] = json!(row.text("id")?);
    v["name"] = json!(row.text("name")?);
    let desc = row.text("description")?;
    if !desc.is_empty() {
        v["description"] = json!(desc);
    }
    v["size"] = json!(row.int("size")?);
    v["modified"] = json!(crate::db::rfc3339(row.int("modified_ts")?));
    Ok(v)
}

/// Does an artifact (its `artifact_depends`) fit a device with `provides`?
/// Every depends key must be provided with one of the listed values.
pub fn depends_satisfied(depends: &Value, provides: &BTreeMap<String, String>) -> bool {
    let Some(map) = depends.as_object() else {
        return false;
    };
    map.iter().all(|(k, want)| {
        let have = provides.get(k);
        match want {
            Value::String(s) => have == Some(s),
            Value::Array(list) => list
                .iter()
                .any(|w| w.as_str().is_some_and(|w| have.is_some_and(|h| h == w))),
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-", 10), Some((0, 10)));
        assert_eq!(parse_range("bytes=3-", 10), Some((3, 10)));
        assert_eq!(parse_range("bytes=3-4", 10), Some((3, 5)));
        assert_eq!(parse_range("bytes=3-400", 10), Some((3, 10)));
        assert_eq!(parse_range("bytes=-4", 10), Some((6, 10)));
        assert_eq!(parse_range("bytes=10-", 10), None);
        assert_eq!(parse_range("bytes=5-3", 10), None);
        assert_eq!(parse_range("bytes=1-2,4-5", 10), None);
        assert_eq!(parse_range("items=1-2", 10), None);
    }

    #[test]
    fn depends() {
        let d = json!({"device_type": ["a", "b"], "artifact_name": ["r1"], "rootfs-image.version": "base"});
        let mut p: BTreeMap<String, String> = BTreeMap::new();
        p.insert("device_type".into(), "b".into());
        p.insert("artifact_name".into(), "r1".into());
        assert!(!depends_satisfied(&d, &p));
        p.insert("rootfs-image.version".into(), "base".into());
        assert!(depends_satisfied(&d, &p));
        p.insert("device_type".into(), "c".into());
        assert!(!depends_satisfied(&d, &p));
    }
}
