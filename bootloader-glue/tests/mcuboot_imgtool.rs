//! Our MCUboot image parser and verifier against the real imgtool 2.5.0:
//! fixtures are signed at test time; we must accept what `imgtool verify`
//! accepts and reject what it rejects (naming the problem), see the same
//! TLVs as `imgtool dumpinfo`, and read its trailers. Trailers we write
//! must read back through `imgtool dumpinfo -f json` as spec 6.3 says.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod mcuboot_common;

use mcuboot_common::{dumpinfo, imgtool_ok, imgtool_verify, key, sign, TempDir, KEY_TYPES};
use updraft_boot::mcuboot::trailer::{self, read_state, set_confirmed, set_pending};
use updraft_boot::mcuboot::{
    verify, verify_slot, Area, Flag, HashAlg, Image, ImageError, KeyKind, MagicState, Mode,
    Outcome, SignatureCheck, SwapType, TlvKind, TrailerLayout, VerifyError, Version,
};
use updraft_boot::storage::{FileStorage, MemStorage, Storage};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Our TLV list equals dumpinfo's (type, length, data, area).
fn same_tlvs_as_dumpinfo(file: &std::path::Path) {
    let bytes = std::fs::read(file).unwrap();
    let image = Image::parse(&bytes).unwrap();
    let info = dumpinfo(file);
    let h = &info["header"];
    assert_eq!(h["hdr_size"], u64::from(image.header().hdr_size));
    assert_eq!(h["img_size"], u64::from(image.header().img_size));
    assert_eq!(
        h["protected_tlv_size"],
        u64::from(image.header().protect_tlv_size)
    );
    assert_eq!(h["flags"], u64::from(image.header().flags.0));
    assert_eq!(h["version"], image.header().version.to_string());
    let mut theirs = Vec::new();
    for (area, prot) in [("tlvs_prot", true), ("tlvs", false)] {
        for t in info["tlv_area"][area].as_array().unwrap() {
            theirs.push((
                t["type"].as_u64().unwrap() as u16,
                t["len"].as_u64().unwrap() as usize,
                t["data"].as_str().unwrap().to_owned(),
                prot,
            ));
        }
    }
    let ours: Vec<_> = image
        .tlvs()
        .map(|t| (t.kind.raw(), t.value.len(), hex(t.value), t.protected))
        .collect();
    assert_eq!(ours, theirs, "TLVs of {}", file.display());
}

/// imgtool's "Image digest: ..." line.
fn imgtool_digest(out: &str) -> Option<String> {
    out.lines()
        .find_map(|l| l.strip_prefix("Image digest: "))
        .map(str::to_owned)
}

