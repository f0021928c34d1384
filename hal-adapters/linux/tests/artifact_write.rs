//! `updraft artifact write|sign` against `mender-artifact` 3.9: the same
//! flags give artifacts that `mender-artifact validate` accepts and
//! `mender-artifact read` reports identically; signatures verify both ways.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use updraft_core::artifact::{Event, Reader};
use updraft_linux::artifact::write::{self, Compression, Payload, Spec};

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {cmd:?}: {e} (run scripts/test.sh to install the tools)")
    })
}

fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Self {
        let d = Dir(tempfile::tempdir().unwrap());
        let p = |n: &str| d.p(n);
        let mut seed = 0x1234_5678_9abc_def1u64;
        let data: Vec<u8> = (0..400_000)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 32) as u8
            })
            .collect();
        std::fs::write(p("rootfs.ext4"), &data).unwrap();
        std::fs::write(p("app.bin"), &data[..70_000]).unwrap();
        std::fs::write(p("empty"), b"").unwrap();
        std::fs::write(p("conf.txt"), b"key=value\n").unwrap();
        std::fs::write(p("meta.json"), br#"{"z":1,"a":{"b":[1,2]}}"#).unwrap();
        for s in ["ArtifactInstall_Enter_00", "ArtifactCommit_Leave_50_notify"] {
            std::fs::write(p(s), b"#!/bin/sh\nexit 0\n").unwrap();
            std::fs::set_permissions(p(s), std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        }
        let s = |n: &str| p(n).to_str().unwrap().to_owned();
        ok(Command::new("openssl")
            .args(["genrsa", "-traditional", "-out", &s("rsa.key"), "3072"])
            .stderr(Stdio::null()));
        ok(Command::new("openssl").args([
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            &s("rsa.key"),
            "-out",
            &s("rsa8.key"),
        ]));
        ok(Command::new("openssl")
            .args([
                "rsa",
                "-in",
                &s("rsa.key"),
                "-pubout",
                "-out",
                &s("rsa.pub"),
            ])
            .stderr(Stdio::null()));
        ok(Command::new("openssl").args([
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            &s("ec.key"),
        ]));
        ok(Command::new("openssl").args([
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            &s("ec.key"),
            "-out",
            &s("ec8.key"),
        ]));
        ok(Command::new("openssl")
            .args(["ec", "-in", &s("ec.key"), "-pubout", "-out", &s("ec.pub")])
            .stderr(Stdio::null()));
        d
    }
    fn p(&self, n: &str) -> PathBuf {
        self.0.path().join(n)
    }
}

fn updraft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_updraft"))
}

fn mender_read(art: &Path, key: Option<&Path>) -> String {
    let mut c = Command::new("mender-artifact");
    c.arg("read");
    if let Some(k) = key {
        c.arg("-k").arg(k);
    }
    ok(c.arg(art).stderr(Stdio::null()))
}

