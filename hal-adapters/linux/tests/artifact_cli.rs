//! `updraft artifact read|validate` against `mender-artifact read|validate`
//! on artifacts the real tool makes at test time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn updraft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_updraft"))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {cmd:?}: {e} (run scripts/test.sh to install the tools)")
    })
}

fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Self {
        let d = Dir(tempfile::tempdir().unwrap());
        let p = |n: &str| d.p(n);
        std::fs::write(p("rootfs.ext4"), vec![7u8; 150_000]).unwrap();
        std::fs::write(p("payload.txt"), b"hello\n").unwrap();
        std::fs::write(p("meta.json"), br#"{"b":[1,2],"a":{"x":"y"}}"#).unwrap();
        std::fs::write(p("ArtifactInstall_Enter_00"), b"#!/bin/sh\n").unwrap();
        ok(Command::new("openssl")
            .args([
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
            ])
            .arg(p("ec.key")));
        ok(Command::new("openssl")
            .args(["ec", "-pubout", "-in"])
            .arg(p("ec.key"))
            .arg("-out")
            .arg(p("ec.pub")));
        ok(Command::new("openssl")
            .args(["genrsa", "-traditional", "-out"])
            .arg(p("rsa.key"))
            .arg("2048"));
        ok(Command::new("openssl")
            .args(["rsa", "-pubout", "-in"])
            .arg(p("rsa.key"))
            .arg("-out")
            .arg(p("rsa.pub")));
        ok(Command::new("openssl")
            .args(["rsa", "-RSAPublicKey_out", "-in"])
            .arg(p("rsa.key"))
            .arg("-out")
            .arg(p("rsa.pkcs1.pub")));
        d
    }
    fn p(&self, n: &str) -> PathBuf {
        self.0.path().join(n)
    }
    fn write(&self, out: &str, args: &[&str]) -> PathBuf {
        ok(Command::new("mender-artifact")
            .current_dir(self.0.path())
            .arg("write")
            .args(args)
            .arg("-o")
            .arg(self.p(out)));
        self.p(out)
    }
}

fn mender_read(art: &Path, key: Option<&Path>) -> String {
    let mut c = Command::new("mender-artifact");
    c.arg("read");
    if let Some(k) = key {
        c.arg("-k").arg(k);
    }
    ok(c.arg(art).stderr(Stdio::null()))
}

fn our_read(art: &Path, key: Option<&Path>) -> String {
    let mut c = updraft();
    c.args(["artifact", "read"]);
    if let Some(k) = key {
        c.arg("-k").arg(k);
    }
    ok(c.arg(art))
}

#[test]
fn read_prints_what_mender_artifact_prints() {
    let d = Dir::new();
    let ec_key = d.p("ec.key");
    let ec = ec_key.to_str().unwrap();
    let cases: Vec<(&str, Vec<&str>, bool)> = vec![
        (
            "r.mender",
            vec![
                "rootfs-image",
                "--no-progress",
                "-n",
                "r1",
                "-t",
                "a",
                "-t",
                "b",
                "-f",
                "rootfs.ext4",
                "-k",
                ec,
                "-s",
                "ArtifactInstall_Enter_00",
                "-N",
                "r0",
                "-N",
                "rx",
                "-G",
                "g1",
                "-g",
                "g2",
                "-p",
                "k:v",
                "-d",
                "rootfs-image.version:1",
            ],
            true,
        ),
        (
            "m.mender",
            vec![
                "module-image",
                "-T",
                "single-file",
                "-n",
                "m1",
                "-t",
                "a",
                "-f",
                "payload.txt",
                "-f",
                "rootfs.ext4",
                "-m",
                "meta.json",
                "--compression",
                "none",
            ],
            false,
        ),
        (
            "b.mender",
            vec![
                "bootstrap-artifact",
                "--no-progress",
                "-n",
                "b1",
                "-t",
                "a",
                "--compression",
                "lzma",
            ],
            false,
        ),
        (
            "aug.mender",
            vec![
                "module-image",
                "-T",
                "single-file",
                "-n",
                "aug",
                "-t",
                "a",
                "-f",
                "payload.txt",
                "-k",
                ec,
                "--augment-file",
                "rootfs.ext4",
                "--augment-provides",
                "x:y",
                "--augment-type",
                "single-file",
            ],
            true,
        ),
    ];
    for (name, args, signed) in cases {
        let art = d.write(name, &args);
        // Without a key.
        assert_eq!(
            our_read(&art, None),
            mender_read(&art, None),
            "{name}, no key"
        );
        if signed {
            let k = d.p("ec.pub");
            assert_eq!(
                our_read(&art, Some(&k)),
                mender_read(&art, Some(&k)),
                "{name}, with key"
            );
        }
    }
}

#[test]
fn validate_exit_codes_and_messages() {
    let d = Dir::new();
    let rsa_key = d.p("rsa.key");
    let art = d.write(
        "v.mender",
        &[
            "rootfs-image",
            "--no-progress",
            "-n",
            "v",
            "-t",
            "a",
            "-f",
            "rootfs.ext4",
            "-k",
            rsa_key.to_str().unwrap(),
        ],
    );
    // SPKI and PKCS#1 RSA public keys both work.
    for key in ["rsa.pub", "rsa.pkcs1.pub"] {
        let out = ok(updraft()
            .args(["artifact", "validate", "-k"])
            .arg(d.p(key))
            .arg(&art));
        assert!(out.contains("validated successfully"), "{out}");
    }
    // Several keys: rotation.
    ok(updraft()
        .args(["artifact", "validate", "-k"])
        .arg(d.p("ec.pub"))
        .arg("-k")
        .arg(d.p("rsa.pub"))
        .arg(&art));
    // Wrong kind of key: non-zero, the reason on stderr.
    let out = run(updraft()
        .args(["artifact", "validate", "-k"])
        .arg(d.p("ec.pub"))
        .arg(&art));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("signature verification failed"), "{err}");
    // A private key where a public key is expected.
    let out = run(updraft()
        .args(["artifact", "validate", "-k"])
        .arg(d.p("ec.key"))
        .arg(&art));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("private key"));
    // Truncated: non-zero, says so.
    let bytes = std::fs::read(&art).unwrap();
    std::fs::write(d.p("cut.mender"), &bytes[..bytes.len() / 2]).unwrap();
    let out = run(updraft()
        .args(["artifact", "validate"])
        .arg(d.p("cut.mender")));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("truncated"));
    // mender-artifact agrees these are valid / invalid.
    assert!(run(Command::new("mender-artifact")
        .args(["validate", "-k"])
        .arg(d.p("rsa.pub"))
        .arg(&art))
    .status
    .success());
    assert!(!run(Command::new("mender-artifact")
        .args(["validate"])
        .arg(d.p("cut.mender")))
    .status
    .success());
}

#[test]
fn reads_from_stdin() {
    let d = Dir::new();
    let art = d.write(
        "s.mender",
        &[
            "rootfs-image",
            "--no-progress",
            "-n",
            "s",
            "-t",
            "a",
            "-f",
            "rootfs.ext4",
        ],
    );
    let out = ok(updraft()
        .args(["artifact", "read", "-"])
        .stdin(std::fs::File::open(&art).unwrap()));
    assert_eq!(out, mender_read(&art, None));
}
