//! The GRUB env codec against the real `grub-editenv` (grub-common 2.06).
//! Blocks are made by the tool at test time in temp dirs; `list` only ever
//! runs on a copy of the file under test (it creates missing files).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{run, run_ok, TempDir};
use std::path::{Path, PathBuf};
use updraft_boot::grub::{
    write_file_atomic, BlockError, EditError, FormatError, GrubEnv, GrubEnvMut, BLOCK_SIZE,
    SIGNATURE, WARNING,
};
use updraft_boot::Change;

fn editenv(file: &Path, args: &[&str]) {
    let mut all = vec![file.to_str().unwrap()];
    all.extend_from_slice(args);
    run_ok("grub-editenv", &all);
}

/// `grub-editenv COPY list` on a copy of `file`: (exit code, stdout).
fn tool_list(file: &Path) -> (Option<i32>, String) {
    let copy = file.with_extension("listcopy");
    std::fs::copy(file, &copy).unwrap();
    let out = run("grub-editenv", [copy.to_str().unwrap(), "list"]);
    std::fs::remove_file(&copy).unwrap();
    (out.status.code(), String::from_utf8(out.stdout).unwrap())
}

fn tool_list_ok(file: &Path) -> String {
    let (code, out) = tool_list(file);
    assert_eq!(code, Some(0), "grub-editenv list failed");
    out
}

/// Our variables, printed as `grub-editenv list` prints them.
fn our_list(block: &[u8]) -> String {
    let env = GrubEnv::new(block).unwrap();
    let mut out = Vec::new();
    for var in env.vars() {
        out.extend_from_slice(var.name);
        out.push(b'=');
        out.extend(var.value.bytes());
        out.push(b'\n');
    }
    String::from_utf8(out).unwrap()
}

fn created(dir: &TempDir, name: &str) -> PathBuf {
    let path = dir.join(name);
    editenv(&path, &["create"]);
    path
}

#[test]
fn create_is_byte_identical() {
    let dir = TempDir::new("grub-create");
    let file = created(&dir, "grubenv");
    let theirs = std::fs::read(&file).unwrap();
    assert_eq!(theirs.len(), BLOCK_SIZE);
    let mut ours = vec![0u8; BLOCK_SIZE];
    GrubEnvMut::create(&mut ours).unwrap();
    assert_eq!(ours, theirs);
    assert_eq!(tool_list_ok(&file), "");
    assert_eq!(our_list(&theirs), "");
    assert_eq!(GrubEnv::new(&theirs).unwrap().validate(), Ok(()));
}

/// The same edits done by grub-editenv and by us give identical blocks at
/// every step, and each side reads the other's block.
#[test]
fn edits_byte_identical_to_grub_editenv() {
    let dir = TempDir::new("grub-edits");
    let file = created(&dir, "grubenv");
    let mut ours = vec![0u8; BLOCK_SIZE];
    GrubEnvMut::create(&mut ours).unwrap();

    // (grub-editenv arguments, our changes, expected list)
    let steps: Vec<(Vec<&str>, Vec<Change<'_>>, &str)> = vec![
        (
            vec![
                "set",
                "mender_boot_part=2",
                "upgrade_available=0",
                "bootcount=0",
            ],
            vec![
                Change::set("mender_boot_part", "2"),
                Change::set("upgrade_available", "0"),
                Change::set("bootcount", "0"),
            ],
            "mender_boot_part=2\nupgrade_available=0\nbootcount=0\n",
        ),
        (
            vec!["set", "mender_boot_part=3", "upgrade_available=1"],
            vec![
                Change::set("mender_boot_part", "3"),
                Change::set("upgrade_available", "1"),
            ],
            "mender_boot_part=3\nupgrade_available=1\nbootcount=0\n",
        ),
        (
            vec!["set", "mender_boot_part=10"], // grows in place
            vec![Change::set("mender_boot_part", "10")],
            "mender_boot_part=10\nupgrade_available=1\nbootcount=0\n",
        ),
        (
            vec!["set", "mender_boot_part="], // shrinks to empty
            vec![Change::set("mender_boot_part", "")],
            "mender_boot_part=\nupgrade_available=1\nbootcount=0\n",
        ),
        (
            vec!["unset", "upgrade_available"],
            vec![Change::remove("upgrade_available")],
            "mender_boot_part=\nbootcount=0\n",
        ),
        (
            vec!["set", "upgrade_available=0"], // appended at the end again
            vec![Change::set("upgrade_available", "0")],
            "mender_boot_part=\nbootcount=0\nupgrade_available=0\n",
        ),
        (
            vec!["unset", "not_there"],
            vec![Change::remove("not_there")],
            "mender_boot_part=\nbootcount=0\nupgrade_available=0\n",
        ),
    ];
    for (i, (args, changes, expected)) in steps.iter().enumerate() {
        editenv(&file, args);
        GrubEnvMut::new(&mut ours).unwrap().apply(changes).unwrap();
        let theirs = std::fs::read(&file).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&theirs),
            "step {i}"
        );
        assert_eq!(our_list(&theirs), *expected, "step {i}");
        assert_eq!(tool_list_ok(&file), *expected, "step {i}");
    }
}

