//! Verifying an image the way MCUboot does before it boots or swaps it
//! (spec 1.3): the hash over exactly the hashed region, compared with the
//! hash TLV, then the key id (KEYHASH or PUBKEY) and the signature.
//!
//! [`verify_slot`] reads the image from storage in chunks through a
//! caller-provided buffer: no heap, and the stack holds at most one
//! signature (384 bytes for RSA-3072). [`verify`] does the same for an
//! image in memory.
//!
//! Supported: SHA-256/384/512 hashes; ECDSA P-256 (DER, trailing
//! `--pad-sig` bytes ignored by reading the DER length, as imgtool and
//! MCUboot do); Ed25519 over the digest, and over the whole region with
//! SIG_PURE (`--pure`); RSA-2048/3072 PSS (SHA-256, MGF1-SHA-256, salt 32)
//! with the `alloc` feature. Not supported: ECDSA P-384, encrypted images
//! (their hash and signature cover the plaintext, which this crate cannot
//! decrypt: [`VerifyError::Encrypted`]), compressed images' inner
//! signatures.
//!
//! Where we are stricter than `imgtool verify` (following the bootloader):
//! the KEYHASH (or PUBKEY) must match the key, since MCUboot picks its key
//! by it; only hash, key-id, signature and encryption-key records may be
//! unprotected; a key id must be present when a key is given.

use core::fmt;

use ed25519_dalek::Signature as EdSignature;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::pkcs8::DecodePublicKey;
use sha2::{Digest, Sha256, Sha384, Sha512};

use super::header::{Flags, ImageHeader};
use super::image::{locate, read_checked, walk, Fail, ImageError, Source, StorageSource, TlvRef};
use super::tlv::TlvKind;
use crate::storage::EnvStorage;

/// The image hash algorithm (the hash TLV's type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlg {
    /// SHA-256 (TLV 0x10), the default.
    Sha256,
    /// SHA-384 (TLV 0x11), used with P-384 keys.
    Sha384,
    /// SHA-512 (TLV 0x12), `--sha 512` and `--pure` with Ed25519.
    Sha512,
}

impl HashAlg {
    /// Digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }

    fn of_kind(kind: TlvKind) -> Option<HashAlg> {
        match kind {
            TlvKind::Sha256 => Some(HashAlg::Sha256),
            TlvKind::Sha384 => Some(HashAlg::Sha384),
            TlvKind::Sha512 => Some(HashAlg::Sha512),
            _ => None,
        }
    }
}

impl fmt::Display for HashAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HashAlg::Sha256 => "SHA-256",
            HashAlg::Sha384 => "SHA-384",
            HashAlg::Sha512 => "SHA-512",
        })
    }
}

enum Hasher {
    S256(Sha256),
    S384(Sha384),
    S512(Sha512),
}

impl Hasher {
    fn new(alg: HashAlg) -> Hasher {
        match alg {
            HashAlg::Sha256 => Hasher::S256(Sha256::new()),
            HashAlg::Sha384 => Hasher::S384(Sha384::new()),
            HashAlg::Sha512 => Hasher::S512(Sha512::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::S256(h) => h.update(data),
            Hasher::S384(h) => h.update(data),
            Hasher::S512(h) => h.update(data),
        }
    }

    /// Writes the digest to the start of `out` (64 bytes).
    fn finish(self, out: &mut [u8; 64]) {
        match self {
            Hasher::S256(h) => out[..32].copy_from_slice(&h.finalize()),
            Hasher::S384(h) => out[..48].copy_from_slice(&h.finalize()),
            Hasher::S512(h) => out.copy_from_slice(&h.finalize()),
        }
    }
}

fn digest_of(alg: HashAlg, data: &[u8], out: &mut [u8; 64]) {
    let mut h = Hasher::new(alg);
    h.update(data);
    h.finish(out);
}

/// The kind of a [`PublicKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyKind {
    /// ECDSA on NIST P-256.
    EcdsaP256,
    /// Ed25519.
    Ed25519,
    /// RSA-2048 (PSS).
    Rsa2048,
    /// RSA-3072 (PSS).
    Rsa3072,
}

