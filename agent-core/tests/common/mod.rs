//! Test helpers: fixtures made by Debian's `mender-artifact` at test time,
//! a parser for its `read` output, and a driver that runs our reader with
//! any chunking and records a normalised event log.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use updraft_core::artifact::{DependValue, Error, Event, Metadata, Reader, SignatureState};
use updraft_core::crypto::{Sha256, SoftSha256, VerifyingKey};

/// Run a command; panic with its output if it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {cmd:?}: {e} (is it installed? run scripts/test.sh)")
    });
    if !out.status.success() {
        panic!(
            "{cmd:?} failed: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Keys made once per test process.
pub struct Keys {
    pub dir: tempfile::TempDir,
    pub rsa_key: PathBuf,
    pub rsa_pub: PathBuf,
    pub rsa_der: Vec<u8>,
    pub ec_key: PathBuf,
    pub ec_pub: PathBuf,
    pub ec_der: Vec<u8>,
    pub ec2_der: Vec<u8>,
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        let s = |p: &Path| p.to_str().unwrap().to_owned();
        run(Command::new("openssl").args([
            "genrsa",
            "-traditional",
            "-out",
            &s(&p("rsa.key")),
            "3072",
        ]));
        run(Command::new("openssl").args([
            "rsa",
            "-in",
            &s(&p("rsa.key")),
            "-pubout",
            "-out",
            &s(&p("rsa.pub")),
        ]));
        run(Command::new("openssl").args([
            "rsa",
            "-in",
            &s(&p("rsa.key")),
            "-pubout",
            "-outform",
            "DER",
            "-out",
            &s(&p("rsa.der")),
        ]));
        for name in ["ec", "ec2"] {
            let key = p(&format!("{name}.key"));
            run(Command::new("openssl").args([
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                &s(&key),
            ]));
            run(Command::new("openssl").args([
                "ec",
                "-in",
                &s(&key),
                "-pubout",
                "-out",
                &s(&p(&format!("{name}.pub"))),
            ]));
            run(Command::new("openssl").args([
                "ec",
                "-in",
                &s(&key),
                "-pubout",
                "-outform",
                "DER",
                "-out",
                &s(&p(&format!("{name}.der"))),
            ]));
        }
        Keys {
            rsa_key: p("rsa.key"),
            rsa_pub: p("rsa.pub"),
            rsa_der: std::fs::read(p("rsa.der")).unwrap(),
            ec_key: p("ec.key"),
            ec_pub: p("ec.pub"),
            ec_der: std::fs::read(p("ec.der")).unwrap(),
            ec2_der: std::fs::read(p("ec2.der")).unwrap(),
            dir,
        }
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sign {
    None,
    Rsa,
    Ec,
}

impl Sign {
    pub fn key_arg(self) -> Vec<String> {
        let k = keys();
        match self {
            Sign::None => vec![],
            Sign::Rsa => vec!["-k".into(), k.rsa_key.to_str().unwrap().into()],
            Sign::Ec => vec!["-k".into(), k.ec_key.to_str().unwrap().into()],
        }
    }
    pub fn pub_pem(self) -> Option<&'static Path> {
        let k = keys();
        match self {
            Sign::None => None,
            Sign::Rsa => Some(&k.rsa_pub),
            Sign::Ec => Some(&k.ec_pub),
        }
    }
    /// Our verifying key, from DER (works without `alloc` for EC).
    pub fn verifying_key(self) -> Option<VerifyingKey> {
        let k = keys();
        match self {
            Sign::None => None,
            Sign::Rsa => Some(VerifyingKey::from_spki_der(&k.rsa_der).unwrap()),
            Sign::Ec => Some(VerifyingKey::from_spki_der(&k.ec_der).unwrap()),
        }
    }
}

/// A directory for one test's inputs and artifacts.
pub struct Work {
    pub dir: tempfile::TempDir,
}

impl Work {
    pub fn new() -> Self {
        Work {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    /// Write a file with deterministic pseudo-random content.
    pub fn file(&self, name: &str, size: usize, seed: u64) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, pseudo_random(size, seed)).unwrap();
        p
    }
    pub fn text(&self, name: &str, content: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, content).unwrap();
        p
    }
    /// `mender-artifact write <args> -o <out>`; returns the artifact bytes.
    pub fn mender_write(&self, out: &str, args: &[&str], sign: Sign) -> Vec<u8> {
        let o = self.path(out);
        let mut cmd = Command::new("mender-artifact");
        cmd.current_dir(self.dir.path())
            .arg("write")
            .args(args)
            .args(sign.key_arg());
        cmd.arg("-o").arg(&o);
        run(&mut cmd);
        std::fs::read(o).unwrap()
    }
    /// Parsed `mender-artifact read` of an artifact file (with the key).
    pub fn mender_read(&self, artifact: &str, sign: Sign) -> MenderRead {
        let mut cmd = Command::new("mender-artifact");
        cmd.arg("read");
        if let Some(p) = sign.pub_pem() {
            cmd.arg("-k").arg(p);
        }
        cmd.arg(self.path(artifact));
        parse_mender_read(&run(&mut cmd))
    }
}

pub fn pseudo_random(size: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A small deterministic PRNG for chunk sizes.
pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

// ------------------------------------------------------------ mender read

#[derive(Debug, Default, Clone, PartialEq)]
pub struct MenderPayload {
    pub kind: String,
    pub provides: BTreeMap<String, String>,
    pub depends: BTreeMap<String, String>,
    pub clears: Option<Vec<String>>,
    pub meta_data: Option<serde_json::Value>,
    pub files: Vec<(String, u64, String)>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct MenderRead {
    pub name: String,
    pub signature: String,
    pub devices: Vec<String>,
    pub group: String,
    pub depends_names: Vec<String>,
    pub depends_groups: Vec<String>,
    pub scripts: Vec<String>,
    pub payloads: Vec<MenderPayload>,
}

/// `'[a b]'` (devices) or `[a, b]` (depends) into its items.
fn bracket_list(s: &str) -> Vec<String> {
    let s = s
        .trim()
        .trim_matches('\'')
        .trim_start_matches('[')
        .trim_end_matches(']');
    s.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Parse the text `mender-artifact read` prints.
pub fn parse_mender_read(text: &str) -> MenderRead {
    let mut r = MenderRead::default();
    let mut section = "";
    let mut cur: Option<MenderPayload> = None;
    let mut meta_text = String::new();
    let mut file: Option<(String, u64)> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(v) = line.strip_prefix("  Name: ") {
            r.name = v.to_owned();
        } else if let Some(v) = line.strip_prefix("  Signature: ") {
            r.signature = v.to_owned();
        } else if let Some(v) = line.strip_prefix("  Compatible devices: ") {
            r.devices = bracket_list(v);
        } else if let Some(v) = line.strip_prefix("  Provides group: ") {
            r.group = v.to_owned();
        } else if line.strip_prefix("  Provides group:").is_some() {
            r.group = String::new();
        } else if let Some(v) = line.strip_prefix("  Depends on one of artifact(s): ") {
            r.depends_names = bracket_list(v);
        } else if let Some(v) = line.strip_prefix("  Depends on one of group(s): ") {
            r.depends_groups = bracket_list(v);
        } else if line == "  State scripts:" {
            section = "scripts";
        } else if section == "scripts" && line.starts_with("    ") && !t.is_empty() {
            r.scripts.push(t.to_owned());
        } else if line == "Updates:" {
            section = "updates";
        } else if section != "scripts"
            && line.starts_with("    ")
            && t.ends_with(':')
            && t[..t.len() - 1].parse::<usize>().is_ok()
        {
            if let Some(p) = cur.take() {
                r.payloads.push(p);
            }
            cur = Some(MenderPayload::default());
            section = "payload";
        } else if let Some(p) = cur.as_mut() {
            if let Some(v) = t.strip_prefix("Type:") {
                p.kind = v.trim().to_owned();
                section = "payload";
            } else if t == "Provides:" {
                section = "provides";
            } else if t == "Provides: Nothing"
                || t == "Depends: Nothing"
                || t == "Metadata: Nothing"
            {
                section = "payload";
            } else if t == "Depends:" {
                section = "depends";
            } else if let Some(v) = t.strip_prefix("Clears Provides: ") {
                let list: Vec<String> = serde_json::from_str(v).unwrap();
                p.clears = Some(list);
                section = "payload";
            } else if t == "Metadata:" {
                section = "meta";
                meta_text.clear();
            } else if t == "Files:" || t == "Files: None" {
                if section == "meta" {
                    p.meta_data = Some(serde_json::from_str(&meta_text).unwrap());
                }
                section = "files";
            } else if section == "meta" {
                meta_text.push_str(t);
            } else if (section == "provides" || section == "depends") && line.starts_with('\t') {
                let (k, v) = t.split_once(": ").unwrap_or((t.trim_end_matches(':'), ""));
                let map = if section == "provides" {
                    &mut p.provides
                } else {
                    &mut p.depends
                };
                map.insert(k.to_owned(), v.to_owned());
            } else if section == "files" {
                if let Some(v) = t.strip_prefix("name:") {
                    file = Some((v.trim().to_owned(), 0));
                } else if let Some(v) = t.strip_prefix("size:") {
                    if let Some(f) = file.as_mut() {
                        f.1 = v.trim().parse().unwrap();
                    }
                } else if let Some(v) = t.strip_prefix("checksum:") {
                    let (n, s) = file.take().unwrap();
                    p.files.push((n, s, v.trim().to_owned()));
                }
            }
        }
    }
    if let Some(p) = cur.take() {
        r.payloads.push(p);
    }
    r
}

// ------------------------------------------------------------ our reader

/// A normalised event: data events merged, payload bytes kept whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    ScriptStart(String, u64),
    Script(Vec<u8>),
    ScriptEnd,
    Header(String),
    PayloadStart(usize, String, u64, u64),
    Payload(Vec<u8>),
    PayloadEnd([u8; 32]),
    Done,
}

/// Everything our reader produced, and how it ended.
#[derive(Debug)]
pub struct Outcome {
    pub events: Vec<Ev>,
    pub result: Result<(), Error>,
    pub metadata: Option<MenderRead>,
}

impl Outcome {
    pub fn unwrap_err(&self) -> Error {
        match &self.result {
            Ok(()) => panic!("the reader accepted an artifact it must reject"),
            Err(e) => e.clone(),
        }
    }
    /// Whether any header, script or payload event was released.
    pub fn released_anything(&self) -> bool {
        self.events.iter().any(|e| !matches!(e, Ev::Done))
    }
}

/// Convert our metadata into the shape of `mender-artifact read` output.
pub fn ours_as_mender(
    m: &Metadata,
    sig: SignatureState,
    scripts: &[String],
    files: &[(usize, String, u64, [u8; 32])],
) -> MenderRead {
    let signature = match sig {
        SignatureState::Unsigned => "no signature".to_owned(),
        SignatureState::NotVerified(_) => "signed but no key for verification provided; please use `-k` option for providing verification key".to_owned(),
        SignatureState::Verified { .. } => "signed and verified correctly".to_owned(),
        _ => "?".to_owned(),
    };
    MenderRead {
        name: m.artifact_name().to_owned(),
        signature,
        devices: m.device_types().map(str::to_owned).collect(),
        group: m.artifact_group().unwrap_or("").to_owned(),
        depends_names: m.depends_artifact_names().map(str::to_owned).collect(),
        depends_groups: m.depends_groups().map(str::to_owned).collect(),
        scripts: scripts.to_vec(),
        payloads: m
            .payloads()
            .enumerate()
            .map(|(i, p)| MenderPayload {
                kind: p.kind().unwrap_or("Empty type").to_owned(),
                provides: p
                    .provides()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
                depends: p
                    .depends()
                    .map(|(k, v)| {
                        let v = match v {
                            DependValue::One(s) => s.to_owned(),
                            DependValue::Many(l) => {
                                format!("[{}]", l.iter().collect::<Vec<_>>().join(" "))
                            }
                        };
                        (k.to_owned(), v)
                    })
                    .collect(),
                clears: p.clears_provides().map(|c| c.map(str::to_owned).collect()),
                meta_data: p
                    .meta_data()
                    .filter(|s| !s.is_empty())
                    .map(|s| serde_json::from_str(s).unwrap()),
                files: files
                    .iter()
                    .filter(|f| f.0 == i)
                    .map(|f| (f.1.clone(), f.2, hex(&f.3)))
                    .collect(),
            })
            .collect(),
    }
}

/// Run our reader over `bytes`, feeding chunks whose sizes `next_chunk`
/// picks, and record everything.
pub fn read_with(
    bytes: &[u8],
    keys: &[VerifyingKey],
    mut next_chunk: impl FnMut() -> usize,
) -> Outcome {
    let mut reader: Reader<'_, VerifyingKey, SoftSha256> = Reader::with_keys(keys);
    let mut events: Vec<Ev> = Vec::new();
    let mut scripts = Vec::new();
    let mut files: Vec<(usize, String, u64, [u8; 32])> = Vec::new();
    let mut header: Option<(Metadata, SignatureState)> = None;
    let mut pos = 0;
    let mut result = Ok(());
    'outer: while pos < bytes.len() {
        let n = next_chunk().clamp(1, bytes.len() - pos);
        let mut input = &bytes[pos..pos + n];
        pos += n;
        loop {
            match reader.feed(input) {
                Err(e) => {
                    result = Err(e);
                    break 'outer;
                }
                Ok((used, ev)) => {
                    input = &input[used..];
                    let Some(ev) = ev else { break };
                    match ev {
                        Event::ScriptStart { name, size } => {
                            scripts.push(name.to_owned());
                            events.push(Ev::ScriptStart(name.to_owned(), size));
                        }
                        Event::ScriptData(d) => match events.last_mut() {
                            Some(Ev::Script(v)) => v.extend_from_slice(d),
                            _ => events.push(Ev::Script(d.to_vec())),
                        },
                        Event::ScriptEnd => events.push(Ev::ScriptEnd),
                        Event::Header {
                            metadata,
                            signature,
                        } => {
                            events.push(Ev::Header(format!(
                                "{:?}",
                                ours_as_mender(metadata, signature, &[], &[])
                            )));
                            header = Some((metadata.clone(), signature));
                        }
                        Event::PayloadStart {
                            payload,
                            name,
                            size,
                            mtime,
                        } => {
                            files.push((payload, name.to_owned(), size, [0; 32]));
                            events.push(Ev::PayloadStart(payload, name.to_owned(), size, mtime));
                        }
                        Event::PayloadData(d) => match events.last_mut() {
                            Some(Ev::Payload(v)) => v.extend_from_slice(d),
                            _ => events.push(Ev::Payload(d.to_vec())),
                        },
                        Event::PayloadEnd { digest } => {
                            if !matches!(events.last(), Some(Ev::Payload(_))) {
                                events.push(Ev::Payload(Vec::new()));
                            }
                            if let Some(f) = files.last_mut() {
                                f.3 = digest;
                            }
                            events.push(Ev::PayloadEnd(digest));
                        }
                        Event::Done => events.push(Ev::Done),
                        _ => {}
                    }
                }
            }
        }
    }
    if result.is_ok() {
        result = reader.finish();
    }
    let metadata = header.map(|(m, s)| ours_as_mender(&m, s, &scripts, &files));
    Outcome {
        events,
        result,
        metadata,
    }
}

/// Read in one piece.
pub fn read_all(bytes: &[u8], keys: &[VerifyingKey]) -> Outcome {
    read_with(bytes, keys, || usize::MAX)
}

pub fn sha256(d: &[u8]) -> [u8; 32] {
    SoftSha256::digest(d)
}

/// Lower-case hex of a digest, as manifests write it.
pub fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `version` member every format-3 artifact carries.
pub const VERSION: &[u8] = br#"{"format":"mender","version":3}"#;

// ------------------------------------------------------------ tampering

/// The outer tar's members, in order.
pub fn members(artifact: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut a = tar::Archive::new(artifact);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_str().unwrap().to_owned();
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut v).unwrap();
            (name, v)
        })
        .collect()
}

/// Build an outer tar from members (ustar, mode 0600, like mender-artifact).
pub fn pack(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_mtime(0);
        h.set_cksum();
        b.append(&h, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn gunzip(d: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(d), &mut out).unwrap();
    out
}

pub fn gzip(d: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut e, d).unwrap();
    e.finish().unwrap()
}

/// Replace a member's content through `f`.
pub fn edit(artifact: &[u8], member: &str, f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut m = members(artifact);
    let entry = m
        .iter_mut()
        .find(|(n, _)| n == member)
        .unwrap_or_else(|| panic!("no member {member}"));
    f(&mut entry.1);
    pack(&m)
}
