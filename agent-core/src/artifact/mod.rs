//! The streaming Mender Artifact (format v3) reader, and with `std` the
//! writer ([`mod@write`]).
//!
//! [`Reader`] is a push parser: feed it byte slices of any size with
//! [`Reader::feed`] and it returns [`Event`]s one at a time. Any split of the
//! same artifact gives the same events. It never buffers a payload: payload
//! bytes are handed on as borrowed slices (of your input when the data is
//! uncompressed or, with `std`, in stored gzip blocks; of its decompression
//! window otherwise) after being hashed.
//!
//! ```no_run
//! # fn demo(artifact: &[u8]) -> Result<(), updraft_core::artifact::Error> {
//! use updraft_core::artifact::{Event, Reader};
//! let mut reader = Reader::new();
//! let mut input = artifact; // in practice: chunks from the network
//! loop {
//!     let (used, event) = reader.feed(input)?;
//!     input = &input[used..];
//!     match event {
//!         Some(Event::Header { metadata, .. }) => println!("installing {}", metadata.artifact_name()),
//!         Some(Event::PayloadData(bytes)) => { /* write to the inactive slot */ }
//!         Some(Event::PayloadEnd { .. }) => { /* this file's digest matched */ }
//!         Some(Event::Done) => break,
//!         Some(_) => {}
//!         None => { /* all input used: read more, or call reader.finish() at EOF */ break }
//!     }
//! }
//! reader.finish()?;
//! # Ok(()) }
//! ```
//!
//! # What is checked, and when
//!
//! * Member order is the one `mender-artifact` writes and the Mender client
//!   enforces: `version`, `manifest`, `manifest.sig`?, `manifest-augment`?,
//!   `header.tar[.gz|.xz]`, `header-augment.tar*`?, `data/0000.tar*`, ...
//! * With verification keys ([`Reader::with_keys`]), the manifest signature
//!   is verified when `manifest.sig` ends, before any header or payload
//!   event; an unsigned artifact is an error ([`Error::SignatureMissing`]).
//!   Without keys, the signature state is reported in [`Event::Header`].
//! * `version`, the header member (as stored, compressed) and every payload
//!   file (uncompressed) are hashed while they stream and compared with the
//!   manifest when they end. [`Event::Header`] comes only after the header's
//!   digest matched; [`Event::PayloadEnd`] only after the file's digest
//!   matched. **Payload bytes are unproven until their `PayloadEnd`**: write
//!   them to an inactive slot and act on them only after it; likewise state
//!   scripts ([`Event::ScriptStart`]) only after [`Event::Header`].
//! * At the end, every manifest line must have matched a file.
//! * After [`Event::Done`] only zero padding may follow. A caller that stops
//!   reading at `Done` accepts whatever comes after it; feed the rest of the
//!   stream (as `updraft artifact validate` does) to reject trailing data.
//!
//! # Memory
//!
//! All bounds are fixed and documented: [`MAX_SMALL_MEMBER`],
//! [`MAX_MANIFEST_LINES`], [`MANIFEST_PATH_BYTES`], and the metadata bounds in
//! [`meta`]. Exceeding one is [`Error::Limit`]. Without `std`, the reader is
//! about 56 KiB (a 32 KiB inflate window included); put it in a `static` on
//! small targets. With `std`, inflate and xz use 256 KiB heap buffers.

// `Error` carries member and file names (no allocator to box them), so it
// is larger than clippy likes; it is returned once per artifact.
#![allow(clippy::result_large_err)]

mod decode;
pub(crate) mod json;
mod manifest;
pub mod meta;
pub mod tar;
#[cfg(feature = "std")]
pub mod write;

pub use decode::{Compression, DecodeError};
pub use json::JsonError;
pub use manifest::{MANIFEST_PATH_BYTES, MAX_MANIFEST_LINES};
pub use meta::{DependValue, Limit, MetaError, Metadata, PayloadMeta};
pub use tar::TarError;

use crate::crypto::{DefaultSha256, KeyKind, Sha256, SignatureError, Verifier, VerifyingKey};
use core::fmt;
use decode::Decoder;
use manifest::{Manifest, ManifestError};

/// Largest `version`, `manifest.sig`, `header-info`, `type-info` or
/// `meta-data` member the reader accepts.
pub const MAX_SMALL_MEMBER: usize = 4096;

/// A member or file name kept in an error (long names are shortened).
pub type Name = heapless::String<64>;

fn name(s: &str) -> Name {
    let mut n = Name::new();
    if s.len() <= 64 {
        let _ = n.push_str(s);
    } else {
        let mut cut = 61;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        let _ = n.push_str(&s[..cut]);
        let _ = n.push_str("...");
    }
    n
}

/// What the manifest signature turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureState {
    /// The artifact has no `manifest.sig` (and no keys were configured).
    Unsigned,
    /// The artifact is signed, but no keys were configured to check it.
    NotVerified(KeyKind),
    /// The signature verified with the configured key at this index.
    Verified {
        /// Index into the keys given to [`Reader::with_keys`].
        key: usize,
    },
}

impl fmt::Display for SignatureState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignatureState::Unsigned => f.write_str("no signature"),
            SignatureState::NotVerified(k) => {
                write!(f, "signed ({k}) but no key for verification provided")
            }
            SignatureState::Verified { .. } => f.write_str("signed and verified correctly"),
        }
    }
}

