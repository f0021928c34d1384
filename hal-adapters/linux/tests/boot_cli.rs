//! `updraft boot-env` and `updraft mcuboot` against the real tools:
//! `mkenvimage`, `fw_printenv`/`fw_setenv` (libubootenv), `grub-editenv`,
//! and imgtool 2.5.0 (`$IMGTOOL`, else the venv `scripts/test.sh` makes).
//! Fixtures are made at test time in temporary directories.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn updraft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_updraft"))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| {
        panic!(
            "cannot run {:?}: {e} (the tool is missing: run scripts/test.sh to install it)",
            cmd.get_program()
        )
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

fn fails(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        !out.status.success(),
        "{cmd:?} should have failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn imgtool() -> Command {
    let path = std::env::var_os("IMGTOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/updraft-imgtool-venv/bin/imgtool"));
    assert!(
        path.exists(),
        "imgtool not found at {} (set $IMGTOOL or run scripts/test.sh to install imgtool 2.5.0)",
        path.display()
    );
    Command::new(path)
}

// ---------------------------------------------------------------- U-Boot

/// A `mkenvimage -r` pair of 0x4000-byte copies and its fw_env.config.
fn uboot_pair(dir: &Path) -> PathBuf {
    std::fs::write(
        dir.join("env.txt"),
        "bootcmd=run mender_boot\nmender_boot_part=2\nbootcount=0\nupgrade_available=0\n",
    )
    .unwrap();
    ok(Command::new("mkenvimage")
        .args(["-r", "-s", "0x4000", "-o"])
        .arg(dir.join("a.bin"))
        .arg(dir.join("env.txt")));
    std::fs::copy(dir.join("a.bin"), dir.join("b.bin")).unwrap();
    let config = dir.join("fw_env.config");
    std::fs::write(
        &config,
        format!(
            "{} 0x0 0x4000\n{} 0x0 0x4000\n",
            dir.join("a.bin").display(),
            dir.join("b.bin").display()
        ),
    )
    .unwrap();
    config
}

fn fw_printenv(config: &Path, args: &[&str]) -> String {
    ok(Command::new("fw_printenv")
        .arg("-c")
        .arg(config)
        .args(["-f", "/nonexistent"])
        .args(args))
}

fn our_print(config: &Path, args: &[&str]) -> String {
    ok(updraft()
        .args(["boot-env", "print", "-c"])
        .arg(config)
        .args(args))
}

#[test]
fn uboot_print_matches_fw_printenv() {
    let dir = tempfile::tempdir().unwrap();
    let config = uboot_pair(dir.path());
    assert_eq!(our_print(&config, &[]), fw_printenv(&config, &[]));
    // After fw_setenv (copy 1 active, a value with a space and an empty one).
    ok(Command::new("fw_setenv").arg("-c").arg(&config).args([
        "upgrade_available",
        "1",
        "msg",
        "a b=c",
        "empty",
        "",
    ]));
    assert_eq!(our_print(&config, &[]), fw_printenv(&config, &[]));
    assert_eq!(
        our_print(&config, &["msg", "bootcount"]),
        fw_printenv(&config, &["msg", "bootcount"])
    );
    assert_eq!(
        our_print(&config, &["-n", "msg"]),
        fw_printenv(&config, &["-n", "msg"])
    );
    // A missing name is an error (fw_printenv prints `NAME=` and exits 0).
    let err = fails(
        updraft()
            .args(["boot-env", "print", "-c"])
            .arg(&config)
            .arg("nope"),
    );
    assert!(err.contains("\"nope\" is not set"), "{err}");
    // -n needs one name.
    fails(
        updraft()
            .args(["boot-env", "print", "-n", "-c"])
            .arg(&config),
    );
    // A missing config is a readable error.
    let err = fails(updraft().args(["boot-env", "print", "-c", "/nonexistent.config"]));
    assert!(err.contains("/nonexistent.config"), "{err}");
}

