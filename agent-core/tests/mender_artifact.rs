//! The reader against Debian's `mender-artifact` 3.9: every fixture is made
//! by the real tool at test time; our metadata must equal what
//! `mender-artifact read` reports, and payload bytes must equal the inputs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;

use updraft_core::artifact::Error;

/// Build an artifact with mender-artifact, read it with both tools, and
/// compare everything. Returns the artifact bytes.
fn check(work: &Work, name: &str, args: &[&str], sign: Sign, inputs: &[&str]) -> Vec<u8> {
    let bytes = work.mender_write(name, args, sign);
    let theirs = work.mender_read(name, sign);
    let key: Vec<_> = sign.verifying_key().into_iter().collect();
    let out = read_all(&bytes, &key);
    if let Err(e) = &out.result {
        panic!("{name}: our reader rejected a valid artifact: {e}");
    }
    assert_eq!(out.events.last(), Some(&Ev::Done), "{name}");
    let ours = out.metadata.clone().expect("a Header event");
    assert_eq!(
        ours, theirs,
        "{name}: metadata differs from `mender-artifact read`"
    );
    // Payload bytes equal the input files, in order.
    let payloads: Vec<&Vec<u8>> = out
        .events
        .iter()
        .filter_map(|e| match e {
            Ev::Payload(d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(
        payloads.len(),
        inputs.len(),
        "{name}: number of payload files"
    );
    for (data, input) in payloads.iter().zip(inputs) {
        let expected = std::fs::read(work.path(input)).unwrap();
        assert!(
            **data == expected,
            "{name}: payload bytes of {input} differ from the input file"
        );
    }
    // Without keys, a signed artifact reads too and says it is signed.
    if sign != Sign::None {
        let out = read_all(&bytes, &[]);
        assert!(
            out.result.is_ok(),
            "{name}: unverified read failed: {:?}",
            out.result
        );
        assert!(out
            .metadata
            .unwrap()
            .signature
            .starts_with("signed but no key"));
    }
    bytes
}

fn rootfs_work() -> Work {
    let w = Work::new();
    w.file("rootfs.ext4", 300_000, 1);
    w
}

fn sign_modes() -> Vec<Sign> {
    let mut v = vec![Sign::None, Sign::Ec];
    if cfg!(feature = "alloc") {
        v.push(Sign::Rsa);
    }
    v
}

fn compressions() -> Vec<&'static str> {
    let mut v = vec!["gzip", "none"];
    if cfg!(feature = "std") {
        v.push("lzma");
    }
    v
}

#[test]
fn rootfs_image_every_compression_and_signature() {
    let w = rootfs_work();
    for comp in compressions() {
        for sign in sign_modes() {
            let name = format!("rootfs-{comp}-{sign:?}.mender");
            check(
                &w,
                &name,
                &[
                    "rootfs-image",
                    "--no-progress",
                    "-n",
                    "rootfs-1",
                    "-t",
                    "qemux86-64",
                    "-f",
                    "rootfs.ext4",
                    "--compression",
                    comp,
                ],
                sign,
                &["rootfs.ext4"],
            );
        }
    }
}

#[test]
fn module_image_one_and_several_files_with_meta_data() {
    let w = Work::new();
    w.text("dest_dir", "/opt/app\n");
    w.text("filename", "app.bin\n");
    w.text("permissions", "0755\n");
    w.file("payload.bin", 2 * 1024 * 1024 + 17, 2);
    w.file("empty", 0, 3);
    w.text(
        "meta.json",
        r#"{"key":"value","num":42,"list":[1,2],"nested":{"a":"b"}}"#,
    );
    for comp in compressions() {
        check(
            &w,
            &format!("m1-{comp}.mender"),
            &[
                "module-image",
                "-T",
                "single-file",
                "-n",
                "m1",
                "-t",
                "board",
                "-f",
                "payload.bin",
                "--compression",
                comp,
            ],
            Sign::Ec,
            &["payload.bin"],
        );
        check(
            &w,
            &format!("m4-{comp}.mender"),
            &[
                "module-image",
                "-T",
                "single-file",
                "-n",
                "m4",
                "-t",
                "board",
                "-t",
                "other-board",
                "-f",
                "dest_dir",
                "-f",
                "filename",
                "-f",
                "permissions",
                "-f",
                "payload.bin",
                "-f",
                "empty",
                "-m",
                "meta.json",
                "--compression",
                comp,
            ],
            Sign::None,
            &[
                "dest_dir",
                "filename",
                "permissions",
                "payload.bin",
                "empty",
            ],
        );
    }
}

#[test]
fn state_scripts_are_reported_in_order_with_their_bytes() {
    let w = rootfs_work();
    let names = [
        "ArtifactInstall_Enter_00",
        "ArtifactInstall_Leave_10",
        "ArtifactCommit_Enter_05",
    ];
    for (i, n) in names.iter().enumerate() {
        w.text(n, &format!("#!/bin/sh\necho script {i}\n"));
        std::fs::set_permissions(
            w.path(n),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
    }
    let bytes = check(
        &w,
        "scripts.mender",
        &[
            "rootfs-image",
            "--no-progress",
            "-n",
            "s1",
            "-t",
            "board",
            "-f",
            "rootfs.ext4",
            "-s",
            names[0],
            "-s",
            names[1],
            "-s",
            names[2],
        ],
        Sign::Ec,
        &["rootfs.ext4"],
    );
    let key = [Sign::Ec.verifying_key().unwrap()];
    let out = read_all(&bytes, &key);
    let mut seen = Vec::new();
    for pair in out.events.windows(2) {
        if let (Ev::ScriptStart(n, size), Ev::Script(data)) = (&pair[0], &pair[1]) {
            assert_eq!(*size as usize, data.len());
            assert_eq!(data, &std::fs::read(w.path(n)).unwrap());
            seen.push(n.clone());
        }
    }
    // mender-artifact 3.9 stores scripts in Go map order (random), not in
    // command-line order: compare as sets.
    seen.sort();
    let mut expected = names.map(String::from).to_vec();
    expected.sort();
    assert_eq!(seen, expected);
    // Scripts come before the Header event, payloads after it.
    let header = out
        .events
        .iter()
        .position(|e| matches!(e, Ev::Header(_)))
        .unwrap();
    let last_script = out
        .events
        .iter()
        .rposition(|e| matches!(e, Ev::ScriptEnd))
        .unwrap();
    let first_payload = out
        .events
        .iter()
        .position(|e| matches!(e, Ev::PayloadStart(..)))
        .unwrap();
    assert!(last_script < header && header < first_payload);
}

#[test]
fn bootstrap_artifact_has_an_empty_payload() {
    let w = Work::new();
    for comp in compressions() {
        let bytes = check(
            &w,
            &format!("boot-{comp}.mender"),
            &[
                "bootstrap-artifact",
                "--no-progress",
                "-n",
                "boot-1",
                "-t",
                "board",
                "--compression",
                comp,
            ],
            Sign::None,
            &[],
        );
        let out = read_all(&bytes, &[]);
        assert!(!out.events.iter().any(|e| matches!(e, Ev::PayloadStart(..))));
    }
}

#[test]
fn augmented_artifact_merges_the_augment_headers() {
    let w = Work::new();
    w.file("payload.bin", 5000, 4);
    w.file("augment.bin", 7000, 5);
    let bytes = check(
        &w,
        "aug.mender",
        &[
            "module-image",
            "-T",
            "single-file",
            "-n",
            "aug-1",
            "-t",
            "board",
            "-f",
            "payload.bin",
            "--augment-file",
            "augment.bin",
            "--augment-provides",
            "aug.key:aug-value",
            "--augment-type",
            "single-file",
        ],
        Sign::Ec,
        &["payload.bin", "augment.bin"],
    );
    let out = read_all(&bytes, &[Sign::Ec.verifying_key().unwrap()]);
    let meta = out.metadata.unwrap();
    assert_eq!(
        meta.payloads[0].provides.get("aug.key").map(String::as_str),
        Some("aug-value")
    );
}

#[test]
fn provides_depends_and_clears() {
    let w = rootfs_work();
    check(
        &w,
        "pdc.mender",
        &[
            "rootfs-image",
            "--no-progress",
            "-n",
            "full-depends",
            "-t",
            "qemux86-64",
            "-t",
            "rpi4",
            "-f",
            "rootfs.ext4",
            "-N",
            "release-1",
            "-N",
            "release-0",
            "-G",
            "groupA",
            "-g",
            "groupB",
            "-p",
            "custom.key:custom-value",
            "-p",
            "rootfs-image.myapp.version:2.0.1",
            "-d",
            "rootfs-image.version:base-1",
            "--clears-provides",
            "foo.*",
        ],
        Sign::None,
        &["rootfs.ext4"],
    );
    check(
        &w,
        "noclears.mender",
        &[
            "rootfs-image",
            "--no-progress",
            "-n",
            "nc",
            "-t",
            "board",
            "-f",
            "rootfs.ext4",
            "--no-default-clears-provides",
        ],
        Sign::None,
        &["rootfs.ext4"],
    );
}

#[test]
fn software_version_options() {
    let w = rootfs_work();
    w.file("app.bin", 1000, 6);
    let cases: [&[&str]; 4] = [
        &[
            "rootfs-image",
            "--no-progress",
            "-n",
            "sv",
            "-t",
            "b",
            "-f",
            "rootfs.ext4",
            "--software-version",
            "1.2.3",
        ],
        &[
            "rootfs-image",
            "--no-progress",
            "-n",
            "sv",
            "-t",
            "b",
            "-f",
            "rootfs.ext4",
            "--software-name",
            "myapp",
            "--software-version",
            "7",
        ],
        &[
            "module-image",
            "-T",
            "app",
            "-n",
            "sv",
            "-t",
            "b",
            "-f",
            "app.bin",
            "--software-filesystem",
            "data-fs",
            "--software-name",
            "app",
        ],
        &[
            "rootfs-image",
            "--no-progress",
            "-n",
            "sv",
            "-t",
            "b",
            "-f",
            "rootfs.ext4",
            "--no-default-software-version",
        ],
    ];
    for (i, args) in cases.iter().enumerate() {
        let input = if args[0] == "module-image" {
            "app.bin"
        } else {
            "rootfs.ext4"
        };
        check(&w, &format!("sv{i}.mender"), args, Sign::None, &[input]);
    }
}

#[test]
fn long_file_names_use_pax_headers() {
    let w = Work::new();
    let long = format!("{}.bin", "a-very-long-payload-file-name-".repeat(5));
    assert!(long.len() > 100);
    w.file(&long, 3000, 7);
    let bytes = check(
        &w,
        "long.mender",
        &[
            "module-image",
            "-T",
            "single-file",
            "-n",
            "long",
            "-t",
            "b",
            "-f",
            &long,
            "--compression",
            "none",
        ],
        Sign::None,
        &[&long],
    );
    let out = read_all(&bytes, &[]);
    assert!(out
        .events
        .iter()
        .any(|e| matches!(e, Ev::PayloadStart(_, n, ..) if *n == long)));
}

#[test]
fn any_split_gives_the_same_events() {
    let w = rootfs_work();
    w.text("ArtifactInstall_Enter_00", "#!/bin/sh\ntrue\n");
    for comp in compressions() {
        let bytes = w.mender_write(
            &format!("split-{comp}.mender"),
            &[
                "rootfs-image",
                "--no-progress",
                "-n",
                "split",
                "-t",
                "b",
                "-f",
                "rootfs.ext4",
                "-s",
                "ArtifactInstall_Enter_00",
                "--compression",
                comp,
            ],
            Sign::Ec,
        );
        let key = [Sign::Ec.verifying_key().unwrap()];
        let whole = read_all(&bytes, &key);
        assert!(whole.result.is_ok(), "{:?}", whole.result);
        let one = read_with(&bytes, &key, || 1);
        assert_eq!(one.events, whole.events, "{comp}: 1-byte feeding");
        let block = read_with(&bytes, &key, || 64 * 1024);
        assert_eq!(block.events, whole.events, "{comp}: 64 KiB feeding");
        for seed in 1..=8 {
            let mut rng = Rng::new(seed);
            let rand = read_with(&bytes, &key, || 1 + rng.below(5000));
            assert_eq!(
                rand.events, whole.events,
                "{comp}: random split, seed {seed}"
            );
        }
    }
}

#[test]
fn lzma_without_std_is_a_clear_error() {
    if cfg!(feature = "std") {
        return;
    }
    let w = rootfs_work();
    let bytes = w.mender_write(
        "x.mender",
        &[
            "rootfs-image",
            "--no-progress",
            "-n",
            "x",
            "-t",
            "b",
            "-f",
            "rootfs.ext4",
            "--compression",
            "lzma",
        ],
        Sign::None,
    );
    let err = read_all(&bytes, &[]).unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    assert!(err.to_string().contains("xz"), "{err}");
}

/// zstd artifacts as mender-artifact 3.10+ writes them (`.zst` members):
/// Debian's 3.9 cannot, so repack a `--compression none` artifact with the
/// real `zstd` tool.
#[cfg(feature = "std")]
fn zstd_artifact(w: &Work) -> Vec<u8> {
    use std::process::Command;
    let plain = w.mender_write(
        "plain.mender",
        &[
            "rootfs-image",
            "--no-progress",
            "-n",
            "z1",
            "-t",
            "b",
            "-f",
            "rootfs.ext4",
            "--compression",
            "none",
        ],
        Sign::None,
    );
    let zstd = |data: &[u8]| {
        let p = w.path("member");
        std::fs::write(&p, data).unwrap();
        run(Command::new("zstd")
            .args(["-q", "-f", "--check", "-o"])
            .arg(w.path("member.zst"))
            .arg(&p));
        std::fs::read(w.path("member.zst")).unwrap()
    };
    let mut out = Vec::new();
    let mut manifest = String::new();
    for (name, data) in members(&plain) {
        match name.as_str() {
            "header.tar" | "data/0000.tar" => out.push((format!("{name}.zst"), zstd(&data))),
            "manifest" => manifest = String::from_utf8(data).unwrap(),
            _ => out.push((name, data)),
        }
    }
    let header = &out.iter().find(|(n, _)| n == "header.tar.zst").unwrap().1;
    let hex = hex(&sha256(header));
    let manifest: String = manifest
        .lines()
        .map(|l| {
            if l.ends_with("  header.tar") {
                format!("{hex}  header.tar.zst\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    out.insert(1, ("manifest".into(), manifest.into_bytes()));
    pack(&out)
}

#[cfg(feature = "std")]
#[test]
fn zstd_members_are_read_like_the_others() {
    let w = Work::new();
    w.file("rootfs.ext4", 700_000, 9); // several 128 KiB zstd blocks
    let bytes = zstd_artifact(&w);
    let whole = read_all(&bytes, &[]);
    assert!(whole.result.is_ok(), "{:?}", whole.result);
    let payload = whole
        .events
        .iter()
        .find_map(|e| match e {
            Ev::Payload(d) => Some(d),
            _ => None,
        })
        .unwrap();
    assert!(*payload == std::fs::read(w.path("rootfs.ext4")).unwrap());
    for seed in 1..=4 {
        let mut rng = Rng::new(seed);
        assert_eq!(
            read_with(&bytes, &[], || 1 + rng.below(70_000)).events,
            whole.events
        );
    }
    assert_eq!(read_with(&bytes, &[], || 1).events, whole.events);
    // A flipped byte in the compressed payload, and a cut zstd stream.
    let bad = edit(&bytes, "data/0000.tar.zst", |d| {
        let i = d.len() / 2;
        d[i] ^= 0x20;
    });
    let err = read_all(&bad, &[]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Decode { .. } | Error::DigestMismatch { .. } | Error::Tar { .. }
        ),
        "{err:?}"
    );
    let cut = edit(&bytes, "data/0000.tar.zst", |d| d.truncate(d.len() - 100));
    assert!(matches!(
        read_all(&cut, &[]).unwrap_err(),
        Error::Decode { .. }
    ));
}
