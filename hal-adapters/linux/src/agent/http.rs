//! HTTPS to the server: the device API's requests, and artifact downloads
//! with `Range` resume. Blocking (ureq on rustls), as the daemon is one
//! loop with one thing to do at a time.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use updraft_core::api::{Method, Request};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

/// The largest API response body kept (a `next` answer is a few KiB).
const BODY_LIMIT: u64 = 1 << 20;

/// The server connection.
pub struct Http {
    agent: ureq::Agent,
    base: String,
}

/// A download in progress.
pub struct Download {
    /// 200 (whole artifact) or 206 (from the offset asked for).
    pub status: u16,
    /// The artifact's total length, when the server said.
    pub total: Option<u64>,
    /// The body.
    pub body: Box<dyn Read + Send>,
}

/// Why a download could not start.
pub enum DownloadError {
    /// Worth another attempt later (network error, 5xx).
    Retry(String),
    /// Not worth another attempt (4xx, a bad answer).
    Fatal(String),
}

fn roots(path: &Path) -> Result<RootCerts, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut certs: Vec<Certificate<'static>> = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        if let Ok(PemItem::Certificate(c)) = item {
            certs.push(c.to_owned());
        }
    }
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(RootCerts::new_with_certs(&certs))
}

impl Http {
    /// A connection to `base` (`https://host[:port]`), trusting only
    /// `certificate` when given (Mender's `ServerCertificate`), else the
    /// web's public roots.
    pub fn new(base: &str, certificate: Option<&Path>) -> Result<Http, String> {
        let mut tls = TlsConfig::builder();
        if let Some(path) = certificate {
            tls = tls.root_certs(roots(path)?);
        }
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .https_only(true)
            .user_agent(concat!("updraft/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            // A stalled download fails after a minute without a byte,
            // and is then resumed.
            .timeout_per_read(Some(Duration::from_secs(60)))
            .tls_config(tls.build())
            .build();
        Ok(Http {
            agent: config.into(),
            base: base.to_owned(),
        })
    }

    /// Sends a device-API request; the status and body, or why it failed
    /// below HTTP.
    pub fn send(&self, req: &Request<'_>) -> Result<(u16, Vec<u8>), String> {
        let url = format!("{}{}", self.base, req.path);
        let mut headers: Vec<(&str, String)> = Vec::new();
        if let Some(token) = req.bearer {
            headers.push(("Authorization", format!("Bearer {token}")));
        }
        if let Some(sig) = req.signature {
            headers.push(("X-MEN-Signature", sig.to_owned()));
        }
        let result = match req.method {
            Method::Get => {
                let mut b = self.agent.get(&url);
                for (k, v) in &headers {
                    b = b.header(*k, v);
                }
                b.call()
            }
            m => {
                let mut b = match m {
                    Method::Put => self.agent.put(&url),
                    Method::Patch => self.agent.patch(&url),
                    _ => self.agent.post(&url),
                };
                for (k, v) in &headers {
                    b = b.header(*k, v);
                }
                b.header("Content-Type", "application/json")
                    .config()
                    .timeout_global(Some(Duration::from_secs(120)))
                    .build()
                    .send(req.body)
            }
        };
        let mut resp = result.map_err(|e| format!("{} {url}: {e}", req.method.as_str()))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(BODY_LIMIT)
            .read_to_vec()
            .map_err(|e| format!("{} {url}: reading the answer: {e}", req.method.as_str()))?;
        Ok((status, body))
    }

    /// Starts downloading `uri` (an absolute `https://` link from the
    /// server), from byte `from`.
    pub fn download(&self, uri: &str, from: u64) -> Result<Download, DownloadError> {
        if !uri.starts_with("https://") {
            return Err(DownloadError::Fatal(format!(
                "refusing a download link that is not https://: {uri}"
            )));
        }
        let mut b = self.agent.get(uri);
        if from > 0 {
            b = b.header("Range", format!("bytes={from}-"));
        }
        let resp = b
            .call()
            .map_err(|e| DownloadError::Retry(format!("GET {}: {e}", redact(uri))))?;
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let length = header("content-length").and_then(|v| v.parse::<u64>().ok());
        let total = match status {
            200 => length,
            206 => {
                // Content-Range: bytes FROM-LAST/TOTAL
                let range = header("content-range").unwrap_or_default();
                let spec = range.strip_prefix("bytes ").unwrap_or_default();
                let (span, total) = spec.split_once('/').unwrap_or_default();
                let start = span.split_once('-').map(|(s, _)| s);
                if start.and_then(|s| s.parse::<u64>().ok()) != Some(from) {
                    return Err(DownloadError::Fatal(format!(
                        "asked for bytes {from}- and got Content-Range {range:?}"
                    )));
                }
                total.parse::<u64>().ok()
            }
            s if (500..600).contains(&s) => {
                return Err(DownloadError::Retry(format!("the server answered {s}")))
            }
            s => {
                return Err(DownloadError::Fatal(format!(
                    "the download link answered {s}"
                )))
            }
        };
        Ok(Download {
            status,
            total,
            body: Box::new(resp.into_body().into_reader()),
        })
    }
}

/// The link without its query (which holds the link's signature).
pub fn redact(uri: &str) -> &str {
    uri.split_once('?').map_or(uri, |(path, _)| path)
}
