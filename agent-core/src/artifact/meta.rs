//! Artifact metadata in fixed memory: every string lives in one arena of
//! [`ARENA_BYTES`] bytes, and the tables of names refer to it. Exceeding any
//! bound is an error ([`Limit`]), never a silent truncation.

use super::json::{Json, JsonError};
use core::fmt;

/// Bytes available for all metadata strings of one artifact (names, keys,
/// values, and the raw `meta-data` JSON).
pub const ARENA_BYTES: usize = 4096;
/// Most payloads (`data/NNNN.tar*` members) an artifact may have.
pub const MAX_PAYLOADS: usize = 4;
/// Most entries in each list of the artifact-level depends (device types,
/// artifact names, groups).
pub const MAX_LIST: usize = 32;
/// Most provides, depends and clears-provides entries per payload (each).
pub const MAX_PAYLOAD_ENTRIES: usize = 16;
/// Most values, summed over all list-valued depends of one payload.
pub const MAX_DEPEND_VALUES: usize = 32;

/// A bound of the fixed-memory reader that an artifact exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limit {
    /// All metadata strings together exceed [`ARENA_BYTES`].
    StringBytes,
    /// More than [`MAX_PAYLOADS`] payloads.
    Payloads,
    /// More than [`MAX_LIST`] device types, artifact names or groups.
    DependsList,
    /// More than [`MAX_PAYLOAD_ENTRIES`] provides, depends or clears.
    PayloadEntries,
    /// More than [`MAX_DEPEND_VALUES`] list values in a payload's depends.
    DependValues,
    /// More manifest lines than [`crate::artifact::MAX_MANIFEST_LINES`], or
    /// more path bytes than [`crate::artifact::MANIFEST_PATH_BYTES`].
    ManifestLines,
    /// A small member (version, signature, JSON header) is larger than the
    /// reader's buffer for it ([`crate::artifact::MAX_SMALL_MEMBER`]).
    MemberSize,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use super::manifest::{MANIFEST_PATH_BYTES, MAX_MANIFEST_LINES};
        match self {
            Limit::StringBytes => write!(f, "its metadata strings exceed {ARENA_BYTES} bytes"),
            Limit::Payloads => write!(f, "it has more than {MAX_PAYLOADS} payloads"),
            Limit::DependsList => write!(
                f,
                "it lists more than {MAX_LIST} device types, depended-on artifact names or groups"
            ),
            Limit::PayloadEntries => write!(
                f,
                "a payload has more than {MAX_PAYLOAD_ENTRIES} provides, depends or clears-provides entries"
            ),
            Limit::DependValues => write!(
                f,
                "a payload's list-valued depends hold more than {MAX_DEPEND_VALUES} values"
            ),
            Limit::ManifestLines => write!(
                f,
                "its manifest has more than {MAX_MANIFEST_LINES} lines or {MANIFEST_PATH_BYTES} bytes of paths"
            ),
            Limit::MemberSize => write!(
                f,
                "a metadata member is larger than {} bytes",
                super::MAX_SMALL_MEMBER
            ),
        }
    }
}

/// Why metadata was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetaError {
    /// Not valid JSON, or a field of the wrong JSON type.
    Json(JsonError),
    /// A fixed-memory bound was exceeded.
    Limit(Limit),
    /// A required field is missing (its JSON path).
    Missing(&'static str),
    /// A field has a value the format does not allow (its JSON path).
    Invalid(&'static str),
}

impl fmt::Display for MetaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaError::Json(JsonError::Syntax(at)) => write!(f, "invalid JSON at byte {at}"),
            MetaError::Json(JsonError::Type(at)) => {
                write!(f, "a field has the wrong JSON type (at byte {at})")
            }
            MetaError::Json(JsonError::TooDeep) => f.write_str("JSON nested too deeply"),
            MetaError::Limit(l) => write!(f, "too large for the reader: {l}"),
            MetaError::Missing(what) => write!(f, "required field `{what}` is missing"),
            MetaError::Invalid(what) => write!(f, "field `{what}` has an invalid value"),
        }
    }
}

impl From<JsonError> for MetaError {
    fn from(e: JsonError) -> Self {
        MetaError::Json(e)
    }
}