impl KeyKind {
    fn signature_kind(self) -> TlvKind {
        match self {
            KeyKind::EcdsaP256 => TlvKind::EcdsaSig,
            KeyKind::Ed25519 => TlvKind::Ed25519,
            KeyKind::Rsa2048 => TlvKind::Rsa2048Pss,
            KeyKind::Rsa3072 => TlvKind::Rsa3072Pss,
        }
    }

    /// Whether images signed with this key may use `alg` (imgtool and
    /// MCUboot: SHA-256 for ECDSA P-256 and RSA; SHA-256 or SHA-512 for
    /// Ed25519).
    pub fn allows(self, alg: HashAlg) -> bool {
        match self {
            KeyKind::Ed25519 => matches!(alg, HashAlg::Sha256 | HashAlg::Sha512),
            _ => alg == HashAlg::Sha256,
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyKind::EcdsaP256 => "ECDSA P-256",
            KeyKind::Ed25519 => "Ed25519",
            KeyKind::Rsa2048 => "RSA-2048",
            KeyKind::Rsa3072 => "RSA-3072",
        })
    }
}

/// Why a public key could not be loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The DER is neither a P-256 or Ed25519 SubjectPublicKeyInfo nor
    /// (with `alloc`) an RSA SubjectPublicKeyInfo or PKCS#1 RSAPublicKey.
    Unsupported,
    /// An RSA key whose modulus is neither 2048 nor 3072 bits.
    UnsupportedRsaSize {
        /// Modulus size in bits.
        bits: usize,
    },
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Unsupported => f.write_str(
                "unsupported public key: expected the DER of an ECDSA P-256 or Ed25519 \
                 SubjectPublicKeyInfo, or of an RSA key (needs the `alloc` feature)",
            ),
            KeyError::UnsupportedRsaSize { bits } => {
                write!(
                    f,
                    "RSA keys must have 2048 or 3072 bits, this one has {bits}"
                )
            }
        }
    }
}

impl core::error::Error for KeyError {}

const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// A public key an image is verified with, as MCUboot embeds it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum PublicKey {
    /// ECDSA P-256.
    EcdsaP256(p256::ecdsa::VerifyingKey),
    /// Ed25519.
    Ed25519(ed25519_dalek::VerifyingKey),
    /// RSA-2048 or RSA-3072 (`alloc`).
    #[cfg(feature = "alloc")]
    Rsa(rsa::RsaPublicKey),
}

impl PublicKey {
    /// Loads a key from DER: a SubjectPublicKeyInfo (what `imgtool getpub
    /// -e pem` prints, base64-decoded; `openssl pkey -pubout -outform DER`)
    /// for P-256, Ed25519 and RSA, or a PKCS#1 RSAPublicKey (what MCUboot
    /// embeds for RSA). RSA needs the `alloc` feature.
    pub fn from_der(der: &[u8]) -> Result<PublicKey, KeyError> {
        if let Some(raw) = der.strip_prefix(&ED25519_SPKI_PREFIX[..]) {
            let raw: &[u8; 32] = raw.try_into().map_err(|_| KeyError::Unsupported)?;
            return ed25519_dalek::VerifyingKey::from_bytes(raw)
                .map(PublicKey::Ed25519)
                .map_err(|_| KeyError::Unsupported);
        }
        if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_der(der) {
            return Ok(PublicKey::EcdsaP256(k));
        }
        #[cfg(feature = "alloc")]
        {
            use rsa::pkcs1::DecodeRsaPublicKey;
            use rsa::traits::PublicKeyParts;
            let key = rsa::RsaPublicKey::from_pkcs1_der(der)
                .or_else(|_| rsa::RsaPublicKey::from_public_key_der(der));
            if let Ok(key) = key {
                let bits = key.size() * 8;
                if bits != 2048 && bits != 3072 {
                    return Err(KeyError::UnsupportedRsaSize { bits });
                }
                return Ok(PublicKey::Rsa(key));
            }
        }
        Err(KeyError::Unsupported)
    }