#[test]
fn uboot_set_read_by_fw_printenv() {
    let dir = tempfile::tempdir().unwrap();
    let config = uboot_pair(dir.path());
    ok(updraft()
        .args(["boot-env", "set", "-c"])
        .arg(&config)
        .args([
            "mender_boot_part=3",
            "upgrade_available=1",
            "empty=",
            "bootcmd",
            "eq=k=v",
        ]));
    assert_eq!(
        fw_printenv(&config, &[]),
        "bootcount=0\nempty=\neq=k=v\nmender_boot_part=3\nupgrade_available=1\n"
    );
    // fw_setenv goes on from our write, and we read its result.
    ok(Command::new("fw_setenv")
        .arg("-c")
        .arg(&config)
        .args(["bootcount", "1"]));
    assert_eq!(our_print(&config, &[]), fw_printenv(&config, &[]));
    assert!(our_print(&config, &[]).contains("bootcount=1\n"));
    // A name with '=' is refused, nothing written.
    let before = fw_printenv(&config, &[]);
    fails(
        updraft()
            .args(["boot-env", "set", "-c"])
            .arg(&config)
            .arg("=x"),
    );
    assert_eq!(fw_printenv(&config, &[]), before);
}

#[test]
fn uboot_script_like_fw_setenv() {
    let dir = tempfile::tempdir().unwrap();
    let ours = uboot_pair(&dir.path().join("ours").tap_mkdir());
    let theirs = uboot_pair(&dir.path().join("theirs").tap_mkdir());
    let script = dir.path().join("script.txt");
    std::fs::write(
        &script,
        "d 4\ne=5\n# x=1\nbootcount=\n f=6\ng =7\nh\n\nmender_boot_part=3\n",
    )
    .unwrap();
    let out = run(updraft()
        .args(["boot-env", "set", "-c"])
        .arg(&ours)
        .arg("-s")
        .arg(&script));
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(":1: skipped"), "{stderr}");
    ok(Command::new("fw_setenv")
        .arg("-c")
        .arg(&theirs)
        .arg("-s")
        .arg(&script));
    assert_eq!(fw_printenv(&ours, &[]), fw_printenv(&theirs, &[]));
    // Standard input.
    let mut child = updraft()
        .args(["boot-env", "set", "-c"])
        .arg(&ours)
        .args(["-s", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"upgrade_available=1\n")
            .unwrap();
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(
        fw_printenv(&ours, &["upgrade_available"]),
        "upgrade_available=1\n"
    );
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

// ------------------------------------------------------------------ GRUB

/// A Mender double grubenv made with grub-editenv and sha256sum.
fn grub_dir(root: &Path) {
    for half in ["mender_grubenv1", "mender_grubenv2"] {
        let d = root.join(half);
        std::fs::create_dir_all(&d).unwrap();
        let editenv = |file: &str, args: &[&str]| {
            ok(Command::new("grub-editenv").arg(d.join(file)).args(args));
        };
        editenv("env", &["create"]);
        editenv(
            "env",
            &[
                "set",
                "bootcount=0",
                "mender_boot_part=2",
                "upgrade_available=0",
            ],
        );
        editenv("lock", &["create"]);
        editenv("lock", &["set", "editing=0"]);
        let sum = ok(Command::new("sha256sum").arg("lock").current_dir(&d));
        std::fs::write(d.join("lock.sha256sum"), sum).unwrap();
    }
}

/// `grub-editenv list` on a copy of one half's env (list creates missing
/// files).
fn grub_list(root: &Path, half: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("env");
    std::fs::copy(root.join(half).join("env"), &copy).unwrap();
    ok(Command::new("grub-editenv").arg(&copy).arg("list"))
}

fn check_locks(root: &Path) {
    for half in ["mender_grubenv1", "mender_grubenv2"] {
        ok(Command::new("sha256sum")
            .args(["-c", "lock.sha256sum"])
            .current_dir(root.join(half)));
    }
}

#[test]
fn grub_print_set_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    grub_dir(root);
    let print = |args: &[&str]| {
        ok(updraft()
            .args(["boot-env", "print", "--grub"])
            .arg(root)
            .args(args))
    };
    assert_eq!(print(&[]), grub_list(root, "mender_grubenv1"));
    ok(updraft()
        .args(["boot-env", "set", "--grub"])
        .arg(root)
        .args([
            "mender_boot_part=3",
            "upgrade_available=1",
            "sp=a b",
            r"bs=a\b",
            "empty=",
            "bootcount",
        ]));
    let expected = "mender_boot_part=3\nupgrade_available=1\nsp=a b\nbs=a\\b\nempty=\n";
    assert_eq!(grub_list(root, "mender_grubenv1"), expected);
    assert_eq!(grub_list(root, "mender_grubenv2"), expected);
    check_locks(root);
    assert_eq!(print(&[]), expected);
    assert_eq!(print(&["-n", "bs"]), "a\\b\n");
    // An edit by grub-editenv on both halves is read back.
    for half in ["mender_grubenv1", "mender_grubenv2"] {
        ok(Command::new("grub-editenv")
            .arg(root.join(half).join("env"))
            .args(["set", "bootcount=1"]));
    }
    assert_eq!(print(&["bootcount", "sp"]), "bootcount=1\nsp=a b\n");
    let err = fails(
        updraft()
            .args(["boot-env", "print", "--grub"])
            .arg(root)
            .arg("nope"),
    );
    assert!(err.contains("\"nope\" is not set"), "{err}");
    // `#name` cannot be stored in a GRUB env.
    fails(
        updraft()
            .args(["boot-env", "set", "--grub"])
            .arg(root)
            .arg("#x=1"),
    );
}