impl From<Limit> for MetaError {
    fn from(l: Limit) -> Self {
        MetaError::Limit(l)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Span {
    start: u16,
    len: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DependSpan {
    One(Span),
    Many { first: u8, count: u8 },
}

#[derive(Debug, Clone, Default)]
struct PayloadSpans {
    kind: Option<Span>,
    type_info_seen: bool,
    meta_data: Option<Span>,
    provides: heapless::Vec<(Span, Span), MAX_PAYLOAD_ENTRIES>,
    depends: heapless::Vec<(Span, DependSpan), MAX_PAYLOAD_ENTRIES>,
    depend_values: heapless::Vec<Span, MAX_DEPEND_VALUES>,
    clears: heapless::Vec<Span, MAX_PAYLOAD_ENTRIES>,
    clears_given: bool,
}

/// The parsed headers of an artifact: `header-info` plus each payload's
/// `type-info` and `meta-data`, in fixed memory (about 7 KiB).
#[derive(Debug, Clone)]
pub struct Metadata {
    arena: [u8; ARENA_BYTES],
    used: usize,
    name: Span,
    group: Option<Span>,
    device_types: heapless::Vec<Span, MAX_LIST>,
    depends_names: heapless::Vec<Span, MAX_LIST>,
    depends_groups: heapless::Vec<Span, MAX_LIST>,
    payloads: heapless::Vec<PayloadSpans, MAX_PAYLOADS>,
}

impl Default for Metadata {
    fn default() -> Self {
        Metadata {
            arena: [0; ARENA_BYTES],
            used: 0,
            name: Span::default(),
            group: None,
            device_types: heapless::Vec::new(),
            depends_names: heapless::Vec::new(),
            depends_groups: heapless::Vec::new(),
            payloads: heapless::Vec::new(),
        }
    }
}

type List = heapless::Vec<Span, MAX_LIST>;

impl Metadata {
    fn str(&self, s: Span) -> &str {
        let bytes = self
            .arena
            .get(s.start as usize..s.start as usize + s.len as usize)
            .unwrap_or(&[]);
        // Only valid UTF-8 is ever stored.
        core::str::from_utf8(bytes).unwrap_or("")
    }

    /// Unescape the next JSON string straight into the arena.
    fn push_str(&mut self, j: &mut Json<'_>) -> Result<Span, MetaError> {
        let start = self.used;
        let n = j
            .string_into(&mut self.arena[start..])?
            .ok_or(Limit::StringBytes)?;
        core::str::from_utf8(&self.arena[start..start + n])
            .map_err(|_| MetaError::Invalid("string"))?;
        self.used += n;
        Ok(Span {
            start: start as u16,
            len: n as u16,
        })
    }

    fn push_raw(&mut self, bytes: &[u8]) -> Result<Span, MetaError> {
        let start = self.used;
        let dst = self
            .arena
            .get_mut(start..start + bytes.len())
            .ok_or(Limit::StringBytes)?;
        dst.copy_from_slice(bytes);
        self.used += bytes.len();
        Ok(Span {
            start: start as u16,
            len: bytes.len() as u16,
        })
    }

    fn str_list(
        &mut self,
        j: &mut Json<'_>,
        which: fn(&mut Self) -> &mut List,
    ) -> Result<(), MetaError> {
        if j.null()? {
            return Ok(());
        }
        j.array(|j| {
            let s = self.push_str(j)?;
            which(self).push(s).map_err(|_| Limit::DependsList.into())
        })
    }

    /// Parse `header-info`.
    pub(crate) fn parse_header_info(&mut self, doc: &[u8]) -> Result<(), MetaError> {
        let mut j = Json::new(doc);
        let (mut have_name, mut have_payloads, mut have_types) = (false, false, false);
        j.object(|j, key| match key {
            "payloads" => {
                have_payloads = true;
                j.array(|j| {
                    let mut p = PayloadSpans::default();
                    j.object(|j, k| match k {
                        "type" => {
                            if !j.null()? {
                                let s = self.push_str(j)?;
                                p.kind = (s.len > 0).then_some(s);
                            }
                            Ok::<(), MetaError>(())
                        }
                        _ => Ok(j.skip()?),
                    })?;
                    self.payloads.push(p).map_err(|_| Limit::Payloads.into())
                })
            }
            "artifact_provides" => j.object(|j, k| match k {
                "artifact_name" => {
                    self.name = self.push_str(j)?;
                    have_name = true;
                    Ok(())
                }
                "artifact_group" => {
                    if !j.null()? {
                        self.group = Some(self.push_str(j)?);
                    }
                    Ok(())
                }
                _ => Ok(j.skip()?),
            }),
            "artifact_depends" => j.object(|j, k| match k {
                "device_type" => {
                    have_types = true;
                    self.str_list(j, |m| &mut m.device_types)
                }
                "artifact_name" => self.str_list(j, |m| &mut m.depends_names),
                "artifact_group" => self.str_list(j, |m| &mut m.depends_groups),
                _ => Ok(j.skip()?),
            }),
            _ => Ok(j.skip()?),
        })?;
        j.end()?;
        if !have_payloads {
            return Err(MetaError::Missing("payloads"));
        }
        if !have_name || self.name.len == 0 {
            return Err(MetaError::Missing("artifact_provides.artifact_name"));
        }
        if !have_types || self.device_types.is_empty() {
            return Err(MetaError::Missing("artifact_depends.device_type"));
        }
        Ok(())
    }

    /// Parse `headers/NNNN/type-info` for payload `index`. With `augment`
    /// (from `header-augment`), its entries are added to the original's.
    pub(crate) fn parse_type_info(
        &mut self,
        index: usize,
        doc: &[u8],
        augment: bool,
    ) -> Result<(), MetaError> {
        let Some(slot) = self.payloads.get_mut(index) else {
            return Err(MetaError::Invalid("headers/NNNN index"));
        };
        if slot.type_info_seen && !augment {
            return Err(MetaError::Invalid("duplicate type-info"));
        }
        let mut p = core::mem::take(slot);
        p.type_info_seen = true;
        let r = self.type_info_into(&mut p, doc);
        self.payloads[index] = p;
        r
    }

    fn type_info_into(&mut self, p: &mut PayloadSpans, doc: &[u8]) -> Result<(), MetaError> {
        let mut j = Json::new(doc);
        j.object(|j, key| match key {
            "type" => {
                if !j.null()? {
                    let s = self.push_str(j)?;
                    // rootfs-image writes "" here: header-info's type rules.
                    let same = p.kind.map(|k| self.str(k) == self.str(s)).unwrap_or(false);
                    if s.len > 0 && !same {
                        return Err(MetaError::Invalid("type"));
                    }
                }
                Ok(())
            }
            "artifact_provides" => self.kv_object(p, j, false),
            "artifact_depends" => self.kv_object(p, j, true),
            "clears_artifact_provides" => {
                if j.null()? {
                    return Ok(());
                }
                p.clears_given = true;
                j.array(|j| {
                    let s = self.push_str(j)?;
                    p.clears.push(s).map_err(|_| Limit::PayloadEntries.into())
                })
            }
            _ => Ok(j.skip()?),
        })?;
        Ok(j.end()?)
    }

    fn kv_object(
        &mut self,
        p: &mut PayloadSpans,
        j: &mut Json<'_>,
        depends: bool,
    ) -> Result<(), MetaError> {
        if j.null()? {
            return Ok(());
        }
        j.object(|j, key| {
            let k = self.push_raw(key.as_bytes())?;
            if !depends {
                let v = self.push_str(j)?;
                return p
                    .provides
                    .push((k, v))
                    .map_err(|_| Limit::PayloadEntries.into());
            }
            let v = if j.peek() == Some(b'[') {
                let first = p.depend_values.len();
                j.array(|j| {
                    let s = self.push_str(j)?;
                    p.depend_values
                        .push(s)
                        .map_err(|_| MetaError::from(Limit::DependValues))
                })?;
                DependSpan::Many {
                    first: first as u8,
                    count: (p.depend_values.len() - first) as u8,
                }
            } else {
                DependSpan::One(self.push_str(j)?)
            };
            p.depends
                .push((k, v))
                .map_err(|_| Limit::PayloadEntries.into())
        })
    }

    /// Store `headers/NNNN/meta-data` (raw JSON; an object, or empty).
    pub(crate) fn set_meta_data(&mut self, index: usize, doc: &[u8]) -> Result<(), MetaError> {
        if index >= self.payloads.len() {
            return Err(MetaError::Invalid("headers/NNNN index"));
        }
        if !doc.is_empty() {
            let mut j = Json::new(doc);
            j.object(|j, _| j.skip())?;
            j.end()?;
        }
        core::str::from_utf8(doc).map_err(|_| MetaError::Invalid("meta-data"))?;
        let s = self.push_raw(doc)?;
        self.payloads[index].meta_data = Some(s);
        Ok(())
    }

    pub(crate) fn has_type_info(&self, index: usize) -> bool {
        self.payloads.get(index).is_some_and(|p| p.type_info_seen)
    }

    // ------------------------------------------------------------ public

    /// `artifact_provides.artifact_name`.
    pub fn artifact_name(&self) -> &str {
        self.str(self.name)
    }
    /// `artifact_provides.artifact_group`, if set.
    pub fn artifact_group(&self) -> Option<&str> {
        self.group.map(|s| self.str(s))
    }
    /// `artifact_depends.device_type`: the artifact installs on these.
    pub fn device_types(&self) -> impl Iterator<Item = &str> + '_ {
        self.device_types.iter().map(|&s| self.str(s))
    }
    /// `artifact_depends.artifact_name`: the device must run one of these.
    pub fn depends_artifact_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.depends_names.iter().map(|&s| self.str(s))
    }
    /// `artifact_depends.artifact_group`: the device must be in one of these.
    pub fn depends_groups(&self) -> impl Iterator<Item = &str> + '_ {
        self.depends_groups.iter().map(|&s| self.str(s))
    }
    /// Number of payloads.
    pub fn payload_count(&self) -> usize {
        self.payloads.len()
    }
    /// Payload `index`'s headers.
    pub fn payload(&self, index: usize) -> Option<PayloadMeta<'_>> {
        self.payloads.get(index).map(|p| PayloadMeta { m: self, p })
    }
    /// All payloads' headers, in order.
    pub fn payloads(&self) -> impl Iterator<Item = PayloadMeta<'_>> + '_ {
        self.payloads
            .iter()
            .map(move |p| PayloadMeta { m: self, p })
    }
}