/// Escapes, as in spec 6.2: backslash, newline, `=`, `#`, space, empty.
#[test]
fn escapes_both_ways() {
    let dir = TempDir::new("grub-esc");
    let file = created(&dir, "grubenv");
    editenv(
        &file,
        &[
            "set", "bs=a\\b", "nl=x\ny", "eq=k=v", "hash=#1", "sp=a b", "empty=",
        ],
    );
    let theirs = std::fs::read(&file).unwrap();
    let expected = "bs=a\\b\nnl=x\ny\neq=k=v\nhash=#1\nsp=a b\nempty=\n";
    assert_eq!(our_list(&theirs), expected);
    assert_eq!(tool_list_ok(&file), expected);
    let env = GrubEnv::new(&theirs).unwrap();
    assert_eq!(env.get("bs").unwrap().raw(), b"a\\\\b");
    assert!(env.get("nl").unwrap().matches("x\ny"));
    assert_eq!(env.get("eq").unwrap().as_plain_str(), Some("k=v"));
    assert!(env.get("empty").unwrap().is_empty());

    let mut ours = vec![0u8; BLOCK_SIZE];
    let mut edit = GrubEnvMut::create(&mut ours).unwrap();
    edit.apply(&[
        Change::set("bs", "a\\b"),
        Change::set("nl", "x\ny"),
        Change::set("eq", "k=v"),
        Change::set("hash", "#1"),
        Change::set("sp", "a b"),
        Change::set("empty", ""),
    ])
    .unwrap();
    assert_eq!(ours, theirs);
    // Re-set an escaped value to a longer escaped one, both sides.
    editenv(&file, &["set", "nl=1\n2\n3\\"]);
    GrubEnvMut::new(&mut ours)
        .unwrap()
        .set("nl", "1\n2\n3\\")
        .unwrap();
    assert_eq!(ours, std::fs::read(&file).unwrap());
    assert!(tool_list_ok(&file).contains("nl=1\n2\n3\\\n"));
}

/// Mender's blank_grubenv (signature line only): the tool edits it, we read
/// it, and our edits of it are identical.
#[test]
fn blank_grubenv() {
    let dir = TempDir::new("grub-blank");
    let mut blank = vec![0u8; BLOCK_SIZE];
    GrubEnvMut::create_blank(&mut blank).unwrap();
    assert!(blank.starts_with(SIGNATURE));
    let file = dir.join("grubenv");
    std::fs::write(&file, &blank).unwrap();
    assert_eq!(tool_list_ok(&file), "");
    editenv(&file, &["set", "bootcount=0", "mender_boot_part=2"]);
    GrubEnvMut::new(&mut blank)
        .unwrap()
        .apply(&[
            Change::set("bootcount", "0"),
            Change::set("mender_boot_part", "2"),
        ])
        .unwrap();
    assert_eq!(blank, std::fs::read(&file).unwrap());
    assert_eq!(our_list(&blank), "bootcount=0\nmender_boot_part=2\n");
}

/// A 2048-byte block: the tool keeps the size; we read and edit it alike.
#[test]
fn block_of_2048_bytes() {
    let dir = TempDir::new("grub-2048");
    let file = created(&dir, "grubenv");
    let mut block = std::fs::read(&file).unwrap();
    block.resize(2048, b'#');
    std::fs::write(&file, &block).unwrap();
    let mut ours = vec![0u8; 2048];
    GrubEnvMut::create(&mut ours).unwrap();
    assert_eq!(ours, block);

    let long = "v".repeat(1500); // only fits in the larger block
    editenv(&file, &["set", &format!("big={long}"), "a=1"]);
    let theirs = std::fs::read(&file).unwrap();
    assert_eq!(theirs.len(), 2048);
    GrubEnvMut::new(&mut ours)
        .unwrap()
        .apply(&[Change::set("big", &long), Change::set("a", "1")])
        .unwrap();
    assert_eq!(ours, theirs);
    assert_eq!(our_list(&theirs), format!("big={long}\na=1\n"));
}