/// Write with both tools (same flags), then compare.
fn same_as_mender(
    d: &Dir,
    label: &str,
    cmd: &[&str],
    args: &[&str],
    key: Option<(&str, &str, &str)>,
) {
    let ours = d.p(&format!("{label}.ours.mender"));
    let theirs = d.p(&format!("{label}.theirs.mender"));
    let mut u = updraft();
    u.current_dir(d.0.path())
        .args(["artifact", "write"])
        .args(cmd)
        .args(args)
        .arg("-o")
        .arg(&ours);
    let mut m = Command::new("mender-artifact");
    m.current_dir(d.0.path())
        .arg("write")
        .args(cmd)
        .args(args)
        .arg("-o")
        .arg(&theirs);
    if cmd[0] != "module-image" {
        m.arg("--no-progress");
    }
    if let Some((our_key, their_key, _)) = key {
        u.arg("-k").arg(d.p(our_key));
        m.arg("-k").arg(d.p(their_key));
    }
    ok(&mut u);
    ok(m.stderr(Stdio::null()));
    let public = key.map(|(_, _, p)| d.p(p));
    let mut v = Command::new("mender-artifact");
    v.arg("validate");
    if let Some(p) = &public {
        v.arg("-k").arg(p);
    }
    ok(v.arg(&ours).stderr(Stdio::null()));
    let (ours_text, theirs_text) = (
        mender_read(&ours, public.as_deref()),
        mender_read(&theirs, public.as_deref()),
    );
    // File times: Go rounds to the second, we round milliseconds; allow the
    // two to differ by one second at a rounding edge, and compare the rest
    // of the output exactly.
    let split = |t: &str| -> (String, Vec<i64>) {
        let mut rest = String::new();
        let mut times = Vec::new();
        for line in t.lines() {
            if let Some(v) = line.trim().strip_prefix("modified: ") {
                let hms: Vec<i64> = v
                    .split(' ')
                    .nth(1)
                    .unwrap()
                    .split(':')
                    .map(|x| x.parse().unwrap())
                    .collect();
                times.push(hms[0] * 3600 + hms[1] * 60 + hms[2]);
            } else {
                rest.push_str(line);
                rest.push('\n');
            }
        }
        (rest, times)
    };
    // mender-artifact 3.9 stores state scripts in Go map order (random):
    // compare the script list as a set.
    let sort_scripts = |t: &str| -> String {
        let mut lines: Vec<&str> = t.lines().collect();
        if let Some(i) = lines.iter().position(|l| *l == "  State scripts:") {
            let end = lines[i + 1..]
                .iter()
                .position(|l| !l.starts_with("    "))
                .map_or(lines.len(), |k| i + 1 + k);
            lines[i + 1..end].sort();
        }
        lines.join("\n")
    };
    let (a, ta) = split(&sort_scripts(&ours_text));
    let (b, tb) = split(&sort_scripts(&theirs_text));
    assert_eq!(
        a, b,
        "{label}: `mender-artifact read` differs between our artifact and theirs"
    );
    assert_eq!(ta.len(), tb.len(), "{label}");
    for (x, y) in ta.iter().zip(&tb) {
        assert!(
            (x - y).abs() <= 1,
            "{label}: file times differ: {ours_text}\n---\n{theirs_text}"
        );
    }
    // Our reader reads it too, with the key when signed.
    let mut r = updraft();
    r.args(["artifact", "validate"]);
    if let Some(p) = &public {
        r.arg("-k").arg(p);
    }
    ok(r.arg(&ours));
}

#[test]
fn every_combination_matches_mender_artifact() {
    let d = Dir::new();
    let keys: [Option<(&str, &str, &str)>; 5] = [
        None,
        Some(("rsa.key", "rsa.key", "rsa.pub")),
        Some(("rsa8.key", "rsa.key", "rsa.pub")),
        Some(("ec.key", "ec.key", "ec.pub")),
        Some(("ec8.key", "ec.key", "ec.pub")),
    ];
    for comp in ["gzip", "none", "lzma"] {
        for (i, key) in keys.iter().enumerate() {
            same_as_mender(
                &d,
                &format!("rootfs-{comp}-{i}"),
                &["rootfs-image"],
                &[
                    "-n",
                    "r1",
                    "-t",
                    "board",
                    "-f",
                    "rootfs.ext4",
                    "--compression",
                    comp,
                ],
                *key,
            );
        }
        same_as_mender(
            &d,
            &format!("mod1-{comp}"),
            &["module-image"],
            &[
                "-T",
                "single-file",
                "-n",
                "m1",
                "-t",
                "a",
                "-f",
                "app.bin",
                "--compression",
                comp,
            ],
            keys[3],
        );
        same_as_mender(
            &d,
            &format!("mod3-{comp}"),
            &["module-image"],
            &[
                "-T",
                "directory",
                "-n",
                "m3",
                "-t",
                "a",
                "-t",
                "b",
                "-f",
                "app.bin",
                "-f",
                "empty",
                "-f",
                "conf.txt",
                "-m",
                "meta.json",
                "--compression",
                comp,
            ],
            None,
        );
        same_as_mender(
            &d,
            &format!("boot-{comp}"),
            &["bootstrap-artifact"],
            &[
                "-n",
                "b1",
                "-t",
                "a",
                "-p",
                "x:y",
                "--clears-provides",
                "c.*",
                "--compression",
                comp,
            ],
            keys[1],
        );
    }
    let everything = [
        "-n",
        "all",
        "-t",
        "a",
        "-t",
        "b",
        "-f",
        "rootfs.ext4",
        "-s",
        "ArtifactInstall_Enter_00",
        "-s",
        "ArtifactCommit_Leave_50_notify",
        "-N",
        "r0",
        "-N",
        "r1",
        "-G",
        "g1",
        "-g",
        "g2",
        "-p",
        "k1:v1",
        "-p",
        "k2:v:with:colons",
        "-d",
        "rootfs-image.version:base",
        "--clears-provides",
        "foo.*",
    ];
    same_as_mender(&d, "everything", &["rootfs-image"], &everything, keys[3]);
    let software: [&[&str]; 5] = [
        &["--software-version", "1.2.3"],
        &["--software-name", "myapp", "--software-version", "7"],
        &["--software-filesystem", "fs1"],
        &["--no-default-software-version"],
        &[
            "--no-default-clears-provides",
            "--clears-provides",
            "only.this",
        ],
    ];
    for (i, extra) in software.iter().enumerate() {
        let mut a = vec!["-n", "sw", "-t", "a", "-f", "rootfs.ext4"];
        a.extend_from_slice(extra);
        same_as_mender(&d, &format!("sw-rootfs-{i}"), &["rootfs-image"], &a, None);
        let mut a = vec!["-T", "mod", "-n", "sw", "-t", "a", "-f", "app.bin"];
        a.extend_from_slice(extra);
        same_as_mender(&d, &format!("sw-module-{i}"), &["module-image"], &a, None);
    }
}

