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
//! * [`Signer`]: makes such signatures (artifact signing; device
//!   authentication later). [`SigningKey`] implements it in software.

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
    /// The private key is encrypted; decrypt it first.
    Encrypted,
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
            KeyError::Encrypted => "the private key is encrypted: decrypt it first (openssl pkey -in KEY -out PLAIN)",
        })
    }
}

impl core::error::Error for KeyError {}

/// A software public key that verifies Mender manifest signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
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

    /// The key as SPKI PEM (`BEGIN PUBLIC KEY`), the form the device API's
    /// auth request carries and `from_pem` reads back.
    #[cfg(feature = "alloc")]
    pub fn to_pem(&self) -> Result<alloc::string::String, KeyError> {
        use p256::pkcs8::{EncodePublicKey, LineEnding};
        let pem = match self {
            VerifyingKey::EcdsaP256(k) => k.to_public_key_pem(LineEnding::LF),
            VerifyingKey::Rsa(k) => k.to_public_key_pem(LineEnding::LF),
        };
        pem.map_err(|_| KeyError::InvalidDer)
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

/// Why signing failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignError {
    /// The output buffer is smaller than the signature.
    BufferTooSmall {
        /// Bytes the signature needs.
        needed: usize,
    },
    /// The signing operation itself failed (hardware error, bad key).
    Failed,
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignError::BufferTooSmall { needed } => {
                write!(f, "signature buffer too small: {needed} bytes needed")
            }
            SignError::Failed => f.write_str("signing failed"),
        }
    }
}

impl core::error::Error for SignError {}

/// Makes Mender signatures over a SHA-256 digest: RSA PKCS#1 v1.5, or
/// ECDSA P-256 as raw `r || s`. Implement it to sign with a secure element
/// or an HSM.
pub trait Signer {
    /// What kind of key this is.
    fn kind(&self) -> KeyKind;
    /// Length of the raw signature in bytes.
    fn signature_len(&self) -> usize;
    /// Sign `digest`, writing the raw signature to `out`; returns its length.
    fn sign_digest(&self, digest: &[u8; 32], out: &mut [u8]) -> Result<usize, SignError>;
}

/// A software private key that signs like `mender-artifact -k`.
#[derive(Clone)]
#[non_exhaustive]
pub enum SigningKey {
    /// ECDSA P-256 (deterministic nonces, RFC 6979).
    EcdsaP256(p256::ecdsa::SigningKey),
    /// RSA. With `std`, signing is blinded with OS randomness.
    #[cfg(feature = "alloc")]
    Rsa(alloc::boxed::Box<rsa::RsaPrivateKey>),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        write!(f, "SigningKey({})", self.kind())
    }
}

impl SigningKey {
    /// An ECDSA P-256 key from its 32-byte secret scalar. No heap.
    pub fn p256_from_bytes(secret: &[u8]) -> Result<Self, KeyError> {
        p256::ecdsa::SigningKey::from_slice(secret)
            .map(SigningKey::EcdsaP256)
            .map_err(|_| KeyError::InvalidDer)
    }