/// What the reader found. Data slices borrow from your input or from the
/// reader's decompression window, until the next [`Reader::feed`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A state script starts (`name` without the `scripts/` prefix). Its
    /// bytes are proven only once [`Event::Header`] arrives.
    ScriptStart {
        /// e.g. `ArtifactInstall_Enter_00`.
        name: &'a str,
        /// Size in bytes.
        size: u64,
    },
    /// Bytes of the current state script.
    ScriptData(&'a [u8]),
    /// The current state script ended.
    ScriptEnd,
    /// All headers were read and their digest matched the (signed, when
    /// keys are configured) manifest. Comes before the first payload.
    Header {
        /// header-info, type-info and meta-data.
        metadata: &'a Metadata,
        /// The signature state.
        signature: SignatureState,
    },
    /// A payload file starts.
    PayloadStart {
        /// Which payload (`data/NNNN`), from 0.
        payload: usize,
        /// The file's name inside the payload.
        name: &'a str,
        /// Size in bytes (uncompressed).
        size: u64,
        /// Modification time (Unix seconds) from the data tar.
        mtime: u64,
    },
    /// Bytes of the current payload file, already hashed.
    PayloadData(&'a [u8]),
    /// The current payload file ended and its SHA-256 matched the manifest.
    PayloadEnd {
        /// The verified SHA-256.
        digest: [u8; 32],
    },
    /// The artifact is complete and everything matched.
    Done,
}

/// Why an artifact was rejected. Each variant says what was wrong and where.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The first member is not `version`: this is not a Mender artifact.
    NotAnArtifact {
        /// What the first member was.
        first: Name,
    },
    /// `version` is not `{"format":"mender","version":3}`.
    UnsupportedVersion {
        /// The version number found, if any.
        version: Option<u64>,
    },
    /// A tar structure (outer, or inside the named member) is broken.
    Tar {
        /// The member, or `"artifact"` for the outer tar.
        member: Name,
        /// What was wrong.
        error: TarError,
    },
    /// A compressed member is corrupt.
    Decode {
        /// The member.
        member: Name,
        /// What was wrong.
        error: DecodeError,
    },
    /// A member appeared where the format does not allow it (wrong order,
    /// unknown name, or a second copy).
    UnexpectedMember {
        /// The member.
        member: Name,
        /// What the format wanted at this point.
        expected: &'static str,
    },
    /// A file inside the header or a data member that the format does not
    /// allow there.
    UnexpectedEntry {
        /// The member holding it.
        member: Name,
        /// The entry.
        entry: Name,
    },
    /// A manifest line is not `<sha256 hex>  <path>`.
    ManifestSyntax {
        /// 1-based line number.
        line: u16,
        /// In `manifest-augment` rather than `manifest`.
        augment: bool,
    },
    /// A path is listed twice in the manifest.
    ManifestDuplicate {
        /// 1-based line number.
        line: u16,
    },
    /// A member or payload file has no manifest line, so it cannot be
    /// verified.
    NotInManifest {
        /// The file (`data/0000/rootfs.ext4`, `header.tar.gz`, ...).
        file: Name,
    },
    /// A manifest line names a file the artifact does not contain.
    MissingFile {
        /// The path from the manifest.
        file: Name,
    },
    /// A file's SHA-256 differs from its manifest line.
    DigestMismatch {
        /// The file.
        file: Name,
        /// From the manifest.
        expected: [u8; 32],
        /// Computed from the bytes read.
        actual: [u8; 32],
    },
    /// Keys are configured but the artifact has no `manifest.sig`.
    SignatureMissing,
    /// `manifest.sig` is not valid base64.
    SignatureEncoding,
    /// No configured key verifies the signature.
    SignatureInvalid {
        /// Why (from the key of the signature's kind, if any).
        error: SignatureError,
    },
    /// A header JSON member is invalid.
    Metadata {
        /// The member (`header-info`, `headers/0000/type-info`, ...).
        member: Name,
        /// What was wrong.
        error: MetaError,
    },
    /// The artifact exceeds one of the reader's fixed bounds.
    Limit(Limit),
    /// `header-info` lists a different number of payloads than there are
    /// data members, or a payload lacks its `type-info`.
    PayloadMismatch {
        /// Payloads listed in header-info.
        declared: usize,
        /// Data members (or type-infos) found.
        found: usize,
    },
    /// The stream ended before the artifact was complete.
    Truncated {
        /// The member being read, or what was expected next.
        at: Name,
    },
    /// Non-zero bytes after the end of the artifact or of a member's tar.
    TrailingData {
        /// `"artifact"`, or the member.
        member: Name,
    },
    /// [`Reader::feed`] was called again after it returned an error.
    Poisoned,
}