#[test]
fn every_key_type_and_option_verifies_like_imgtool() {
    let dir = TempDir::new("sign");
    for kind in KEY_TYPES {
        let k = key(kind, 0);
        let expected_kind = match kind {
            "ecdsa-p256" => KeyKind::EcdsaP256,
            "ed25519" => KeyKind::Ed25519,
            "rsa-2048" => KeyKind::Rsa2048,
            _ => KeyKind::Rsa3072,
        };
        assert_eq!(k.public.kind(), expected_kind);
        let mut variants: Vec<(&str, Vec<&str>)> = vec![
            ("plain", vec![]),
            ("full-key", vec!["--public-key-format", "full"]),
            ("sec-cnt", vec!["--security-counter", "auto"]),
            ("dep", vec!["-d", "(1,2.3.4+5)"]),
            ("custom", vec!["--custom-tlv", "0xa0", "0x01020304"]),
            ("load", vec!["--load-addr", "0x20000000"]),
        ];
        if kind == "ecdsa-p256" {
            variants.push(("pad-sig", vec!["--pad-sig"]));
        }
        if kind == "ed25519" {
            variants.push(("sha512", vec!["--sha", "512"]));
            variants.push(("pure", vec!["--pure"]));
        }
        for (name, extra) in variants {
            let file = sign(&dir, &format!("{kind}-{name}.bin"), Some(k), &extra);
            let (ok, out) = imgtool_verify(Some(&k.pem), &file);
            assert!(ok, "imgtool rejects its own {kind} {name}: {out}");
            let bytes = std::fs::read(&file).unwrap();
            let v = verify(&bytes, Some(&k.public))
                .unwrap_or_else(|e| panic!("{kind} {name}: we reject what imgtool accepts: {e}"));
            let pure = name == "pure";
            assert_eq!(
                v.signature,
                SignatureCheck::Verified {
                    key: expected_kind,
                    pure
                },
                "{kind} {name}"
            );
            assert_eq!(
                v.header.version,
                Version {
                    major: 1,
                    minor: 2,
                    revision: 3,
                    build: 4
                }
            );
            if let Some(d) = imgtool_digest(&out) {
                assert_eq!(hex(v.digest()), d, "{kind} {name} digest");
            }
            let sha512 = matches!(name, "sha512" | "pure");
            assert_eq!(
                v.hash_alg,
                Some(if sha512 {
                    HashAlg::Sha512
                } else {
                    HashAlg::Sha256
                }),
                "{kind} {name}"
            );
            if name == "sec-cnt" {
                assert_eq!(v.security_counter, Some(0x0102_0003));
            }
            same_tlvs_as_dumpinfo(&file);
            let image = Image::parse(&bytes).unwrap();
            match name {
                "full-key" => assert!(image.find(TlvKind::PubKey).is_some()),
                "dep" => {
                    let d = image.find(TlvKind::Dependency).unwrap();
                    assert_eq!(d[0], 1);
                    let ver: [u8; 8] = d[4..12].try_into().unwrap();
                    assert_eq!(Version::from_bytes(&ver).to_string(), "2.3.4+5");
                }
                "custom" => {
                    let t = image.tlvs().find(|t| t.kind == TlvKind::Vendor(0xa0));
                    let t = t.expect("custom TLV");
                    assert!(t.protected);
                    assert_eq!(t.value, [1, 2, 3, 4]);
                }
                "load" => {
                    assert_eq!(image.header().load_addr, 0x2000_0000);
                    assert!(image.header().flags.contains(0x20));
                }
                "pad-sig" => assert_eq!(image.find(TlvKind::EcdsaSig).unwrap().len(), 72),
                "pure" => {
                    assert_eq!(image.find(TlvKind::SigPure), Some(&[1u8][..]));
                    assert!(image.find(TlvKind::Sha512).is_some());
                }
                _ => {}
            }
            // The slot on storage, read in odd chunks, gives the same result.
            let mut mem = MemStorage::new(bytes.clone());
            let mut buf = [0u8; 97];
            let w =
                verify_slot(&mut mem, 0, bytes.len() as u64, Some(&k.public), &mut buf).unwrap();
            assert_eq!(w, v);
        }
    }
}

