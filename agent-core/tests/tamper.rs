//! Tampered, truncated and mis-signed artifacts are rejected, each with the
//! error that names the problem; with a key configured, nothing is released
//! before the signature is verified.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;

use updraft_core::artifact::{DecodeError, Error, TarError};
use updraft_core::crypto::{KeyKind, SignatureError, VerifyingKey};

fn base(sign: Sign, comp: &str) -> (Work, Vec<u8>) {
    let w = Work::new();
    w.file("rootfs.ext4", 200_000, 11);
    let bytes = w.mender_write(
        "a.mender",
        &[
            "rootfs-image",
            "--no-progress",
            "-n",
            "rel-1",
            "-t",
            "board",
            "-f",
            "rootfs.ext4",
            "--compression",
            comp,
        ],
        sign,
    );
    (w, bytes)
}

fn key(sign: Sign) -> Vec<VerifyingKey> {
    sign.verifying_key().into_iter().collect()
}

/// Flip one bit of the payload file inside `data/0000.tar*`, re-compressing.
fn flip_payload(bytes: &[u8], comp: &str) -> Vec<u8> {
    let member = if comp == "gzip" {
        "data/0000.tar.gz"
    } else {
        "data/0000.tar"
    };
    edit(bytes, member, |d| {
        let mut tar = if comp == "gzip" { gunzip(d) } else { d.clone() };
        tar[512 + 777] ^= 0x10; // inside the first file's content
        *d = if comp == "gzip" { gzip(&tar) } else { tar };
    })
}

#[test]
fn payload_bit_flip_is_a_digest_mismatch() {
    for comp in ["gzip", "none"] {
        let (_w, bytes) = base(Sign::None, comp);
        let err = read_all(&flip_payload(&bytes, comp), &[]).unwrap_err();
        match &err {
            Error::DigestMismatch {
                file,
                expected,
                actual,
            } => {
                assert_eq!(file.as_str(), "data/0000/rootfs.ext4");
                assert_ne!(expected, actual);
            }
            other => panic!("{comp}: expected DigestMismatch, got {other:?}"),
        }
        assert!(
            err.to_string()
                .contains("data/0000/rootfs.ext4: invalid checksum"),
            "{err}"
        );
    }
}

#[test]
fn bit_flip_in_compressed_data_is_rejected() {
    let (_w, bytes) = base(Sign::None, "gzip");
    let bad = edit(&bytes, "data/0000.tar.gz", |d| {
        let mid = d.len() / 2;
        d[mid] ^= 0x01;
    });
    let err = read_all(&bad, &[]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::DigestMismatch { .. } | Error::Decode { .. } | Error::Tar { .. }
        ),
        "{err:?}"
    );
}

#[test]
fn header_change_is_a_header_digest_mismatch() {
    for comp in ["gzip", "none"] {
        let (_w, bytes) = base(Sign::None, comp);
        let member = if comp == "gzip" {
            "header.tar.gz"
        } else {
            "header.tar"
        };
        let bad = edit(&bytes, member, |d| {
            let mut tar = if comp == "gzip" { gunzip(d) } else { d.clone() };
            let s = String::from_utf8_lossy(&tar).into_owned();
            let at = s.find("rel-1").unwrap();
            tar[at + 4] = b'2';
            // Fix the tar header checksum of header-info so only the digest catches it.
            fix_first_checksum(&mut tar);
            *d = if comp == "gzip" { gzip(&tar) } else { tar };
        });
        let out = read_all(&bad, &[]);
        match out.unwrap_err() {
            Error::DigestMismatch { file, .. } => assert_eq!(file.as_str(), member),
            other => panic!("{comp}: {other:?}"),
        }
        assert!(
            !out.events.iter().any(|e| matches!(e, Ev::Header(_))),
            "Header released before its digest matched"
        );
    }
}