#[test]
fn signatures_verify_both_ways() {
    let d = Dir::new();
    for (key, public) in [("rsa8.key", "rsa.pub"), ("ec8.key", "ec.pub")] {
        let plain = d.p("plain.mender");
        ok(updraft()
            .current_dir(d.0.path())
            .args([
                "artifact",
                "write",
                "rootfs-image",
                "-n",
                "s",
                "-t",
                "a",
                "-f",
                "rootfs.ext4",
                "-o",
            ])
            .arg(&plain));
        // Ours signs, mender-artifact verifies.
        ok(updraft()
            .args(["artifact", "sign", "-k"])
            .arg(d.p(key))
            .arg("-o")
            .arg(d.p("ours.mender"))
            .arg(&plain));
        ok(Command::new("mender-artifact")
            .args(["validate", "-k"])
            .arg(d.p(public))
            .arg(d.p("ours.mender"))
            .stderr(Stdio::null()));
        // Re-sign in place with the other kind of key works too.
        let other = if key.starts_with("rsa") {
            ("ec.key", "ec.pub")
        } else {
            ("rsa.key", "rsa.pub")
        };
        ok(updraft()
            .args(["artifact", "sign", "-k"])
            .arg(d.p(other.0))
            .arg(d.p("ours.mender")));
        ok(Command::new("mender-artifact")
            .args(["validate", "-k"])
            .arg(d.p(other.1))
            .arg(d.p("ours.mender"))
            .stderr(Stdio::null()));
        // mender-artifact signs, ours verifies.
        let tkey = if key.starts_with("rsa") {
            "rsa.key"
        } else {
            "ec.key"
        };
        ok(Command::new("mender-artifact")
            .args(["sign", "-k"])
            .arg(d.p(tkey))
            .arg("-o")
            .arg(d.p("theirs.mender"))
            .arg(&plain)
            .stderr(Stdio::null()));
        ok(updraft()
            .args(["artifact", "validate", "-k"])
            .arg(d.p(public))
            .arg(d.p("theirs.mender")));
    }
    // A damaged artifact is not signed.
    let plain = d.p("plain.mender");
    let mut bytes = std::fs::read(&plain).unwrap();
    let n = bytes.len();
    bytes[n - 3000] ^= 1;
    std::fs::write(d.p("bad.mender"), &bytes).unwrap();
    let out = run(updraft()
        .args(["artifact", "sign", "-k"])
        .arg(d.p("ec.key"))
        .arg(d.p("bad.mender")));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid artifact"));
    assert_eq!(
        std::fs::read(d.p("bad.mender")).unwrap(),
        bytes,
        "a failed sign must leave the file as it was"
    );
}