// --------------------------------------------------------------- MCUboot

struct Mcu {
    dir: tempfile::TempDir,
}

impl Mcu {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        ok(imgtool()
            .args(["keygen", "-t", "ecdsa-p256", "-k"])
            .arg(p("key.pem")));
        ok(imgtool()
            .args(["getpub", "-e", "pem", "-k"])
            .arg(p("key.pem"))
            .arg("-o")
            .arg(p("pub.pem")));
        ok(imgtool()
            .args(["keygen", "-t", "ecdsa-p256", "-k"])
            .arg(p("other.pem")));
        let payload: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(p("app.bin"), payload).unwrap();
        ok(imgtool()
            .args([
                "sign",
                "--header-size",
                "0x200",
                "--pad-header",
                "--version",
                "1.2.3+4",
                "--slot-size",
                "0x20000",
                "--align",
                "8",
                "-k",
            ])
            .arg(p("key.pem"))
            .arg(p("app.bin"))
            .arg(p("signed.bin")));
        let mut bad = std::fs::read(p("signed.bin")).unwrap();
        bad[0x200 + 100] ^= 0x01;
        std::fs::write(p("tampered.bin"), bad).unwrap();
        Mcu { dir }
    }

    fn p(&self, n: &str) -> PathBuf {
        self.dir.path().join(n)
    }

    /// The signed image padded with 0xff to a 0x20000-byte slot (trailer
    /// erased).
    fn slot(&self, name: &str) -> PathBuf {
        let mut bytes = std::fs::read(self.p("signed.bin")).unwrap();
        bytes.resize(0x20000, 0xff);
        let path = self.p(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

fn imgtool_verify_ok(key: &Path, image: &Path) -> bool {
    run(imgtool().arg("verify").arg("-k").arg(key).arg(image))
        .status
        .success()
}

#[test]
fn mcuboot_verify_agrees_with_imgtool() {
    let m = Mcu::new();
    for key in ["pub.pem", "key.pem"] {
        let key = m.p(key);
        assert!(imgtool_verify_ok(&key, &m.p("signed.bin")));
        let out = ok(updraft()
            .args(["mcuboot", "verify", "-k"])
            .arg(&key)
            .arg(m.p("signed.bin")));
        assert!(out.contains("correctly validated"), "{out}");

        assert!(!imgtool_verify_ok(&key, &m.p("tampered.bin")));
        let out = run(updraft()
            .args(["mcuboot", "verify", "-k"])
            .arg(&key)
            .arg(m.p("tampered.bin")));
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("invalid hash"), "{err}");
    }
    // The wrong key: imgtool and we both refuse.
    assert!(!imgtool_verify_ok(&m.p("other.pem"), &m.p("signed.bin")));
    let err = fails(
        updraft()
            .args(["mcuboot", "verify", "-k"])
            .arg(m.p("other.pem"))
            .arg(m.p("signed.bin")),
    );
    assert!(err.contains("KEYHASH"), "{err}");
    // An Ed25519 private key: a clear hint to use imgtool getpub.
    ok(imgtool()
        .args(["keygen", "-t", "ed25519", "-k"])
        .arg(m.p("ed.pem")));
    let err = fails(
        updraft()
            .args(["mcuboot", "verify", "-k"])
            .arg(m.p("ed.pem"))
            .arg(m.p("signed.bin")),
    );
    assert!(err.contains("imgtool getpub"), "{err}");
}

fn dumpinfo_trailer(path: &Path) -> serde_json::Value {
    let out = ok(imgtool().args(["dumpinfo", "-f", "json"]).arg(path));
    // imgtool prints warnings (e.g. "the trailer magic value is invalid!")
    // before the JSON on stdout.
    let json = out.find("\n{").map_or(out.as_str(), |i| &out[i + 1..]);
    let v: serde_json::Value = serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("imgtool dumpinfo output is not JSON ({e}):\n{out}"));
    v["trailer"].clone()
}