fn fix_first_checksum(tar: &mut [u8]) {
    tar[148..156].copy_from_slice(b"        ");
    let sum: u32 = tar[..512].iter().map(|&b| b as u32).sum();
    let s = format!("{sum:06o}\0 ");
    tar[148..156].copy_from_slice(s.as_bytes());
}

fn change_manifest_hex(bytes: &[u8]) -> Vec<u8> {
    edit(bytes, "manifest", |m| {
        // First line is the data file's digest: change its first hex digit.
        m[0] = if m[0] == b'0' { b'1' } else { b'0' };
    })
}

#[test]
fn manifest_change_unsigned_is_a_digest_mismatch() {
    let (_w, bytes) = base(Sign::None, "gzip");
    match read_all(&change_manifest_hex(&bytes), &[]).unwrap_err() {
        Error::DigestMismatch { file, .. } => assert_eq!(file.as_str(), "data/0000/rootfs.ext4"),
        other => panic!("{other:?}"),
    }
}

fn signs() -> Vec<Sign> {
    if cfg!(feature = "alloc") {
        vec![Sign::Ec, Sign::Rsa]
    } else {
        vec![Sign::Ec]
    }
}

#[test]
fn manifest_change_signed_fails_the_signature_before_anything_is_released() {
    for sign in signs() {
        let (_w, bytes) = base(sign, "gzip");
        let out = read_all(&change_manifest_hex(&bytes), &key(sign));
        assert_eq!(
            out.unwrap_err(),
            Error::SignatureInvalid {
                error: SignatureError::Mismatch
            },
            "{sign:?}"
        );
        assert!(
            !out.released_anything(),
            "{sign:?}: events before the signature check: {:?}",
            out.events
        );
    }
}

#[test]
fn consistent_payload_and_manifest_change_fails_the_signature() {
    // An attacker replaces the payload and fixes the manifest line: only the
    // signature can catch it, and it must do so before any payload byte.
    for sign in signs() {
        let (_w, bytes) = base(sign, "none");
        let bad = flip_payload(&bytes, "none");
        let mut m = members(&bad);
        let data_tar = m
            .iter()
            .find(|(n, _)| n == "data/0000.tar")
            .unwrap()
            .1
            .clone();
        let file = tar::Archive::new(data_tar.as_slice())
            .entries()
            .unwrap()
            .next()
            .map(|e| {
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut e.unwrap(), &mut v).unwrap();
                v
            })
            .unwrap();
        let new_hex = hex(&sha256(&file));
        let man = m.iter_mut().find(|(n, _)| n == "manifest").unwrap();
        man.1[..64].copy_from_slice(new_hex.as_bytes());
        let bad = pack(&m);
        // Unsigned reading accepts it (as mender-artifact does)...
        assert!(read_all(&bad, &[]).result.is_ok());
        // ...but with the key it fails before anything is released.
        let out = read_all(&bad, &key(sign));
        assert_eq!(
            out.unwrap_err(),
            Error::SignatureInvalid {
                error: SignatureError::Mismatch
            }
        );
        assert!(!out.released_anything());
    }
}

#[test]
fn signature_bit_flip_is_rejected() {
    for sign in signs() {
        let (_w, bytes) = base(sign, "gzip");
        let bad = edit(&bytes, "manifest.sig", |s| {
            use base64ct::Encoding;
            let mut raw = base64ct::Base64::decode_vec(std::str::from_utf8(s).unwrap()).unwrap();
            raw[10] ^= 0x04;
            *s = base64ct::Base64::encode_string(&raw).into_bytes();
        });
        let out = read_all(&bad, &key(sign));
        assert!(
            matches!(out.unwrap_err(), Error::SignatureInvalid { .. }),
            "{sign:?}"
        );
        assert!(!out.released_anything());
        // Not base64 at all.
        let bad = edit(&bytes, "manifest.sig", |s| s[3] = b'!');
        assert_eq!(
            read_all(&bad, &key(sign)).unwrap_err(),
            Error::SignatureEncoding
        );
    }
}

