//! Token signing keys and JWTs.
//!
//! Keys live in a key directory as `private.id.<N>.pem` (PKCS#8 PEM,
//! Ed25519 -> `EdDSA` or ECDSA P-256 -> `ES256`; RSA is refused because
//! RSA-3072 signing is 50x slower). The key with the highest `N` signs new
//! tokens unless another is chosen; every key verifies the tokens whose
//! header `kid` (a JSON integer, as Mender writes it) names it, and key 0 is
//! the default that also verifies tokens without `kid`. Removing a file
//! retires its key (at the next start). An empty directory gets a fresh
//! Ed25519 `private.id.0.pem` on first start.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use base64ct::{Base64UrlUnpadded, Encoding};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

/// Why the key directory could not be used.
#[derive(Debug)]
pub struct KeyError(pub String);

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyError {}

enum Signer {
    Ed25519(Ed25519KeyPair),
    Es256(EcdsaKeyPair),
}

struct Key {
    signer: Signer,
    public: Vec<u8>,
}

impl Key {
    fn alg(&self) -> &'static str {
        match self.signer {
            Signer::Ed25519(_) => "EdDSA",
            Signer::Es256(_) => "ES256",
        }
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let alg: &dyn signature::VerificationAlgorithm = match self.signer {
            Signer::Ed25519(_) => &signature::ED25519,
            Signer::Es256(_) => &signature::ECDSA_P256_SHA256_FIXED,
        };
        UnparsedPublicKey::new(alg, &self.public)
            .verify(msg, sig)
            .is_ok()
    }
}

/// The claims of the tokens we issue (Mender's names).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// Token ID: the auth set ID for devices, a random UUID for users.
    pub jti: String,
    /// Device ID or user ID.
    pub sub: String,
    /// Issue time, Unix seconds.
    pub iat: i64,
    /// Not before, Unix seconds.
    #[serde(default)]
    pub nbf: i64,
    /// Expiry, Unix seconds; absent for non-expiring tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Issuer.
    pub iss: String,
    /// Scope (user tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scp: Option<String>,
    /// Marks a device token.
    #[serde(
        rename = "mender.device",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub device: bool,
    /// Marks a management (user) token.
    #[serde(
        rename = "mender.user",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub user: bool,
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
}

/// Why a token was refused (never shown in detail to clients).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Not three base64url parts of JSON.
    Malformed,
    /// `kid` names no key we have.
    UnknownKey,
    /// Wrong algorithm or bad signature.
    BadSignature,
    /// `exp` has passed (or `nbf` is in the future).
    Expired,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenError::Malformed => "malformed token",
            TokenError::UnknownKey => "unknown key id",
            TokenError::BadSignature => "bad token signature",
            TokenError::Expired => "token expired",
        })
    }
}

/// The loaded keys.
pub struct Keys {
    keys: BTreeMap<u64, Key>,
    signing: u64,
    rng: SystemRandom,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("ids", &self.keys.keys().collect::<Vec<_>>())
            .field("signing", &self.signing)
            .finish()
    }
}

fn parse_key(pem: &[u8], rng: &SystemRandom) -> Result<Key, String> {
    let (label, der) = pem_rfc7468::decode_vec(pem).map_err(|e| format!("not PEM: {e}"))?;
    if label != "PRIVATE KEY" {
        return Err(format!(
            "expected a PKCS#8 `PRIVATE KEY` (Ed25519 or ECDSA P-256), found `{label}`"
        ));
    }
    if let Ok(kp) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der) {
        let public = kp.public_key().as_ref().to_vec();
        return Ok(Key {
            signer: Signer::Ed25519(kp),
            public,
        });
    }
    match EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der, rng) {
        Ok(kp) => {
            let public = kp.public_key().as_ref().to_vec();
            Ok(Key {
                signer: Signer::Es256(kp),
                public,
            })
        }
        Err(_) => Err(
            "unsupported key: use Ed25519 or ECDSA P-256 (RSA is too slow to sign tokens)".into(),
        ),
    }
}