const MAGIC8: &str = "77c295f360d2ef7f3552500f2cb67980";

#[test]
fn mcuboot_set_pending_seen_by_imgtool() {
    let m = Mcu::new();
    let slot_args = ["--slot-size", "0x20000", "--align", "8"];

    let test = m.slot("test.bin");
    let t = dumpinfo_trailer(&test);
    assert_ne!(t["magic"], MAGIC8);
    ok(updraft()
        .args(["mcuboot", "set-pending"])
        .args(slot_args)
        .arg(&test));
    let t = dumpinfo_trailer(&test);
    assert_eq!(t["magic"], MAGIC8);
    assert_eq!(t["swap_info"], 2);
    assert_eq!(t["image_ok"], 255);
    // The image still verifies; show reports the trailer.
    ok(updraft()
        .args(["mcuboot", "verify", "-k"])
        .arg(m.p("pub.pem"))
        .arg(&test));
    let shown = ok(updraft().args(["mcuboot", "show"]).arg(&test));
    assert!(shown.contains("magic: good"), "{shown}");
    assert!(shown.contains("type Test"), "{shown}");
    assert!(shown.contains("ECDSASIG"), "{shown}");
    // Already pending: nothing written.
    let out = ok(updraft()
        .args(["mcuboot", "set-pending", "--permanent"])
        .args(slot_args)
        .arg(&test));
    assert!(out.contains("nothing written"), "{out}");
    assert_eq!(dumpinfo_trailer(&test)["swap_info"], 2);

    let perm = m.slot("perm.bin");
    ok(updraft()
        .args(["mcuboot", "set-pending", "--permanent"])
        .args(slot_args)
        .arg(&perm));
    let t = dumpinfo_trailer(&perm);
    assert_eq!(t["magic"], MAGIC8);
    assert_eq!(t["swap_info"], 3);
    assert_eq!(t["image_ok"], 1);

    // Confirm: nothing on an erased trailer, image_ok on a swapped-in one
    // (magic good, image_ok unset, as after a test swap).
    let primary = m.slot("primary.bin");
    let out = ok(updraft()
        .args(["mcuboot", "confirm"])
        .args(slot_args)
        .arg(&primary));
    assert!(out.contains("nothing to confirm"), "{out}");
    ok(updraft()
        .args(["mcuboot", "set-pending"])
        .args(slot_args)
        .arg(&primary));
    ok(updraft()
        .args(["mcuboot", "confirm"])
        .args(slot_args)
        .arg(&primary));
    assert_eq!(dumpinfo_trailer(&primary)["image_ok"], 1);

    // A file shorter than the slot is refused with a reason.
    let err = fails(
        updraft()
            .args(["mcuboot", "set-pending"])
            .args(slot_args)
            .arg(m.p("signed.bin")),
    );
    assert!(err.contains("shorter than the slot size"), "{err}");
}