#[test]
fn stripped_signature_with_a_key_is_missing_signature() {
    let (_w, bytes) = base(Sign::Ec, "gzip");
    let mut m = members(&bytes);
    m.retain(|(n, _)| n != "manifest.sig");
    let stripped = pack(&m);
    let out = read_all(&stripped, &key(Sign::Ec));
    assert_eq!(out.unwrap_err(), Error::SignatureMissing);
    assert!(!out.released_anything());
    // Without a key it is simply unsigned.
    assert!(read_all(&stripped, &[]).result.is_ok());
    // An unsigned artifact with a key configured: the same error.
    let (_w, unsigned) = base(Sign::None, "gzip");
    assert_eq!(
        read_all(&unsigned, &key(Sign::Ec)).unwrap_err(),
        Error::SignatureMissing
    );
}

#[test]
fn wrong_key_and_wrong_key_kind() {
    let (_w, ec) = base(Sign::Ec, "gzip");
    let other = VerifyingKey::from_spki_der(&keys().ec2_der).unwrap();
    assert_eq!(
        read_all(&ec, std::slice::from_ref(&other)).unwrap_err(),
        Error::SignatureInvalid {
            error: SignatureError::Mismatch
        }
    );
    // Key rotation: any configured key may verify.
    let both = [other, Sign::Ec.verifying_key().unwrap()];
    assert!(read_all(&ec, &both).result.is_ok());
    if cfg!(feature = "alloc") {
        // ECDSA signature checked with an RSA key, and the reverse.
        assert_eq!(
            read_all(&ec, &key(Sign::Rsa)).unwrap_err(),
            Error::SignatureInvalid {
                error: SignatureError::KeyKindMismatch {
                    key: KeyKind::Rsa,
                    signature: KeyKind::EcdsaP256
                }
            }
        );
        let (_w, rsa) = base(Sign::Rsa, "gzip");
        assert_eq!(
            read_all(&rsa, &key(Sign::Ec)).unwrap_err(),
            Error::SignatureInvalid {
                error: SignatureError::KeyKindMismatch {
                    key: KeyKind::EcdsaP256,
                    signature: KeyKind::Rsa
                }
            }
        );
    }
}