    /// The key's kind.
    pub fn kind(&self) -> KeyKind {
        match self {
            PublicKey::EcdsaP256(_) => KeyKind::EcdsaP256,
            PublicKey::Ed25519(_) => KeyKind::Ed25519,
            #[cfg(feature = "alloc")]
            PublicKey::Rsa(k) => {
                use rsa::traits::PublicKeyParts;
                if k.size() == 384 {
                    KeyKind::Rsa3072
                } else {
                    KeyKind::Rsa2048
                }
            }
        }
    }

    /// Calls `f` with the key as MCUboot embeds it: SubjectPublicKeyInfo
    /// DER for P-256 (uncompressed point) and Ed25519, PKCS#1 DER for RSA.
    /// KEYHASH is the hash of these bytes; PUBKEY is these bytes.
    fn with_embedded_der<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        match self {
            PublicKey::EcdsaP256(k) => {
                let mut der = [0u8; 91];
                der[..26].copy_from_slice(&P256_SPKI_PREFIX);
                der[26..].copy_from_slice(k.to_encoded_point(false).as_bytes());
                f(&der)
            }
            PublicKey::Ed25519(k) => {
                let mut der = [0u8; 44];
                der[..12].copy_from_slice(&ED25519_SPKI_PREFIX);
                der[12..].copy_from_slice(k.as_bytes());
                f(&der)
            }
            #[cfg(feature = "alloc")]
            PublicKey::Rsa(k) => {
                use rsa::pkcs1::EncodeRsaPublicKey;
                match k.to_pkcs1_der() {
                    Ok(doc) => f(doc.as_bytes()),
                    Err(_) => f(&[]),
                }
            }
        }
    }

    /// The KEYHASH of this key for images hashed with `alg`, written to
    /// the start of `out`; returns its length.
    pub fn key_hash(&self, alg: HashAlg, out: &mut [u8; 64]) -> usize {
        self.with_embedded_der(|der| digest_of(alg, der, out));
        alg.digest_len()
    }
}

/// Why an image failed verification. `E` is the storage's error
/// ([`core::convert::Infallible`] for images in memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError<E = core::convert::Infallible> {
    /// Reading the slot failed.
    Storage(E),
    /// The image structure is invalid (header, TLV areas, truncation).
    Image(ImageError),
    /// The image is encrypted: its hash and signature cover the
    /// plaintext, which this crate cannot decrypt, so it cannot be
    /// verified here (MCUboot decrypts and verifies it at boot).
    Encrypted {
        /// The header flags.
        flags: Flags,
    },
    /// A record type that MCUboot only accepts in the protected area was
    /// found in the unprotected one.
    UnprotectedTlvNotAllowed {
        /// Its type.
        kind: TlvKind,
    },
    /// A record that must be unique (hash, key id, SIG_PURE, SEC_CNT)
    /// appears twice.
    DuplicateTlv {
        /// Its type.
        kind: TlvKind,
    },
    /// A record has the wrong length for its type.
    BadTlvLength {
        /// Its type.
        kind: TlvKind,
        /// Its length.
        len: u16,
    },
    /// There is no SHA256/384/512 record (and no pure signature).
    NoHash,
    /// The hash of the image differs from its hash record: the image was
    /// changed or damaged.
    HashMismatch {
        /// The hash algorithm.
        alg: HashAlg,
    },
    /// The image's hash algorithm cannot be used with the key's type
    /// (imgtool's "Key type does not match TLV record").
    HashNotAllowed {
        /// The key's type.
        key: KeyKind,
        /// The image's hash algorithm.
        alg: HashAlg,
    },
    /// A key was given but there is no signature record for its type
    /// (imgtool's "No signature found for the given key").
    NoSignature {
        /// The key's type.
        key: KeyKind,
    },
    /// A key was given but the image names no key (neither KEYHASH nor
    /// PUBKEY): MCUboot ignores such signatures.
    NoKeyId,
    /// The KEYHASH record is not the hash of the given key: the image was
    /// signed for another key.
    KeyHashMismatch,
    /// The PUBKEY record is not the given key.
    PubKeyMismatch,
    /// A SIG_PURE image with a key type that has no pure mode (only
    /// Ed25519 has one).
    PureNotSupported {
        /// The key's type.
        key: KeyKind,
    },
    /// Signature records of the key's type exist, but none verifies with
    /// the key.
    BadSignature {
        /// The key's type.
        key: KeyKind,
    },
}

