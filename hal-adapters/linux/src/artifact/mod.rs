//! Reading artifacts from std I/O with `updraft-core`'s push reader, and
//! writing them ([`mod@write`]).

pub mod sign;
pub mod write;

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use updraft_core::artifact::{Error as ArtifactError, Event, Metadata, Reader, SignatureState};
use updraft_core::crypto::{KeyError, VerifyingKey};

/// Size of the read buffer. Large reads keep syscalls off the profile.
pub const READ_BUFFER: usize = 1 << 20;

/// Why reading an artifact failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ReadError {
    /// Reading the input failed.
    Io(io::Error),
    /// The artifact is invalid.
    Artifact(Box<ArtifactError>),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "reading the artifact: {e}"),
            ReadError::Artifact(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReadError::Io(e) => Some(e),
            ReadError::Artifact(e) => Some(e.as_ref()),
        }
    }
}

impl From<ArtifactError> for ReadError {
    fn from(e: ArtifactError) -> Self {
        ReadError::Artifact(Box::new(e))
    }
}

/// Feed everything `src` yields to `reader`, calling `on_event` for each
/// event, then check the artifact is complete. `progress` is told how many
/// input bytes were read after each read.
///
/// Reads go into one [`READ_BUFFER`] on this thread, where the hashing finds
/// the bytes still in cache. Inside a compressed payload reading moves to a
/// second thread, one buffer ahead, so the kernel's copy overlaps the work
/// here (2 MiB of buffers): decompression, or for stored gzip blocks the
/// CRC, brings the bytes into this core's cache before the hash (measured
/// faster than reading inline when a core is free).
pub fn drive<R: Read + Send>(
    mut src: R,
    reader: &mut Reader<'_>,
    mut on_event: impl FnMut(Event<'_>) -> io::Result<()>,
    mut progress: impl FnMut(u64),
) -> Result<(), ReadError> {
    let mut feed_all = |reader: &mut Reader<'_>, mut input: &[u8]| -> Result<(), ReadError> {
        loop {
            let (used, event) = reader.feed(input)?;
            input = &input[used..];
            match event {
                Some(ev) => on_event(ev).map_err(ReadError::Io)?,
                None => return Ok(()),
            }
        }
    };
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        if reader.in_compressed_payload() {
            break;
        }
        let n = match src.read(&mut buf) {
            Ok(0) => return reader.finish().map_err(ReadError::from),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ReadError::Io(e)),
        };
        progress(n as u64);
        feed_all(reader, &buf[..n])?;
    }

    use std::sync::mpsc;
    const BUFFERS: usize = 3;
    let (full_tx, full_rx) = mpsc::sync_channel::<io::Result<(Vec<u8>, usize)>>(BUFFERS);
    let (empty_tx, empty_rx) = mpsc::sync_channel::<Vec<u8>>(BUFFERS);
    let _ = empty_tx.send(buf);
    for _ in 1..BUFFERS {
        // The channel has room for all of them; half size keeps the peak
        // memory down without shortening the reads much.
        let _ = empty_tx.send(vec![0u8; READ_BUFFER / 2]);
    }
    std::thread::scope(|scope| {
        scope.spawn(move || {
            while let Ok(mut buf) = empty_rx.recv() {
                let r = loop {
                    match src.read(&mut buf) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        other => break other,
                    }
                };
                let (stop, msg) = match r {
                    Ok(0) => (true, Ok((buf, 0))),
                    Ok(n) => (false, Ok((buf, n))),
                    Err(e) => (true, Err(e)),
                };
                if full_tx.send(msg).is_err() || stop {
                    break;
                }
            }
        });
        // Dropping `empty_tx` and `full_rx` on any early return below stops
        // the reading thread.
        loop {
            let (buf, n) = match full_rx.recv() {
                Ok(Ok(x)) => x,
                Ok(Err(e)) => return Err(ReadError::Io(e)),
                Err(_) => {
                    return Err(ReadError::Io(io::Error::other(
                        "the reading thread stopped",
                    )))
                }
            };
            if n == 0 {
                break;
            }
            progress(n as u64);
            feed_all(reader, &buf[..n])?;
            let _ = empty_tx.send(buf);
        }
        reader.finish()?;
        Ok(())
    })
}

