//! The Mender device API, as messages: requests are built into fixed
//! buffers, responses are parsed from the bytes the caller received. No
//! I/O, no heap.
//!
//! The exact shapes follow what the real client 3.4 sends (spec section
//! 2): the auth body's key order and trailing newline (the signature
//! covers it), `json.Encoder` bodies ending in `\n` (auth, inventory,
//! status) and `json.Marshal` bodies without one (`next`, log).

use core::fmt::{self, Write as _};

use heapless::{String, Vec};

use crate::artifact::json::{Json, JsonError};
use crate::crypto::{DefaultSha256, KeyKind, Sha256, SignError, Signer};

/// Path of the auth request.
pub const AUTH_PATH: &str = "/api/devices/v1/authentication/auth_requests";
/// Path of the inventory update (PUT; PATCH after a 405).
pub const INVENTORY_PATH: &str = "/api/devices/v1/inventory/device/attributes";
/// `next`, first flavour: v2 POST with the device's provides.
pub const NEXT_V2_PATH: &str = "/api/devices/v2/deployments/device/deployments/next";
/// `next`, second flavour: v1 POST (on 404 of v2).
pub const NEXT_V1_PATH: &str = "/api/devices/v1/deployments/device/deployments/next";
/// Prefix of the status and log paths (`{prefix}{id}/status`).
pub const DEPLOYMENT_PREFIX: &str = "/api/devices/v1/deployments/device/deployments/";

/// Largest request body the agent builds.
pub const BODY_MAX: usize = 4096;
/// Largest request path (with a query for the v1 GET `next`).
pub const PATH_MAX: usize = 512;
/// Largest device token kept (the server's JWT).
pub const TOKEN_MAX: usize = 2048;
/// Largest base64 signature header (RSA-4096: 684 characters).
pub const SIGNATURE_MAX: usize = 700;
/// Largest deployment id.
pub const ID_MAX: usize = 64;
/// Largest artifact name.
pub const NAME_MAX: usize = 128;
/// Largest download URI.
pub const URI_MAX: usize = 1024;

/// An HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// POST
    Post,
    /// PUT
    Put,
    /// PATCH
    Patch,
}

impl Method {
    /// The method's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
        }
    }
}

/// A request for the transport to send to the server (relative to the
/// server URL). With a body, the content type is `application/json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The method.
    pub method: Method,
    /// The path, starting with `/api/devices/`.
    pub path: &'a str,
    /// `Authorization: Bearer <this>` (the device token; for the auth
    /// request the tenant token, possibly empty).
    pub bearer: Option<&'a str>,
    /// `X-MEN-Signature`, on the auth request only.
    pub signature: Option<&'a str>,
    /// The JSON body (may be empty).
    pub body: &'a [u8],
}

/// Why a request could not be built or a response not understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiError {
    /// A request did not fit its fixed buffer (the named part).
    TooLarge(&'static str),
    /// Signing the auth request failed.
    Sign(SignError),
    /// A response body is not the JSON the protocol says.
    Json(JsonError),
    /// A field the client needs is missing from the `next` response
    /// (Mender: "Missing parameters in encoded JSON update response").
    Missing(&'static str),
    /// A field is longer than the agent keeps.
    FieldTooLong(&'static str),
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::TooLarge(what) => write!(f, "the {what} does not fit the request buffer"),
            ApiError::Sign(e) => write!(f, "signing the auth request failed: {e}"),
            ApiError::Json(e) => write!(f, "the server's response is not valid JSON: {e:?}"),
            ApiError::Missing(what) => {
                write!(
                    f,
                    "the update response has no `{what}` (missing parameters)"
                )
            }
            ApiError::FieldTooLong(what) => write!(f, "the update response's `{what}` is too long"),
        }
    }
}

impl core::error::Error for ApiError {}

impl From<JsonError> for ApiError {
    fn from(e: JsonError) -> Self {
        ApiError::Json(e)
    }
}

/// A fixed-capacity byte buffer that `write!` can fill.
struct Out<'b, const N: usize>(&'b mut Vec<u8, N>, &'static str);