impl<E: fmt::Display> fmt::Display for VerifyError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::Storage(e) => write!(f, "reading the image failed: {e}"),
            VerifyError::Image(e) => e.fmt(f),
            VerifyError::Encrypted { flags } => write!(
                f,
                "the image is encrypted (flags {:#x}): its hash and signature cover the \
                 plaintext, so it cannot be verified without decrypting it (not supported)",
                flags.0
            ),
            VerifyError::UnprotectedTlvNotAllowed { kind } => write!(
                f,
                "{kind} is in the unprotected TLV area, where MCUboot does not allow it"
            ),
            VerifyError::DuplicateTlv { kind } => write!(f, "{kind} appears more than once"),
            VerifyError::BadTlvLength { kind, len } => {
                write!(f, "{kind} has an invalid length {len}")
            }
            VerifyError::NoHash => f.write_str("the image has no hash TLV"),
            VerifyError::HashMismatch { alg } => {
                write!(
                    f,
                    "image has an invalid hash ({alg} differs from the hash TLV)"
                )
            }
            VerifyError::HashNotAllowed { key, alg } => write!(
                f,
                "key type does not match TLV record: {key} keys cannot sign {alg} images"
            ),
            VerifyError::NoSignature { key } => {
                write!(f, "no signature found for the given {key} key")
            }
            VerifyError::NoKeyId => {
                f.write_str("the image has neither a KEYHASH nor a PUBKEY TLV naming its key")
            }
            VerifyError::KeyHashMismatch => {
                f.write_str("the KEYHASH TLV does not match the given key (signed for another key)")
            }
            VerifyError::PubKeyMismatch => {
                f.write_str("the PUBKEY TLV is not the given key (signed for another key)")
            }
            VerifyError::PureNotSupported { key } => {
                write!(
                    f,
                    "SIG_PURE image, but {key} keys have no pure signature mode"
                )
            }
            VerifyError::BadSignature { key } => {
                write!(f, "the {key} signature does not verify with the given key")
            }
        }
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for VerifyError<E> {}

impl<E> From<Fail<E>> for VerifyError<E> {
    fn from(f: Fail<E>) -> Self {
        match f {
            Fail::Storage(e) => VerifyError::Storage(e),
            Fail::Image(e) => VerifyError::Image(e),
        }
    }
}

/// How the signature was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureCheck {
    /// No key was given: only the hash was checked (like `imgtool verify`
    /// without `-k`).
    NotChecked,
    /// A signature verified with the given key.
    Verified {
        /// The key's type.
        key: KeyKind,
        /// Whether it was a pure signature over the whole region.
        pure: bool,
    },
}

/// What a successful verification found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validated {
    /// The image header.
    pub header: ImageHeader,
    /// The hash algorithm, when the image has a hash record.
    pub hash_alg: Option<HashAlg>,
    digest: [u8; 64],
    /// How the signature was checked.
    pub signature: SignatureCheck,
    /// The protected security counter, if any.
    pub security_counter: Option<u32>,
    /// Bytes from the header to the end of the unprotected TLV area.
    pub total_len: u64,
}

impl Validated {
    /// The verified image digest (empty if there is no hash record).
    pub fn digest(&self) -> &[u8] {
        let n = self.hash_alg.map_or(0, HashAlg::digest_len);
        &self.digest[..n]
    }
}

/// Largest signature we read: RSA-3072.
const MAX_SIG: usize = 384;
/// Signature records of the key's type we try, like imgtool and MCUboot
/// (the first that verifies wins).
const MAX_SIGS: usize = 4;

