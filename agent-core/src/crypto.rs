//! Cryptographic primitives behind small traits.
//!
//! Everything the core needs from cryptography goes through three traits, so
//! that a board with a hash accelerator or a secure element can plug in its
//! own implementation:
//!
//! * [`Sha256`]: an incremental SHA-256. [`SoftSha256`] (RustCrypto `sha2`)
//!   works everywhere; with `std`, [`RingSha256`] uses ring's
//!   assembly-backed implementation, about twice as fast on CPUs without SHA
//!   instructions. [`DefaultSha256`] picks the best available one.
//! * [`Verifier`]: checks a Mender manifest signature over the SHA-256 digest
//!   of the manifest. [`VerifyingKey`] implements it in software for ECDSA
//!   P-256 (no heap) and RSA PKCS#1 v1.5 (needs `alloc`).

use core::fmt;

/// An incremental SHA-256 hasher.
pub trait Sha256: Default {
    /// Hash more bytes.
    fn update(&mut self, data: &[u8]);
    /// Finish and return the 32-byte digest.
    fn finalize(self) -> [u8; 32];

    /// One-shot convenience: the digest of `data`.
    fn digest(data: &[u8]) -> [u8; 32] {
        let mut h = Self::default();
        h.update(data);
        h.finalize()
    }
}

/// SHA-256 from RustCrypto's portable `sha2` crate. Works without `std`.
#[derive(Default, Clone)]
pub struct SoftSha256(sha2::Sha256);

impl Sha256 for SoftSha256 {
    fn update(&mut self, data: &[u8]) {
        sha2::Digest::update(&mut self.0, data);
    }
    fn finalize(self) -> [u8; 32] {
        sha2::Digest::finalize(self.0).into()
    }
}

/// SHA-256 from ring (assembly-backed). Only with `std`.
#[cfg(feature = "std")]
#[derive(Clone)]
pub struct RingSha256(ring::digest::Context);

#[cfg(feature = "std")]
impl Default for RingSha256 {
    fn default() -> Self {
        RingSha256(ring::digest::Context::new(&ring::digest::SHA256))
    }
}

#[cfg(feature = "std")]
impl Sha256 for RingSha256 {
    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    fn finalize(self) -> [u8; 32] {
        let d = self.0.finish();
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        out
    }
}

/// The fastest SHA-256 available with the enabled features.
#[cfg(feature = "std")]
pub type DefaultSha256 = RingSha256;
/// The fastest SHA-256 available with the enabled features.
#[cfg(not(feature = "std"))]
pub type DefaultSha256 = SoftSha256;

/// The kind of key a signature was made with, as far as Mender artifacts go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyKind {
    /// RSA, PKCS#1 v1.5 signature with SHA-256.
    Rsa,
    /// ECDSA on NIST P-256 with SHA-256; the signature is raw `r || s`.
    EcdsaP256,
}

impl KeyKind {
    /// The kind of key that produced a raw (base64-decoded) Mender signature
    /// of this length: 64 bytes is ECDSA P-256 `r || s`, anything else RSA.
    pub fn of_signature(sig: &[u8]) -> KeyKind {
        if sig.len() == 64 {
            KeyKind::EcdsaP256
        } else {
            KeyKind::Rsa
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyKind::Rsa => "RSA",
            KeyKind::EcdsaP256 => "ECDSA P-256",
        })
    }
}

/// Why a signature did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureError {
    /// The signature was made with another kind of key than this one.
    KeyKindMismatch {
        /// What this key is.
        key: KeyKind,
        /// What the signature's shape says it was made with.
        signature: KeyKind,
    },
    /// The signature bytes are not a well-formed signature for this key.
    Malformed,
    /// The signature is well-formed but does not match the data and key.
    Mismatch,
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignatureError::KeyKindMismatch { key, signature } => write!(
                f,
                "the signature was made with an {signature} key but the key is {key}"
            ),
            SignatureError::Malformed => f.write_str("the signature is malformed"),
            SignatureError::Mismatch => {
                f.write_str("the signature does not match the manifest and key")
            }
        }
    }
}

impl core::error::Error for SignatureError {}

/// Checks a Mender manifest signature.
///
/// `digest` is the SHA-256 of the exact `manifest` bytes; `signature` is the
/// base64-decoded content of `manifest.sig`. Implement this to verify with a
/// secure element or a hardware accelerator.
pub trait Verifier {
    /// What kind of key this is.
    fn kind(&self) -> KeyKind;
    /// `Ok(())` if `signature` is a valid signature of `digest` by this key.
    fn verify_digest(&self, digest: &[u8; 32], signature: &[u8]) -> Result<(), SignatureError>;
}

/// Why a public key could not be loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// Not PEM, or a PEM label other than `PUBLIC KEY` / `RSA PUBLIC KEY`.
    NotPem,
    /// A well-formed key of an algorithm Mender artifacts cannot use.
    UnsupportedAlgorithm,
    /// An EC key on a curve other than P-256.
    UnsupportedCurve,
    /// An RSA key was given but RSA support (`alloc`) is not compiled in.
    RsaNeedsAlloc,
    /// The DER encoding is invalid.
    InvalidDer,
    /// This is a private key; give the public key.
    PrivateKey,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyError::NotPem => "not a PEM public key (expected '-----BEGIN PUBLIC KEY-----' or '-----BEGIN RSA PUBLIC KEY-----')",
            KeyError::UnsupportedAlgorithm => "unsupported key algorithm: Mender artifacts are signed with RSA or ECDSA P-256",
            KeyError::UnsupportedCurve => "unsupported elliptic curve: Mender artifacts use ECDSA P-256 (prime256v1)",
            KeyError::RsaNeedsAlloc => "RSA keys need the `alloc` feature of updraft-core",
            KeyError::InvalidDer => "the key's DER encoding is invalid",
            KeyError::PrivateKey => "this is a private key: give the public key (openssl pkey -pubout)",
        })
    }
}

