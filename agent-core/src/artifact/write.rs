//! Writing Mender artifacts (format v3) as `mender-artifact write` does
//! (`std` feature): the `updraft artifact write` command and the server's
//! artifact generation both use it.
//!
//! Constant memory, and one pass over the payload files for uncompressed
//! and gzip artifacts: the manifest and `rootfs-image.checksum` need the
//! digests, which are known only at the end, but everything they change has
//! a fixed size. So the leading members (manifest, signature, header) are
//! written first with placeholder digests, the data member streams behind
//! them (this thread reads, compresses and writes; a second one hashes the
//! same buffers), and the leading members are rewritten in place at the
//! end. For xz, or should the real header not fit its room, the payload
//! takes two passes: hash, then write. A file whose size, modification or
//! change time moved while it was read is an error. The output must be a
//! seekable file (the caller makes it; write to a temporary file and rename
//! it into place for an atomic result).
//!
//! The gzip compressor runs on every core (see `GzWriter`): chunks that
//! look incompressible are stored at memory speed, the others are deflated
//! by a pool of threads into one stream any inflater reads.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};

use crate::crypto::{RingSha256, Sha256, SignError, Signer};

/// How to compress the header and data members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// `.tar`
    None,
    /// `.tar.gz` (the default, like mender-artifact).
    #[default]
    Gzip,
    /// `.tar.xz` (`--compression lzma`).
    Lzma,
}

impl Compression {
    fn suffix(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => ".gz",
            Compression::Lzma => ".xz",
        }
    }
}

/// The payload of the artifact.
#[derive(Debug, Clone)]
pub enum Payload {
    /// `write rootfs-image -f FILE`.
    RootfsImage {
        /// The filesystem image.
        file: PathBuf,
    },
    /// `write module-image -T TYPE -f FILE...`.
    ModuleImage {
        /// The update module's name.
        module: String,
        /// The payload files (possibly none).
        files: Vec<PathBuf>,
        /// `-m`: the meta-data, a JSON object as compact text with its keys
        /// sorted (as mender-artifact writes it), stored as given.
        meta_data: Option<String>,
    },
    /// `write bootstrap-artifact`: no payload.
    Bootstrap,
}

/// Everything `mender-artifact write` takes, minus the key and output.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    /// The payload (default: bootstrap).
    pub payload: Option<Payload>,
    /// `-n`
    pub name: String,
    /// `-t`, repeated.
    pub device_types: Vec<String>,
    /// `-N`: artifact names this one depends on.
    pub depends_artifact_names: Vec<String>,
    /// `-G`: groups this one depends on.
    pub depends_groups: Vec<String>,
    /// `-g`: the group this artifact provides.
    pub provides_group: Option<String>,
    /// `-p KEY:VALUE`
    pub provides: Vec<(String, String)>,
    /// `-d KEY:VALUE`
    pub depends: Vec<(String, String)>,
    /// `-s`: state scripts.
    pub scripts: Vec<PathBuf>,
    /// `--software-version`
    pub software_version: Option<String>,
    /// `--software-name`
    pub software_name: Option<String>,
    /// `--software-filesystem`
    pub software_filesystem: Option<String>,
    /// `--no-default-software-version`
    pub no_default_software_version: bool,
    /// `--clears-provides`, repeated.
    pub clears_provides: Vec<String>,
    /// `--no-default-clears-provides`
    pub no_default_clears_provides: bool,
    /// `--compression`
    pub compression: Compression,
}

/// Why an artifact could not be written.
#[derive(Debug)]
#[non_exhaustive]
pub enum WriteError {
    /// Reading an input or writing the output failed.
    Io {
        /// What was being done.
        what: String,
        /// The error.
        error: io::Error,
    },
    /// The spec is invalid (the message says how).
    Invalid(String),
    /// A payload file changed between the hashing and the writing pass.
    InputChanged(PathBuf),
    /// Signing failed.
    Sign(SignError),
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::Io { what, error } => write!(f, "{what}: {error}"),
            WriteError::Invalid(m) => f.write_str(m),
            WriteError::InputChanged(p) => write!(
                f,
                "{} changed while the artifact was being written",
                p.display()
            ),
            WriteError::Sign(e) => write!(f, "signing the manifest: {e}"),
        }
    }
}

impl std::error::Error for WriteError {}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> WriteError {
    let what = what.into();
    move |error| WriteError::Io { what, error }
}

/// The state names whose scripts may be in an artifact.
const SCRIPT_STATES: [&str; 6] = [
    "ArtifactInstall",
    "ArtifactReboot",
    "ArtifactCommit",
    "ArtifactRollback",
    "ArtifactRollbackReboot",
    "ArtifactFailure",
];

/// Check a state script name: `<STATE>_<Enter|Leave|Error>_<NN>[_<description>]`.
pub fn check_script_name(name: &str) -> Result<(), WriteError> {
    let invalid = || {
        WriteError::Invalid(format!(
            "invalid script name {name:?}: scripts are named <STATE>_<Enter|Leave|Error>_<NN>[_<description>], e.g. ArtifactInstall_Enter_05_wifi-driver"
        ))
    };
    let mut parts = name.splitn(4, '_');
    let (state, action, order) = match (parts.next(), parts.next(), parts.next()) {
        (Some(s), Some(a), Some(o)) => (s, a, o),
        _ => return Err(invalid()),
    };
    if !matches!(action, "Enter" | "Leave" | "Error")
        || order.len() != 2
        || !order.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(invalid());
    }
    if let Some(desc) = parts.next() {
        if desc.is_empty() || desc.chars().any(char::is_whitespace) {
            return Err(invalid());
        }
    }
    if !SCRIPT_STATES.contains(&state) {
        return Err(WriteError::Invalid(format!(
            "unsupported script state {state:?}: artifacts carry only {} scripts (Idle, Sync and Download scripts belong on the device)",
            SCRIPT_STATES.join(", ")
        )));
    }
    Ok(())
}

/// `s` as a JSON string, escaped as serde_json does (`"`, `\\`, and
/// control characters; the rest as is).
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_list(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| json_str(s)).collect();
    format!("[{}]", inner.join(","))
}

fn json_map(m: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{}:{}", json_str(k), json_str(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// A payload file.
#[derive(Clone)]
struct Input {
    path: PathBuf,
    name: String,
    size: u64,
    mode: u32,
    mtime: u64,
    digest: [u8; 32],
    stamp: Stamp,
}

/// What tells that a file changed: size, mtime and ctime (nanoseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp(u64, i64, i64, i64, i64);

fn stamp(path: &Path) -> Result<Stamp, WriteError> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).map_err(io_err(format!("reading {}", path.display())))?;
    Ok(Stamp(
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    ))
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn hash_file(path: &Path, progress: &mut dyn FnMut(u64)) -> Result<(u64, [u8; 32]), WriteError> {
    let what = || format!("reading {}", path.display());
    let mut f = File::open(path).map_err(io_err(what()))?;
    let mut h = RingSha256::default();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io_err(what()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
        progress(n as u64);
    }
    Ok((total, h.finalize()))
}