/// What the unprotected area holds, by reference.
#[derive(Default)]
struct Found {
    hash: Option<TlvRef>,
    key_hash: Option<TlvRef>,
    pub_key: Option<TlvRef>,
    pure: bool,
    pure_seen: bool,
    sigs: [Option<TlvRef>; MAX_SIGS],
    security_counter: Option<u32>,
    sec_seen: bool,
}

/// Stops a [`walk`] whose callback stored the real error in its `err`
/// (see [`take`]); this placeholder is never returned to callers.
fn dup_marker<E>(kind: TlvKind) -> Fail<E> {
    Fail::Image(ImageError::TlvOverrun {
        offset: u64::from(kind.raw()),
        protected: true,
    })
}

fn run<S: Source>(
    src: &mut S,
    key: Option<&PublicKey>,
    buf: &mut [u8],
) -> Result<Validated, VerifyError<S::Error>> {
    let layout = locate(src)?;
    let header = layout.header;
    if header.flags.encrypted() {
        return Err(VerifyError::Encrypted {
            flags: header.flags,
        });
    }
    let mut found = Found::default();
    let mut err: Option<VerifyError<S::Error>> = None;
    if let Some(p) = layout.protected {
        walk(src, p, true, |src, r| {
            if r.kind == TlvKind::SecurityCounter {
                if found.sec_seen {
                    err = Some(VerifyError::DuplicateTlv { kind: r.kind });
                    return Err(dup_marker(r.kind));
                }
                found.sec_seen = true;
                let mut b = [0u8; 4];
                if r.len != 4 {
                    err = Some(VerifyError::BadTlvLength {
                        kind: r.kind,
                        len: r.len,
                    });
                    return Err(dup_marker(r.kind));
                }
                read_checked(src, r.offset, &mut b)?;
                found.security_counter = Some(u32::from_le_bytes(b));
            }
            Ok(())
        })
        .map_err(|f| take(&mut err, f))?;
    }
    let want_sig = key.map(|k| k.kind().signature_kind());
    walk(src, layout.unprotected, false, |src, r| {
        let kind = r.kind;
        if !kind.allowed_unprotected() {
            err = Some(VerifyError::UnprotectedTlvNotAllowed { kind });
            return Err(dup_marker(kind));
        }
        let dup = |err: &mut Option<VerifyError<S::Error>>| {
            *err = Some(VerifyError::DuplicateTlv { kind });
            Err(dup_marker(kind))
        };
        match kind {
            k if k.is_hash() => {
                if found.hash.is_some() {
                    return dup(&mut err);
                }
                found.hash = Some(r);
            }
            TlvKind::KeyHash => {
                if found.key_hash.is_some() {
                    return dup(&mut err);
                }
                found.key_hash = Some(r);
            }
            TlvKind::PubKey => {
                if found.pub_key.is_some() {
                    return dup(&mut err);
                }
                found.pub_key = Some(r);
            }
            TlvKind::SigPure => {
                if found.pure_seen {
                    return dup(&mut err);
                }
                found.pure_seen = true;
                let mut b = [0u8; 1];
                if r.len != 1 {
                    err = Some(VerifyError::BadTlvLength { kind, len: r.len });
                    return Err(dup_marker(kind));
                }
                read_checked(src, r.offset, &mut b)?;
                found.pure = b[0] != 0;
            }
            k if Some(k) == want_sig => {
                if let Some(slot) = found.sigs.iter_mut().find(|s| s.is_none()) {
                    *slot = Some(r);
                }
            }
            _ => {}
        }
        Ok(())
    })
    .map_err(|f| take(&mut err, f))?;

    let hash_alg = match found.hash {
        Some(r) => {
            let alg = HashAlg::of_kind(r.kind).ok_or(VerifyError::NoHash)?;
            if usize::from(r.len) != alg.digest_len() {
                return Err(VerifyError::BadTlvLength {
                    kind: r.kind,
                    len: r.len,
                });
            }
            Some(alg)
        }
        None if found.pure && key.is_some() => None,
        None => return Err(VerifyError::NoHash),
    };

    // Key checks before the (long) hash.
    let mut sig_buf = [0u8; MAX_SIG];
    let mut ed_stream = None;
    if let Some(key) = key {
        let kind = key.kind();
        if let Some(alg) = hash_alg {
            if !kind.allows(alg) {
                return Err(VerifyError::HashNotAllowed { key: kind, alg });
            }
        }
        if found.pure && kind != KeyKind::Ed25519 {
            return Err(VerifyError::PureNotSupported { key: kind });
        }
        if found.sigs[0].is_none() {
            return Err(VerifyError::NoSignature { key: kind });
        }
        check_key_id(src, key, hash_alg, &found)?;
        if found.pure {
            if let (PublicKey::Ed25519(k), Some(r)) = (key, found.sigs[0]) {
                let sig = read_sig(src, r, &mut sig_buf)?;
                let sig: &[u8; 64] = sig.try_into().map_err(|_| VerifyError::BadSignature {
                    key: KeyKind::Ed25519,
                })?;
                let sig = EdSignature::from_bytes(sig);
                let stream = k
                    .verify_stream(&sig)
                    .map_err(|_| VerifyError::BadSignature {
                        key: KeyKind::Ed25519,
                    })?;
                ed_stream = Some(stream);
            }
        }
    }

    // Stream the hashed region.
    let mut hasher = hash_alg.map(Hasher::new);
    let total = header.hashed_len();
    let mut off = 0u64;
    let mut one = [0u8; 64];
    let chunk: &mut [u8] = if buf.is_empty() { &mut one } else { buf };
    while off < total {
        let n = usize::try_from(total - off)
            .unwrap_or(usize::MAX)
            .min(chunk.len());
        let part = &mut chunk[..n];
        read_checked(src, off, part)?;
        if let Some(h) = hasher.as_mut() {
            h.update(part);
        }
        if let Some(s) = ed_stream.as_mut() {
            s.update(&*part);
        }
        off += n as u64;
    }
    let mut digest = [0u8; 64];
    if let (Some(h), Some(alg), Some(r)) = (hasher, hash_alg, found.hash) {
        h.finish(&mut digest);
        let mut stored = [0u8; 64];
        read_checked(src, r.offset, &mut stored[..alg.digest_len()])?;
        if stored[..alg.digest_len()] != digest[..alg.digest_len()] {
            return Err(VerifyError::HashMismatch { alg });
        }
    }

    let signature = match key {
        None => SignatureCheck::NotChecked,
        Some(key) => {
            let kind = key.kind();
            let ok = if let Some(stream) = ed_stream {
                stream.finalize_and_verify().is_ok()
            } else {
                let alg = hash_alg.ok_or(VerifyError::NoHash)?;
                let mut ok = false;
                for r in found.sigs.iter().flatten() {
                    let sig = read_sig(src, *r, &mut sig_buf)?;
                    if check_sig(key, &digest[..alg.digest_len()], sig) {
                        ok = true;
                        break;
                    }
                }
                ok
            };
            if !ok {
                return Err(VerifyError::BadSignature { key: kind });
            }
            SignatureCheck::Verified {
                key: kind,
                pure: found.pure,
            }
        }
    };

    Ok(Validated {
        header,
        hash_alg,
        digest,
        signature,
        security_counter: found.security_counter,
        total_len: layout.total_len(),
    })
}

