//! Our software `Signer` makes signatures `mender-artifact validate` accepts,
//! from every PEM form OpenSSL writes (PKCS#1, SEC1, PKCS#8).
#![cfg(feature = "alloc")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;

use std::process::Command;
use updraft_core::crypto::{KeyError, Sha256, Signer, SigningKey, SoftSha256};

/// Replace (or add) `manifest.sig` with our signature over `manifest`.
fn resign(artifact: &[u8], key: &SigningKey) -> Vec<u8> {
    use base64ct::Encoding;
    let mut m = members(artifact);
    m.retain(|(n, _)| n != "manifest.sig");
    let manifest = &m.iter().find(|(n, _)| n == "manifest").unwrap().1;
    let mut sig = vec![0u8; key.signature_len()];
    let n = key
        .sign_digest(&SoftSha256::digest(manifest), &mut sig)
        .unwrap();
    let b64 = base64ct::Base64::encode_string(&sig[..n]).into_bytes();
    let at = m.iter().position(|(n, _)| n == "manifest").unwrap() + 1;
    m.insert(at, ("manifest.sig".into(), b64));
    pack(&m)
}

#[test]
fn mender_artifact_accepts_our_signatures() {
    let w = Work::new();
    w.file("rootfs.ext4", 10_000, 21);
    let unsigned = w.mender_write(
        "u.mender",
        &[
            "rootfs-image",
            "--no-progress",
            "-n",
            "u",
            "-t",
            "b",
            "-f",
            "rootfs.ext4",
        ],
        Sign::None,
    );
    let s = |p: std::path::PathBuf| p.to_str().unwrap().to_owned();
    run(Command::new("openssl").args([
        "genrsa",
        "-traditional",
        "-out",
        &s(w.path("rsa1.pem")),
        "2048",
    ]));
    run(Command::new("openssl").args([
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-in",
        &s(w.path("rsa1.pem")),
        "-out",
        &s(w.path("rsa8.pem")),
    ]));
    run(Command::new("openssl").args([
        "rsa",
        "-in",
        &s(w.path("rsa1.pem")),
        "-pubout",
        "-out",
        &s(w.path("rsa.pub")),
    ]));
    run(Command::new("openssl").args([
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        &s(w.path("ec1.pem")),
    ]));
    run(Command::new("openssl").args([
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-in",
        &s(w.path("ec1.pem")),
        "-out",
        &s(w.path("ec8.pem")),
    ]));
    run(Command::new("openssl").args([
        "ec",
        "-in",
        &s(w.path("ec1.pem")),
        "-pubout",
        "-out",
        &s(w.path("ec.pub")),
    ]));
    for (key, public) in [
        ("rsa1.pem", "rsa.pub"),
        ("rsa8.pem", "rsa.pub"),
        ("ec1.pem", "ec.pub"),
        ("ec8.pem", "ec.pub"),
    ] {
        let pem = std::fs::read_to_string(w.path(key)).unwrap();
        let signing = SigningKey::from_pem(&pem).unwrap();
        let signed = resign(&unsigned, &signing);
        std::fs::write(w.path("s.mender"), &signed).unwrap();
        run(Command::new("mender-artifact").args([
            "validate",
            "-k",
            &s(w.path(public)),
            &s(w.path("s.mender")),
        ]));
        // And our reader, with the derived public key.
        let out = read_all(&signed, &[signing.verifying_key()]);
        assert!(out.result.is_ok(), "{key}: {:?}", out.result);
    }
    // Encrypted and non-key PEM are clear errors.
    run(Command::new("openssl").args([
        "pkcs8",
        "-topk8",
        "-passout",
        "pass:x",
        "-in",
        &s(w.path("ec1.pem")),
        "-out",
        &s(w.path("enc.pem")),
    ]));
    let enc = std::fs::read_to_string(w.path("enc.pem")).unwrap();
    assert_eq!(SigningKey::from_pem(&enc).unwrap_err(), KeyError::Encrypted);
    assert_eq!(SigningKey::from_pem("hello").unwrap_err(), KeyError::NotPem);
}