fn file_meta(path: &Path) -> Result<(u32, u64), WriteError> {
    use std::os::unix::fs::PermissionsExt;
    let m = std::fs::metadata(path).map_err(io_err(format!("reading {}", path.display())))?;
    if !m.is_file() {
        return Err(WriteError::Invalid(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    // Rounded to the nearest second, as Go's archive/tar does.
    let mtime = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| (d.as_millis() as u64 + 500) / 1000);
    Ok((m.permissions().mode() & 0o7777, mtime))
}

fn base_name(path: &Path) -> Result<String, WriteError> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| WriteError::Invalid(format!("{}: not a file name", path.display())))
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Report {
    /// Bytes of payload read (once per pass).
    pub payload_bytes: u64,
    /// Size of the artifact.
    pub artifact_bytes: u64,
}

/// The header members' JSON, as mender-artifact 3.9 writes them.
struct Headers {
    header_info: String,
    type_info: String,
    meta_data: Option<String>,
    payload_type: Option<String>,
}

fn headers(spec: &Spec, inputs: &[Input]) -> Result<Headers, WriteError> {
    let payload = spec.payload.clone().unwrap_or(Payload::Bootstrap);
    let (payload_type, module) = match &payload {
        Payload::RootfsImage { .. } => (Some("rootfs-image".to_owned()), None),
        Payload::ModuleImage { module, .. } => (Some(module.clone()), Some(module.clone())),
        Payload::Bootstrap => (None, None),
    };
    // header-info
    let mut provides = vec![format!("\"artifact_name\":{}", json_str(&spec.name))];
    if let Some(g) = &spec.provides_group {
        provides.push(format!("\"artifact_group\":{}", json_str(g)));
    }
    let mut depends = Vec::new();
    if !spec.depends_artifact_names.is_empty() {
        depends.push(format!(
            "\"artifact_name\":{}",
            json_list(&spec.depends_artifact_names)
        ));
    }
    depends.push(format!("\"device_type\":{}", json_list(&spec.device_types)));
    if !spec.depends_groups.is_empty() {
        depends.push(format!(
            "\"artifact_group\":{}",
            json_list(&spec.depends_groups)
        ));
    }
    let type_json = payload_type.as_deref().map_or("null".to_owned(), json_str);
    let header_info = format!(
        "{{\"payloads\":[{{\"type\":{type_json}}}],\"artifact_provides\":{{{}}},\"artifact_depends\":{{{}}}}}",
        provides.join(","),
        depends.join(",")
    );

    // type-info
    let mut tprovides: BTreeMap<String, String> = BTreeMap::new();
    let mut clears: Vec<String> = spec.clears_provides.clone();
    let version = spec.software_version.clone().unwrap_or(spec.name.clone());
    match &payload {
        // A bootstrap artifact provides only what -p gives.
        Payload::Bootstrap => {}
        _ => {
            let fs = spec
                .software_filesystem
                .clone()
                .unwrap_or("rootfs-image".into());
            let name = spec.software_name.clone().or(module.clone());
            let stem = match &name {
                Some(n) => format!("{fs}.{n}"),
                None => fs.clone(),
            };
            if !spec.no_default_software_version {
                tprovides.insert(format!("{stem}.version"), version);
            }
            // mender-artifact ties the default clears entry to the default
            // software version: either flag drops it.
            if !spec.no_default_clears_provides && !spec.no_default_software_version {
                if module.is_none() && name.is_none() && spec.software_filesystem.is_none() {
                    clears.extend(["artifact_group".into(), "rootfs_image_checksum".into()]);
                }
                clears.push(format!("{stem}.*"));
            }
        }
    }
    if let Payload::RootfsImage { .. } = payload {
        if let Some(i) = inputs.first() {
            tprovides.insert("rootfs-image.checksum".into(), hex(&i.digest));
        }
    }
    for (k, v) in &spec.provides {
        tprovides.insert(k.clone(), v.clone());
    }
    let tdepends: BTreeMap<String, String> = spec.depends.iter().cloned().collect();
    let type_field = match &payload {
        Payload::RootfsImage { .. } => "\"\"".to_owned(),
        _ => type_json.clone(),
    };
    let mut type_info = format!("{{\"type\":{type_field}");
    if !tdepends.is_empty() {
        type_info.push_str(&format!(",\"artifact_depends\":{}", json_map(&tdepends)));
    }
    if !tprovides.is_empty() {
        type_info.push_str(&format!(",\"artifact_provides\":{}", json_map(&tprovides)));
    }
    if !clears.is_empty() {
        type_info.push_str(&format!(
            ",\"clears_artifact_provides\":{}",
            json_list(&clears)
        ));
    }
    type_info.push('}');

    let meta_data = match &payload {
        Payload::RootfsImage { .. } => Some(String::new()),
        Payload::ModuleImage {
            meta_data: Some(v), ..
        } => {
            if !v.trim_start().starts_with('{') {
                return Err(WriteError::Invalid(
                    "meta-data must be a JSON object".into(),
                ));
            }
            Some(v.clone())
        }
        _ => None,
    };
    Ok(Headers {
        header_info,
        type_info,
        meta_data,
        payload_type,
    })
}

fn validate(spec: &Spec) -> Result<(), WriteError> {
    if spec.name.is_empty() {
        return Err(WriteError::Invalid(
            "the artifact name (-n) is required".into(),
        ));
    }
    if spec.device_types.is_empty() {
        return Err(WriteError::Invalid(
            "at least one device type (-t) is required".into(),
        ));
    }
    for s in &spec.scripts {
        check_script_name(&base_name(s)?)?;
    }
    if matches!(spec.payload, None | Some(Payload::Bootstrap)) && !spec.scripts.is_empty() {
        return Err(WriteError::Invalid(
            "a bootstrap artifact carries no state scripts".into(),
        ));
    }
    if let Some(Payload::ModuleImage { module, .. }) = &spec.payload {
        if module.is_empty() {
            return Err(WriteError::Invalid(
                "the payload type (-T) is required".into(),
            ));
        }
    }
    Ok(())
}

/// A ustar header block, as the `tar` crate's `Header::new_ustar` writes
/// it with a path, size, mode, mtime, uid and gid 0 and, with `owner`,
/// user and group names `root`: octal fields zero-padded and NUL-ended,
/// a size or mtime too large for octal in base-256 (the GNU extension).
fn tar_header(
    path: &str,
    size: u64,
    mode: u32,
    mtime: u64,
    owner: bool,
) -> Result<[u8; 512], WriteError> {
    let bad = |why: &str| WriteError::Invalid(format!("tar path {path:?}: {why}"));
    if path.is_empty() {
        return Err(bad("empty"));
    }
    if path.starts_with('/') {
        return Err(bad("paths in archives must be relative"));
    }
    if path.split('/').any(|c| c == "..") {
        return Err(bad("paths in archives must not have `..`"));
    }
    if path.len() > 100 {
        return Err(bad("longer than 100 bytes"));
    }
    let mut h = [0u8; 512];
    h[..path.len()].copy_from_slice(path.as_bytes());
    octal_into(&mut h[100..108], u64::from(mode));
    number_into(&mut h[108..116], 0); // uid
    number_into(&mut h[116..124], 0); // gid
    number_into(&mut h[124..136], size);
    number_into(&mut h[136..148], mtime);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    if owner {
        h[265..269].copy_from_slice(b"root");
        h[297..301].copy_from_slice(b"root");
    }
    set_checksum(&mut h);
    Ok(h)
}

/// The header's checksum field: the sum of its bytes, the field itself
/// counted as spaces.
fn set_checksum(h: &mut [u8; 512]) {
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    h[148..156].fill(0);
    octal_into(&mut h[148..156], sum);
}

/// `v` in octal, zero-padded, leaving the field's last byte (NUL).
fn octal_into(field: &mut [u8], v: u64) {
    let digits = format!("{v:o}");
    let room = field.len() - 1;
    let mut it = digits.bytes().rev().chain(core::iter::repeat(b'0'));
    for slot in field[..room].iter_mut().rev() {
        *slot = it.next().unwrap_or(b'0');
    }
}

/// A numeric field: octal when it fits, else base-256 (high bit set,
/// big-endian), as GNU tar and the `tar` crate write large values.
fn number_into(field: &mut [u8], v: u64) {
    let octal_limit = 1u64 << (3 * (field.len() as u32 - 1));
    if v < octal_limit {
        octal_into(field, v);
    } else {
        let n = field.len();
        field.fill(0);
        field[n - 8..].copy_from_slice(&v.to_be_bytes());
        field[0] |= 0x80;
    }
}

/// A tar stream over any writer (PAX headers for names over 100 bytes).
struct TarWriter<W: Write> {
    w: W,
    pos: u64,
}

impl<W: Write> TarWriter<W> {
    fn new(w: W) -> Self {
        TarWriter { w, pos: 0 }
    }

    fn raw(&mut self, b: &[u8]) -> io::Result<()> {
        self.w.write_all(b)?;
        self.pos += b.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let rem = (self.pos % 512) as usize;
        if rem != 0 {
            self.raw(&[0u8; 512][..512 - rem])?;
        }
        Ok(())
    }

    fn header(
        &mut self,
        path: &str,
        size: u64,
        mode: u32,
        mtime: u64,
        owner: bool,
    ) -> Result<(), WriteError> {
        let e = io_err("writing the artifact");
        if path.len() > 100 {
            let rec = pax_record("path", path);
            let h = tar_header(
                &format!("PaxHeaders.0/{}", truncate(path, 80)),
                rec.len() as u64,
                0o644,
                mtime,
                false,
            )?;
            let mut h = h;
            h[156] = b'x';
            set_checksum(&mut h);
            self.raw(&h).map_err(e)?;
            self.raw(rec.as_bytes())
                .map_err(io_err("writing the artifact"))?;
            self.pad().map_err(io_err("writing the artifact"))?;
            let short = truncate(path, 100);
            let h = tar_header(short, size, mode, mtime, owner)?;
            return self.raw(&h).map_err(io_err("writing the artifact"));
        }
        let h = tar_header(path, size, mode, mtime, owner)?;
        self.raw(&h).map_err(e)
    }

    fn file(
        &mut self,
        path: &str,
        data: &[u8],
        mode: u32,
        mtime: u64,
        owner: bool,
    ) -> Result<(), WriteError> {
        self.header(path, data.len() as u64, mode, mtime, owner)?;
        self.raw(data).map_err(io_err("writing the artifact"))?;
        self.pad().map_err(io_err("writing the artifact"))
    }

    fn finish(mut self) -> io::Result<W> {
        self.raw(&[0u8; 1024])?;
        Ok(self.w)
    }
}

fn truncate(s: &str, n: usize) -> &str {
    let mut end = s.len().min(n);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn pax_record(key: &str, value: &str) -> String {
    // "<len> key=value\n" where len counts itself.
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while len.to_string().len() + body.len() != len {
        len = len.to_string().len() + body.len();
    }
    format!("{len}{body}")
}

/// Shannon entropy of `data` in bits per byte, estimated from a sample:
/// all of a small chunk; of a large one, 8 windows of 1 KiB spread evenly
/// over it (8 KiB of samples: the estimate of random data is off by about
/// 0.02 bit, and contiguous windows see local structure).
fn entropy(data: &[u8]) -> f64 {
    const WINDOWS: usize = 8;
    const WINDOW: usize = 1024;
    let mut counts = [0u32; 256];
    let mut count = |part: &[u8]| {
        for &b in part {
            counts[b as usize] += 1;
        }
    };
    if data.len() <= 2 * WINDOWS * WINDOW {
        count(data);
    } else {
        let stride = data.len() / WINDOWS;
        for w in 0..WINDOWS {
            count(&data[w * stride..w * stride + WINDOW]);
        }
    }
    let n = f64::from(counts.iter().sum::<u32>().max(1));
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// gzip on every core, pigz-style, and without the work deflate cannot
/// win. The data is cut into [`CHUNK`]s. A chunk that looks incompressible
/// (random, already compressed) is written as stored blocks at memory
/// speed. The others are deflated at the default level by a pool of
/// worker threads, each chunk independently: primed with the last 32 KiB
/// before it as dictionary, unless that was stored (so matches reach back
/// as in one long stream), and ended with a sync flush (byte-aligned, not
/// final), so the pieces concatenate into one deflate stream, closed by an
/// empty final block. One gzip member; any inflater reads it. The output
/// depends only on the data and how it was written, not on thread timing.
/// Memory: at most [`IN_FLIGHT`] chunks and their output.
struct GzWriter<W: Write> {
    w: W,
    crc: crc32fast::Hasher,
    size: u32,
    header_done: bool,
    /// Data not yet a whole chunk.
    pending: Vec<u8>,
    /// The last 32 KiB of data before `pending`.
    history: Vec<u8>,
    /// Started on the first chunk that needs deflating.
    pool: Option<DeflatePool>,
    /// Deflated chunks not yet written, in order.
    queue: std::collections::VecDeque<mpsc::Receiver<io::Result<Vec<u8>>>>,
}

const CHUNK: usize = 256 * 1024;
const DICT: usize = 32 * 1024;
/// Chunks being deflated at once (a few per worker keeps them busy).
const IN_FLIGHT: usize = 4;

struct DeflateJob {
    data: Vec<u8>,
    dict: Vec<u8>,
    reply: mpsc::SyncSender<io::Result<Vec<u8>>>,
}

/// Worker threads deflating chunks; they stop when the pool is dropped.
struct DeflatePool {
    jobs: mpsc::SyncSender<DeflateJob>,
}

impl DeflatePool {
    fn new() -> Self {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 8));
        let (jobs, rx) = mpsc::sync_channel::<DeflateJob>(IN_FLIGHT);
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for _ in 0..workers {
            let rx = Arc::clone(&rx);
            std::thread::spawn(move || {
                let mut z = flate2::Compress::new(flate2::Compression::default(), false);
                loop {
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    let _ = job.reply.send(deflate_chunk(&mut z, &job.data, &job.dict));
                }
            });
        }
        DeflatePool { jobs }
    }
}

/// Deflate `data` as a piece of a longer stream: `dict` is what came
/// before it; the piece ends with a sync flush.
fn deflate_chunk(z: &mut flate2::Compress, data: &[u8], dict: &[u8]) -> io::Result<Vec<u8>> {
    z.reset();
    if !dict.is_empty() {
        z.set_dictionary(dict).map_err(io::Error::other)?;
    }
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    let mut input = data;
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity() / 2 + 1024);
        }
        let (in0, out0) = (z.total_in(), z.total_out());
        z.compress_vec(input, &mut out, flate2::FlushCompress::Sync)
            .map_err(io::Error::other)?;
        let used = (z.total_in() - in0) as usize;
        let made = (z.total_out() - out0) as usize;
        input = &input[used..];
        // Done when all input is in and the flush had room to complete.
        if input.is_empty() && out.len() < out.capacity() {
            return Ok(out);
        }
        if used == 0 && made == 0 && out.len() < out.capacity() {
            return Err(io::Error::other("deflate made no progress"));
        }
    }
}