/// Why a key file could not be used.
#[derive(Debug)]
pub struct KeyFileError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub kind: KeyFileErrorKind,
}

/// What went wrong with a key file.
#[derive(Debug)]
#[non_exhaustive]
pub enum KeyFileErrorKind {
    /// It could not be read.
    Io(io::Error),
    /// It is not a usable public key.
    Key(KeyError),
}

impl fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            KeyFileErrorKind::Io(e) => write!(f, "{}: {e}", self.path.display()),
            KeyFileErrorKind::Key(e) => write!(f, "{}: {e}", self.path.display()),
        }
    }
}

impl std::error::Error for KeyFileError {}

/// Load a PEM public key (SPKI `PUBLIC KEY`, or PKCS#1 `RSA PUBLIC KEY`).
pub fn load_key(path: &Path) -> Result<VerifyingKey, KeyFileError> {
    let err = |kind| KeyFileError {
        path: path.to_owned(),
        kind,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(KeyFileErrorKind::Io(e)))?;
    VerifyingKey::from_pem(&text).map_err(|e| err(KeyFileErrorKind::Key(e)))
}

/// One file of a payload, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSummary {
    /// Which payload.
    pub payload: usize,
    /// Name inside the payload.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, Unix seconds.
    pub mtime: u64,
    /// Verified SHA-256.
    pub digest: [u8; 32],
}

/// Everything `updraft artifact read` reports.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Headers.
    pub metadata: Metadata,
    /// Signature state.
    pub signature: SignatureState,
    /// State script names, in order.
    pub scripts: Vec<String>,
    /// Payload files, in order.
    pub files: Vec<FileSummary>,
}

/// Read and verify a whole artifact, collecting its summary.
pub fn summarize<R: Read + Send>(
    src: R,
    keys: &[VerifyingKey],
    progress: impl FnMut(u64),
) -> Result<Summary, ReadError> {
    let mut reader = Reader::with_keys(keys);
    let mut scripts = Vec::new();
    let mut files: Vec<FileSummary> = Vec::new();
    let mut header = None;
    drive(
        src,
        &mut reader,
        |ev| {
            match ev {
                Event::ScriptStart { name, .. } => scripts.push(name.to_owned()),
                Event::Header {
                    metadata,
                    signature,
                } => header = Some((metadata.clone(), signature)),
                Event::PayloadStart {
                    payload,
                    name,
                    size,
                    mtime,
                } => files.push(FileSummary {
                    payload,
                    name: name.to_owned(),
                    size,
                    mtime,
                    digest: [0; 32],
                }),
                Event::PayloadEnd { digest } => {
                    if let Some(f) = files.last_mut() {
                        f.digest = digest;
                    }
                }
                _ => {}
            }
            Ok(())
        },
        progress,
    )?;
    let (metadata, signature) = header.ok_or_else(|| {
        ReadError::from(ArtifactError::Truncated {
            at: "the header".try_into().unwrap_or_default(),
        })
    })?;
    Ok(Summary {
        metadata,
        signature,
        scripts,
        files,
    })
}