fn hex(f: &mut fmt::Formatter<'_>, d: &[u8; 32]) -> fmt::Result {
    for b in d {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotAnArtifact { first } => write!(
                f,
                "not a Mender artifact: the first member is `{first}`, expected `version`"
            ),
            Error::UnsupportedVersion { version: Some(v) } => write!(
                f,
                "unsupported artifact format version {v}: only Mender format version 3 is supported"
            ),
            Error::UnsupportedVersion { version: None } => {
                f.write_str("invalid `version` member: expected {\"format\":\"mender\",\"version\":3}")
            }
            Error::Tar { member, error } => write!(f, "{member}: {error}"),
            Error::Decode { member, error } => write!(f, "{member}: {error}"),
            Error::UnexpectedMember { member, expected } => {
                write!(f, "unexpected member `{member}`: expected {expected}")
            }
            Error::UnexpectedEntry { member, entry } => {
                write!(f, "{member}: unexpected file `{entry}`")
            }
            Error::ManifestSyntax { line, augment } => write!(
                f,
                "{}: line {line} is not `<sha256>  <path>`",
                if *augment { "manifest-augment" } else { "manifest" }
            ),
            Error::ManifestDuplicate { line } => {
                write!(f, "manifest: line {line} lists a path a second time")
            }
            Error::NotInManifest { file } => write!(
                f,
                "`{file}` is not listed in the manifest, so it cannot be verified"
            ),
            Error::MissingFile { file } => write!(
                f,
                "files found in manifest that were not part of the artifact: {file}"
            ),
            Error::DigestMismatch {
                file,
                expected,
                actual,
            } => {
                write!(f, "{file}: invalid checksum; expected: [")?;
                hex(f, expected)?;
                f.write_str("]; actual: [")?;
                hex(f, actual)?;
                f.write_str("]")
            }
            Error::SignatureMissing => f.write_str(
                "missing signature: verification keys are configured but the artifact is not signed",
            ),
            Error::SignatureEncoding => f.write_str("manifest.sig is not valid base64"),
            Error::SignatureInvalid { error } => {
                write!(f, "signature verification failed: {error}")
            }
            Error::Metadata { member, error } => write!(f, "{member}: {error}"),
            Error::Limit(l) => write!(f, "artifact too large for this reader: {l}"),
            Error::PayloadMismatch { declared, found } => write!(
                f,
                "header-info declares {declared} payload(s) but the artifact has {found}"
            ),
            Error::Truncated { at } => write!(f, "artifact is truncated: it ends in {at}"),
            Error::TrailingData { member } => {
                write!(f, "{member}: unexpected data after the end")
            }
            Error::Poisoned => f.write_str("the reader already failed; start a new one"),
        }
    }
}

impl core::error::Error for Error {}

// ------------------------------------------------------------ internals