impl<W: Write> GzWriter<W> {
    fn new(w: W) -> Self {
        GzWriter {
            w,
            crc: crc32fast::Hasher::new(),
            size: 0,
            header_done: false,
            pending: Vec::new(),
            history: Vec::new(),
            pool: None,
            queue: std::collections::VecDeque::new(),
        }
    }

    fn header(&mut self) -> io::Result<()> {
        if !self.header_done {
            // magic, deflate, no flags, mtime 0, no extra flags, OS unknown
            self.w.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255])?;
            self.header_done = true;
        }
        Ok(())
    }

    /// Write deflated chunks until at most `keep` are left in flight.
    fn drain(&mut self, keep: usize) -> io::Result<()> {
        while self.queue.len() > keep {
            let Some(rx) = self.queue.pop_front() else {
                break;
            };
            let out = rx
                .recv()
                .map_err(|_| io::Error::other("a deflate worker stopped"))??;
            self.w.write_all(&out)?;
        }
        Ok(())
    }

    /// Compress one chunk (the next data in the stream). Incompressible
    /// data is written here and now, from where it is; data to deflate goes
    /// to the workers (owned: copied if borrowed).
    fn chunk(&mut self, chunk: std::borrow::Cow<'_, [u8]>) -> io::Result<()> {
        let data: &[u8] = &chunk;
        self.crc.update(data);
        self.size = self.size.wrapping_add(data.len() as u32);
        let dict = if data.len() >= 4096 && entropy(data) > 7.9 {
            None
        } else {
            Some(self.history.clone())
        };
        // The history for the next chunk: none after incompressible data
        // (a dictionary of noise finds no matches, and copying it would
        // cost more than the stored chunk).
        if dict.is_none() {
            self.history.clear();
        } else if data.len() >= DICT {
            self.history.clear();
            self.history.extend_from_slice(&data[data.len() - DICT..]);
        } else {
            let drop = (self.history.len() + data.len()).saturating_sub(DICT);
            self.history.drain(..drop);
            self.history.extend_from_slice(data);
        }
        let Some(dict) = dict else {
            self.drain(0)?;
            return self.stored(data);
        };
        if data.len() < CHUNK && self.queue.is_empty() {
            // A small (last) piece: not worth a worker.
            let mut z = flate2::Compress::new(flate2::Compression::default(), false);
            let out = deflate_chunk(&mut z, data, &dict)?;
            return self.w.write_all(&out);
        }
        let data = chunk.into_owned();
        let pool = self.pool.get_or_insert_with(DeflatePool::new);
        let (reply, rx) = mpsc::sync_channel(1);
        pool.jobs
            .send(DeflateJob { data, dict, reply })
            .map_err(|_| io::Error::other("the deflate workers stopped"))?;
        self.queue.push_back(rx);
        self.drain(IN_FLIGHT - 1)
    }

    fn stored(&mut self, data: &[u8]) -> io::Result<()> {
        // One vectored write per chunk: block headers and the caller's
        // bytes, with no copy on the way (a large write passes the
        // BufWriter below straight to the file).
        let heads: Vec<[u8; 5]> = data
            .chunks(65_535)
            .map(|block| {
                let len = block.len() as u16;
                let l = len.to_le_bytes();
                let n = (!len).to_le_bytes();
                // BFINAL=0, BTYPE=00 (stored), padded to the byte.
                [0, l[0], l[1], n[0], n[1]]
            })
            .collect();
        let mut slices: Vec<io::IoSlice<'_>> = heads
            .iter()
            .zip(data.chunks(65_535))
            .flat_map(|(h, block)| [io::IoSlice::new(h), io::IoSlice::new(block)])
            .collect();
        write_all_vectored(&mut self.w, &mut slices)
    }

    fn finish(mut self) -> io::Result<W> {
        self.header()?;
        if !self.pending.is_empty() {
            let data = core::mem::take(&mut self.pending);
            self.chunk(data.into())?;
        }
        self.drain(0)?;
        // The final block: empty, stored.
        self.w.write_all(&[1, 0, 0, 0xff, 0xff])?;
        let crc = self.crc.clone().finalize();
        self.w.write_all(&crc.to_le_bytes())?;
        self.w.write_all(&self.size.to_le_bytes())?;
        Ok(self.w)
    }
}