impl<const N: usize> fmt::Write for Out<'_, N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0
            .extend_from_slice(s.as_bytes())
            .map_err(|_| fmt::Error)
    }
}

impl<const N: usize> Out<'_, N> {
    fn raw(&mut self, s: &str) -> Result<(), ApiError> {
        self.write_str(s).map_err(|_| ApiError::TooLarge(self.1))
    }

    /// A JSON string literal, quoted and escaped.
    fn string(&mut self, s: &str) -> Result<(), ApiError> {
        let what = self.1;
        json_string(self, s).map_err(|_| ApiError::TooLarge(what))
    }
}

fn json_string(w: &mut impl fmt::Write, s: &str) -> fmt::Result {
    w.write_char('"')?;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let esc: Option<&str> = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            // Go's encoder escapes these for HTML safety; so do we.
            '<' => Some("\\u003c"),
            '>' => Some("\\u003e"),
            '&' => Some("\\u0026"),
            c if (c as u32) < 0x20 => None,
            _ => continue,
        };
        w.write_str(&s[start..i])?;
        match esc {
            Some(e) => w.write_str(e)?,
            None => write!(w, "\\u{:04x}", c as u32)?,
        }
        start = i + c.len_utf8();
    }
    w.write_str(&s[start..])?;
    w.write_char('"')
}

/// The auth request body, exactly as the real client writes it:
/// `{"id_data":"<identity JSON as a string>","tenant_token":"...","pubkey":"<PEM>"}\n`.
pub fn auth_body<const N: usize>(
    body: &mut Vec<u8, N>,
    id_data: &str,
    tenant_token: &str,
    pubkey_pem: &str,
) -> Result<(), ApiError> {
    body.clear();
    let mut o = Out(body, "auth request");
    o.raw("{\"id_data\":")?;
    o.string(id_data)?;
    o.raw(",\"tenant_token\":")?;
    o.string(tenant_token)?;
    o.raw(",\"pubkey\":")?;
    o.string(pubkey_pem)?;
    o.raw("}\n")
}

/// `X-MEN-Signature` for `body`: base64 of the device key's signature over
/// SHA-256 of the exact body (RSA PKCS#1 v1.5, or ECDSA as DER).
pub fn sign_body<S: Signer + ?Sized, const N: usize>(
    signer: &S,
    body: &[u8],
    out: &mut String<N>,
) -> Result<(), ApiError> {
    let digest = DefaultSha256::digest(body);
    let mut raw = [0u8; 512];
    let len = signer
        .sign_digest(&digest, &mut raw)
        .map_err(ApiError::Sign)?;
    let mut der = [0u8; 72];
    let sig: &[u8] = match signer.kind() {
        KeyKind::EcdsaP256 => {
            let n = ecdsa_der(raw.get(..len).unwrap_or(&[]), &mut der)
                .ok_or(ApiError::Sign(SignError::Failed))?;
            &der[..n]
        }
        _ => &raw[..len],
    };
    let mut b64 = [0u8; SIGNATURE_MAX];
    let text = <base64ct::Base64 as base64ct::Encoding>::encode(sig, &mut b64)
        .map_err(|_| ApiError::TooLarge("signature"))?;
    out.clear();
    out.push_str(text)
        .map_err(|_| ApiError::TooLarge("signature"))
}

/// Raw `r || s` (64 bytes) to DER `SEQUENCE { INTEGER r, INTEGER s }`.
fn ecdsa_der(raw: &[u8], out: &mut [u8; 72]) -> Option<usize> {
    if raw.len() != 64 {
        return None;
    }
    let mut ints = [[0u8; 33]; 2];
    let mut lens = [0usize; 2];
    for (k, half) in raw.chunks(32).enumerate() {
        let skip = half.iter().take_while(|&&b| b == 0).count().min(31);
        let v = &half[skip..];
        let pad = usize::from(v[0] & 0x80 != 0);
        ints[k][pad..pad + v.len()].copy_from_slice(v);
        lens[k] = pad + v.len();
    }
    let body = 4 + lens[0] + lens[1];
    out[0] = 0x30;
    out[1] = body as u8;
    let mut p = 2;
    for k in 0..2 {
        out[p] = 0x02;
        out[p + 1] = lens[k] as u8;
        out[p + 2..p + 2 + lens[k]].copy_from_slice(&ints[k][..lens[k]]);
        p += 2 + lens[k];
    }
    Some(p)
}