/// The size limit matches the tool's exactly: the longest value that fits
/// fits for both, one byte more fails for both ("environment block too
/// small"), and the failed edit leaves the file as it was.
#[test]
fn size_limit_matches_tool() {
    let dir = TempDir::new("grub-limit");
    let file = created(&dir, "grubenv");
    let block = std::fs::read(&file).unwrap();
    let free = GrubEnv::new(&block).unwrap().free().unwrap();
    let fits = "x".repeat(free - "big=\n".len());
    let too_big = format!("{fits}x");

    let copy = dir.join("too_big");
    std::fs::copy(&file, &copy).unwrap();
    let out = run(
        "grub-editenv",
        [copy.to_str().unwrap(), "set", &format!("big={too_big}")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("environment block too small"));
    assert_eq!(std::fs::read(&copy).unwrap(), block);
    let mut ours = block.clone();
    assert_eq!(
        GrubEnvMut::new(&mut ours).unwrap().set("big", &too_big),
        Err(EditError::TooSmall {
            needed: free + 1,
            free
        })
    );

    editenv(&file, &["set", &format!("big={fits}")]);
    let mut ours = block.clone();
    GrubEnvMut::new(&mut ours)
        .unwrap()
        .set("big", &fits)
        .unwrap();
    assert_eq!(ours, std::fs::read(&file).unwrap());
    assert_eq!(GrubEnv::new(&ours).unwrap().free(), Some(0));
    assert_eq!(tool_list_ok(&file), format!("big={fits}\n"));
}

/// Negatives: no signature (the tool fails, so do we); a block truncated to
/// 100 bytes (the tool lists nothing and exits 0; we read nothing too, and
/// our strict check reports the damage).
#[test]
fn negatives() {
    let dir = TempDir::new("grub-neg");
    let file = created(&dir, "grubenv");
    editenv(&file, &["set", "mender_boot_part=2", "bootcount=0"]);
    let good = std::fs::read(&file).unwrap();

    let mut no_sig = good.clone();
    no_sig[2] = b'g';
    let bad = dir.join("nosig");
    std::fs::write(&bad, &no_sig).unwrap();
    let out = run("grub-editenv", [bad.to_str().unwrap(), "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid environment block"));
    assert_eq!(GrubEnv::new(&no_sig).err(), Some(BlockError::BadSignature));

    let truncated = &good[..100];
    let short = dir.join("short");
    std::fs::write(&short, truncated).unwrap();
    assert_eq!(tool_list(&short), (Some(0), String::new()));
    let env = GrubEnv::new(truncated).unwrap();
    assert_eq!(env.vars().count(), 0);
    // The first variable line starts right after the two header lines.
    let first_var = SIGNATURE.len() + WARNING.len();
    assert_eq!(first_var, 94);
    assert_eq!(
        env.validate(),
        Err(FormatError::Broken { offset: first_var })
    );
    let mut edit = truncated.to_vec();
    assert!(GrubEnvMut::new(&mut edit).unwrap().set("a", "1").is_err());
    let copy = dir.join("short2");
    std::fs::write(&copy, truncated).unwrap();
    assert!(!run("grub-editenv", [copy.to_str().unwrap(), "set", "a=1"])
        .status
        .success());

    // An emptied file (grub-editenv truncates before writing).
    assert_eq!(
        GrubEnv::new(&[]).err(),
        Some(BlockError::TooShort { len: 0 })
    );
}

/// Our atomic file replacement: the tool reads the result, size kept.
#[test]
fn write_file_atomic_read_by_tool() {
    let dir = TempDir::new("grub-atomic");
    let file = created(&dir, "grubenv");
    let mut block = std::fs::read(&file).unwrap();
    GrubEnvMut::new(&mut block)
        .unwrap()
        .apply(&[
            Change::set("mender_boot_part", "3"),
            Change::set("upgrade_available", "1"),
            Change::set("bootcount", "0"),
        ])
        .unwrap();
    write_file_atomic(&file, &block).unwrap();
    assert_eq!(std::fs::read(&file).unwrap().len(), BLOCK_SIZE);
    assert_eq!(
        tool_list_ok(&file),
        "mender_boot_part=3\nupgrade_available=1\nbootcount=0\n"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("grubenv")]);
}