/// Which outer member comes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Version,
    Manifest,
    /// manifest.sig, manifest-augment or header
    AfterManifest,
    /// manifest-augment or header
    AfterSig,
    Header,
    /// header-augment, data or end
    AfterHeader,
    /// data/NNNN or end
    Data,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Small {
    Version,
    Signature,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Member {
    None,
    Small(Small),
    Manifest {
        augment: bool,
    },
    Header {
        augment: bool,
        compression: Compression,
    },
    Data {
        index: usize,
        compression: Compression,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inner {
    None,
    Skip,
    HeaderInfo,
    TypeInfo(usize),
    MetaData(usize),
    Script,
    Payload { line: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Src {
    Input,
    Decoder,
}

/// An event without borrows (ranges into the input or decoder output).
#[derive(Debug, Clone, Copy)]
enum Raw {
    ScriptStart,
    ScriptData(Src, usize, usize),
    ScriptEnd,
    Header,
    PayloadStart,
    PayloadData(Src, usize, usize),
    PayloadEnd([u8; 32]),
    Done,
}

/// Everything but the parsers and the decoder (split so that data borrowed
/// from one can be handed to the others).
struct Core<'k, K, H> {
    keys: &'k [K],
    expect: Expect,
    member: Member,
    inner_kind: Inner,
    small: heapless::Vec<u8, MAX_SMALL_MEMBER>,
    manifest: Manifest,
    manifest_hash: H,
    manifest_digest: [u8; 32],
    version_digest: [u8; 32],
    member_hash: H,
    file_hash: H,
    meta: Metadata,
    signature: SignatureState,
    header_info_seen: bool,
    header_emitted: bool,
    augment_manifest: bool,
    data_members: usize,
    inner_ended: bool,
    /// An outer entry whose handling waits for [`Event::Header`] first.
    deferred_entry: bool,
    /// The archive end was seen while [`Event::Header`] was still due.
    pending_done: bool,
    done: bool,
    failed: bool,
}

/// The streaming artifact reader. See the [module docs](self).
pub struct Reader<'k, K: Verifier = VerifyingKey, H: Sha256 = DefaultSha256> {
    outer: tar::Parser,
    inner: tar::Parser,
    decoder: Decoder,
    c: Core<'k, K, H>,
}

impl Reader<'static, VerifyingKey, DefaultSha256> {
    /// A reader with no verification keys: signed and unsigned artifacts are
    /// accepted, and the signature state is reported.
    pub fn new() -> Self {
        Reader::with_keys(&[])
    }
}

impl Default for Reader<'static, VerifyingKey, DefaultSha256> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'k, K: Verifier, H: Sha256> Reader<'k, K, H> {
    /// A reader that requires a manifest signature verified by one of
    /// `keys` (several, for key rotation). With an empty slice it behaves
    /// like [`Reader::new`].
    pub fn with_keys(keys: &'k [K]) -> Self {
        Reader {
            outer: tar::Parser::new(),
            inner: tar::Parser::new(),
            decoder: Decoder::gzip(),
            c: Core {
                keys,
                expect: Expect::Version,
                member: Member::None,
                inner_kind: Inner::None,
                small: heapless::Vec::new(),
                manifest: Manifest::new(),
                manifest_hash: H::default(),
                manifest_digest: [0; 32],
                version_digest: [0; 32],
                member_hash: H::default(),
                file_hash: H::default(),
                meta: Metadata::default(),
                signature: SignatureState::Unsigned,
                header_info_seen: false,
                header_emitted: false,
                augment_manifest: false,
                data_members: 0,
                inner_ended: false,
                deferred_entry: false,
                pending_done: false,
                done: false,
                failed: false,
            },
        }
    }

    /// The metadata parsed so far (complete once [`Event::Header`] came).
    pub fn metadata(&self) -> &Metadata {
        &self.c.meta
    }

    /// The signature state (final once `manifest.sig` was read or skipped).
    pub fn signature(&self) -> SignatureState {
        self.c.signature
    }

    /// True once [`Event::Done`] was returned.
    pub fn is_done(&self) -> bool {
        self.c.done
    }

    /// True while a compressed payload member is being read: a driver may
    /// then read ahead on another thread, since decompression (or the gzip
    /// CRC, for stored blocks) passes over the data before the hash.
    pub fn in_compressed_payload(&self) -> bool {
        matches!(
            self.c.member,
            Member::Data { compression, .. } if compression != Compression::None
        )
    }

    /// The proof needed to arm a trial boot
    /// ([`crate::boot::BootControl::arm_trial`]): only once the whole
    /// artifact was read and every check passed.
    pub fn verified(&self) -> Option<crate::boot::Verified> {
        (self.c.done && !self.c.failed).then_some(crate::boot::Verified { _private: () })
    }

    /// Call at the end of input: `Ok` only if the artifact was complete.
    pub fn finish(&self) -> Result<(), Error> {
        if self.c.failed {
            return Err(Error::Poisoned);
        }
        if self.c.done {
            return Ok(());
        }
        let at = match self.c.member {
            Member::None => {
                let next = match self.c.expect {
                    Expect::Version => "`version` (the artifact is empty)",
                    Expect::Manifest => "`manifest`",
                    Expect::AfterManifest | Expect::AfterSig | Expect::Header => "`header.tar.gz`",
                    Expect::AfterHeader | Expect::Data => "data members",
                };
                let mut n = Name::new();
                let _ = n.push_str("a member boundary, before ");
                let _ = n.push_str(next);
                n
            }
            _ => {
                let mut n = Name::new();
                let _ = n.push_str("member `");
                let _ = n.push_str(&name(&self.outer.entry().path));
                let _ = n.push_str("`");
                n
            }
        };
        Err(Error::Truncated { at })
    }

    /// Feed input. Returns how many bytes of `input` were used and the next
    /// event, or `None` when all of `input` was used and more is needed.
    /// Call again with the unused rest (possibly empty) after each event.
    pub fn feed<'a>(&'a mut self, input: &'a [u8]) -> Result<(usize, Option<Event<'a>>), Error> {
        if self.c.failed {
            return Err(Error::Poisoned);
        }
        let (used, raw) = match self.advance(input) {
            Ok(r) => r,
            Err(e) => {
                self.c.failed = true;
                return Err(e);
            }
        };
        let ev = raw.map(|raw| match raw {
            Raw::ScriptStart => {
                let path = self.inner.entry().path.as_str();
                Event::ScriptStart {
                    name: path.strip_prefix("scripts/").unwrap_or(path),
                    size: self.inner.entry().size,
                }
            }
            Raw::ScriptData(src, a, b) => Event::ScriptData(match src {
                Src::Input => &input[a..b],
                Src::Decoder => self.decoder.slice(a, b),
            }),
            Raw::ScriptEnd => Event::ScriptEnd,
            Raw::Header => Event::Header {
                metadata: &self.c.meta,
                signature: self.c.signature,
            },
            Raw::PayloadStart => {
                let index = match self.c.member {
                    Member::Data { index, .. } => index,
                    _ => 0,
                };
                Event::PayloadStart {
                    payload: index,
                    name: self.inner.entry().path.as_str(),
                    size: self.inner.entry().size,
                    mtime: self.inner.entry().mtime,
                }
            }
            Raw::PayloadData(src, a, b) => Event::PayloadData(match src {
                Src::Input => &input[a..b],
                Src::Decoder => self.decoder.slice(a, b),
            }),
            Raw::PayloadEnd(digest) => Event::PayloadEnd { digest },
            Raw::Done => Event::Done,
        });
        Ok((used, ev))
    }

    fn member_name(&self) -> Name {
        name(&self.outer.entry().path)
    }

    fn advance(&mut self, input: &[u8]) -> Result<(usize, Option<Raw>), Error> {
        let mut used = 0;
        loop {
            if self.c.pending_done {
                self.c.pending_done = false;
                return Ok((used, Some(self.c.finish_archive()?)));
            }
            if self.c.deferred_entry {
                self.c.deferred_entry = false;
                if let Some(raw) = self.outer_entry()? {
                    return Ok((used, Some(raw)));
                }
                continue;
            }
            if self.c.done {
                // Only zero padding may follow the end of the archive.
                if input[used..].iter().any(|&b| b != 0) {
                    return Err(Error::TrailingData {
                        member: name("artifact"),
                    });
                }
                return Ok((input.len(), None));
            }
            let compressed = self.compression().is_some_and(|c| c != Compression::None);

            // 1. Decompressed output waiting for the inner tar.
            if compressed && !self.decoder.pending().is_empty() {
                let start = self.decoder.pending_start();
                if self.c.inner_ended {
                    if self.decoder.pending().iter().any(|&b| b != 0) {
                        return Err(Error::TrailingData {
                            member: self.member_name(),
                        });
                    }
                    let n = self.decoder.pending().len();
                    self.decoder.consume(n);
                    continue;
                }
                let (n, item) =
                    self.inner
                        .step(self.decoder.pending())
                        .map_err(|error| Error::Tar {
                            member: name(&self.outer.entry().path),
                            error,
                        })?;
                self.decoder.consume(n);
                if let tar::Item::Data(len) = item {
                    self.c
                        .inner_data(self.decoder.slice(start + n - len, start + n))?;
                }
                if let Some(raw) = self.inner_item(item, Src::Decoder, start + n)? {
                    return Ok((used, Some(raw)));
                }
                continue;
            }

            // 2. Content of the current outer member.
            let remaining = self.outer.remaining();
            if remaining > 0 {
                let left = &input[used..];
                if left.is_empty() {
                    return Ok((used, None));
                }
                let avail = core::cmp::min(remaining, left.len() as u64) as usize;
                let chunk = &left[..avail];
                let n;
                let mut raw = None;
                let stored = if compressed {
                    self.decoder.stored_input()
                } else {
                    0
                };
                match self.c.member {
                    // Content of a stored deflate block: the data itself,
                    // read straight from the input (no copy).
                    Member::Header { .. } | Member::Data { .. } if stored > 0 => {
                        let piece = &chunk[..core::cmp::min(stored, chunk.len())];
                        if self.c.inner_ended {
                            if piece.iter().any(|&b| b != 0) {
                                return Err(Error::TrailingData {
                                    member: self.member_name(),
                                });
                            }
                            n = piece.len();
                            self.decoder.take_stored(piece, &chunk[n..]);
                        } else {
                            let (k, item) = self.inner.step(piece).map_err(|error| Error::Tar {
                                member: name(&self.outer.entry().path),
                                error,
                            })?;
                            n = k;
                            // The CRC first: it pulls the bytes into cache
                            // for the hash.
                            self.decoder.take_stored(&chunk[..k], &chunk[k..]);
                            if let tar::Item::Data(len) = item {
                                self.c.inner_data(&chunk[k - len..k])?;
                            }
                            raw = self.inner_item(item, Src::Input, used + k)?;
                        }
                    }
                    Member::Header { .. } | Member::Data { .. } if compressed => {
                        n = self.decoder.feed(chunk).map_err(|error| Error::Decode {
                            member: name(&self.outer.entry().path),
                            error,
                        })?;
                    }
                    Member::Header { .. } | Member::Data { .. } => {
                        if self.c.inner_ended {
                            if chunk.iter().any(|&b| b != 0) {
                                return Err(Error::TrailingData {
                                    member: self.member_name(),
                                });
                            }
                            n = chunk.len();
                        } else {
                            let (k, item) = self.inner.step(chunk).map_err(|error| Error::Tar {
                                member: name(&self.outer.entry().path),
                                error,
                            })?;
                            n = k;
                            if let tar::Item::Data(len) = item {
                                self.c.inner_data(&chunk[k - len..k])?;
                            }
                            raw = self.inner_item(item, Src::Input, used + k)?;
                        }
                    }
                    _ => {
                        n = avail;
                        self.c.small_content(chunk)?;
                    }
                }
                if matches!(self.c.member, Member::Header { .. }) {
                    self.c.member_hash.update(&chunk[..n]);
                }
                // Advance the outer parser over exactly the bytes used.
                let _ = self.outer.step(&chunk[..n]).map_err(|error| Error::Tar {
                    member: name("artifact"),
                    error,
                })?;
                used += n;
                if raw.is_some() {
                    return Ok((used, raw));
                }
                continue;
            }

            // 3. A compressed member's input is all in: flush the decoder.
            if compressed && !self.decoder.finished() {
                let produced = self.decoder.flush().map_err(|error| Error::Decode {
                    member: self.member_name(),
                    error,
                })?;
                if produced {
                    continue;
                }
            }

            // 4. The outer tar: headers, member ends, archive end.
            let (n, item) = self
                .outer
                .step(&input[used..])
                .map_err(|error| Error::Tar {
                    member: name("artifact"),
                    error,
                })?;
            used += n;
            match item {
                tar::Item::NeedMore => return Ok((used, None)),
                tar::Item::Data(_) => {}
                tar::Item::Entry => {
                    if let Some(raw) = self.outer_entry()? {
                        return Ok((used, Some(raw)));
                    }
                }
                tar::Item::EntryEnd => {
                    if let Some(raw) = self.outer_end()? {
                        return Ok((used, Some(raw)));
                    }
                }
                tar::Item::End => {
                    let raw = self.archive_end()?;
                    return Ok((used, Some(raw)));
                }
            }
        }
    }

    fn compression(&self) -> Option<Compression> {
        match self.c.member {
            Member::Header { compression, .. } | Member::Data { compression, .. } => {
                Some(compression)
            }
            _ => None,
        }
    }

    /// A new outer member started.
    fn outer_entry(&mut self) -> Result<Option<Raw>, Error> {
        let path = self.outer.entry().path.clone();
        let p = path.as_str();
        let unexpected = |expected| Error::UnexpectedMember {
            member: name(p),
            expected,
        };
        if self.outer.entry().kind != tar::EntryKind::File {
            return Err(unexpected("a regular file"));
        }
        let c = &mut self.c;
        c.member = match c.expect {
            Expect::Version => {
                if p != "version" {
                    return Err(Error::NotAnArtifact { first: name(p) });
                }
                c.expect = Expect::Manifest;
                Member::Small(Small::Version)
            }
            Expect::Manifest => {
                if p != "manifest" {
                    return Err(unexpected("`manifest`"));
                }
                c.expect = Expect::AfterManifest;
                Member::Manifest { augment: false }
            }
            Expect::AfterManifest | Expect::AfterSig | Expect::Header => {
                if c.expect == Expect::AfterManifest && p == "manifest.sig" {
                    c.expect = Expect::AfterSig;
                    Member::Small(Small::Signature)
                } else {
                    if c.expect == Expect::AfterManifest && !c.keys.is_empty() {
                        return Err(Error::SignatureMissing);
                    }
                    if c.expect != Expect::Header && p == "manifest-augment" {
                        c.expect = Expect::Header;
                        c.augment_manifest = true;
                        Member::Manifest { augment: true }
                    } else if let Some(comp) = tar_suffix(p, "header.tar") {
                        c.expect = Expect::AfterHeader;
                        Member::Header {
                            augment: false,
                            compression: comp,
                        }
                    } else {
                        return Err(unexpected(match c.expect {
                            Expect::AfterManifest => {
                                "`manifest.sig`, `manifest-augment` or `header.tar.gz`"
                            }
                            Expect::AfterSig => "`manifest-augment` or `header.tar.gz`",
                            _ => "`header.tar.gz`",
                        }));
                    }
                }
            }
            Expect::AfterHeader | Expect::Data => {
                if c.expect == Expect::AfterHeader && c.augment_manifest {
                    if let Some(comp) = tar_suffix(p, "header-augment.tar") {
                        c.expect = Expect::Data;
                        self.start_archive_member(comp)?;
                        self.c.member = Member::Header {
                            augment: true,
                            compression: comp,
                        };
                        return Ok(None);
                    }
                }
                if !c.header_emitted {
                    c.check_type_infos()?;
                    c.header_emitted = true;
                    c.deferred_entry = true;
                    return Ok(Some(Raw::Header));
                }
                c.expect = Expect::Data;
                let (index, comp) = data_member(p).ok_or_else(|| {
                    unexpected("`data/NNNN.tar.gz` (the next payload) or the end of the artifact")
                })?;
                if index != c.data_members {
                    return Err(unexpected("the data members in order, from data/0000"));
                }
                if index >= c.meta.payload_count() {
                    return Err(Error::PayloadMismatch {
                        declared: c.meta.payload_count(),
                        found: index + 1,
                    });
                }
                c.data_members += 1;
                Member::Data {
                    index,
                    compression: comp,
                }
            }
        };
        if let Some(comp) = self.compression() {
            self.start_archive_member(comp)?;
        }
        self.c.small.clear();
        Ok(None)
    }

    fn start_archive_member(&mut self, comp: Compression) -> Result<(), Error> {
        self.inner = tar::Parser::new();
        self.c.inner_ended = false;
        self.c.inner_kind = Inner::None;
        self.c.member_hash = H::default();
        if comp != Compression::None {
            self.decoder.reset(comp).map_err(|error| Error::Decode {
                member: self.member_name(),
                error,
            })?;
        }
        Ok(())
    }

    /// The current outer member ended.
    fn outer_end(&mut self) -> Result<Option<Raw>, Error> {
        let member = core::mem::replace(&mut self.c.member, Member::None);
        match member {
            Member::None => {}
            Member::Small(Small::Version) => {
                self.c.version_digest = H::digest(&self.c.small);
                parse_version(&self.c.small)?;
            }
            Member::Small(Small::Signature) => self.c.check_signature()?,
            Member::Manifest { augment } => {
                self.c
                    .manifest
                    .finish(augment)
                    .map_err(|e| manifest_err(e, augment))?;
                if !augment {
                    let h = core::mem::take(&mut self.c.manifest_hash);
                    self.c.manifest_digest = h.finalize();
                    let d = self.c.version_digest;
                    self.c.check_digest("version", d)?;
                }
            }
            Member::Header {
                augment,
                compression,
            } => {
                self.end_archive_member(compression)?;
                let h = core::mem::take(&mut self.c.member_hash);
                let path = self.outer.entry().path.clone();
                self.c.check_digest(&path, h.finalize())?;
                if !augment {
                    if !self.c.header_info_seen {
                        return Err(Error::Metadata {
                            member: name("header-info"),
                            error: MetaError::Missing("header-info"),
                        });
                    }
                    self.c.check_type_infos()?;
                }
            }
            Member::Data { compression, .. } => self.end_archive_member(compression)?,
        }
        Ok(None)
    }

    /// A header or data member ended: its compressed stream and its inner
    /// tar must both be complete.
    fn end_archive_member(&mut self, compression: Compression) -> Result<(), Error> {
        let mname = self.member_name();
        if compression != Compression::None && !self.decoder.finished() {
            return Err(Error::Decode {
                member: mname,
                error: DecodeError::Truncated,
            });
        }
        if !self.c.inner_ended {
            return Err(Error::Tar {
                member: mname,
                error: TarError::Truncated,
            });
        }
        Ok(())
    }

    fn archive_end(&mut self) -> Result<Raw, Error> {
        let c = &mut self.c;
        if c.expect != Expect::AfterHeader && c.expect != Expect::Data {
            return Err(Error::Truncated {
                at: name(match c.expect {
                    Expect::Version => "an empty tar archive",
                    Expect::Manifest => "the end marker, before `manifest`",
                    _ => "the end marker, before `header.tar.gz`",
                }),
            });
        }
        if !c.header_emitted {
            c.check_type_infos()?;
            c.header_emitted = true;
            c.pending_done = true;
            return Ok(Raw::Header);
        }
        c.finish_archive()
    }

    /// Handle one item of the inner tar of a header or data member. `end`
    /// is the offset (in the input or the decoder output) just after the
    /// bytes the item covered.
    fn inner_item(&mut self, item: tar::Item, src: Src, end: usize) -> Result<Option<Raw>, Error> {
        let member = self.c.member;
        match item {
            tar::Item::NeedMore => Ok(None),
            tar::Item::End => {
                self.c.inner_ended = true;
                Ok(None)
            }
            tar::Item::Entry => {
                let entry = self.inner.entry();
                let unexpected = || Error::UnexpectedEntry {
                    member: name(&self.outer.entry().path),
                    entry: name(&entry.path),
                };
                if entry.kind == tar::EntryKind::Directory {
                    self.c.inner_kind = Inner::Skip;
                    return Ok(None);
                }
                if entry.kind != tar::EntryKind::File {
                    return Err(unexpected());
                }
                let path = entry.path.as_str();
                let c = &mut self.c;
                c.small.clear();
                match member {
                    Member::Header { augment, .. } => {
                        if path == "header-info" {
                            if c.header_info_seen && !augment {
                                return Err(unexpected());
                            }
                            c.inner_kind = if augment {
                                Inner::Skip
                            } else {
                                Inner::HeaderInfo
                            };
                            if !augment {
                                c.header_info_seen = true;
                            }
                            return Ok(None);
                        }
                        if !c.header_info_seen {
                            return Err(Error::Metadata {
                                member: name("header-info"),
                                error: MetaError::Missing("header-info (it must come first)"),
                            });
                        }
                        if let Some(script) = path.strip_prefix("scripts/") {
                            if augment || script.is_empty() || script.contains('/') {
                                return Err(unexpected());
                            }
                            c.inner_kind = Inner::Script;
                            return Ok(Some(Raw::ScriptStart));
                        }
                        let (index, file) = headers_path(path).ok_or_else(unexpected)?;
                        c.inner_kind = match file {
                            "type-info" => Inner::TypeInfo(index),
                            "meta-data" if augment => Inner::Skip,
                            "meta-data" => {
                                if !c.meta.has_type_info(index) {
                                    return Err(unexpected());
                                }
                                Inner::MetaData(index)
                            }
                            _ => return Err(unexpected()),
                        };
                        Ok(None)
                    }
                    Member::Data { index, .. } => {
                        if path.contains('/') {
                            return Err(unexpected());
                        }
                        let mut key: heapless::String<{ tar::MAX_PATH + 16 }> =
                            heapless::String::new();
                        let _ = write_data_path(&mut key, index, path);
                        let line = c
                            .manifest
                            .find(&key)
                            .ok_or(Error::NotInManifest { file: name(&key) })?;
                        if !c.manifest.mark_seen(line) {
                            return Err(unexpected());
                        }
                        c.file_hash = H::default();
                        c.inner_kind = Inner::Payload { line };
                        Ok(Some(Raw::PayloadStart))
                    }
                    _ => Err(unexpected()),
                }
            }
            tar::Item::Data(len) => {
                let start = end - len;
                Ok(match self.c.inner_kind {
                    Inner::Script => Some(Raw::ScriptData(src, start, end)),
                    Inner::Payload { .. } => Some(Raw::PayloadData(src, start, end)),
                    _ => None,
                })
            }
            tar::Item::EntryEnd => {
                let kind = core::mem::replace(&mut self.c.inner_kind, Inner::None);
                let c = &mut self.c;
                let meta_err = |error| Error::Metadata {
                    member: name(&self.inner.entry().path),
                    error,
                };
                match kind {
                    Inner::HeaderInfo => c.meta.parse_header_info(&c.small).map_err(meta_err)?,
                    Inner::TypeInfo(i) => {
                        let augment = matches!(member, Member::Header { augment: true, .. });
                        c.meta
                            .parse_type_info(i, &c.small, augment)
                            .map_err(meta_err)?
                    }
                    Inner::MetaData(i) => c.meta.set_meta_data(i, &c.small).map_err(meta_err)?,
                    Inner::Script => return Ok(Some(Raw::ScriptEnd)),
                    Inner::Payload { line } => {
                        let actual = core::mem::take(&mut c.file_hash).finalize();
                        let (expected, _) = c.manifest.entry(line).unwrap_or(([0; 32], false));
                        if actual != expected {
                            let mut key: heapless::String<{ tar::MAX_PATH + 16 }> =
                                heapless::String::new();
                            let index = match member {
                                Member::Data { index, .. } => index,
                                _ => 0,
                            };
                            let _ = write_data_path(&mut key, index, &self.inner.entry().path);
                            return Err(Error::DigestMismatch {
                                file: name(&key),
                                expected,
                                actual,
                            });
                        }
                        return Ok(Some(Raw::PayloadEnd(actual)));
                    }
                    Inner::Skip | Inner::None => {}
                }
                Ok(None)
            }
        }
    }
}