#[test]
fn negatives_are_rejected_by_both_with_a_named_reason() {
    let dir = TempDir::new("neg");
    for kind in KEY_TYPES {
        let k = key(kind, 0);
        let other = key(kind, 1);
        let file = sign(&dir, &format!("{kind}.bin"), Some(k), &[]);
        let bytes = std::fs::read(&file).unwrap();

        // One payload byte flipped.
        let mut flipped = bytes.clone();
        flipped[0x200 + 100] ^= 0xff;
        let f = dir.join(&format!("{kind}-flipped.bin"));
        std::fs::write(&f, &flipped).unwrap();
        let (ok, out) = imgtool_verify(Some(&k.pem), &f);
        assert!(!ok && out.contains("invalid hash"), "{out}");
        assert_eq!(
            verify(&flipped, Some(&k.public)).unwrap_err(),
            VerifyError::HashMismatch {
                alg: HashAlg::Sha256
            }
        );
        let (ok, _) = imgtool_verify(None, &f);
        assert!(!ok);
        assert!(verify(&flipped, None).is_err());

        // The wrong key.
        let (ok, out) = imgtool_verify(Some(&other.pem), &file);
        assert!(!ok, "imgtool accepted the wrong key: {out}");
        let e = verify(&bytes, Some(&other.public)).unwrap_err();
        assert_eq!(e, VerifyError::KeyHashMismatch, "{kind}");
        assert!(e.to_string().contains("another key"));

        // Truncated to 1600 bytes (TLVs cut).
        let cut = &bytes[..1600];
        let f = dir.join(&format!("{kind}-cut.bin"));
        std::fs::write(&f, cut).unwrap();
        let (ok, _) = imgtool_verify(Some(&k.pem), &f);
        assert!(!ok, "imgtool accepted a truncated image");
        assert!(matches!(
            verify(cut, Some(&k.public)).unwrap_err(),
            VerifyError::Image(ImageError::Truncated { .. })
        ));
        assert!(matches!(
            Image::parse(cut).unwrap_err(),
            ImageError::Truncated { .. }
        ));

        // A key of another type.
        let foreign = if kind == "ed25519" {
            key("ecdsa-p256", 0)
        } else {
            key("ed25519", 0)
        };
        let (ok, _) = imgtool_verify(Some(&foreign.pem), &file);
        assert!(!ok);
        assert!(matches!(
            verify(&bytes, Some(&foreign.public)).unwrap_err(),
            VerifyError::NoSignature { .. }
        ));
    }
}