/// Turns a walker error back into the verification error it carries.
fn take<E>(err: &mut Option<VerifyError<E>>, f: Fail<E>) -> VerifyError<E> {
    match err.take() {
        Some(e) => e,
        None => f.into(),
    }
}

fn read_sig<'b, S: Source>(
    src: &mut S,
    r: TlvRef,
    buf: &'b mut [u8; MAX_SIG],
) -> Result<&'b [u8], VerifyError<S::Error>> {
    let n = usize::from(r.len);
    let Some(dst) = buf.get_mut(..n) else {
        return Err(VerifyError::BadTlvLength {
            kind: r.kind,
            len: r.len,
        });
    };
    read_checked(src, r.offset, dst)?;
    Ok(dst)
}

fn check_key_id<S: Source>(
    src: &mut S,
    key: &PublicKey,
    alg: Option<HashAlg>,
    found: &Found,
) -> Result<(), VerifyError<S::Error>> {
    if let Some(r) = found.key_hash {
        // Pure images without a hash record: imgtool forces SHA-512.
        let alg = alg.unwrap_or(HashAlg::Sha512);
        if usize::from(r.len) != alg.digest_len() {
            return Err(VerifyError::KeyHashMismatch);
        }
        let mut stored = [0u8; 64];
        read_checked(src, r.offset, &mut stored[..alg.digest_len()])?;
        let mut ours = [0u8; 64];
        let n = key.key_hash(alg, &mut ours);
        if stored[..n] != ours[..n] {
            return Err(VerifyError::KeyHashMismatch);
        }
        return Ok(());
    }
    if let Some(r) = found.pub_key {
        // Compare chunk by chunk, without a buffer the size of an RSA key.
        let matches = key.with_embedded_der(|der| -> Result<bool, Fail<S::Error>> {
            if der.len() != usize::from(r.len) {
                return Ok(false);
            }
            let mut b = [0u8; 64];
            for (i, want) in der.chunks(64).enumerate() {
                let got = &mut b[..want.len()];
                read_checked(src, r.offset + (i * 64) as u64, got)?;
                if got != want {
                    return Ok(false);
                }
            }
            Ok(true)
        });
        return match matches {
            Ok(true) => Ok(()),
            Ok(false) => Err(VerifyError::PubKeyMismatch),
            Err(f) => Err(f.into()),
        };
    }
    Err(VerifyError::NoKeyId)
}

