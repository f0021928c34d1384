//! Streaming an artifact into a slot: the [`SlotWriter`] trait a platform
//! implements, and [`Install`], which feeds downloaded bytes through the
//! [`Reader`] and hands verified payload bytes to the writer.
//!
//! Before the first payload byte is written, [`Install`] checks what the
//! Mender client checks once the (signed) headers are in: the device type,
//! `artifact_depends` (names, groups, and every type-info depend against
//! the installed provides), and the payload type. When the artifact ends
//! with every digest matched, [`Install::finish`] returns the
//! [`Verified`] proof and what the device will provide once the update is
//! committed.

// The errors carry the reader's error (with the member's name) by value:
// there is no heap to box them into, and one is returned per install.
#![allow(clippy::result_large_err)]

use core::fmt;

use heapless::String;

use crate::artifact::{self, DependValue, Event, Metadata, Reader};
use crate::boot::{Slot, Verified};
use crate::crypto::{Sha256, Verifier};
use crate::store::{Installed, Provide};

/// Writes an image into a slot (a partition, an MCUboot secondary slot).
pub trait SlotWriter {
    /// The writer's error.
    type Error: fmt::Debug + fmt::Display;
    /// Starts a new image of `size` bytes in `slot` (erase, open).
    fn begin(&mut self, slot: Slot, size: u64) -> Result<(), Self::Error>;
    /// Appends image bytes.
    fn write(&mut self, data: &[u8]) -> Result<(), Self::Error>;
    /// Makes the image durable (flush, fsync).
    fn finish(&mut self) -> Result<(), Self::Error>;
    /// A state script of the artifact starts (`ArtifactInstall_Enter_00`).
    /// Keep it aside: it is proven only once the whole artifact verified
    /// ([`Install::finish`]). The default ignores scripts (a device that
    /// runs none).
    fn script_begin(&mut self, name: &str, size: u64) -> Result<(), Self::Error> {
        let _ = (name, size);
        Ok(())
    }
    /// Bytes of the current state script.
    fn script_data(&mut self, data: &[u8]) -> Result<(), Self::Error> {
        let _ = data;
        Ok(())
    }
    /// The current state script ended.
    fn script_end(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Why an install failed. Nothing is armed after any of these.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InstallError<E> {
    /// The artifact is invalid (tampered, truncated, wrong signature...).
    Artifact(artifact::Error),
    /// The artifact is not for this device type.
    Incompatible {
        /// This device's type.
        device_type: String<64>,
    },
    /// An `artifact_depends` entry is not satisfied by what is installed.
    Depends {
        /// The depends key (`artifact_name`, `artifact_group`, or a
        /// provides key).
        key: String<64>,
    },
    /// The artifact's payload is not one this writer installs.
    PayloadType {
        /// The type found (empty for a bootstrap artifact).
        found: String<64>,
    },
    /// The artifact holds other than exactly one payload file.
    PayloadFiles,
    /// The slot writer failed.
    Write(E),
    /// The artifact name in the headers is not the one the deployment
    /// announced.
    NameMismatch,
}

impl<E: fmt::Display> fmt::Display for InstallError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstallError::Artifact(e) => write!(f, "invalid artifact: {e}"),
            InstallError::Incompatible { device_type } => {
                write!(
                    f,
                    "the artifact is not compatible with device type {device_type}"
                )
            }
            InstallError::Depends { key } => write!(
                f,
                "artifact dependency {key:?} not satisfied by the installed artifact"
            ),
            InstallError::PayloadType { found } => {
                write!(f, "payload type {found:?} is not supported by this device")
            }
            InstallError::PayloadFiles => {
                f.write_str("the artifact must hold exactly one payload file for a slot")
            }
            InstallError::Write(e) => write!(f, "writing the slot failed: {e}"),
            InstallError::NameMismatch => {
                f.write_str("the artifact name differs from the deployment's")
            }
        }
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for InstallError<E> {}

fn short<const N: usize>(s: &str) -> String<N> {
    let mut out = String::new();
    for c in s.chars() {
        if out.push(c).is_err() {
            break;
        }
    }
    out
}

/// What an [`Install`] checks the artifact against.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The device type (`device_type` file).
    pub device_type: &'a str,
    /// What the device runs now (for `artifact_depends`).
    pub installed: &'a Installed,
    /// The payload type the slot writer installs (`rootfs-image`).
    pub payload_type: &'a str,
    /// The slot to write.
    pub slot: Slot,
    /// The artifact name the deployment announced, if any.
    pub expect_name: Option<&'a str>,
}

/// One artifact streamed into one slot. See the [module docs](self).
pub struct Install<'k, 't, K: Verifier, H: Sha256> {
    reader: Reader<'k, K, H>,
    target: Target<'t>,
    files: u32,
    next: Option<Installed>,
}

impl<'k, 't, K: Verifier, H: Sha256> Install<'k, 't, K, H> {
    /// Streams into `target.slot` through `reader` (made with the
    /// verification keys, if any).
    pub fn new(reader: Reader<'k, K, H>, target: Target<'t>) -> Self {
        Install {
            reader,
            target,
            files: 0,
            next: None,
        }
    }