/// The `next` v2 body: `{"device_provides":{...},"update_control_map":true}`.
/// `provides` must include `artifact_name` and `device_type`.
pub fn next_v2_body<'p, const N: usize>(
    body: &mut Vec<u8, N>,
    provides: impl Iterator<Item = (&'p str, &'p str)>,
) -> Result<(), ApiError> {
    body.clear();
    let mut o = Out(body, "update check");
    o.raw("{\"device_provides\":")?;
    flat_map(&mut o, provides)?;
    o.raw(",\"update_control_map\":true}")
}

/// The `next` v1 POST body: the same map, flat.
pub fn next_v1_body<'p, const N: usize>(
    body: &mut Vec<u8, N>,
    provides: impl Iterator<Item = (&'p str, &'p str)>,
) -> Result<(), ApiError> {
    body.clear();
    let mut o = Out(body, "update check");
    flat_map(&mut o, provides)
}

fn flat_map<'p, const N: usize>(
    o: &mut Out<'_, N>,
    provides: impl Iterator<Item = (&'p str, &'p str)>,
) -> Result<(), ApiError> {
    o.raw("{")?;
    for (i, (k, v)) in provides.enumerate() {
        if i > 0 {
            o.raw(",")?;
        }
        o.string(k)?;
        o.raw(":")?;
        o.string(v)?;
    }
    o.raw("}")
}

/// The `next` v1 GET path: `...next?artifact_name=..&device_type=..`.
pub fn next_v1_get_path<const N: usize>(
    path: &mut String<N>,
    artifact_name: &str,
    device_type: &str,
) -> Result<(), ApiError> {
    let err = |_| ApiError::TooLarge("update check path");
    path.clear();
    path.push_str(NEXT_V1_PATH)
        .map_err(|_| ApiError::TooLarge("update check path"))?;
    path.push_str("?artifact_name=")
        .map_err(|_| ApiError::TooLarge("update check path"))?;
    query_escape(path, artifact_name).map_err(err)?;
    path.push_str("&device_type=")
        .map_err(|_| ApiError::TooLarge("update check path"))?;
    query_escape(path, device_type).map_err(err)
}

fn query_escape(w: &mut impl fmt::Write, s: &str) -> fmt::Result {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            w.write_char(b as char)?;
        } else {
            write!(w, "%{b:02X}")?;
        }
    }
    Ok(())
}

/// A deployment status the client reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Status {
    /// Fetching the artifact.
    Downloading,
    /// Writing it / about to commit.
    Installing,
    /// About to reboot into the new image.
    Rebooting,
    /// Committed.
    Success,
    /// Not installed (rolled back or never armed).
    Failure,
    /// The device already runs this artifact.
    AlreadyInstalled,
}

impl Status {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Downloading => "downloading",
            Status::Installing => "installing",
            Status::Rebooting => "rebooting",
            Status::Success => "success",
            Status::Failure => "failure",
            Status::AlreadyInstalled => "already-installed",
        }
    }
}

/// The status path for deployment `id`: `.../deployments/{id}/status`
/// (`leaf` = `"status"`) or the log path (`leaf` = `"log"`).
pub fn deployment_path<const N: usize>(
    path: &mut String<N>,
    id: &str,
    leaf: &str,
) -> Result<(), ApiError> {
    path.clear();
    let mut ok = path.push_str(DEPLOYMENT_PREFIX).is_ok();
    ok &= query_escape(path, id).is_ok();
    ok &= path.push('/').is_ok() && path.push_str(leaf).is_ok();
    if ok {
        Ok(())
    } else {
        Err(ApiError::TooLarge("deployment path"))
    }
}

/// The status body: `{"status":"..."}\n`.
pub fn status_body<const N: usize>(body: &mut Vec<u8, N>, status: Status) -> Result<(), ApiError> {
    body.clear();
    let mut o = Out(body, "status report");
    o.raw("{\"status\":")?;
    o.string(status.as_str())?;
    o.raw("}\n")
}

