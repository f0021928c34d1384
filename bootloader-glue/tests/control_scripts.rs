//! The boot scripts a board installs (`scripts/boot.cmd`, `scripts/grub.cfg`)
//! are accepted by the real tools: `mkimage` wraps boot.cmd into a script
//! image holding it byte for byte, `grub-script-check` parses grub.cfg.
//! Their logic is simulated by `uboot_script_boot` / `grub_script_boot`
//! (tested in `control_uboot.rs`, `control_grub.rs`, `control_power_cut.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{run, run_ok, TempDir};
use std::path::PathBuf;

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

#[test]
fn mkimage_accepts_boot_cmd() {
    let dir = TempDir::new("mkimage");
    let out = dir.join("boot.scr");
    let src = script("boot.cmd");
    let text = std::fs::read_to_string(&src).unwrap();
    // The command line documented in the script is the one we run.
    assert!(
        text.contains("mkimage -A arm -T script -C none -n \"Updraft boot\" -d boot.cmd boot.scr")
    );
    run_ok(
        "mkimage",
        [
            "-A",
            "arm",
            "-T",
            "script",
            "-C",
            "none",
            "-n",
            "Updraft boot",
            "-d",
            src.to_str().unwrap(),
            out.to_str().unwrap(),
        ],
    );
    let listed = String::from_utf8(run_ok("mkimage", ["-l", out.to_str().unwrap()])).unwrap();
    assert!(listed.contains("Image Name:   Updraft boot"), "{listed}");
    assert!(listed.contains("Script"), "{listed}");
    // Legacy image: 64-byte header (magic 0x27051956), then the script
    // length table (one big-endian length, a zero terminator), then the
    // script itself, unchanged.
    let img = std::fs::read(&out).unwrap();
    assert_eq!(&img[..4], &[0x27, 0x05, 0x19, 0x56]);
    let len = u32::from_be_bytes(img[64..68].try_into().unwrap()) as usize;
    assert_eq!(len, text.len());
    assert_eq!(&img[68..72], &[0, 0, 0, 0]);
    assert_eq!(&img[72..], text.as_bytes());
}

/// U-Boot's hush is not POSIX sh, but the script keeps to the common
/// subset (if/then/else/fi, `&&`, `${var}`), so `sh -n` catches unbalanced
/// blocks and quotes.
#[test]
fn boot_cmd_parses_as_shell() {
    let out = std::process::Command::new("sh")
        .arg("-n")
        .arg(script("boot.cmd"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn boot_cmd_uses_menders_variables() {
    let text = std::fs::read_to_string(script("boot.cmd")).unwrap();
    for var in [
        "mender_boot_part",
        "mender_boot_part_hex",
        "upgrade_available",
        "bootcount",
        "bootlimit",
        "mender_saveenv_canary",
        "mender_uboot_root",
        "mender_kernel_root",
    ] {
        assert!(text.contains(&format!("${{{var}}}")), "{var} not used");
    }
}

#[test]
fn grub_script_check_accepts_grub_cfg() {
    let out = run("grub-script-check", [script("grub.cfg").to_str().unwrap()]);
    assert!(
        out.status.success(),
        "grub-script-check: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // And it does reject a broken script (the check is real).
    let dir = TempDir::new("grub-check");
    let broken = dir.join("broken.cfg");
    let text = std::fs::read_to_string(script("grub.cfg")).unwrap();
    std::fs::write(&broken, text.replacen("fi\n", "\n", 1)).unwrap();
    let out = run("grub-script-check", [broken.to_str().unwrap()]);
    assert!(!out.status.success());
}

#[test]
fn grub_cfg_follows_the_protocol_order() {
    let text = std::fs::read_to_string(script("grub.cfg")).unwrap();
    let body = &text[text.find("function updraft_save_env").unwrap()..];
    let body = &body[..body.find("\n}\n").unwrap()];
    let order: Vec<&str> = body
        .lines()
        .filter_map(|l| l.trim().strip_prefix("save_env --file ${updraft_"))
        .map(|l| l.split('}').next().unwrap())
        .collect();
    assert_eq!(order, ["lock2", "env2", "lock2", "lock1", "env1", "lock1"]);
}