impl<W: Write> Write for GzWriter<W> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        self.header()?;
        let n = data.len();
        while !data.is_empty() {
            if data.len() >= CHUNK {
                // Whole chunks straight from the caller's data: what was
                // pending (a tar header, say) goes first, as a short chunk.
                if !self.pending.is_empty() {
                    let short = core::mem::take(&mut self.pending);
                    self.chunk(short.into())?;
                }
                self.chunk(data[..CHUNK].into())?;
                data = &data[CHUNK..];
                continue;
            }
            let take = core::cmp::min(CHUNK - self.pending.len(), data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() == CHUNK {
                let full = core::mem::replace(&mut self.pending, Vec::with_capacity(CHUNK));
                self.chunk(full.into())?;
            }
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

/// A compressor writing into `W`.
enum Compressor<W: Write> {
    None(W),
    Gzip(GzWriter<W>),
    Lzma(liblzma::write::XzEncoder<W>),
}

impl<W: Write> Compressor<W> {
    fn new(c: Compression, w: W) -> Self {
        match c {
            Compression::None => Compressor::None(w),
            Compression::Gzip => Compressor::Gzip(GzWriter::new(w)),
            Compression::Lzma => Compressor::Lzma(liblzma::write::XzEncoder::new(w, 6)),
        }
    }
    fn finish(self) -> io::Result<W> {
        match self {
            Compressor::None(w) => Ok(w),
            Compressor::Gzip(g) => g.finish(),
            Compressor::Lzma(x) => x.finish(),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::None(w) => w.write(b),
            Compressor::Gzip(g) => g.write(b),
            Compressor::Lzma(x) => x.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::None(w) => w.flush(),
            Compressor::Gzip(g) => g.flush(),
            Compressor::Lzma(x) => x.flush(),
        }
    }
}

/// Counts bytes written through it.
struct Counter<W: Write> {
    w: W,
    n: u64,
}

impl<W: Write> Write for Counter<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = self.w.write(b)?;
        self.n += n as u64;
        Ok(n)
    }
    fn write_vectored(&mut self, b: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let n = self.w.write_vectored(b)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

/// `write_all` for a vectored write (std's is not stable yet).
fn write_all_vectored<W: Write>(w: &mut W, mut bufs: &mut [io::IoSlice<'_>]) -> io::Result<()> {
    io::IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match w.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => io::IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn compress_all(c: Compression, data: &[u8]) -> Result<Vec<u8>, WriteError> {
    let mut comp = Compressor::new(c, Vec::new());
    comp.write_all(data)
        .map_err(io_err("compressing the header"))?;
    comp.finish().map_err(io_err("compressing the header"))
}

const VERSION: &[u8] = br#"{"format":"mender","version":3}"#;

/// The payload files with their metadata (digests not yet known).
fn gather_inputs(files: &[PathBuf]) -> Result<Vec<Input>, WriteError> {
    let mut inputs: Vec<Input> = Vec::new();
    for path in files {
        let (mode, mtime) = file_meta(path)?;
        let stamp = stamp(path)?;
        let name = base_name(path)?;
        if inputs.iter().any(|i| i.name == name) {
            return Err(WriteError::Invalid(format!(
                "two payload files are named {name:?}: payload files are stored by base name"
            )));
        }
        inputs.push(Input {
            path: path.clone(),
            name,
            size: stamp.0,
            mode,
            mtime,
            digest: [0; 32],
            stamp,
        });
    }
    Ok(inputs)
}

/// The header member's tar (uncompressed).
fn header_tar(spec: &Spec, inputs: &[Input]) -> Result<Vec<u8>, WriteError> {
    let h = headers(spec, inputs)?;
    let mut ht = TarWriter::new(Vec::new());
    ht.file("header-info", h.header_info.as_bytes(), 0o600, 0, false)?;
    for s in &spec.scripts {
        let data = std::fs::read(s).map_err(io_err(format!("reading {}", s.display())))?;
        let (mode, mtime) = file_meta(s)?;
        ht.file(
            &format!("scripts/{}", base_name(s)?),
            &data,
            mode,
            mtime,
            true,
        )?;
    }
    ht.file(
        "headers/0000/type-info",
        h.type_info.as_bytes(),
        0o600,
        0,
        false,
    )?;
    if let Some(m) = &h.meta_data {
        ht.file("headers/0000/meta-data", m.as_bytes(), 0o600, 0, false)?;
    }
    let _ = h.payload_type;
    ht.finish().map_err(io_err("building the header"))
}

/// The manifest, in sha256sum format: the data files in the order given
/// (mender-artifact keeps it, and `read` lists files in this order), then
/// the header, then `version`.
fn manifest_text(inputs: &[Input], header: &[u8], suffix: &str) -> String {
    let mut lines: Vec<(String, [u8; 32])> = inputs
        .iter()
        .map(|i| (format!("data/0000/{}", i.name), i.digest))
        .collect();
    lines.push((format!("header.tar{suffix}"), RingSha256::digest(header)));
    lines.push(("version".into(), RingSha256::digest(VERSION)));
    lines
        .iter()
        .map(|(p, d)| format!("{}  {p}\n", hex(d)))
        .collect()
}

fn sign_manifest(
    signer: Option<&dyn Signer>,
    manifest: &str,
) -> Result<Option<String>, WriteError> {
    let Some(s) = signer else { return Ok(None) };
    let mut sig = vec![0u8; s.signature_len()];
    let n = s
        .sign_digest(&RingSha256::digest(manifest.as_bytes()), &mut sig)
        .map_err(WriteError::Sign)?;
    use base64ct::Encoding;
    Ok(Some(base64ct::Base64::encode_string(&sig[..n])))
}

/// `version`, `manifest`, `manifest.sig` and the header member.
fn write_leading<W: Write>(
    outer: &mut TarWriter<W>,
    manifest: &str,
    signature: Option<&str>,
    header: &[u8],
    suffix: &str,
    now: u64,
) -> Result<(), WriteError> {
    outer.file("version", VERSION, 0o600, 0, false)?;
    outer.file("manifest", manifest.as_bytes(), 0o600, 0, false)?;
    if let Some(sig) = signature {
        outer.file("manifest.sig", sig.as_bytes(), 0o600, 0, false)?;
    }
    outer.file(&format!("header.tar{suffix}"), header, 0o600, now, true)
}

/// Write the artifact `spec` describes to `out` (a seekable file),
/// signing the manifest with `signer` if given. `progress` is told how
/// many payload bytes were read, once for hashing and once for writing
/// (twice the payload in all).
///
/// Uncompressed and gzip artifacts take one pass over the payload: the
/// leading members (manifest, signature, header) are written with
/// placeholder digests, the data member streams behind them while another
/// thread reads and hashes the files, and the leading members are then
/// rewritten in place with the real digests (same size: the gzip header
/// member is padded to its reserved size with a gzip extra field). Should
/// they not fit (never seen; it would take a header that compresses much
/// worse with the real digest) or for xz, the payload takes two passes:
/// hash first, then write.
pub fn write_artifact(
    spec: &Spec,
    signer: Option<&dyn Signer>,
    out: &mut File,
    progress: impl FnMut(u64),
) -> Result<Report, WriteError> {
    write_with_slack(spec, signer, out, progress, Some(GZ_HEADER_SLACK))
}

/// [`write_artifact`] with `slack` bytes of room for the gzip header member
/// to grow; `None` acts as if the real header did not fit after the data
/// was written (to test the two-pass fallback).
fn write_with_slack(
    spec: &Spec,
    signer: Option<&dyn Signer>,
    out: &mut File,
    mut progress: impl FnMut(u64),
    slack: Option<usize>,
) -> Result<Report, WriteError> {
    validate(spec)?;
    let payload = spec.payload.clone().unwrap_or(Payload::Bootstrap);
    let files: Vec<PathBuf> = match &payload {
        Payload::RootfsImage { file } => vec![file.clone()],
        Payload::ModuleImage { files, .. } => files.clone(),
        Payload::Bootstrap => vec![],
    };
    let inputs = gather_inputs(&files)?;
    if spec.compression != Compression::Lzma {
        if let Some(r) = write_one_pass(spec, signer, out, &inputs, slack, &mut progress)? {
            return Ok(r);
        }
        let e = io_err("writing the artifact");
        out.set_len(0).map_err(e)?;
        out.seek(SeekFrom::Start(0))
            .map_err(io_err("writing the artifact"))?;
    }
    write_two_pass(spec, signer, out, inputs, &mut progress)
}

/// Room left in the gzip header member for the real digests to compress
/// worse than the placeholders (random hex either way: a few bytes).
const GZ_HEADER_SLACK: usize = 64;

/// Bytes a gzip extra field adds at least: XLEN and one subfield header.
const GZ_EXTRA_MIN: usize = 2 + 4;

/// The header member, compressed, exactly `size` bytes long if possible:
/// a gzip member is padded with an extra field (FEXTRA, one subfield
/// `Up` of zeros), which every gzip reader skips.
fn fit_header(c: Compression, tar: &[u8], size: usize) -> Result<Option<Vec<u8>>, WriteError> {
    let z = compress_all(c, tar)?;
    match c {
        Compression::Gzip => {
            let pad = match size.checked_sub(z.len() + GZ_EXTRA_MIN) {
                Some(p) if p <= 0xffff - 4 && z.len() >= 10 => p,
                _ => return Ok(None),
            };
            let mut g = Vec::with_capacity(size);
            g.extend_from_slice(&z[..3]);
            g.push(z[3] | 0x04); // FEXTRA
            g.extend_from_slice(&z[4..10]);
            g.extend_from_slice(&((pad + 4) as u16).to_le_bytes());
            g.extend_from_slice(b"Up");
            g.extend_from_slice(&(pad as u16).to_le_bytes());
            g.resize(g.len() + pad, 0);
            g.extend_from_slice(&z[10..]);
            Ok(Some(g))
        }
        _ => Ok((z.len() == size).then_some(z)),
    }
}

/// One pass over the payload (see [`write_artifact`]). `Ok(None)`: the
/// leading members came out larger than reserved; `out` must be rewritten.
fn write_one_pass(
    spec: &Spec,
    signer: Option<&dyn Signer>,
    out: &mut File,
    inputs: &[Input],
    slack: Option<usize>,
    progress: &mut dyn FnMut(u64),
) -> Result<Option<Report>, WriteError> {
    let c = spec.compression;
    let suffix = c.suffix();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Placeholders that look like real digests (random hex).
    let mut inputs: Vec<Input> = inputs
        .iter()
        .cloned()
        .map(|mut i| {
            i.digest = RingSha256::digest(i.name.as_bytes());
            i
        })
        .collect();
    let tar = header_tar(spec, &inputs)?;
    let header_size = match c {
        Compression::Gzip => compress_all(c, &tar)?.len() + GZ_EXTRA_MIN + slack.unwrap_or(0),
        _ => compress_all(c, &tar)?.len(),
    };
    let Some(header) = fit_header(c, &tar, header_size)? else {
        return Ok(None);
    };
    let manifest = manifest_text(&inputs, &header, suffix);
    let signature = signer.map(|s| {
        use base64ct::Encoding;
        base64ct::Base64::encode_string(&vec![0u8; s.signature_len()])
    });

    let mut outer = TarWriter::new(io::BufWriter::with_capacity(OUT_BUFFER, &mut *out));
    write_leading(
        &mut outer,
        &manifest,
        signature.as_deref(),
        &header,
        suffix,
        now,
    )?;
    let leading_len = outer.pos;
    let data_name = format!("data/0000.tar{suffix}");
    outer.header(&data_name, 0, 0o600, now, true)?;
    let start = outer.pos;
    let e = || io_err("writing the artifact");
    let counter = Counter {
        w: &mut outer.w,
        n: 0,
    };
    let mut comp = Compressor::new(c, counter);
    let digests = stream_payload(&mut comp, &inputs, progress)?;
    let counter = comp.finish().map_err(e())?;
    let data_len = counter.n;
    outer.pos = start + data_len;
    outer.pad().map_err(e())?;
    let w = outer.finish().map_err(e())?;
    let end = w.into_inner().map_err(|e| WriteError::Io {
        what: "writing the artifact".into(),
        error: e.into_error(),
    })?;
    let total = end.stream_position().map_err(e())?;

    // The real leading members, in the same room.
    for (i, d) in inputs.iter_mut().zip(digests) {
        i.digest = d;
    }
    let tar = header_tar(spec, &inputs)?;
    let fit = fit_header(c, &tar, header_size)?.filter(|_| slack.is_some());
    let Some(header) = fit else {
        return Ok(None);
    };
    let manifest = manifest_text(&inputs, &header, suffix);
    let signature = sign_manifest(signer, &manifest)?;
    let mut lead = TarWriter::new(Vec::with_capacity(leading_len as usize + 512));
    write_leading(
        &mut lead,
        &manifest,
        signature.as_deref(),
        &header,
        suffix,
        now,
    )?;
    lead.header(&data_name, data_len, 0o600, now, true)?;
    if lead.pos != start {
        return Ok(None);
    }
    end.seek(SeekFrom::Start(0)).map_err(e())?;
    end.write_all(&lead.w).map_err(e())?;
    end.seek(SeekFrom::Start(total)).map_err(e())?;
    end.flush().map_err(e())?;
    Ok(Some(Report {
        payload_bytes: inputs.iter().map(|i| i.size).sum(),
        artifact_bytes: total,
    }))
}

/// The output's buffer, for the small writes (tar headers, padding, small
/// deflated pieces). Smaller than any chunk of payload, so those pass it by
/// without a copy.
const OUT_BUFFER: usize = 64 * 1024;

/// Payload buffers in flight between the writer and the hashing thread.
const STREAM_BUFFERS: usize = 4;
const STREAM_BUFFER: usize = 512 * 1024;

enum Chunk {
    Data(Arc<Vec<u8>>, usize),
    End,
}

/// Write the data tar of `inputs` into `w`, reading each file once: this
/// thread reads, compresses and writes; a second thread hashes the same
/// buffers meanwhile. Returns each file's SHA-256. A file that is not
/// exactly as large as when it was listed, or whose size or times changed
/// by the end, is [`WriteError::InputChanged`].
fn stream_payload<W: Write>(
    w: W,
    inputs: &[Input],
    progress: &mut dyn FnMut(u64),
) -> Result<Vec<[u8; 32]>, WriteError> {
    std::thread::scope(|scope| {
        let (full_tx, full_rx) = mpsc::sync_channel::<Chunk>(STREAM_BUFFERS);
        let (free_tx, free_rx) = mpsc::sync_channel::<Arc<Vec<u8>>>(STREAM_BUFFERS);
        for _ in 0..STREAM_BUFFERS {
            let _ = free_tx.send(Arc::new(vec![0u8; STREAM_BUFFER]));
        }
        let hasher = scope.spawn(move || {
            let mut digests = Vec::new();
            let mut h = RingSha256::default();
            while let Ok(chunk) = full_rx.recv() {
                match chunk {
                    Chunk::Data(buf, n) => {
                        h.update(&buf[..n]);
                        if free_tx.send(buf).is_err() {
                            break;
                        }
                    }
                    Chunk::End => digests.push(core::mem::take(&mut h).finalize()),
                }
            }
            digests
        });
        // On an early return, dropping `full_tx` and `free_rx` stops the
        // hashing thread.
        let e = || io_err("writing the artifact");
        let stopped = || WriteError::Io {
            what: "hashing the payload".into(),
            error: io::Error::other("the hashing thread stopped"),
        };
        let mut dt = TarWriter::new(w);
        for i in inputs {
            dt.header(&i.name, i.size, i.mode, i.mtime, true)?;
            let what = || format!("reading {}", i.path.display());
            let mut f = File::open(&i.path).map_err(io_err(what()))?;
            let mut left = i.size;
            while left > 0 {
                let mut arc = free_rx.recv().map_err(|_| stopped())?;
                // The hashing thread has dropped its reference: this one is
                // the only one left (else take a fresh buffer).
                let buf = match Arc::get_mut(&mut arc) {
                    Some(b) => b,
                    None => {
                        arc = Arc::new(vec![0u8; STREAM_BUFFER]);
                        Arc::get_mut(&mut arc).ok_or_else(stopped)?
                    }
                };
                let want = buf.len().min(left.try_into().unwrap_or(usize::MAX));
                let mut n = 0;
                while n < want {
                    match f.read(&mut buf[n..want]) {
                        Ok(0) => return Err(WriteError::InputChanged(i.path.clone())),
                        Ok(k) => n += k,
                        Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                        Err(err) => return Err(io_err(what())(err)),
                    }
                }
                full_tx
                    .send(Chunk::Data(Arc::clone(&arc), n))
                    .map_err(|_| stopped())?;
                dt.raw(&arc[..n]).map_err(e())?;
                // Hashed and written: both passes at once.
                progress(2 * n as u64);
                left -= n as u64;
            }
            if f.read(&mut [0u8; 1]).map_err(io_err(what()))? != 0 || stamp(&i.path)? != i.stamp {
                return Err(WriteError::InputChanged(i.path.clone()));
            }
            full_tx.send(Chunk::End).map_err(|_| stopped())?;
            dt.pad().map_err(e())?;
        }
        dt.finish().map_err(e())?;
        drop(full_tx);
        let digests = hasher.join().map_err(|_| stopped())?;
        if digests.len() != inputs.len() {
            return Err(stopped());
        }
        Ok(digests)
    })
}

/// Two passes over the payload: hash, then write.
fn write_two_pass(
    spec: &Spec,
    signer: Option<&dyn Signer>,
    out: &mut File,
    mut inputs: Vec<Input>,
    progress: &mut dyn FnMut(u64),
) -> Result<Report, WriteError> {
    // Pass 1: hash.
    for i in &mut inputs {
        let (size, digest) = hash_file(&i.path, progress)?;
        if size != i.size {
            return Err(WriteError::InputChanged(i.path.clone()));
        }
        i.digest = digest;
    }
    let suffix = spec.compression.suffix();
    let header = compress_all(spec.compression, &header_tar(spec, &inputs)?)?;
    let manifest = manifest_text(&inputs, &header, suffix);
    let signature = sign_manifest(signer, &manifest)?;

    // The outer tar.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut outer = TarWriter::new(io::BufWriter::with_capacity(OUT_BUFFER, &mut *out));
    write_leading(
        &mut outer,
        &manifest,
        signature.as_deref(),
        &header,
        suffix,
        now,
    )?;
    // The data member: placeholder header, streamed content, then patch.
    let data_name = format!("data/0000.tar{suffix}");
    let header_at = outer.pos;
    outer.header(&data_name, 0, 0o600, now, true)?;
    let start = outer.pos;
    let e = || io_err("writing the artifact");
    let counter = Counter {
        w: &mut outer.w,
        n: 0,
    };
    let mut comp = Compressor::new(spec.compression, counter);
    {
        let mut dt = TarWriter::new(&mut comp);
        let mut buf = vec![0u8; 1 << 20];
        for i in &inputs {
            dt.header(&i.name, i.size, i.mode, i.mtime, true)?;
            let f = File::open(&i.path).map_err(io_err(format!("reading {}", i.path.display())))?;
            let mut f = BufReader::with_capacity(0, f);
            let mut left = i.size;
            while left > 0 {
                let want = buf.len().min(left as usize);
                let n = f
                    .read(&mut buf[..want])
                    .map_err(io_err(format!("reading {}", i.path.display())))?;
                if n == 0 {
                    return Err(WriteError::InputChanged(i.path.clone()));
                }
                dt.raw(&buf[..n]).map_err(e())?;
                progress(n as u64);
                left -= n as u64;
            }
            if f.read(&mut [0u8; 1]).map_err(e())? != 0 || stamp(&i.path)? != i.stamp {
                return Err(WriteError::InputChanged(i.path.clone()));
            }
            dt.pad().map_err(e())?;
        }
        dt.finish().map_err(e())?;
    }
    let counter = comp.finish().map_err(e())?;
    let data_len = counter.n;
    outer.pos = start + data_len;
    outer.pad().map_err(e())?;
    let w = outer.finish().map_err(e())?;
    let end = w.into_inner().map_err(|e| WriteError::Io {
        what: "writing the artifact".into(),
        error: e.into_error(),
    })?;
    let total = end
        .stream_position()
        .map_err(io_err("writing the artifact"))?;
    // Patch the data member's size (the header has no PAX record: the name is short).
    let hdr = tar_header(&data_name, data_len, 0o600, now, true)?;
    end.seek(SeekFrom::Start(header_at))
        .map_err(io_err("writing the artifact"))?;
    end.write_all(&hdr)
        .map_err(io_err("writing the artifact"))?;
    end.seek(SeekFrom::Start(total))
        .map_err(io_err("writing the artifact"))?;
    end.flush().map_err(io_err("writing the artifact"))?;
    Ok(Report {
        payload_bytes: inputs.iter().map(|i| i.size).sum(),
        artifact_bytes: total,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::artifact::{Event, Reader};

    /// The payload files' names and digests, as the reader (which checks
    /// every digest) reports them.
    fn read_files(artifact: &[u8]) -> Vec<(String, [u8; 32])> {
        let mut reader = Reader::new();
        let mut input = artifact;
        let mut files = Vec::new();
        let mut name = String::new();
        loop {
            let (used, event) = reader.feed(input).unwrap();
            input = &input[used..];
            match event {
                Some(Event::PayloadStart { name: n, .. }) => name = n.to_owned(),
                Some(Event::PayloadEnd { digest }) => files.push((name.clone(), digest)),
                Some(_) => {}
                None => break,
            }
        }
        reader.finish().unwrap();
        files
    }

    /// Headers match the `tar` crate's (`Header::new_ustar`) byte for byte,
    /// octal and base-256 sizes alike.
    #[test]
    fn tar_headers_match_the_tar_crate() {
        for (path, size, mode, mtime, owner) in [
            ("version", 31u64, 0o600u32, 0u64, false),
            ("data/0000.tar.gz", 123_456_789, 0o600, 1_700_000_000, true),
            ("x", (1 << 33) - 1, 0o7777, (1 << 33) - 1, true),
            ("big", 1 << 33, 0o644, 1 << 34, false),
            ("big2", 40 << 30, 0o755, 5, true),
        ] {
            let mut t = ::tar::Header::new_ustar();
            t.set_path(path).unwrap();
            t.set_size(size);
            t.set_mode(mode);
            t.set_mtime(mtime);
            t.set_uid(0);
            t.set_gid(0);
            if owner {
                t.set_username("root").unwrap();
                t.set_groupname("root").unwrap();
            }
            t.set_cksum();
            let ours = tar_header(path, size, mode, mtime, owner).unwrap();
            assert_eq!(ours.as_slice(), t.as_bytes().as_slice(), "{path} {size}");
        }
        assert!(tar_header("../x", 0, 0, 0, false).is_err());
        assert!(tar_header("/x", 0, 0, 0, false).is_err());
    }

    /// JSON strings escaped as serde_json escapes them.
    #[test]
    fn json_strings_match_serde_json() {
        for s in [
            "plain",
            "q\"uote\\",
            "tab\tnl\ncr\r\u{8}\u{c}\u{1}\u{1f}\u{7f}",
            "ünï ☃ 🚀",
            "",
        ] {
            assert_eq!(json_str(s), serde_json::to_string(s).unwrap());
        }
    }

    /// The gzip header member is padded to the exact size asked for, and
    /// still decodes to the same tar; too little room is `None`.
    #[test]
    fn header_padding_is_exact_and_transparent() {
        let tar: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let natural = compress_all(Compression::Gzip, &tar).unwrap().len();
        for extra in [GZ_EXTRA_MIN, GZ_EXTRA_MIN + 1, GZ_EXTRA_MIN + 777] {
            let g = fit_header(Compression::Gzip, &tar, natural + extra)
                .unwrap()
                .unwrap();
            assert_eq!(g.len(), natural + extra);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(g.as_slice())
                .read_to_end(&mut back)
                .unwrap();
            assert!(back == tar);
        }
        let short = fit_header(Compression::Gzip, &tar, natural + GZ_EXTRA_MIN - 1);
        assert!(short.unwrap().is_none());
        let exact = fit_header(Compression::None, &tar, tar.len());
        assert!(exact.unwrap().is_some());
        let long = fit_header(Compression::None, &tar, tar.len() + 1);
        assert!(long.unwrap().is_none());
    }

    /// One pass, and the two-pass fallback after the data was written
    /// once, make the same valid artifact: our reader checks every digest.
    #[test]
    fn one_pass_and_fallback_agree() {
        let dir = tempfile::tempdir().unwrap();
        let payload = dir.path().join("image.ext4");
        let data: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(&payload, &data).unwrap();
        for compression in [Compression::Gzip, Compression::None] {
            let spec = Spec {
                payload: Some(Payload::RootfsImage {
                    file: payload.clone(),
                }),
                name: "one-pass".into(),
                device_types: vec!["board".into()],
                compression,
                ..Spec::default()
            };
            let mut seen = Vec::new();
            for slack in [Some(GZ_HEADER_SLACK), None] {
                let path = dir.path().join(format!("out-{}.mender", slack.is_some()));
                let mut out = File::create(&path).unwrap();
                let mut progress = 0;
                let r = write_with_slack(&spec, None, &mut out, |n| progress += n, slack).unwrap();
                drop(out);
                // The fallback reads the payload twice more.
                let passes = if slack.is_some() { 2 } else { 4 };
                assert_eq!(progress, passes * data.len() as u64);
                assert_eq!(r.artifact_bytes, std::fs::metadata(&path).unwrap().len());
                seen.push(read_files(&std::fs::read(&path).unwrap()));
            }
            assert_eq!(seen[0], seen[1]);
            assert_eq!(seen[0][0].1, RingSha256::digest(&data));
        }
    }

    /// Alternating compressible and random chunks, in odd-sized writes,
    /// decode back exactly with an independent inflater (and compress).
    #[test]
    fn gz_writer_mixes_stored_and_deflated_blocks() {
        let mut x = 7u64;
        let mut data = Vec::new();
        for i in 0..6 {
            if i % 2 == 0 {
                data.extend(std::iter::repeat_n(b"updraft ".as_slice(), 300_000).flatten());
            } else {
                data.extend((0..1_500_000).map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 24) as u8
                }));
            }
        }
        let mut gz = GzWriter::new(Vec::new());
        for piece in data.chunks(777_777) {
            gz.write_all(piece).unwrap();
        }
        let out = gz.finish().unwrap();
        assert!(
            out.len() < data.len() * 2 / 3,
            "compressible parts were not compressed"
        );
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(out.as_slice())
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == data);
        // Any way of writing it decodes back; the output does not depend on
        // the workers' timing.
        for split in [data.len(), 1000, CHUNK + 1, 777_777] {
            let mut gz = GzWriter::new(Vec::new());
            for piece in data.chunks(split) {
                gz.write_all(piece).unwrap();
            }
            let again = gz.finish().unwrap();
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(again.as_slice())
                .read_to_end(&mut back)
                .unwrap();
            assert!(back == data, "split {split}");
            if split == 777_777 {
                assert!(again == out);
            }
        }
    }

    /// Text deflated in parallel chunks refers back across chunk
    /// boundaries (each chunk is primed with the 32 KiB before it), and
    /// the pieces make one stream any inflater reads.
    #[test]
    fn parallel_deflate_is_one_stream() {
        let text: Vec<u8> = (0..IN_FLIGHT * 3 * CHUNK + 12_345)
            .map(|i| {
                b"the quick brown fox jumps over the lazy dog "[i % 44] ^ ((i / 100_000) as u8 & 1)
            })
            .collect();
        let mut gz = GzWriter::new(Vec::new());
        gz.write_all(&text).unwrap();
        let out = gz.finish().unwrap();
        assert!(out.len() < text.len() / 50, "{} bytes", out.len());
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(out.as_slice())
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == text);
    }
}