/// A status report with a substate:
/// `{"status":"installing","substate":"Executing script: ..."}\n`.
pub fn substate_body<const N: usize>(
    body: &mut Vec<u8, N>,
    status: Status,
    substate: &str,
) -> Result<(), ApiError> {
    body.clear();
    let mut o = Out(body, "status report");
    o.raw("{\"status\":")?;
    o.string(status.as_str())?;
    o.raw(",\"substate\":")?;
    o.string(substate)?;
    o.raw("}\n")
}

/// The inventory body: `[{"name":..,"value":..},...]\n`.
pub fn inventory_body<'p, const N: usize>(
    body: &mut Vec<u8, N>,
    attributes: impl Iterator<Item = (&'p str, &'p str)>,
) -> Result<(), ApiError> {
    body.clear();
    let mut o = Out(body, "inventory");
    o.raw("[")?;
    for (i, (k, v)) in attributes.enumerate() {
        if i > 0 {
            o.raw(",")?;
        }
        o.raw("{\"name\":")?;
        o.string(k)?;
        o.raw(",\"value\":")?;
        o.string(v)?;
        o.raw("}")?;
    }
    o.raw("]\n")
}

/// One line of a deployment log.
#[derive(Debug, Clone, Copy)]
pub struct LogLine<'a> {
    /// `debug`, `info`, `warning` or `error`.
    pub level: &'a str,
    /// The message.
    pub message: &'a str,
    /// Unix seconds.
    pub time: u64,
}