impl core::error::Error for KeyError {}

/// A software public key that verifies Mender manifest signatures.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum VerifyingKey {
    /// ECDSA P-256.
    EcdsaP256(p256::ecdsa::VerifyingKey),
    /// RSA (any size the `rsa` crate accepts; Mender uses 2048–4096 bits).
    #[cfg(feature = "alloc")]
    Rsa(rsa::RsaPublicKey),
}

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_RSA: &str = "1.2.840.113549.1.1.1";

impl VerifyingKey {
    /// An ECDSA P-256 key from its SEC1 encoding (65-byte uncompressed or
    /// 33-byte compressed point). Works without a heap.
    pub fn p256_from_sec1(bytes: &[u8]) -> Result<Self, KeyError> {
        p256::ecdsa::VerifyingKey::from_sec1_bytes(bytes)
            .map(VerifyingKey::EcdsaP256)
            .map_err(|_| KeyError::InvalidDer)
    }

    /// A key from a DER `SubjectPublicKeyInfo` (what `openssl pkey -pubout
    /// -outform der` writes). ECDSA P-256 works without a heap; RSA needs
    /// `alloc`.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        use p256::pkcs8::der::Decode;
        let spki = p256::pkcs8::spki::SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|_| KeyError::InvalidDer)?;
        let oid = spki.algorithm.oid;
        if oid == p256::pkcs8::ObjectIdentifier::new_unwrap(OID_EC_PUBLIC_KEY) {
            let curve = spki
                .algorithm
                .parameters_oid()
                .map_err(|_| KeyError::InvalidDer)?;
            if curve != p256::pkcs8::ObjectIdentifier::new_unwrap(OID_P256) {
                return Err(KeyError::UnsupportedCurve);
            }
            let point = spki
                .subject_public_key
                .as_bytes()
                .ok_or(KeyError::InvalidDer)?;
            Self::p256_from_sec1(point)
        } else if oid == p256::pkcs8::ObjectIdentifier::new_unwrap(OID_RSA) {
            #[cfg(feature = "alloc")]
            {
                use rsa::pkcs8::DecodePublicKey;
                rsa::RsaPublicKey::from_public_key_der(der)
                    .map(VerifyingKey::Rsa)
                    .map_err(|_| KeyError::InvalidDer)
            }
            #[cfg(not(feature = "alloc"))]
            Err(KeyError::RsaNeedsAlloc)
        } else {
            Err(KeyError::UnsupportedAlgorithm)
        }
    }

    /// A key from PEM text: `PUBLIC KEY` (SPKI; RSA or EC P-256, what
    /// `openssl rsa -pubout` / `openssl ec -pubout` write and what
    /// `mender-artifact -k` takes) or `RSA PUBLIC KEY` (PKCS#1).
    #[cfg(feature = "alloc")]
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        use rsa::pkcs1::DecodeRsaPublicKey;
        let (label, der) = p256::pkcs8::der::pem::decode_vec(pem.trim().as_bytes())
            .map_err(|_| KeyError::NotPem)?;
        match label {
            "PUBLIC KEY" => Self::from_spki_der(&der),
            "RSA PUBLIC KEY" => rsa::RsaPublicKey::from_pkcs1_der(&der)
                .map(VerifyingKey::Rsa)
                .map_err(|_| KeyError::InvalidDer),
            "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" | "ENCRYPTED PRIVATE KEY" => {
                Err(KeyError::PrivateKey)
            }
            _ => Err(KeyError::NotPem),
        }
    }
}

impl Verifier for VerifyingKey {
    fn kind(&self) -> KeyKind {
        match self {
            VerifyingKey::EcdsaP256(_) => KeyKind::EcdsaP256,
            #[cfg(feature = "alloc")]
            VerifyingKey::Rsa(_) => KeyKind::Rsa,
        }
    }

    fn verify_digest(&self, digest: &[u8; 32], signature: &[u8]) -> Result<(), SignatureError> {
        let sig_kind = KeyKind::of_signature(signature);
        if sig_kind != self.kind() {
            return Err(SignatureError::KeyKindMismatch {
                key: self.kind(),
                signature: sig_kind,
            });
        }
        match self {
            VerifyingKey::EcdsaP256(key) => {
                use p256::ecdsa::signature::hazmat::PrehashVerifier;
                let sig = p256::ecdsa::Signature::from_slice(signature)
                    .map_err(|_| SignatureError::Malformed)?;
                key.verify_prehash(digest, &sig)
                    .map_err(|_| SignatureError::Mismatch)
            }
            #[cfg(feature = "alloc")]
            VerifyingKey::Rsa(key) => {
                let scheme = rsa::Pkcs1v15Sign::new::<sha2::Sha256>();
                key.verify(scheme, digest, signature)
                    .map_err(|_| SignatureError::Mismatch)
            }
        }
    }
}