/// Hex of a digest.
pub fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// `2026-11-22 11:22:37 +0000 UTC`, as Go prints a UTC time.
pub fn format_time(unix: u64) -> String {
    let days = (unix / 86400) as i64;
    let secs = unix % 86400;
    // Civil-from-days (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} +0000 UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Write the summary in the layout of `mender-artifact read`.
pub fn write_summary(out: &mut impl io::Write, s: &Summary) -> io::Result<()> {
    let m = &s.metadata;
    let list = |it: &mut dyn Iterator<Item = &str>| it.collect::<Vec<_>>().join(" ");
    let comma_list = |it: &mut dyn Iterator<Item = &str>| it.collect::<Vec<_>>().join(", ");
    writeln!(out, "Mender artifact:")?;
    writeln!(out, "  Name: {}", m.artifact_name())?;
    writeln!(out, "  Format: mender")?;
    writeln!(out, "  Version: 3")?;
    let signature = match s.signature {
        // mender-artifact's wording, so scripts that grep it keep working.
        SignatureState::NotVerified(_) => "signed but no key for verification provided; please use `-k` option for providing verification key".to_owned(),
        other => other.to_string(),
    };
    writeln!(out, "  Signature: {signature}")?;
    writeln!(
        out,
        "  Compatible devices: '[{}]'",
        list(&mut m.device_types())
    )?;
    writeln!(
        out,
        "  Provides group: {}",
        m.artifact_group().unwrap_or("")
    )?;
    writeln!(
        out,
        "  Depends on one of artifact(s): [{}]",
        comma_list(&mut m.depends_artifact_names())
    )?;
    writeln!(
        out,
        "  Depends on one of group(s): [{}]",
        comma_list(&mut m.depends_groups())
    )?;
    writeln!(out, "  State scripts:")?;
    for script in &s.scripts {
        writeln!(out, "    {script}")?;
    }
    writeln!(out)?;
    writeln!(out, "Updates:")?;
    for (i, p) in m.payloads().enumerate() {
        writeln!(out, "    {i}:")?;
        writeln!(out, "    Type:   {}", p.kind().unwrap_or("Empty type"))?;
        let mut provides: Vec<_> = p.provides().collect();
        provides.sort();
        if provides.is_empty() {
            writeln!(out, "    Provides: Nothing")?;
        } else {
            writeln!(out, "    Provides:")?;
            for (k, v) in provides {
                writeln!(out, "\t{k}: {v}")?;
            }
        }
        let mut depends: Vec<(String, String)> = p
            .depends()
            .map(|(k, v)| {
                let v = match v {
                    updraft_core::artifact::DependValue::One(v) => v.to_owned(),
                    updraft_core::artifact::DependValue::Many(l) => {
                        format!("[{}]", l.iter().collect::<Vec<_>>().join(" "))
                    }
                };
                (k.to_owned(), v)
            })
            .collect();
        depends.sort();
        if depends.is_empty() {
            writeln!(out, "    Depends: Nothing")?;
        } else {
            writeln!(out, "    Depends:")?;
            for (k, v) in depends {
                writeln!(out, "\t{k}: {v}")?;
            }
        }
        if let Some(clears) = p.clears_provides() {
            let quoted: Vec<String> = clears.map(|c| format!("{c:?}")).collect();
            writeln!(out, "    Clears Provides: [{}]", quoted.join(", "))?;
        }
        match p.meta_data().filter(|m| !m.is_empty()) {
            None => writeln!(out, "    Metadata: Nothing")?,
            Some(json) => {
                writeln!(out, "    Metadata:")?;
                let pretty = serde_json::from_str::<serde_json::Value>(json)
                    .and_then(|v| serde_json::to_string_pretty(&v))
                    .unwrap_or_else(|_| json.to_owned());
                for line in pretty.lines() {
                    writeln!(out, "\t{line}")?;
                }
            }
        }
        let files: Vec<_> = s.files.iter().filter(|f| f.payload == i).collect();
        if files.is_empty() {
            writeln!(out, "    Files: None")?;
        } else {
            writeln!(out, "    Files:")?;
            for f in files {
                writeln!(out, "      name:     {}", f.name)?;
                writeln!(out, "      size:     {}", f.size)?;
                writeln!(out, "      modified: {}", format_time(f.mtime))?;
                writeln!(out, "      checksum: {}", hex(&f.digest))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_time_format() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(format_time(1_795_346_557), "2026-11-22 11:22:37 +0000 UTC");
        assert_eq!(format_time(951_782_400), "2000-02-29 00:00:00 +0000 UTC");
    }
}