/// Length of a DER `SEQUENCE` with a short-form length, so that
/// `--pad-sig` trailing bytes are ignored as imgtool and MCUboot do.
fn der_len(sig: &[u8]) -> Option<usize> {
    match sig {
        [0x30, len, ..] if *len < 0x80 && usize::from(*len) + 2 <= sig.len() => {
            Some(usize::from(*len) + 2)
        }
        _ => None,
    }
}

fn check_sig(key: &PublicKey, digest: &[u8], sig: &[u8]) -> bool {
    match key {
        PublicKey::EcdsaP256(k) => {
            let Some(n) = der_len(sig) else {
                return false;
            };
            match p256::ecdsa::Signature::from_der(&sig[..n]) {
                Ok(s) => k.verify_prehash(digest, &s).is_ok(),
                Err(_) => false,
            }
        }
        PublicKey::Ed25519(k) => match <&[u8; 64]>::try_from(sig) {
            Ok(s) => k.verify_strict(digest, &EdSignature::from_bytes(s)).is_ok(),
            Err(_) => false,
        },
        #[cfg(feature = "alloc")]
        PublicKey::Rsa(k) => k
            .verify(rsa::Pss::new_with_salt::<Sha256>(32), digest, sig)
            .is_ok(),
    }
}

/// Verifies the image at the start of `bytes` (which may go on past the
/// image, e.g. a whole slot). Without a key only the hash is checked.
pub fn verify(bytes: &[u8], key: Option<&PublicKey>) -> Result<Validated, VerifyError> {
    let mut src = bytes;
    let mut buf = [0u8; 256];
    run(&mut src, key, &mut buf)
}

