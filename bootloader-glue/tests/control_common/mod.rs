//! Helpers for the `control*` and `mender_grub*` tests: the arming proof
//! (read from a real artifact made by Debian's `mender-artifact`), Mender
//! fixtures made by the real tools, and printing env variables.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use updraft_boot::control::SlotPartitions;
use updraft_boot::grub::GrubEnv;
use updraft_boot::mender_grub::{FileId, FileKind, Half, MemDir, MenderGrubenv, WORK_SIZE};
use updraft_boot::uboot::{encode_copy, Change, Env, Redundancy};
use updraft_core::artifact::Reader;
use updraft_core::boot::Verified;

use crate::common::TempDir;

pub const PARTS: SlotPartitions = match SlotPartitions::new(2, 3) {
    Ok(p) => p,
    Err(_) => panic!("2 and 3 differ"),
};

/// A small artifact made once per test process by `mender-artifact write`.
fn artifact() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let dir = TempDir::new("artifact");
        std::fs::write(dir.join("payload.bin"), b"updraft test payload\n").unwrap();
        let out = dir.join("test.mender");
        let status = Command::new("mender-artifact")
            .current_dir(dir.path())
            .args([
                "write",
                "module-image",
                "-T",
                "dummy",
                "-n",
                "release-2",
                "-t",
                "board",
                "-f",
                "payload.bin",
                "-o",
            ])
            .arg(&out)
            .output()
            .expect("mender-artifact must be installed (apt-get install mender-artifact)");
        assert!(
            status.status.success(),
            "mender-artifact failed: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        std::fs::read(out).unwrap()
    })
}

/// The arming proof, obtained the only way there is: reading a complete,
/// valid artifact with updraft-core's reader.
pub fn proof() -> Verified {
    let mut reader = Reader::new();
    let mut input = artifact();
    loop {
        let (n, ev) = reader.feed(input).unwrap();
        input = &input[n..];
        if ev.is_none() {
            break;
        }
    }
    reader.finish().unwrap();
    reader.verified().expect("a valid artifact gives a proof")
}

/// meta-mender's default U-Boot variables (env_mender.h), canary already
/// saved by a first boot.
pub fn uboot_defaults() -> Vec<Change<'static>> {
    vec![
        Change::set("altbootcmd", "run mender_altbootcmd; run bootcmd"),
        Change::set("bootcmd", "run mender_setup; run mmcboot"),
        Change::set("bootcount", "0"),
        Change::set("bootlimit", "1"),
        Change::set("mender_boot_part", "2"),
        Change::set("mender_boot_part_hex", "2"),
        Change::set("mender_check_saveenv_canary", "1"),
        Change::set("mender_saveenv_canary", "1"),
        Change::set("upgrade_available", "0"),
    ]
}

/// One redundant copy holding `vars`.
pub fn uboot_copy(vars: &[Change<'_>], flags: u8, size: usize) -> Vec<u8> {
    let mut copy = vec![0u8; size];
    encode_copy(
        &mut copy,
        Redundancy::Redundant,
        flags,
        Env::empty(),
        vars,
        0xff,
    )
    .unwrap();
    copy
}

pub type Mem = MemDir<1024>;

/// A Mender grubenv provisioned in memory (env A, idle).
pub fn grub_mem() -> MenderGrubenv<Mem> {
    let mut env = MenderGrubenv::new(Mem::new());
    let mut work = [0u8; WORK_SIZE];
    env.provision(
        &mut work,
        &[
            Change::set("bootcount", "0"),
            Change::set("mender_boot_part", "2"),
            Change::set("upgrade_available", "0"),
        ],
    )
    .unwrap();
    env
}

pub fn run_in(dir: &Path, cmd: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(crate::common::tool(cmd))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The Mender grubenv layout made by the real tools (spec 6.2): for each
/// half, `grub-editenv create` + `set` on env and lock, then
/// `sha256sum lock > lock.sha256sum`.
pub fn grub_tool_fixture(root: &Path) {
    for half in ["mender_grubenv1", "mender_grubenv2"] {
        let dir = root.join(half);
        std::fs::create_dir_all(&dir).unwrap();
        run_in(&dir, "grub-editenv", &["env", "create"]);
        run_in(
            &dir,
            "grub-editenv",
            &[
                "env",
                "set",
                "bootcount=0",
                "mender_boot_part=2",
                "upgrade_available=0",
            ],
        );
        run_in(&dir, "grub-editenv", &["lock", "create"]);
        run_in(&dir, "grub-editenv", &["lock", "set", "editing=0"]);
        let sum = run_in(&dir, "sha256sum", &["lock"]);
        std::fs::write(dir.join("lock.sha256sum"), sum).unwrap();
    }
}

/// `grub-editenv COPY list` on a copy of `data`, sorted lines.
pub fn grub_tool_list(data: &[u8]) -> Vec<String> {
    let dir = TempDir::new("grub-list");
    let file = dir.join("copy");
    std::fs::write(&file, data).unwrap();
    let out = run_in(dir.path(), "grub-editenv", &["copy", "list"]);
    let mut lines: Vec<String> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

/// Our variables of a grubenv block, sorted `name=value` lines.
pub fn grub_our_list(block: &[u8]) -> Vec<String> {
    let env = GrubEnv::new(block).unwrap();
    let mut lines: Vec<String> = env
        .vars()
        .map(|v| {
            format!(
                "{}={}",
                String::from_utf8_lossy(v.name),
                String::from_utf8(v.value.bytes().collect()).unwrap()
            )
        })
        .collect();
    lines.sort();
    lines
}

pub fn file(half: Half, kind: FileKind) -> FileId {
    FileId::new(half, kind)
}