    /// Feeds downloaded bytes; writes verified payload bytes to `writer`.
    pub fn feed<W: SlotWriter>(
        &mut self,
        mut input: &[u8],
        writer: &mut W,
    ) -> Result<(), InstallError<W::Error>> {
        loop {
            let (used, event) = self.reader.feed(input).map_err(InstallError::Artifact)?;
            input = &input[used..];
            match event {
                None => return Ok(()),
                Some(Event::Header { metadata, .. }) => {
                    self.next = Some(check(metadata, &self.target)?);
                }
                Some(Event::PayloadStart { size, .. }) => {
                    self.files += 1;
                    if self.files > 1 {
                        return Err(InstallError::PayloadFiles);
                    }
                    writer
                        .begin(self.target.slot, size)
                        .map_err(InstallError::Write)?;
                }
                Some(Event::PayloadData(data)) => {
                    writer.write(data).map_err(InstallError::Write)?;
                }
                Some(Event::PayloadEnd { .. }) => {
                    writer.finish().map_err(InstallError::Write)?;
                }
                Some(Event::ScriptStart { name, size }) => {
                    writer
                        .script_begin(name, size)
                        .map_err(InstallError::Write)?;
                }
                Some(Event::ScriptData(data)) => {
                    writer.script_data(data).map_err(InstallError::Write)?;
                }
                Some(Event::ScriptEnd) => {
                    writer.script_end().map_err(InstallError::Write)?;
                }
                Some(_) => {}
            }
        }
    }

    /// Ends the input: the proof that everything verified, and what the
    /// device provides once this artifact is committed.
    pub fn finish<E>(self) -> Result<(Verified, Installed), InstallError<E>> {
        self.reader.finish().map_err(InstallError::Artifact)?;
        if self.files != 1 {
            return Err(InstallError::PayloadFiles);
        }
        match (self.reader.verified(), self.next) {
            (Some(proof), Some(next)) => Ok((proof, next)),
            _ => Err(InstallError::Artifact(artifact::Error::Poisoned)),
        }
    }
}

/// The header checks, and the provides after a successful install.
fn check<E>(m: &Metadata, t: &Target<'_>) -> Result<Installed, InstallError<E>> {
    if let Some(name) = t.expect_name {
        if m.artifact_name() != name {
            return Err(InstallError::NameMismatch);
        }
    }
    if !m.device_types().any(|d| d == t.device_type) {
        return Err(InstallError::Incompatible {
            device_type: short(t.device_type),
        });
    }
    let installed = t.installed;
    let depends_err = |k: &str| InstallError::Depends { key: short(k) };
    let mut names = m.depends_artifact_names().peekable();
    if names.peek().is_some() && !names.any(|n| n == installed.artifact_name.as_str()) {
        return Err(depends_err("artifact_name"));
    }
    let mut groups = m.depends_groups().peekable();
    if groups.peek().is_some() && !groups.any(|g| Some(g) == installed.get("artifact_group")) {
        return Err(depends_err("artifact_group"));
    }
    let payload = match (m.payload_count(), m.payload(0)) {
        (1, Some(p)) => p,
        _ => return Err(InstallError::PayloadFiles),
    };
    let kind = payload.kind().unwrap_or("");
    if kind != t.payload_type {
        return Err(InstallError::PayloadType { found: short(kind) });
    }
    for (key, want) in payload.depends() {
        let have = installed.get(key);
        let ok = match want {
            DependValue::One(v) => have == Some(v),
            DependValue::Many(list) => list.iter().any(|v| have == Some(v)),
        };
        if !ok {
            return Err(depends_err(key));
        }
    }
    // What the device provides after the update: Mender keeps the old
    // provides that `clears_artifact_provides` does not match (an artifact
    // without that field clears everything, as Mender's legacy rule), then
    // adds the new ones.
    let mut next = Installed {
        artifact_name: short(m.artifact_name()),
        artifact_group: short(m.artifact_group().unwrap_or("")),
        provides: heapless::Vec::new(),
    };
    if let Some(clears) = payload.clears_provides() {
        let mut kept = installed.provides.clone();
        for pattern in clears {
            kept.retain(|p| !glob(pattern, p.key.as_str()));
        }
        next.provides = kept;
    }
    for (k, v) in payload.provides() {
        if k == "artifact_name" || k == "artifact_group" {
            continue;
        }
        next.provides.retain(|p| p.key.as_str() != k);
        let entry = Provide {
            key: short(k),
            value: short(v),
        };
        if next.provides.push(entry).is_err() {
            // More provides than the record keeps: the oldest kept ones go
            // first, the artifact's own always fit.
            next.provides.remove(0);
            let _ = next.provides.push(Provide {
                key: short(k),
                value: short(v),
            });
        }
    }
    Ok(next)
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((head, rest)) => {
            let Some(tail) = s.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len()).any(|i| tail.is_char_boundary(i) && glob(rest, &tail[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs() {
        assert!(glob("rootfs-image.*", "rootfs-image.version"));
        assert!(glob("rootfs-image.*", "rootfs-image."));
        assert!(!glob("rootfs-image.*", "data-partition.version"));
        assert!(glob("*.version", "a.b.version"));
        assert!(glob("a*b*c", "aXXbYc"));
        assert!(!glob("a*b*c", "aXXcYb"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exactly"));
    }
}
