//! Device public keys and the `X-MEN-Signature` check of auth requests.
//!
//! The device signs the exact request body (trailing newline included):
//! RSA keys with PKCS#1 v1.5 + SHA-256, ECDSA P-256 with a DER signature over
//! SHA-256, Ed25519 with a raw 64-byte signature over the body. Keys arrive
//! as SPKI PEM (`BEGIN PUBLIC KEY`); we store them re-encoded (64-column PEM)
//! so the same key always compares equal. Verification uses `ring`.

use spki::der::Decode;
use spki::ObjectIdentifier;

const RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// A parsed device public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceKey {
    kind: Kind,
    /// The key bits ring wants: PKCS#1 RSAPublicKey, an uncompressed P-256
    /// point, or 32 Ed25519 bytes.
    raw: Vec<u8>,
    /// Normalised SPKI PEM.
    pem: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rsa,
    P256,
    Ed25519,
}

impl DeviceKey {
    /// Parse an SPKI PEM public key (RSA, ECDSA P-256 or Ed25519).
    pub fn from_pem(pem: &str) -> Result<DeviceKey, String> {
        let (label, der) = pem_rfc7468::decode_vec(pem.trim().as_bytes())
            .map_err(|e| format!("pubkey is not PEM: {e}"))?;
        if label != "PUBLIC KEY" {
            return Err(format!("pubkey: expected `PUBLIC KEY`, found `{label}`"));
        }
        let spki = spki::SubjectPublicKeyInfoRef::from_der(&der)
            .map_err(|e| format!("pubkey is not a SubjectPublicKeyInfo: {e}"))?;
        let raw = spki
            .subject_public_key
            .as_bytes()
            .ok_or("pubkey: bit string is not whole bytes")?
            .to_vec();
        let kind = match spki.algorithm.oid {
            RSA => Kind::Rsa,
            EC => {
                let curve = spki
                    .algorithm
                    .parameters
                    .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
                if curve != Some(P256) {
                    return Err("pubkey: only the P-256 curve is supported for ECDSA".into());
                }
                Kind::P256
            }
            ED25519 => Kind::Ed25519,
            other => return Err(format!("pubkey: unsupported key algorithm {other}")),
        };
        let pem = pem_rfc7468::encode_string("PUBLIC KEY", pem_rfc7468::LineEnding::LF, &der)
            .map_err(|e| format!("pubkey: {e}"))?;
        Ok(DeviceKey { kind, raw, pem })
    }

    /// The normalised PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// Verify `signature` (already base64-decoded) over `body`.
    pub fn verify(&self, body: &[u8], signature: &[u8]) -> bool {
        use ring::signature as s;
        let alg: &dyn s::VerificationAlgorithm = match self.kind {
            Kind::Rsa => &s::RSA_PKCS1_2048_8192_SHA256,
            Kind::P256 => &s::ECDSA_P256_SHA256_ASN1,
            Kind::Ed25519 => &s::ED25519,
        };
        s::UnparsedPublicKey::new(alg, &self.raw)
            .verify(body, signature)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{self as s, KeyPair};

    fn spki_pem(prefix: &[u8], key: &[u8]) -> String {
        let mut der = prefix.to_vec();
        der.extend_from_slice(key);
        pem_rfc7468::encode_string("PUBLIC KEY", pem_rfc7468::LineEnding::LF, &der)
            .unwrap_or_default()
    }

    #[test]
    fn ed25519_and_p256_signatures() -> Result<(), Box<dyn std::error::Error>> {
        let rng = SystemRandom::new();
        let body = b"{\"id_data\":\"{}\"}\n";

        let doc = s::Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| "gen")?;
        let kp = s::Ed25519KeyPair::from_pkcs8(doc.as_ref()).map_err(|_| "parse")?;
        // SPKI prefix for Ed25519: SEQ { SEQ { OID 1.3.101.112 }, BIT STRING }.
        let pem = spki_pem(
            &[
                0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
            ],
            kp.public_key().as_ref(),
        );
        let key = DeviceKey::from_pem(&pem)?;
        let sig = kp.sign(body);
        assert!(key.verify(body, sig.as_ref()));
        assert!(!key.verify(&body[..body.len() - 1], sig.as_ref()));

        let doc = s::EcdsaKeyPair::generate_pkcs8(&s::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .map_err(|_| "gen")?;
        let kp =
            s::EcdsaKeyPair::from_pkcs8(&s::ECDSA_P256_SHA256_ASN1_SIGNING, doc.as_ref(), &rng)
                .map_err(|_| "parse")?;
        let pem = spki_pem(
            &[
                0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
                0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
            ],
            kp.public_key().as_ref(),
        );
        let key = DeviceKey::from_pem(&pem)?;
        let sig = kp.sign(&rng, body).map_err(|_| "sign")?;
        assert!(key.verify(body, sig.as_ref()));
        assert!(!key.verify(b"other", sig.as_ref()));
        Ok(())
    }

    #[test]
    fn bad_keys_are_named() {
        assert!(DeviceKey::from_pem("nonsense").is_err());
        let e = DeviceKey::from_pem(
            "-----BEGIN RSA PUBLIC KEY-----\nAAAA\n-----END RSA PUBLIC KEY-----\n",
        );
        assert!(e.is_err());
    }
}