#[test]
fn hash_only_and_keyhash_rules() {
    let dir = TempDir::new("hash");
    // Unsigned: hash only, like `imgtool verify` without -k.
    let file = sign(&dir, "unsigned.bin", None, &[]);
    let bytes = std::fs::read(&file).unwrap();
    assert!(imgtool_verify(None, &file).0);
    let v = verify(&bytes, None).unwrap();
    assert_eq!(v.signature, SignatureCheck::NotChecked);
    // With a key there is no signature to check.
    let k = key("ecdsa-p256", 0);
    assert!(!imgtool_verify(Some(&k.pem), &file).0);
    assert_eq!(
        verify(&bytes, Some(&k.public)).unwrap_err(),
        VerifyError::NoSignature {
            key: KeyKind::EcdsaP256
        }
    );

    // A flipped KEYHASH byte: imgtool does not check KEYHASH and accepts;
    // MCUboot would find no key, and so do we (documented difference).
    let file = sign(&dir, "signed.bin", Some(k), &[]);
    let mut bytes = std::fs::read(&file).unwrap();
    let image = Image::parse(&bytes).unwrap();
    let kh = image.find(TlvKind::KeyHash).unwrap();
    let at = kh.as_ptr() as usize - bytes.as_ptr() as usize;
    bytes[at] ^= 1;
    let f = dir.join("keyhash.bin");
    std::fs::write(&f, &bytes).unwrap();
    assert!(imgtool_verify(Some(&k.pem), &f).0);
    assert_eq!(
        verify(&bytes, Some(&k.public)).unwrap_err(),
        VerifyError::KeyHashMismatch
    );

    // A pre-reserved header (input starts with 0x200 zero bytes, no
    // --pad-header).
    let mut app = vec![0u8; 0x200];
    app.extend(mcuboot_common::pseudo_random(700, 3));
    std::fs::write(dir.join("zero.bin"), &app).unwrap();
    let out = dir.join("zero-signed.bin");
    imgtool_ok(&[
        "sign",
        "-k",
        k.pem.to_str().unwrap(),
        "--header-size",
        "0x200",
        "--version",
        "0.0.1",
        "--slot-size",
        "0x20000",
        dir.join("zero.bin").to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    assert!(imgtool_verify(Some(&k.pem), &out).0);
    let v = verify(&std::fs::read(&out).unwrap(), Some(&k.public)).unwrap();
    assert_eq!(v.header.img_size, 700);
}

#[test]
fn encrypted_images_are_reported_not_verified() {
    let dir = TempDir::new("enc");
    let k = key("ecdsa-p256", 0);
    let enc_pub = dir.join("enc.pub.pem");
    imgtool_ok(&[
        "getpub",
        "-k",
        key("ecdsa-p256", 1).pem.to_str().unwrap(),
        "-e",
        "pem",
        "-o",
        enc_pub.to_str().unwrap(),
    ]);
    for extra in [vec![], vec!["--encrypt-keylen", "256"]] {
        let mut args = vec!["-E", enc_pub.to_str().unwrap()];
        args.extend(extra.iter().copied());
        let file = sign(&dir, "enc.bin", Some(k), &args);
        let bytes = std::fs::read(&file).unwrap();
        let (ok, out) = imgtool_verify(Some(&k.pem), &file);
        assert!(!ok && out.contains("invalid hash"), "{out}");
        let image = Image::parse(&bytes).unwrap();
        assert!(image.is_encrypted());
        assert_eq!(image.header().img_size, 1008, "padded to 16 bytes");
        assert!(image.find(TlvKind::EncEc256).is_some());
        let e = verify(&bytes, Some(&k.public)).unwrap_err();
        assert!(matches!(e, VerifyError::Encrypted { .. }));
        assert!(e.to_string().contains("encrypted"));
        same_tlvs_as_dumpinfo(&file);
    }
}

const SLOT: u64 = 0x20000;

fn layout(max_align: u32, write: u32, erased: u8) -> TrailerLayout {
    TrailerLayout::new(Mode::SwapScratch, max_align, write, erased).unwrap()
}

fn whole(size: u64) -> Area {
    Area {
        offset: 0,
        size,
        sector_size: 4096,
    }
}

#[test]
fn trailers_imgtool_writes_read_correctly() {
    let dir = TempDir::new("trailers");
    let k = key("ecdsa-p256", 0);
    // (options, max align, erased value, decision as the secondary)
    let cases: &[(&[&str], u32, u8, SwapType)] = &[
        (&["--align", "8", "--pad"], 8, 0xff, SwapType::Test),
        (&["--align", "8", "--test"], 8, 0xff, SwapType::Test),
        (&["--align", "8", "--confirm"], 8, 0xff, SwapType::Perm),
        (&["--align", "4", "--confirm"], 8, 0xff, SwapType::Perm),
        (&["--align", "16", "--confirm"], 16, 0xff, SwapType::Perm),
        (&["--align", "16", "--pad"], 16, 0xff, SwapType::Test),
        (
            &["--max-align", "32", "--confirm"],
            32,
            0xff,
            SwapType::Perm,
        ),
        (&["--max-align", "32", "--test"], 32, 0xff, SwapType::Test),
        (
            &["--align", "8", "--confirm", "-R", "0"],
            8,
            0x00,
            SwapType::Perm,
        ),
        (
            &["--align", "8", "--pad", "-R", "0"],
            8,
            0x00,
            SwapType::Test,
        ),
        // Overwrite-only: imgtool writes the magic only, even with
        // --confirm, so the request reads as TEST (both mean "overwrite").
        (&["--overwrite-only", "--confirm"], 8, 0xff, SwapType::Test),
    ];
    let erased_primary = |erased: u8| vec![erased; SLOT as usize];
    for (i, (opts, a, erased, want)) in cases.iter().enumerate() {
        let file = sign(&dir, &format!("slot{i}.bin"), Some(k), opts);
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!(bytes.len() as u64, SLOT, "{opts:?}");
        let mode = if opts.contains(&"--overwrite-only") {
            Mode::OverwriteOnly
        } else {
            Mode::SwapScratch
        };
        let l = TrailerLayout::new(mode, *a, 1, *erased).unwrap();
        let mut mem = MemStorage::new(bytes.clone());
        let s = read_state(&mut mem, whole(SLOT), &l).unwrap();
        assert_eq!(s.magic, MagicState::Good, "{opts:?}");
        assert_eq!(s.copy_done, Flag::Unset, "{opts:?}");
        assert_eq!(
            s.swap_type,
            SwapType::None,
            "{opts:?}: imgtool writes no swap_info"
        );
        let mut p = MemStorage::new(erased_primary(*erased));
        let ps = read_state(&mut p, whole(SLOT), &l).unwrap();
        assert_eq!(trailer::swap_type(&ps, &s, mode), *want, "{opts:?}");
        // With another max-align the magic is not ours: BAD.
        let other = layout(if *a == 8 { 16 } else { 8 }, 1, *erased);
        assert_eq!(
            read_state(&mut mem, whole(SLOT), &other).unwrap().magic,
            MagicState::Bad
        );
        // The slot image verifies with the trailer after it.
        verify(&bytes, Some(&k.public)).unwrap();
        let info = dumpinfo(&file);
        assert_eq!(
            info["trailer"]["magic"].as_str().unwrap(),
            hex(&l.magic()),
            "{opts:?}"
        );
    }
}

/// An image from imgtool without a trailer, extended to the slot size
/// with the erased value (as an agent writes it to the secondary slot).
fn unpadded_slot(dir: &TempDir, name: &str, erased: u8) -> Vec<u8> {
    let extra: &[&str] = if erased == 0 { &["-R", "0"] } else { &[] };
    let file = sign(dir, name, Some(key("ecdsa-p256", 0)), extra);
    let mut bytes = std::fs::read(file).unwrap();
    bytes.resize(SLOT as usize, erased);
    bytes
}

#[test]
fn trailers_we_write_read_back_through_dumpinfo() {
    let dir = TempDir::new("ours");
    let combos: &[(u32, u32)] = &[(8, 1), (8, 4), (8, 8), (16, 4), (16, 16), (32, 8), (32, 32)];
    for &erased in &[0xffu8, 0x00] {
        let base = unpadded_slot(&dir, &format!("base-{erased}.bin"), erased);
        for &(a, w) in combos {
            let l = layout(a, w, erased);
            for permanent in [false, true] {
                let path = dir.join(&format!("sec-{a}-{w}-{erased}-{permanent}.bin"));
                std::fs::write(&path, &base).unwrap();
                let mut f = FileStorage::open(&path).unwrap();
                assert_eq!(
                    set_pending(&mut f, whole(SLOT), &l, permanent).unwrap(),
                    Outcome::Written
                );
                assert_eq!(
                    set_pending(&mut f, whole(SLOT), &l, !permanent).unwrap(),
                    Outcome::Unchanged,
                    "a GOOD magic is never rewritten"
                );
                drop(f);
                let info = dumpinfo(&path);
                let t = &info["trailer"];
                let ctx = format!("A={a} w={w} erased={erased:#x} perm={permanent}");
                assert_eq!(t["magic"].as_str().unwrap(), hex(&l.magic()), "{ctx}");
                let want_ok = if permanent { 1 } else { u64::from(erased) };
                assert_eq!(t["image_ok"], want_ok, "{ctx}");
                assert_eq!(t["swap_info"], if permanent { 3 } else { 2 }, "{ctx}");
                assert_eq!(t["copy_done"], u64::from(erased), "{ctx}");
                // Exactly the cells of spec 1.6 changed, nothing else.
                let after = std::fs::read(&path).unwrap();
                let changed: Vec<usize> =
                    (0..after.len()).filter(|&i| after[i] != base[i]).collect();
                let s = SLOT as usize;
                let mut expected = vec![l.swap_info_off(SLOT) as usize];
                if permanent {
                    expected.insert(0, l.image_ok_off(SLOT) as usize);
                }
                expected.sort();
                let outside_magic: Vec<usize> =
                    changed.iter().copied().filter(|&i| i < s - 16).collect();
                assert_eq!(outside_magic, expected, "{ctx}");
                // Our own reader agrees.
                let mut mem = MemStorage::new(after);
                let st = read_state(&mut mem, whole(SLOT), &l).unwrap();
                assert_eq!(st.magic, MagicState::Good);
                assert_eq!(
                    st.swap_type,
                    if permanent {
                        SwapType::Perm
                    } else {
                        SwapType::Test
                    }
                );
                assert_eq!(st.image_ok, if permanent { Flag::Set } else { Flag::Unset });
            }
        }
    }
}

#[test]
fn pending_perm_equals_imgtool_confirm_but_for_swap_info() {
    // imgtool --confirm writes magic + image_ok; MCUboot's set_pending(1)
    // also writes swap_info = 3. Compare the rest byte for byte.
    let dir = TempDir::new("cmp");
    let k = key("ecdsa-p256", 0);
    for (opts, a) in [
        (vec!["--align", "8"], 8u32),
        (vec!["--align", "16"], 16),
        (vec!["--max-align", "32"], 32),
    ] {
        let mut conf = opts.clone();
        conf.push("--confirm");
        let theirs = std::fs::read(sign(&dir, "c.bin", Some(k), &conf)).unwrap();
        let mut ours = std::fs::read(sign(&dir, "u.bin", Some(k), &opts)).unwrap();
        ours.resize(SLOT as usize, 0xff);
        let l = layout(a, 1, 0xff);
        let mut mem = MemStorage::new(ours);
        set_pending(&mut mem, whole(SLOT), &l, true).unwrap();
        let mut ours = mem.into_inner();
        let si = l.swap_info_off(SLOT) as usize;
        assert_eq!(ours[si], 3);
        ours[si] = 0xff;
        // ECDSA signatures are randomised: compare the trailer region.
        let tail = SLOT as usize - 4096;
        assert!(
            ours[tail..] == theirs[tail..],
            "A={a}: trailer differs from imgtool --confirm"
        );
    }
}

#[test]
fn confirm_in_primary_reads_back_through_dumpinfo() {
    let dir = TempDir::new("confirm");
    let k = key("ecdsa-p256", 0);
    for (opts, a) in [
        (vec!["--align", "8", "--pad"], 8u32),
        (vec!["--align", "16", "--pad"], 16),
        (vec!["--max-align", "32", "--pad"], 32),
    ] {
        let l = layout(a, 8.min(a), 0xff);
        let path = sign(&dir, &format!("primary-{a}.bin"), Some(k), &opts);
        let mut f = FileStorage::open(&path).unwrap();
        // What the bootloader leaves after a TEST swap: copy_done set.
        f.write(l.copy_done_off(SLOT), &[1]).unwrap();
        let erased = vec![0xffu8; SLOT as usize];
        let sec = read_state(&mut MemStorage::new(erased), whole(SLOT), &l).unwrap();
        let before = read_state(&mut f, whole(SLOT), &l).unwrap();
        assert_eq!(
            trailer::swap_type(&before, &sec, Mode::SwapScratch),
            SwapType::Revert
        );
        assert_eq!(
            set_confirmed(&mut f, whole(SLOT), &l).unwrap(),
            Outcome::Written
        );
        assert_eq!(
            set_confirmed(&mut f, whole(SLOT), &l).unwrap(),
            Outcome::Unchanged
        );
        let after = read_state(&mut f, whole(SLOT), &l).unwrap();
        assert_eq!(
            trailer::swap_type(&after, &sec, Mode::SwapScratch),
            SwapType::None
        );
        drop(f);
        let t = &dumpinfo(&path)["trailer"];
        assert_eq!(t["image_ok"], 1, "A={a}");
        assert_eq!(t["copy_done"], 1, "A={a}");
    }
}