/// An unsigned image (deterministic: imgtool adds only the SHA-256 TLV)
/// signed with `extra` options: `pad` selects `--pad`/`--confirm` (the
/// whole slot, trailer written by imgtool); without it the image is
/// padded here to the slot size with the erased value.
fn unsigned_slot(dir: &Path, name: &str, extra: &[&str], pad: Option<&str>, erased: u8) -> PathBuf {
    let app = dir.join("app.bin");
    if !app.exists() {
        let payload: Vec<u8> = (0..1000u32).map(|i| (i * 13 % 251) as u8).collect();
        std::fs::write(&app, payload).unwrap();
    }
    let out = dir.join(name);
    let mut cmd = imgtool();
    cmd.args([
        "sign",
        "--header-size",
        "0x200",
        "--pad-header",
        "--version",
        "1.0.0",
        "--slot-size",
        "0x20000",
    ])
    .args(extra);
    if let Some(p) = pad {
        cmd.arg(p);
    }
    ok(cmd.arg(&app).arg(&out));
    if pad.is_none() {
        let mut bytes = std::fs::read(&out).unwrap();
        bytes.resize(0x20000, erased);
        std::fs::write(&out, bytes).unwrap();
    }
    out
}

/// `set-pending` / `confirm` for every update mode, BOOT_MAX_ALIGN, write
/// size and erased value the library supports, compared byte for byte
/// with the slot imgtool writes for the same request (`--pad` = test,
/// `--confirm` = permanent, `--overwrite-only`, `--max-align`, `--align`,
/// `-R 0`). imgtool never writes swap_info; MCUboot's boot_set_pending
/// does (spec 1.6), so that one cell is the only difference allowed, and
/// it must hold the swap type.
#[test]
fn mcuboot_modes_alignments_and_erased_values_match_imgtool() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    const S: usize = 0x20000;
    struct Case {
        mode: &'static str,
        max_align: usize,
        write: usize,
        erased: u8,
        permanent: bool,
        imgtool: &'static [&'static str],
    }
    let cases = [
        Case {
            mode: "scratch",
            max_align: 8,
            write: 8,
            erased: 0xff,
            permanent: true,
            imgtool: &["--align", "8"],
        },
        Case {
            mode: "scratch",
            max_align: 8,
            write: 4,
            erased: 0x00,
            permanent: true,
            imgtool: &["--align", "4", "-R", "0"],
        },
        Case {
            mode: "move",
            max_align: 16,
            write: 16,
            erased: 0xff,
            permanent: false,
            imgtool: &["--align", "16"],
        },
        Case {
            mode: "offset",
            max_align: 32,
            write: 8,
            erased: 0xff,
            permanent: true,
            imgtool: &["--align", "8", "--max-align", "32"],
        },
        Case {
            mode: "offset",
            max_align: 32,
            write: 8,
            erased: 0x00,
            permanent: false,
            imgtool: &["--align", "8", "--max-align", "32", "-R", "0"],
        },
        Case {
            mode: "overwrite",
            max_align: 8,
            write: 8,
            erased: 0xff,
            permanent: false,
            imgtool: &["--align", "8", "--overwrite-only"],
        },
    ];
    for (i, c) in cases.iter().enumerate() {
        let label = format!(
            "case {i} ({} A={} W={} erased {:#04x})",
            c.mode, c.max_align, c.write, c.erased
        );
        let ours = unsigned_slot(d, &format!("ours{i}.bin"), c.imgtool, None, c.erased);
        let reference = unsigned_slot(
            d,
            &format!("ref{i}.bin"),
            c.imgtool,
            Some(if c.permanent { "--confirm" } else { "--pad" }),
            c.erased,
        );
        let flags = [
            "--slot-size".to_owned(),
            format!("{S:#x}"),
            "--align".to_owned(),
            c.max_align.to_string(),
            "--write-size".to_owned(),
            c.write.to_string(),
            "--mode".to_owned(),
            c.mode.to_owned(),
            "--erased-value".to_owned(),
            format!("{:#04x}", c.erased),
        ];
        let mut cmd = updraft();
        cmd.args(["mcuboot", "set-pending"]).args(&flags);
        if c.permanent {
            cmd.arg("--permanent");
        }
        let said = ok(cmd.arg(&ours));
        assert!(said.contains("marked pending"), "{label}: {said}");

        let mut want = std::fs::read(&reference).unwrap();
        let got = std::fs::read(&ours).unwrap();
        let a = c.max_align;
        let image_ok = (S - 16 - a) & !(a - 1);
        let swap_info = image_ok - 2 * a;
        if c.mode != "overwrite" {
            // Only swap_info may differ: one write-size cell, type 2/3.
            assert!(
                want[swap_info..swap_info + c.write]
                    .iter()
                    .all(|&b| b == c.erased),
                "{label}"
            );
            want[swap_info] = if c.permanent { 3 } else { 2 };
        }
        let diff: Vec<usize> = (0..S).filter(|&j| want[j] != got[j]).collect();
        assert!(
            diff.is_empty(),
            "{label}: differs from imgtool at {:x?}",
            &diff[..diff.len().min(8)]
        );
        // The magic is in place, so a second request writes nothing.
        let again = ok(updraft()
            .args(["mcuboot", "set-pending"])
            .args(&flags)
            .arg(&ours));
        assert!(again.contains("nothing written"), "{label}: {again}");
        // Our own reader, told the same layout, sees the request.
        let shown = ok(updraft()
            .args([
                "mcuboot",
                "show",
                "--slot-size",
                &format!("{S:#x}"),
                "--align",
            ])
            .arg(c.max_align.to_string())
            .args([
                "--mode",
                c.mode,
                "--erased-value",
                &format!("{:#04x}", c.erased),
            ])
            .arg(&ours));
        assert!(shown.contains("magic: good"), "{label}: {shown}");
        let ok_line = if c.permanent {
            "image_ok: set (0x01)"
        } else {
            "image_ok: unset"
        };
        assert!(shown.contains(ok_line), "{label}: {shown}");

        // Confirm (as if this slot had been swapped in as the primary):
        // image_ok set in its cell, nothing else.
        if !c.permanent {
            ok(updraft()
                .args(["mcuboot", "confirm"])
                .args(&flags)
                .arg(&ours));
            let after = std::fs::read(&ours).unwrap();
            let changed: Vec<usize> = (0..S).filter(|&j| after[j] != got[j]).collect();
            assert_eq!(changed, vec![image_ok], "{label}: confirm wrote elsewhere");
            assert_eq!(after[image_ok], 1, "{label}");
        }
    }
    // With the wrong erased value the erased trailer reads as corrupt and
    // nothing is written; a bad value is refused by name.
    let zero = unsigned_slot(d, "zero.bin", &["--align", "8", "-R", "0"], None, 0x00);
    let before = std::fs::read(&zero).unwrap();
    let err = fails(
        updraft()
            .args([
                "mcuboot",
                "set-pending",
                "--slot-size",
                "0x20000",
                "--align",
                "8",
            ])
            .arg(&zero),
    );
    assert!(err.contains("magic is corrupt"), "{err}");
    assert_eq!(std::fs::read(&zero).unwrap(), before);
    let err = fails(
        updraft()
            .args([
                "mcuboot",
                "set-pending",
                "--slot-size",
                "0x20000",
                "--align",
                "8",
                "--erased-value",
                "0x7f",
            ])
            .arg(&zero),
    );
    assert!(err.contains("0xff or 0x00"), "{err}");
    let err = fails(
        updraft()
            .args([
                "mcuboot",
                "set-pending",
                "--slot-size",
                "0x20000",
                "--align",
                "8",
                "--write-size",
                "16",
            ])
            .arg(&zero),
    );
    assert!(err.contains("write size 16"), "{err}");
}