#[test]
fn bad_input_is_a_clear_error_and_writes_nothing() {
    let d = Dir::new();
    std::fs::write(d.p("Sync_Enter_00"), b"#!/bin/sh\n").unwrap();
    std::fs::write(d.p("Bad_Name"), b"#!/bin/sh\n").unwrap();
    let cases: [(&[&str], &str); 5] = [
        (
            &[
                "rootfs-image",
                "-n",
                "x",
                "-t",
                "a",
                "-f",
                "rootfs.ext4",
                "-s",
                "Sync_Enter_00",
            ],
            "unsupported script state",
        ),
        (
            &[
                "rootfs-image",
                "-n",
                "x",
                "-t",
                "a",
                "-f",
                "rootfs.ext4",
                "-s",
                "Bad_Name",
            ],
            "invalid script name",
        ),
        (
            &["rootfs-image", "-n", "x", "-t", "a", "-f", "missing.ext4"],
            "missing.ext4",
        ),
        (
            &[
                "rootfs-image",
                "-n",
                "x",
                "-t",
                "a",
                "-f",
                "rootfs.ext4",
                "-p",
                "novalue",
            ],
            "KEY:VALUE",
        ),
        (
            &[
                "rootfs-image",
                "-n",
                "x",
                "-t",
                "a",
                "-f",
                "rootfs.ext4",
                "-v",
                "2",
            ],
            "only version 3",
        ),
    ];
    for (args, msg) in cases {
        let out = run(updraft()
            .current_dir(d.0.path())
            .args(["artifact", "write"])
            .args(args)
            .arg("-o")
            .arg(d.p("out.mender")));
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(msg), "{args:?}: {err}");
        assert!(!d.p("out.mender").exists(), "{args:?} left an output file");
    }
}

/// Round trip over random metadata and payload sizes: whatever we write,
/// our reader reads back exactly.
#[test]
fn random_round_trips() {
    let d = Dir::new();
    let mut seed = 42u64;
    let mut rnd = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for case in 0..24 {
        let nfiles = rnd(4) as usize;
        let mut files = Vec::new();
        for f in 0..nfiles {
            let size = match rnd(4) {
                0 => 0,
                1 => rnd(600),
                2 => 511 + rnd(3),
                _ => rnd(300_000),
            } as usize;
            let data: Vec<u8> = (0..size)
                .map(|i| (i as u64 * 31 + case * 7 + f as u64) as u8)
                .collect();
            let p = d.p(&format!("c{case}-f{f}.bin"));
            std::fs::write(&p, &data).unwrap();
            files.push((p, data));
        }
        let word = |r: u64| format!("w{r}-{}", "x".repeat((r % 40) as usize));
        let spec = Spec {
            payload: Some(Payload::ModuleImage {
                module: word(rnd(1000)),
                files: files.iter().map(|(p, _)| p.clone()).collect(),
                meta_data: (rnd(2) == 0)
                    .then(|| serde_json::json!({"k": word(rnd(99)), "n": rnd(1000)}).to_string()),
            }),
            name: word(rnd(1000)),
            device_types: (0..1 + rnd(3)).map(|_| word(rnd(1000))).collect(),
            depends_artifact_names: (0..rnd(3)).map(|_| word(rnd(1000))).collect(),
            provides: (0..rnd(4))
                .map(|i| (format!("k{i}.{}", word(rnd(9))), word(rnd(1000))))
                .collect(),
            depends: (0..rnd(3))
                .map(|i| (format!("d{i}"), word(rnd(1000))))
                .collect(),
            compression: [Compression::None, Compression::Gzip, Compression::Lzma][rnd(3) as usize],
            ..Spec::default()
        };
        let out = d.p(&format!("c{case}.mender"));
        write::write_to_path(&spec, None, &out, |_| {}).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        let mut reader = Reader::new();
        let mut input = &bytes[..];
        let mut got: Vec<(String, Vec<u8>)> = Vec::new();
        let mut name = String::new();
        loop {
            let (n, ev) = reader
                .feed(input)
                .unwrap_or_else(|e| panic!("case {case}: {e}"));
            input = &input[n..];
            match ev {
                None => break,
                Some(Event::Header { metadata, .. }) => {
                    name = metadata.artifact_name().to_owned();
                    let types: Vec<_> = metadata.device_types().map(str::to_owned).collect();
                    assert_eq!(types, spec.device_types, "case {case}");
                    let p = metadata.payload(0).unwrap();
                    for (k, v) in &spec.provides {
                        assert!(
                            p.provides().any(|(a, b)| a == k && b == v),
                            "case {case}: provide {k}"
                        );
                    }
                }
                Some(Event::PayloadStart { name, .. }) => got.push((name.to_owned(), Vec::new())),
                Some(Event::PayloadData(b)) => got.last_mut().unwrap().1.extend_from_slice(b),
                Some(_) => {}
            }
        }
        reader
            .finish()
            .unwrap_or_else(|e| panic!("case {case}: {e}"));
        assert_eq!(name, spec.name);
        assert_eq!(got.len(), files.len(), "case {case}");
        for ((gname, gdata), (p, data)) in got.iter().zip(&files) {
            assert_eq!(gname, p.file_name().unwrap().to_str().unwrap());
            assert!(gdata == data, "case {case}: payload bytes differ");
        }
    }
}