/// `private.id.<N>.pem` -> N.
fn key_id(file_name: &str) -> Option<u64> {
    let n = file_name
        .strip_prefix("private.id.")?
        .strip_suffix(".pem")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

impl Keys {
    /// Load every `private.id.<N>.pem` in `dir` (creating the directory and
    /// an Ed25519 key 0 when there is none). `signing` picks the signing key
    /// (default: the highest `N`).
    pub fn load(dir: &Path, signing: Option<u64>) -> Result<Keys, KeyError> {
        let rng = SystemRandom::new();
        std::fs::create_dir_all(dir)
            .map_err(|e| KeyError(format!("creating key directory {}: {e}", dir.display())))?;
        let mut keys = BTreeMap::new();
        let entries = std::fs::read_dir(dir)
            .map_err(|e| KeyError(format!("reading key directory {}: {e}", dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(|e| KeyError(format!("{}: {e}", dir.display())))?;
            let Some(id) = entry.file_name().to_str().and_then(key_id) else {
                continue;
            };
            let path = entry.path();
            let pem = std::fs::read(&path)
                .map_err(|e| KeyError(format!("reading {}: {e}", path.display())))?;
            let key =
                parse_key(&pem, &rng).map_err(|e| KeyError(format!("{}: {e}", path.display())))?;
            keys.insert(id, key);
        }
        if keys.is_empty() {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| KeyError("generating an Ed25519 key failed".into()))?;
            let pem = pem_rfc7468::encode_string(
                "PRIVATE KEY",
                pem_rfc7468::LineEnding::LF,
                pkcs8.as_ref(),
            )
            .map_err(|e| KeyError(format!("encoding key: {e}")))?;
            let path = dir.join("private.id.0.pem");
            crate::write_private_file(&path, pem.as_bytes())
                .map_err(|e| KeyError(format!("writing {}: {e}", path.display())))?;
            let key = parse_key(pem.as_bytes(), &rng).map_err(KeyError)?;
            keys.insert(0, key);
        }
        let signing = match signing {
            Some(id) if keys.contains_key(&id) => id,
            Some(id) => {
                return Err(KeyError(format!(
                    "signing key {id}: no private.id.{id}.pem in {}",
                    dir.display()
                )))
            }
            None => keys.keys().next_back().copied().unwrap_or(0),
        };
        Ok(Keys { keys, signing, rng })
    }

    /// The key ID new tokens are signed with.
    pub fn signing_id(&self) -> u64 {
        self.signing
    }

    /// Sign `claims` into a compact JWS.
    pub fn sign(&self, claims: &Claims) -> Result<String, KeyError> {
        let key = self
            .keys
            .get(&self.signing)
            .ok_or_else(|| KeyError("signing key missing".into()))?;
        let header = Header {
            alg: key.alg().into(),
            kid: Some(self.signing),
            typ: Some("JWT".into()),
        };
        let h = serde_json::to_vec(&header).map_err(|e| KeyError(e.to_string()))?;
        let c = serde_json::to_vec(claims).map_err(|e| KeyError(e.to_string()))?;
        let mut out = Base64UrlUnpadded::encode_string(&h);
        out.push('.');
        out.push_str(&Base64UrlUnpadded::encode_string(&c));
        let sig = match &key.signer {
            Signer::Ed25519(kp) => kp.sign(out.as_bytes()).as_ref().to_vec(),
            Signer::Es256(kp) => kp
                .sign(&self.rng, out.as_bytes())
                .map_err(|_| KeyError("ECDSA signing failed".into()))?
                .as_ref()
                .to_vec(),
        };
        out.push('.');
        out.push_str(&Base64UrlUnpadded::encode_string(&sig));
        Ok(out)
    }

    /// Check a token's signature (by `kid`) and times; `now` in Unix seconds.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: Header = Base64UrlUnpadded::decode_vec(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        let key = self
            .keys
            .get(&header.kid.unwrap_or(0))
            .ok_or(TokenError::UnknownKey)?;
        let sig = Base64UrlUnpadded::decode_vec(s).map_err(|_| TokenError::Malformed)?;
        let signed_len = h.len() + 1 + c.len();
        let signed = token.get(..signed_len).ok_or(TokenError::Malformed)?;
        if header.alg != key.alg() || !key.verify(signed.as_bytes(), &sig) {
            return Err(TokenError::BadSignature);
        }
        let claims: Claims = Base64UrlUnpadded::decode_vec(c)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        if claims.exp.is_some_and(|exp| exp <= now) || claims.nbf > now + 60 {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: Option<i64>) -> Claims {
        Claims {
            jti: "j".into(),
            sub: "s".into(),
            iat: 100,
            nbf: 100,
            exp,
            iss: "Mender".into(),
            scp: None,
            device: true,
            user: false,
        }
    }

    #[test]
    fn sign_verify_rotate() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let k0 = Keys::load(dir.path(), None)?;
        assert_eq!(k0.signing_id(), 0);
        let t0 = k0.sign(&claims(Some(1000)))?;
        assert_eq!(k0.verify(&t0, 500), Ok(claims(Some(1000))));
        assert_eq!(k0.verify(&t0, 1000), Err(TokenError::Expired));
        // The header carries kid as a JSON integer.
        let h = Base64UrlUnpadded::decode_vec(t0.split('.').next().unwrap_or(""))?;
        assert_eq!(h, br#"{"alg":"EdDSA","kid":0,"typ":"JWT"}"#);

        // Add an ES256 key 1: it signs, and key 0's live token still verifies.
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| KeyError("gen".into()))?;
        let pem =
            pem_rfc7468::encode_string("PRIVATE KEY", pem_rfc7468::LineEnding::LF, doc.as_ref())
                .map_err(|e| KeyError(e.to_string()))?;
        std::fs::write(dir.path().join("private.id.1.pem"), pem)?;
        let k1 = Keys::load(dir.path(), None)?;
        assert_eq!(k1.signing_id(), 1);
        let t1 = k1.sign(&claims(None))?;
        assert!(k1.verify(&t1, 5000).is_ok());
        assert!(k1.verify(&t0, 500).is_ok());
        assert_eq!(k0.verify(&t1, 500), Err(TokenError::UnknownKey));

        // Retire key 0: its tokens stop verifying.
        std::fs::remove_file(dir.path().join("private.id.0.pem"))?;
        let k2 = Keys::load(dir.path(), None)?;
        assert_eq!(k2.verify(&t0, 500), Err(TokenError::UnknownKey));
        assert!(k2.verify(&t1, 500).is_ok());

        // Tampered payload.
        let mut parts: Vec<&str> = t1.split('.').collect();
        let forged =
            Base64UrlUnpadded::encode_string(br#"{"jti":"j","sub":"other","iat":1,"iss":"x"}"#);
        parts[1] = &forged;
        assert_eq!(
            k2.verify(&parts.join("."), 500),
            Err(TokenError::BadSignature)
        );
        assert_eq!(k2.verify("a.b", 500), Err(TokenError::Malformed));
        Ok(())
    }

    #[test]
    fn key_file_names() {
        assert_eq!(key_id("private.id.12.pem"), Some(12));
        assert_eq!(key_id("private.id..pem"), None);
        assert_eq!(key_id("private.id.-1.pem"), None);
        assert_eq!(key_id("public.id.1.pem"), None);
    }
}