    /// A key from PEM: PKCS#1 `RSA PRIVATE KEY`, SEC1 `EC PRIVATE KEY`, or
    /// PKCS#8 `PRIVATE KEY` (OpenSSL 3's default, which `mender-artifact`
    /// 3.9 rejects) holding either.
    #[cfg(feature = "alloc")]
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        use p256::pkcs8::der::Decode;
        use rsa::pkcs1::DecodeRsaPrivateKey;
        use rsa::pkcs8::DecodePrivateKey;
        let (label, der) = p256::pkcs8::der::pem::decode_vec(pem.trim().as_bytes())
            .map_err(|_| KeyError::NotPem)?;
        match label {
            "RSA PRIVATE KEY" => rsa::RsaPrivateKey::from_pkcs1_der(&der)
                .map(|k| SigningKey::Rsa(k.into()))
                .map_err(|_| KeyError::InvalidDer),
            "EC PRIVATE KEY" => p256::SecretKey::from_sec1_der(&der)
                .map(|k| SigningKey::EcdsaP256(k.into()))
                .map_err(|_| KeyError::UnsupportedCurve),
            "PRIVATE KEY" => {
                let info = p256::pkcs8::PrivateKeyInfo::from_der(&der)
                    .map_err(|_| KeyError::InvalidDer)?;
                let oid = info.algorithm.oid;
                if oid == p256::pkcs8::ObjectIdentifier::new_unwrap(OID_EC_PUBLIC_KEY) {
                    p256::SecretKey::from_pkcs8_der(&der)
                        .map(|k| SigningKey::EcdsaP256(k.into()))
                        .map_err(|_| KeyError::UnsupportedCurve)
                } else if oid == p256::pkcs8::ObjectIdentifier::new_unwrap(OID_RSA) {
                    rsa::RsaPrivateKey::from_pkcs8_der(&der)
                        .map(|k| SigningKey::Rsa(k.into()))
                        .map_err(|_| KeyError::InvalidDer)
                } else {
                    Err(KeyError::UnsupportedAlgorithm)
                }
            }
            "ENCRYPTED PRIVATE KEY" => Err(KeyError::Encrypted),
            _ => Err(KeyError::NotPem),
        }
    }

    /// The matching public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        match self {
            SigningKey::EcdsaP256(k) => VerifyingKey::EcdsaP256(*k.verifying_key()),
            #[cfg(feature = "alloc")]
            SigningKey::Rsa(k) => VerifyingKey::Rsa(k.to_public_key()),
        }
    }
}

impl Signer for SigningKey {
    fn kind(&self) -> KeyKind {
        match self {
            SigningKey::EcdsaP256(_) => KeyKind::EcdsaP256,
            #[cfg(feature = "alloc")]
            SigningKey::Rsa(_) => KeyKind::Rsa,
        }
    }

    fn signature_len(&self) -> usize {
        match self {
            SigningKey::EcdsaP256(_) => 64,
            #[cfg(feature = "alloc")]
            SigningKey::Rsa(k) => rsa::traits::PublicKeyParts::size(k.as_ref()),
        }
    }

    fn sign_digest(&self, digest: &[u8; 32], out: &mut [u8]) -> Result<usize, SignError> {
        let needed = self.signature_len();
        let out = out
            .get_mut(..needed)
            .ok_or(SignError::BufferTooSmall { needed })?;
        match self {
            SigningKey::EcdsaP256(k) => {
                use p256::ecdsa::signature::hazmat::PrehashSigner;
                let sig: p256::ecdsa::Signature =
                    k.sign_prehash(digest).map_err(|_| SignError::Failed)?;
                out.copy_from_slice(&sig.to_bytes());
            }
            #[cfg(feature = "alloc")]
            SigningKey::Rsa(k) => {
                let scheme = rsa::Pkcs1v15Sign::new::<sha2::Sha256>();
                #[cfg(feature = "std")]
                let sig = k.sign_with_rng(&mut rsa::rand_core::OsRng, scheme, digest);
                #[cfg(not(feature = "std"))]
                let sig = k.sign(scheme, digest);
                let sig = sig.map_err(|_| SignError::Failed)?;
                if sig.len() != needed {
                    return Err(SignError::Failed);
                }
                out.copy_from_slice(&sig);
            }
        }
        Ok(needed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p256_sign_verify_round_trip() {
        let key = SigningKey::p256_from_bytes(&[7u8; 32]).unwrap();
        let digest = SoftSha256::digest(b"manifest");
        let mut sig = [0u8; 64];
        assert_eq!(key.sign_digest(&digest, &mut sig), Ok(64));
        let public = key.verifying_key();
        assert_eq!(public.verify_digest(&digest, &sig), Ok(()));
        #[cfg(feature = "alloc")]
        {
            let pem = public.to_pem().unwrap();
            assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
            assert_eq!(VerifyingKey::from_pem(&pem).unwrap(), public);
        }
        let other = SoftSha256::digest(b"other");
        assert_eq!(
            public.verify_digest(&other, &sig),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            key.sign_digest(&digest, &mut [0u8; 10]),
            Err(SignError::BufferTooSmall { needed: 64 })
        );
    }
}