/// The log body: `{"messages":[{"level":..,"message":..,"timestamp":..}]}`.
pub fn log_body<'l, const N: usize>(
    body: &mut Vec<u8, N>,
    lines: impl Iterator<Item = LogLine<'l>>,
) -> Result<(), ApiError> {
    body.clear();
    let mut o = Out(body, "deployment log");
    o.raw("{\"messages\":[")?;
    for (i, l) in lines.enumerate() {
        if i > 0 {
            o.raw(",")?;
        }
        o.raw("{\"level\":")?;
        o.string(l.level)?;
        o.raw(",\"message\":")?;
        o.string(l.message)?;
        o.raw(",\"timestamp\":\"")?;
        let (y, mo, d, h, mi, s) = civil(l.time);
        write!(o, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
            .map_err(|_| ApiError::TooLarge("deployment log"))?;
        o.raw("\"}")?;
    }
    o.raw("]}")
}

/// Unix seconds to (year, month, day, hour, minute, second), UTC.
fn civil(t: u64) -> (u64, u64, u64, u64, u64, u64) {
    let days = t / 86_400;
    let rem = t % 86_400;
    // Howard Hinnant's days-from-civil inverse, on unsigned values (days
    // since 1970 are never negative here).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// A deployment offered by `next` (200).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// The deployment id.
    pub id: String<ID_MAX>,
    /// The artifact's name.
    pub artifact_name: String<NAME_MAX>,
    /// Where to download it (a pre-signed link).
    pub uri: String<URI_MAX>,
    /// Whether `device_types_compatible` lists our device type.
    pub compatible: bool,
}

/// Parses a `next` 200 body. Checks what the real client checks: `id`,
/// `artifact.artifact_name`, `artifact.source.uri` and a non-empty
/// `artifact.device_types_compatible`.
pub fn parse_next(body: &[u8], device_type: &str) -> Result<Deployment, ApiError> {
    let mut id: Option<String<ID_MAX>> = None;
    let mut name: Option<String<NAME_MAX>> = None;
    let mut uri: Option<String<URI_MAX>> = None;
    let mut types = 0usize;
    let mut compatible = false;
    let mut j = Json::new(body);
    j.object::<ApiError>(|j, key| match key {
        "id" => {
            id = Some(text(j, "id")?);
            Ok(())
        }
        "artifact" => j.object::<ApiError>(|j, key| match key {
            "artifact_name" => {
                name = Some(text(j, "artifact_name")?);
                Ok(())
            }
            "source" => j.object::<ApiError>(|j, key| match key {
                "uri" => {
                    uri = Some(text(j, "uri")?);
                    Ok(())
                }
                _ => Ok(j.skip()?),
            }),
            "device_types_compatible" => j.array::<ApiError>(|j| {
                let t: String<NAME_MAX> = text(j, "device_types_compatible")?;
                types += 1;
                compatible |= t.as_str() == device_type;
                Ok(())
            }),
            _ => Ok(j.skip()?),
        }),
        _ => Ok(j.skip()?),
    })?;
    j.end()?;
    if types == 0 {
        return Err(ApiError::Missing("artifact.device_types_compatible"));
    }
    Ok(Deployment {
        id: id
            .filter(|s| !s.is_empty())
            .ok_or(ApiError::Missing("id"))?,
        artifact_name: name
            .filter(|s| !s.is_empty())
            .ok_or(ApiError::Missing("artifact.artifact_name"))?,
        uri: uri
            .filter(|s| !s.is_empty())
            .ok_or(ApiError::Missing("artifact.source.uri"))?,
        compatible,
    })
}

fn text<const N: usize>(j: &mut Json<'_>, field: &'static str) -> Result<String<N>, ApiError> {
    let mut buf = [0u8; URI_MAX];
    let len = j
        .string_into(&mut buf[..N.min(URI_MAX)])?
        .ok_or(ApiError::FieldTooLong(field))?;
    let s = core::str::from_utf8(&buf[..len]).map_err(|_| ApiError::FieldTooLong(field))?;
    let mut out = String::new();
    out.push_str(s).map_err(|_| ApiError::FieldTooLong(field))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{SigningKey, Verifier};

    #[test]
    fn auth_body_matches_the_real_client() {
        let mut b: Vec<u8, BODY_MAX> = Vec::new();
        auth_body(
            &mut b,
            "{\"mac\":\"52:54:00:12:34:56\"}",
            "",
            "-----BEGIN PUBLIC KEY-----\nAB\n-----END PUBLIC KEY-----\n",
        )
        .unwrap();
        assert_eq!(
            core::str::from_utf8(&b).unwrap(),
            "{\"id_data\":\"{\\\"mac\\\":\\\"52:54:00:12:34:56\\\"}\",\"tenant_token\":\"\",\
             \"pubkey\":\"-----BEGIN PUBLIC KEY-----\\nAB\\n-----END PUBLIC KEY-----\\n\"}\n"
        );
    }

    #[test]
    fn ecdsa_auth_signature_is_der_over_the_exact_body() {
        let key = SigningKey::p256_from_bytes(&[9u8; 32]).unwrap();
        let body = b"{\"id_data\":\"{}\"}\n";
        let mut sig: String<SIGNATURE_MAX> = String::new();
        sign_body(&key, body, &mut sig).unwrap();
        let mut der = [0u8; 80];
        let der =
            <base64ct::Base64 as base64ct::Encoding>::decode(sig.as_bytes(), &mut der).unwrap();
        assert_eq!(der[0], 0x30);
        let parsed = p256::ecdsa::Signature::from_der(der).unwrap();
        let raw = parsed.to_bytes();
        let digest = DefaultSha256::digest(body);
        assert_eq!(key.verifying_key().verify_digest(&digest, &raw), Ok(()));
        let other = DefaultSha256::digest(b"{\"id_data\":\"{}\"}");
        assert!(key.verifying_key().verify_digest(&other, &raw).is_err());
    }

    #[test]
    fn der_of_high_and_zero_leading_integers() {
        let mut raw = [0u8; 64];
        raw[0] = 0x80; // r needs a 0x00 pad
        raw[33] = 0x01; // s has a leading zero byte to drop
        let mut out = [0u8; 72];
        let n = ecdsa_der(&raw, &mut out).unwrap();
        assert_eq!(&out[..4], &[0x30, (n - 2) as u8, 0x02, 33]);
        assert_eq!(out[4], 0);
        let s_at = 4 + 33;
        assert_eq!(&out[s_at..s_at + 2], &[0x02, 31]);
        let back = p256::ecdsa::Signature::from_der(&out[..n]).unwrap();
        assert_eq!(&back.to_bytes()[..], &raw[..]);
    }

    #[test]
    fn bodies_and_paths() {
        let mut b: Vec<u8, BODY_MAX> = Vec::new();
        let p = [
            ("artifact_name", "release-1"),
            ("device_type", "qemux86-64"),
        ];
        next_v2_body(&mut b, p.iter().copied()).unwrap();
        assert_eq!(
            &b[..],
            b"{\"device_provides\":{\"artifact_name\":\"release-1\",\"device_type\":\"qemux86-64\"},\"update_control_map\":true}"
        );
        next_v1_body(&mut b, p.iter().copied()).unwrap();
        assert_eq!(
            &b[..],
            b"{\"artifact_name\":\"release-1\",\"device_type\":\"qemux86-64\"}"
        );
        let mut path: String<PATH_MAX> = String::new();
        next_v1_get_path(&mut path, "rel 1&x", "qemux86-64").unwrap();
        assert_eq!(
            path.as_str(),
            "/api/devices/v1/deployments/device/deployments/next?artifact_name=rel%201%26x&device_type=qemux86-64"
        );
        status_body(&mut b, Status::AlreadyInstalled).unwrap();
        assert_eq!(&b[..], b"{\"status\":\"already-installed\"}\n");
        deployment_path(&mut path, "abc", "status").unwrap();
        assert_eq!(
            path.as_str(),
            "/api/devices/v1/deployments/device/deployments/abc/status"
        );
        inventory_body(&mut b, p.iter().copied()).unwrap();
        assert_eq!(
            &b[..],
            b"[{\"name\":\"artifact_name\",\"value\":\"release-1\"},{\"name\":\"device_type\",\"value\":\"qemux86-64\"}]\n"
        );
        let line = LogLine {
            level: "error",
            message: "bad <digest>",
            time: 1_795_000_000,
        };
        log_body(&mut b, [line].into_iter()).unwrap();
        assert_eq!(
            core::str::from_utf8(&b).unwrap(),
            "{\"messages\":[{\"level\":\"error\",\"message\":\"bad \\u003cdigest\\u003e\",\"timestamp\":\"2026-11-18T11:06:40Z\"}]}"
        );
        let mut small: Vec<u8, 8> = Vec::new();
        assert_eq!(
            status_body(&mut small, Status::Success),
            Err(ApiError::TooLarge("status report"))
        );
    }

    #[test]
    fn civil_dates_match_date_1() {
        // Values from `date -u -d @N`.
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(civil(1_709_251_199), (2024, 2, 29, 23, 59, 59));
    }

    #[test]
    fn next_response_as_the_client_checks_it() {
        let body = br#"{"id": "00000000-0000-4000-8000-000000000001", "artifact": {"id": "9cb2", "artifact_name": "sf-gzip-unsigned", "source": {"uri": "https://127.0.0.1:8443/artifacts/sf.mender", "expire": "2026-11-22T11:22:40.224729Z"}, "device_types_compatible": ["qemux86-64", "other-device"]}}"#;
        let d = parse_next(body, "qemux86-64").unwrap();
        assert_eq!(d.id.as_str(), "00000000-0000-4000-8000-000000000001");
        assert_eq!(d.artifact_name.as_str(), "sf-gzip-unsigned");
        assert_eq!(d.uri.as_str(), "https://127.0.0.1:8443/artifacts/sf.mender");
        assert!(d.compatible);
        assert!(!parse_next(body, "beaglebone").unwrap().compatible);
        let no_uri = br#"{"id":"x","artifact":{"artifact_name":"a","source":{},"device_types_compatible":["t"]}}"#;
        assert_eq!(
            parse_next(no_uri, "t"),
            Err(ApiError::Missing("artifact.source.uri"))
        );
        let no_types = br#"{"id":"x","artifact":{"artifact_name":"a","source":{"uri":"u"},"device_types_compatible":[]}}"#;
        assert_eq!(
            parse_next(no_types, "t"),
            Err(ApiError::Missing("artifact.device_types_compatible"))
        );
        assert!(matches!(
            parse_next(b"{\"id\":", "t"),
            Err(ApiError::Json(_))
        ));
    }
}