/// One payload's headers (`type-info`, `meta-data`).
#[derive(Clone, Copy)]
pub struct PayloadMeta<'m> {
    m: &'m Metadata,
    p: &'m PayloadSpans,
}

/// A value of a payload's `artifact_depends`.
#[derive(Clone, Copy)]
pub enum DependValue<'m> {
    /// A single string (what `mender-artifact -d` writes).
    One(&'m str),
    /// A list of strings: any one of them satisfies it.
    Many(DependList<'m>),
}

/// A list-valued depend.
#[derive(Clone, Copy)]
pub struct DependList<'m> {
    m: &'m Metadata,
    spans: &'m [Span],
}

impl<'m> DependList<'m> {
    /// The values.
    pub fn iter(&self) -> impl Iterator<Item = &'m str> + 'm {
        let m = self.m;
        self.spans.iter().map(move |&s| m.str(s))
    }
}

impl<'m> PayloadMeta<'m> {
    /// The payload type (`rootfs-image`, an update module name), from
    /// `header-info`; `None` for a bootstrap (empty) payload.
    pub fn kind(&self) -> Option<&'m str> {
        self.p.kind.map(|s| self.m.str(s))
    }
    /// `artifact_provides` of this payload's type-info.
    pub fn provides(&self) -> impl Iterator<Item = (&'m str, &'m str)> + 'm {
        let m = self.m;
        self.p
            .provides
            .iter()
            .map(move |&(k, v)| (m.str(k), m.str(v)))
    }
    /// `artifact_depends` of this payload's type-info.
    pub fn depends(&self) -> impl Iterator<Item = (&'m str, DependValue<'m>)> + 'm {
        let (m, p) = (self.m, self.p);
        p.depends.iter().map(move |&(k, v)| {
            let v = match v {
                DependSpan::One(s) => DependValue::One(m.str(s)),
                DependSpan::Many { first, count } => DependValue::Many(DependList {
                    m,
                    spans: p
                        .depend_values
                        .get(first as usize..first as usize + count as usize)
                        .unwrap_or(&[]),
                }),
            };
            (m.str(k), v)
        })
    }
    /// `clears_artifact_provides`, or `None` when the type-info has no such
    /// field (older artifacts; Mender then applies its default rules).
    pub fn clears_provides(&self) -> Option<impl Iterator<Item = &'m str> + 'm> {
        let m = self.m;
        self.p
            .clears_given
            .then(|| self.p.clears.iter().map(move |&s| m.str(s)))
    }
    /// The raw `meta-data` JSON, if the payload has that file (it is empty
    /// for rootfs-image, which writes a 0-byte file).
    pub fn meta_data(&self) -> Option<&'m str> {
        self.p.meta_data.map(|s| self.m.str(s))
    }
}