#[test]
fn extra_manifest_line_is_a_missing_file() {
    let (_w, bytes) = base(Sign::None, "gzip");
    let bad = edit(&bytes, "manifest", |m| {
        m.extend_from_slice(format!("{}  data/0000/extra\n", "ab".repeat(32)).as_bytes());
    });
    match read_all(&bad, &[]).unwrap_err() {
        Error::MissingFile { file } => assert_eq!(file.as_str(), "data/0000/extra"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn file_not_in_manifest_is_rejected() {
    let (_w, bytes) = base(Sign::None, "gzip");
    let bad = edit(&bytes, "manifest", |m| {
        let text = String::from_utf8(m.clone()).unwrap();
        *m = text
            .lines()
            .filter(|l| !l.ends_with("data/0000/rootfs.ext4"))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            .into_bytes();
    });
    match read_all(&bad, &[]).unwrap_err() {
        Error::NotInManifest { file } => assert_eq!(file.as_str(), "data/0000/rootfs.ext4"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn members_out_of_order_are_rejected() {
    let (_w, bytes) = base(Sign::Ec, "gzip");
    let m = members(&bytes);
    // header before manifest
    let mut swapped = m.clone();
    swapped.swap(1, 3);
    assert!(matches!(
        read_all(&pack(&swapped), &[]).unwrap_err(),
        Error::UnexpectedMember { .. }
    ));
    // version not first
    let mut v = m.clone();
    v.swap(0, 1);
    assert!(matches!(
        read_all(&pack(&v), &[]).unwrap_err(),
        Error::NotAnArtifact { .. }
    ));
    // a data member twice
    let mut dup = m.clone();
    dup.push(m.last().unwrap().clone());
    assert!(matches!(
        read_all(&pack(&dup), &[]).unwrap_err(),
        Error::UnexpectedMember { .. }
    ));
    // version 2
    let old = edit(&bytes, "version", |v| {
        *v = br#"{"format":"mender","version":2}"#.to_vec()
    });
    assert_eq!(
        read_all(&old, &[]).unwrap_err(),
        Error::UnsupportedVersion { version: Some(2) }
    );
}

/// Every prefix of an artifact is rejected as truncated — at each member
/// boundary, at each 512-byte block and at odd offsets inside members —
/// and no prefix yields `Done`.
#[test]
fn truncation_anywhere_is_rejected() {
    for comp in ["gzip", "none"] {
        let w = Work::new();
        w.file("p.bin", 3000, 12);
        let bytes = w.mender_write(
            "t.mender",
            &[
                "module-image",
                "-T",
                "single-file",
                "-n",
                "t",
                "-t",
                "b",
                "-f",
                "p.bin",
                "--compression",
                comp,
            ],
            Sign::Ec,
        );
        let mut cuts: Vec<usize> = (0..bytes.len()).step_by(512).collect();
        cuts.extend((0..bytes.len()).step_by(97));
        cuts.extend([bytes.len() - 1, bytes.len() - 512, bytes.len() - 1024]);
        for cut in cuts {
            let out = read_all(&bytes[..cut], &key(Sign::Ec));
            assert!(
                !out.events.contains(&Ev::Done),
                "{comp}: prefix of {cut} bytes gave Done"
            );
            let err = out.unwrap_err();
            assert!(
                matches!(err, Error::Truncated { .. }),
                "{comp}: prefix of {cut} bytes: expected Truncated, got {err:?}"
            );
            assert!(err.to_string().contains("truncated"), "{err}");
        }
    }
}

#[test]
fn trailing_data_after_the_end_is_rejected_but_zero_padding_is_not() {
    let (_w, bytes) = base(Sign::None, "gzip");
    let mut padded = bytes.clone();
    padded.extend_from_slice(&[0; 10240]);
    assert!(
        read_all(&padded, &[]).result.is_ok(),
        "zero padding (Python's tarfile) must be accepted"
    );
    let mut garbage = bytes.clone();
    garbage.extend_from_slice(b"garbage");
    assert!(matches!(
        read_all(&garbage, &[]).unwrap_err(),
        Error::TrailingData { .. }
    ));
}

#[test]
fn gzip_trailer_damage_is_a_decode_error() {
    let (_w, bytes) = base(Sign::None, "gzip");
    let bad = edit(&bytes, "data/0000.tar.gz", |d| {
        let n = d.len();
        d[n - 5] ^= 0xff; // CRC-32 byte
    });
    let err = read_all(&bad, &[]).unwrap_err();
    assert_eq!(
        err,
        Error::Decode {
            member: "data/0000.tar.gz".try_into().unwrap(),
            error: DecodeError::GzipCrc
        }
    );
    let cut = edit(&bytes, "data/0000.tar.gz", |d| d.truncate(d.len() - 8));
    assert!(matches!(
        read_all(&cut, &[]).unwrap_err(),
        Error::Decode {
            error: DecodeError::Truncated,
            ..
        }
    ));
}

#[test]
fn broken_inner_tar_is_a_tar_error() {
    let (_w, bytes) = base(Sign::None, "none");
    let bad = edit(&bytes, "data/0000.tar", |d| d[100] ^= 0x01); // header mode field
    match read_all(&bad, &[]).unwrap_err() {
        Error::Tar { member, error } => {
            assert_eq!(member.as_str(), "data/0000.tar");
            assert_eq!(error, TarError::BadChecksum);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn exceeding_a_fixed_bound_is_an_error_not_a_truncation() {
    use updraft_core::artifact::meta::MAX_LIST;
    use updraft_core::artifact::{Limit, MetaError, MAX_MANIFEST_LINES};
    let w = Work::new();
    w.file("rootfs.ext4", 1000, 31);
    // Exactly MAX_LIST device types read fine; one more is a Limit error.
    let types: Vec<String> = (0..=MAX_LIST).map(|i| format!("board-{i}")).collect();
    let mut args: Vec<&str> = vec![
        "rootfs-image",
        "--no-progress",
        "-n",
        "l",
        "-f",
        "rootfs.ext4",
    ];
    for t in &types[..MAX_LIST] {
        args.extend(["-t", t]);
    }
    let ok = w.mender_write("ok.mender", &args, Sign::None);
    assert!(read_all(&ok, &[]).result.is_ok());
    args.extend(["-t", &types[MAX_LIST]]);
    let too_many = w.mender_write("many.mender", &args, Sign::None);
    let err = read_all(&too_many, &[]).unwrap_err();
    assert_eq!(
        err,
        Error::Metadata {
            member: "header-info".try_into().unwrap(),
            error: MetaError::Limit(Limit::DependsList)
        }
    );
    assert!(
        err.to_string().contains("more than 32 device types"),
        "{err}"
    );
    // More payload files than manifest lines the reader tracks.
    let names: Vec<String> = (0..MAX_MANIFEST_LINES)
        .map(|i| format!("f{i:03}"))
        .collect();
    let mut args: Vec<&str> = vec!["module-image", "-T", "x", "-n", "l", "-t", "b"];
    for n in &names {
        w.text(n, n);
        args.extend(["-f", n]);
    }
    let files = w.mender_write("files.mender", &args, Sign::None);
    assert_eq!(
        read_all(&files, &[]).unwrap_err(),
        Error::Limit(Limit::ManifestLines)
    );
}

#[test]
fn the_arming_proof_exists_only_after_a_complete_valid_artifact() {
    use updraft_core::artifact::Reader;
    let (_w, bytes) = base(Sign::None, "gzip");
    let mut reader = Reader::new();
    let (used, _) = reader.feed(&bytes[..bytes.len() / 2]).unwrap();
    assert!(used > 0);
    assert!(reader.verified().is_none(), "proof before the end");
    let bad = flip_payload(&bytes, "gzip");
    let mut reader = Reader::new();
    let mut input = &bad[..];
    while let Ok((n, Some(_))) = reader.feed(input) {
        input = &input[n..];
    }
    assert!(reader.verified().is_none(), "proof for a tampered artifact");
    let mut reader = Reader::new();
    let mut input = &bytes[..];
    loop {
        let (n, ev) = reader.feed(input).unwrap();
        input = &input[n..];
        if ev.is_none() {
            break;
        }
    }
    reader.finish().unwrap();
    assert!(reader.verified().is_some());
}

/// Two payloads (mender-artifact 3.9 only writes one, but the format and
/// its reader allow several): built by hand, read in order, and a missing
/// data member is an error.
#[test]
fn several_payloads() {
    let hdr_info = br#"{"payloads":[{"type":"mod-a"},{"type":"mod-b"}],"artifact_provides":{"artifact_name":"multi"},"artifact_depends":{"device_type":["board"]}}"#;
    let header = pack(&[
        ("header-info".into(), hdr_info.to_vec()),
        (
            "headers/0000/type-info".into(),
            br#"{"type":"mod-a","artifact_provides":{"a.version":"1"}}"#.to_vec(),
        ),
        (
            "headers/0001/type-info".into(),
            br#"{"type":"mod-b","artifact_provides":{"b.version":"2"}}"#.to_vec(),
        ),
    ]);
    let x = pseudo_random(70_000, 1);
    let y = pseudo_random(513, 2);
    let d0 = pack(&[("x.bin".into(), x.clone())]);
    let d1 = pack(&[("y.bin".into(), y.clone())]);
    let version = VERSION.to_vec();
    let digest = |d: &[u8]| hex(&sha256(d));
    let manifest = format!(
        "{}  data/0000/x.bin\n{}  data/0001/y.bin\n{}  header.tar\n{}  version\n",
        digest(&x),
        digest(&y),
        digest(&header),
        digest(&version)
    );
    let all = vec![
        ("version".to_string(), version.clone()),
        ("manifest".to_string(), manifest.clone().into_bytes()),
        ("header.tar".to_string(), header.clone()),
        ("data/0000.tar".to_string(), d0.clone()),
        ("data/0001.tar".to_string(), d1.clone()),
    ];
    let out = read_all(&pack(&all), &[]);
    assert!(out.result.is_ok(), "{:?}", out.result);
    let starts: Vec<_> = out
        .events
        .iter()
        .filter_map(|e| match e {
            Ev::PayloadStart(p, n, ..) => Some((*p, n.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        starts,
        vec![(0, "x.bin".to_string()), (1, "y.bin".to_string())]
    );
    let meta = out.metadata.unwrap();
    assert_eq!(meta.payloads.len(), 2);
    assert_eq!(
        meta.payloads[1]
            .provides
            .get("b.version")
            .map(String::as_str),
        Some("2")
    );
    // The second data member missing: the manifest line and the payload count catch it.
    let missing = read_all(&pack(&all[..4]), &[]).unwrap_err();
    assert!(
        matches!(
            missing,
            Error::PayloadMismatch {
                declared: 2,
                found: 1
            } | Error::MissingFile { .. }
        ),
        "{missing:?}"
    );
    // data/0001 before data/0000: out of order.
    let swapped = vec![
        all[0].clone(),
        all[1].clone(),
        all[2].clone(),
        all[4].clone(),
        all[3].clone(),
    ];
    assert!(matches!(
        read_all(&pack(&swapped), &[]).unwrap_err(),
        Error::UnexpectedMember { .. }
    ));
}

/// GNU long-name (`L`) headers, as GNU tar writes them for paths over 100
/// bytes, inside a payload tar.
#[test]
fn gnu_long_names_in_a_data_tar() {
    use std::process::Command;
    let w = Work::new();
    let long = format!("{}.bin", "gnu-long-name-".repeat(9));
    assert!(long.len() > 100);
    let data = pseudo_random(3000, 5);
    std::fs::write(w.path(&long), &data).unwrap();
    run(Command::new("tar").current_dir(w.dir.path()).args([
        "--format=gnu",
        "-cf",
        "d.tar",
        &long,
    ]));
    let d0 = std::fs::read(w.path("d.tar")).unwrap();
    assert!(
        d0.windows(13).any(|s| s == b"././@LongLink"),
        "GNU tar did not write a long-name entry"
    );
    let header = pack(&[
        ("header-info".into(), br#"{"payloads":[{"type":"m"}],"artifact_provides":{"artifact_name":"g"},"artifact_depends":{"device_type":["b"]}}"#.to_vec()),
        ("headers/0000/type-info".into(), br#"{"type":"m"}"#.to_vec()),
    ]);
    let version = VERSION.to_vec();
    let digest = |d: &[u8]| hex(&sha256(d));
    let manifest = format!(
        "{}  data/0000/{long}\n{}  header.tar\n{}  version\n",
        digest(&data),
        digest(&header),
        digest(&version)
    );
    let art = pack(&[
        ("version".into(), version),
        ("manifest".into(), manifest.into_bytes()),
        ("header.tar".into(), header),
        ("data/0000.tar".into(), d0),
    ]);
    let out = read_all(&art, &[]);
    assert!(out.result.is_ok(), "{:?}", out.result);
    assert!(out
        .events
        .iter()
        .any(|e| matches!(e, Ev::PayloadStart(0, n, 3000, _) if *n == long)));
    assert!(out.events.contains(&Ev::Payload(data)));
}