/// Verifies the image in the slot of `slot_size` bytes at `offset` on
/// `storage`, reading it in chunks of `buf.len()` bytes (any size; 256 to
/// 4096 is sensible). Without a key only the hash is checked.
pub fn verify_slot<S: EnvStorage + ?Sized>(
    storage: &mut S,
    offset: u64,
    slot_size: u64,
    key: Option<&PublicKey>,
    buf: &mut [u8],
) -> Result<Validated, VerifyError<S::Error>> {
    let mut src = StorageSource {
        storage,
        base: offset,
        len: slot_size,
    };
    run(&mut src, key, buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcuboot::image::tests::build;
    use p256::ecdsa::signature::hazmat::PrehashSigner;

    fn p256_key() -> (p256::ecdsa::SigningKey, PublicKey) {
        let sk = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let pk = PublicKey::EcdsaP256(*sk.verifying_key());
        (sk, pk)
    }

    /// An image signed in Rust, laid out as imgtool does.
    fn signed(pad_sig: bool) -> (std::vec::Vec<u8>, PublicKey) {
        let (sk, pk) = p256_key();
        let unsigned = build(100, &[(0x50, &[1, 0, 0, 0])], &[]);
        let region = &unsigned[..0x20 + 100 + 12];
        let digest: [u8; 32] = Sha256::digest(region).into();
        let sig: p256::ecdsa::Signature = sk.sign_prehash(&digest).unwrap();
        let mut der = sig.to_der().as_bytes().to_vec();
        if pad_sig {
            der.resize(72, 0);
        }
        let mut kh = [0u8; 64];
        pk.key_hash(HashAlg::Sha256, &mut kh);
        let img = build(
            100,
            &[(0x50, &[1, 0, 0, 0])],
            &[(0x10, &digest), (0x01, &kh[..32]), (0x22, &der)],
        );
        (img, pk)
    }

    #[test]
    fn verifies_p256_with_and_without_padding() {
        for pad in [false, true] {
            let (img, pk) = signed(pad);
            let v = verify(&img, Some(&pk)).unwrap();
            assert_eq!(
                v.signature,
                SignatureCheck::Verified {
                    key: KeyKind::EcdsaP256,
                    pure: false
                }
            );
            assert_eq!(v.security_counter, Some(1));
            assert_eq!(
                verify(&img, None).unwrap().signature,
                SignatureCheck::NotChecked
            );
        }
    }

    #[test]
    fn chunk_size_does_not_matter() {
        let (img, pk) = signed(false);
        for n in [1usize, 3, 64, 4096] {
            let mut mem = crate::storage::MemStorage::new(img.clone());
            let mut buf = std::vec![0u8; n];
            verify_slot(&mut mem, 0, img.len() as u64, Some(&pk), &mut buf).unwrap();
        }
    }

    #[test]
    fn detects_tampering_and_wrong_keys() {
        let (img, pk) = signed(false);
        let mut bad = img.clone();
        bad[0x20 + 5] ^= 1;
        assert_eq!(
            verify(&bad, Some(&pk)).unwrap_err(),
            VerifyError::HashMismatch {
                alg: HashAlg::Sha256
            }
        );
        let other = PublicKey::EcdsaP256(
            *p256::ecdsa::SigningKey::from_slice(&[9u8; 32])
                .unwrap()
                .verifying_key(),
        );
        assert_eq!(
            verify(&img, Some(&other)).unwrap_err(),
            VerifyError::KeyHashMismatch
        );
        // Every single-byte change either fails or leaves a valid image.
        for i in 0..img.len() {
            let mut m = img.clone();
            m[i] ^= 0x41;
            let _ = verify(&m, Some(&pk));
        }
    }

    #[test]
    fn unprotected_records_outside_the_allowed_set_are_refused() {
        let img = build(10, &[], &[(0x10, &[0; 32]), (0x50, &[0; 4])]);
        assert_eq!(
            verify(&img, None).unwrap_err(),
            VerifyError::UnprotectedTlvNotAllowed {
                kind: TlvKind::SecurityCounter
            }
        );
        let img = build(10, &[], &[(0x10, &[0; 32]), (0x10, &[0; 32])]);
        assert_eq!(
            verify(&img, None).unwrap_err(),
            VerifyError::DuplicateTlv {
                kind: TlvKind::Sha256
            }
        );
        let img = build(10, &[], &[(0x01, &[0; 32])]);
        assert_eq!(verify(&img, None).unwrap_err(), VerifyError::NoHash);
    }

    #[test]
    fn der_length_reading() {
        assert_eq!(der_len(&[0x30, 2, 1, 2, 0, 0]), Some(4));
        assert_eq!(der_len(&[0x30, 0x81, 1]), None);
        assert_eq!(der_len(&[0x30, 9, 1]), None);
        assert_eq!(der_len(&[]), None);
    }
}