impl<K: Verifier, H: Sha256> Core<'_, K, H> {
    fn small_extend(&mut self, d: &[u8]) -> Result<(), Error> {
        self.small
            .extend_from_slice(d)
            .map_err(|_| Error::Limit(Limit::MemberSize))
    }

    /// Bytes of the current file inside a header or data member.
    fn inner_data(&mut self, d: &[u8]) -> Result<(), Error> {
        match self.inner_kind {
            Inner::Payload { .. } => {
                self.file_hash.update(d);
                Ok(())
            }
            Inner::HeaderInfo | Inner::TypeInfo(_) | Inner::MetaData(_) => self.small_extend(d),
            _ => Ok(()),
        }
    }

    /// Content of a small member or the manifest.
    fn small_content(&mut self, chunk: &[u8]) -> Result<(), Error> {
        match self.member {
            Member::Manifest { augment } => {
                if !augment {
                    self.manifest_hash.update(chunk);
                }
                self.manifest
                    .feed(chunk, augment)
                    .map_err(|e| manifest_err(e, augment))
            }
            Member::Small(_) => self.small_extend(chunk),
            _ => Ok(()),
        }
    }

    fn check_digest(&mut self, path: &str, actual: [u8; 32]) -> Result<(), Error> {
        let line = self
            .manifest
            .find(path)
            .ok_or(Error::NotInManifest { file: name(path) })?;
        let (expected, _) = self.manifest.entry(line).unwrap_or(([0; 32], false));
        self.manifest.mark_seen(line);
        if expected != actual {
            return Err(Error::DigestMismatch {
                file: name(path),
                expected,
                actual,
            });
        }
        Ok(())
    }

    fn check_signature(&mut self) -> Result<(), Error> {
        let text: &[u8] = trim_ascii(&self.small);
        let mut raw = [0u8; 1024];
        let sig = <base64ct::Base64 as base64ct::Encoding>::decode(text, &mut raw)
            .map_err(|_| Error::SignatureEncoding)?;
        let sig_kind = KeyKind::of_signature(sig);
        if self.keys.is_empty() {
            self.signature = SignatureState::NotVerified(sig_kind);
            return Ok(());
        }
        let mut first_err = None;
        for (i, key) in self.keys.iter().enumerate() {
            match key.verify_digest(&self.manifest_digest, sig) {
                Ok(()) => {
                    self.signature = SignatureState::Verified { key: i };
                    return Ok(());
                }
                Err(e) => {
                    // Prefer the error of a key of the signature's kind.
                    if first_err.is_none() || key.kind() == sig_kind {
                        first_err = Some(e);
                    }
                }
            }
        }
        Err(Error::SignatureInvalid {
            error: first_err.unwrap_or(SignatureError::Mismatch),
        })
    }

    fn check_type_infos(&self) -> Result<(), Error> {
        let declared = self.meta.payload_count();
        let found = (0..declared)
            .take_while(|&i| self.meta.has_type_info(i))
            .count();
        if found != declared {
            return Err(Error::PayloadMismatch { declared, found });
        }
        Ok(())
    }

    fn finish_archive(&mut self) -> Result<Raw, Error> {
        let declared = self.meta.payload_count();
        if self.data_members != declared {
            return Err(Error::PayloadMismatch {
                declared,
                found: self.data_members,
            });
        }
        if let Some(missing) = self.manifest.first_unseen() {
            return Err(Error::MissingFile {
                file: name(missing),
            });
        }
        self.done = true;
        Ok(Raw::Done)
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

fn manifest_err(e: ManifestError, augment: bool) -> Error {
    match e {
        ManifestError::Syntax(line) => Error::ManifestSyntax { line, augment },
        ManifestError::Duplicate(line) => Error::ManifestDuplicate { line },
        ManifestError::Limit(l) => Error::Limit(l),
    }
}

fn parse_version(doc: &[u8]) -> Result<(), Error> {
    let mut j = json::Json::new(doc);
    let mut format_ok = false;
    let mut version = None;
    let r: Result<(), JsonError> = j.object(|j, k| match k {
        "format" => {
            let mut buf = [0u8; 16];
            format_ok = j.string_into(&mut buf)? == Some(6) && &buf[..6] == b"mender";
            Ok(())
        }
        "version" => {
            version = Some(j.uint()?);
            Ok(())
        }
        _ => j.skip(),
    });
    if r.and_then(|_| j.end()).is_err() || !format_ok {
        return Err(Error::UnsupportedVersion { version: None });
    }
    match version {
        Some(3) => Ok(()),
        v => Err(Error::UnsupportedVersion { version: v }),
    }
}

/// `base` + `.gz` / `.xz` / `.zst` / nothing.
fn tar_suffix(path: &str, base: &str) -> Option<Compression> {
    path.strip_prefix(base).and_then(Compression::from_suffix)
}

/// `data/NNNN.tar*` → (NNNN, compression).
fn data_member(path: &str) -> Option<(usize, Compression)> {
    let rest = path.strip_prefix("data/")?;
    let digits = rest.get(..4)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let comp = tar_suffix(&rest[4..], ".tar")?;
    Some((digits.parse().ok()?, comp))
}

/// `headers/NNNN/<file>` → (NNNN, file).
fn headers_path(path: &str) -> Option<(usize, &str)> {
    let rest = path.strip_prefix("headers/")?;
    let digits = rest.get(..4)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let file = rest.get(4..)?.strip_prefix('/')?;
    Some((digits.parse().ok()?, file))
}

fn write_data_path(out: &mut impl fmt::Write, index: usize, file: &str) -> fmt::Result {
    write!(out, "data/{index:04}/{file}")
}
