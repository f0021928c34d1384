//! The U-Boot env codec against the real tools: mkenvimage (u-boot-tools)
//! and fw_printenv / fw_setenv (libubootenv-tool 0.3.2). Every fixture is
//! made here, at test time, in a temp dir.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{run, run_ok, TempDir};
use std::path::{Path, PathBuf};
use updraft_boot::storage::FileStorage;
use updraft_boot::uboot::config::{open_config_file, FwEnvConfig};
use updraft_boot::uboot::{
    Change, CopyId, EnvCopy, EnvLocation, LoadError, Redundancy, UbootEnv, UpdateOutcome,
};

const SIZE: usize = 0x4000;

/// Expected variables: (name, value) pairs.
type Vars = &'static [(&'static str, &'static str)];

/// mkenvimage input: a comment, an empty line, a value continued over two
/// lines with a trailing backslash, and Mender's variables.
const ENV_TXT: &str = "# Mender defaults\n\
bootcmd=run mender_setup; run mmcboot\n\
\n\
bootlimit=1\n\
bootcount=0\n\
upgrade_available=0\n\
mender_boot_part=2\n\
mender_boot_part_hex=2\n\
mender_saveenv_canary=1\n\
multi=line1\\\n\
line2\n\
zz_last=end\n";

/// The variables of ENV_TXT, sorted, as fw_printenv prints them.
const ENV_VARS: &[(&str, &str)] = &[
    ("bootcmd", "run mender_setup; run mmcboot"),
    ("bootcount", "0"),
    ("bootlimit", "1"),
    ("mender_boot_part", "2"),
    ("mender_boot_part_hex", "2"),
    ("mender_saveenv_canary", "1"),
    ("multi", "line1\nline2"),
    ("upgrade_available", "0"),
    ("zz_last", "end"),
];

fn write_env_txt(dir: &TempDir) -> PathBuf {
    let txt = dir.join("env.txt");
    std::fs::write(&txt, ENV_TXT).unwrap();
    txt
}

fn mkenvimage(dir: &TempDir, out: &str, extra: &[&str], size: usize) -> PathBuf {
    let txt = write_env_txt(dir);
    let out = dir.join(out);
    let size = format!("{size:#x}");
    let mut args: Vec<&str> = vec!["-s", &size];
    args.extend_from_slice(extra);
    let (o, t) = (out.to_str().unwrap(), txt.to_str().unwrap());
    args.extend_from_slice(&["-o", o, t]);
    run_ok("mkenvimage", &args);
    out
}

/// Writes an fw_env.config with absolute paths and hex sizes.
fn write_config(dir: &TempDir, name: &str, lines: &[(&Path, u64, usize)]) -> PathBuf {
    let text: String = lines
        .iter()
        .map(|(p, off, size)| format!("{} {off:#x} {size:#x}\n", p.display()))
        .collect();
    let cfg = dir.join(name);
    std::fs::write(&cfg, text).unwrap();
    cfg
}

/// `fw_printenv -c CFG -f /nonexistent` (so a broken env fails with 243
/// instead of printing a default env).
fn fw_printenv(cfg: &Path) -> std::process::Output {
    run(
        "fw_printenv",
        [
            "-c",
            cfg.to_str().unwrap(),
            "-f",
            "/nonexistent/u-boot-initial-env",
        ],
    )
}

fn fw_printenv_ok(cfg: &Path) -> String {
    let out = fw_printenv(cfg);
    assert!(
        out.status.success(),
        "fw_printenv failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fw_setenv(cfg: &Path, pairs: &[&str]) {
    let mut args = vec!["-c", cfg.to_str().unwrap()];
    args.extend_from_slice(pairs);
    run_ok("fw_setenv", &args);
}

/// Our env, formatted the way fw_printenv prints it.
fn print_ours(env: &mut UbootEnv<FileStorage>) -> String {
    let mut buf = vec![0u8; env.size()];
    let loaded = env.load(&mut buf).unwrap();
    loaded
        .env
        .sorted()
        .map(|v| {
            format!(
                "{}={}\n",
                v.name_str().unwrap(),
                String::from_utf8_lossy(v.value)
            )
        })
        .collect()
}

fn vars_text(vars: &[(&str, &str)]) -> String {
    vars.iter().map(|(n, v)| format!("{n}={v}\n")).collect()
}

/// ENV_VARS with some values replaced.
fn env_with(changes: &[(&str, &str)]) -> String {
    let vars: Vec<(&str, &str)> = ENV_VARS
        .iter()
        .map(|&(n, v)| {
            let new = changes.iter().find(|(cn, _)| *cn == n).map(|&(_, cv)| cv);
            (n, new.unwrap_or(v))
        })
        .collect();
    vars_text(&vars)
}

fn load_state(env: &mut UbootEnv<FileStorage>) -> (CopyId, Option<u8>) {
    let mut buf = vec![0u8; env.size()];
    let loaded = env.load(&mut buf).unwrap();
    (loaded.copy, loaded.flags)
}

fn pair_from(cfg: &Path) -> UbootEnv<FileStorage> {
    open_config_file(cfg).unwrap()
}

/// A redundant pair made by `mkenvimage -r` + `cp` (step r0 of the Mender
/// flow): both flags 1, copy 0 active.
fn r0_pair(dir: &TempDir, size: usize) -> PathBuf {
    let a = mkenvimage(dir, "a.bin", &["-r"], size);
    let b = dir.join("b.bin");
    std::fs::copy(&a, &b).unwrap();
    write_config(dir, "fw_env.config", &[(&a, 0, size), (&b, 0, size)])
}

#[test]
fn mkenvimage_single_copy_ff_and_00_padding() {
    let dir = TempDir::new("single");
    for (name, extra) in [("ff.bin", &[][..]), ("00.bin", &["-p", "0x00"][..])] {
        let img = mkenvimage(&dir, name, extra, SIZE);
        let bytes = std::fs::read(&img).unwrap();
        let copy = EnvCopy::new(&bytes, Redundancy::Single).unwrap();
        assert!(copy.crc_ok(), "{name}: CRC");
        let pad = if extra.is_empty() { 0xff } else { 0x00 };
        assert_eq!(*bytes.last().unwrap(), pad, "{name}: padding byte");

        let cfg = write_config(&dir, "single.config", &[(&img, 0, SIZE)]);
        let mut env = pair_from(&cfg);
        assert_eq!(env.redundancy(), Redundancy::Single);
        assert_eq!(print_ours(&mut env), vars_text(ENV_VARS), "{name}");
        assert_eq!(fw_printenv_ok(&cfg), vars_text(ENV_VARS), "{name}");
        assert_eq!(load_state(&mut env), (CopyId::First, None));
    }
}

#[test]
fn mkenvimage_redundant_pair() {
    let dir = TempDir::new("redund");
    let cfg = r0_pair(&dir, SIZE);
    let bytes = std::fs::read(dir.join("a.bin")).unwrap();
    let copy = EnvCopy::new(&bytes, Redundancy::Redundant).unwrap();
    assert!(copy.crc_ok());
    assert_eq!(copy.flags(), Some(1));
    let mut env = pair_from(&cfg);
    assert_eq!(load_state(&mut env), (CopyId::First, Some(1)));
    assert_eq!(print_ours(&mut env), vars_text(ENV_VARS));
    assert_eq!(fw_printenv_ok(&cfg), vars_text(ENV_VARS));
}

/// The Mender A/B flow of spec 6.1 done by fw_setenv (r1..r3), read by us
/// after every step: right copy, right flags, same variables.
#[test]
fn fw_setenv_mender_flow_read_by_us() {
    let dir = TempDir::new("flow-tool");
    let cfg = r0_pair(&dir, SIZE);
    let steps: [(&[&str], CopyId, u8, Vars); 3] = [
        (
            &[
                "mender_boot_part",
                "3",
                "mender_boot_part_hex",
                "3",
                "upgrade_available",
                "1",
                "bootcount",
                "0",
            ],
            CopyId::Second,
            2,
            &[
                ("mender_boot_part", "3"),
                ("mender_boot_part_hex", "3"),
                ("upgrade_available", "1"),
            ],
        ),
        (
            &["bootcount", "1"],
            CopyId::First,
            3,
            &[
                ("mender_boot_part", "3"),
                ("mender_boot_part_hex", "3"),
                ("upgrade_available", "1"),
                ("bootcount", "1"),
            ],
        ),
        (
            &["upgrade_available", "0", "bootcount", "0"],
            CopyId::Second,
            4,
            &[("mender_boot_part", "3"), ("mender_boot_part_hex", "3")],
        ),
    ];
    for (i, (args, copy, flags, expect)) in steps.iter().enumerate() {
        fw_setenv(&cfg, args);
        let mut env = pair_from(&cfg);
        assert_eq!(
            load_state(&mut env),
            (*copy, Some(*flags)),
            "step r{}",
            i + 1
        );
        assert_eq!(print_ours(&mut env), env_with(expect), "step r{}", i + 1);
        assert_eq!(fw_printenv_ok(&cfg), env_with(expect), "step r{}", i + 1);
    }
}

/// The same flow written by us: fw_printenv reads every step, and the used
/// data bytes are identical to what fw_setenv writes for the same change
/// (both sort by name; only the padding differs, which the CRC covers).
#[test]
fn our_mender_flow_read_by_fw_printenv_and_byte_identical_to_fw_setenv() {
    let ours_dir = TempDir::new("flow-ours");
    let tool_dir = TempDir::new("flow-ref");
    let ours_cfg = r0_pair(&ours_dir, SIZE);
    let tool_cfg = r0_pair(&tool_dir, SIZE);
    let mut env = pair_from(&ours_cfg);
    let mut buf = vec![0u8; SIZE];

    let r1 = [
        Change::set("mender_boot_part", "3"),
        Change::set("mender_boot_part_hex", "3"),
        Change::set("upgrade_available", "1"),
        Change::set("bootcount", "0"),
    ];
    let r2 = [Change::set("bootcount", "1")];
    let r3 = [
        Change::set("upgrade_available", "0"),
        Change::set("bootcount", "0"),
    ];
    let tool_args: [&[&str]; 3] = [
        &[
            "mender_boot_part",
            "3",
            "mender_boot_part_hex",
            "3",
            "upgrade_available",
            "1",
            "bootcount",
            "0",
        ],
        &["bootcount", "1"],
        &["upgrade_available", "0", "bootcount", "0"],
    ];
    let expected: [(CopyId, u8, Vars); 3] = [
        (
            CopyId::Second,
            2,
            &[
                ("mender_boot_part", "3"),
                ("mender_boot_part_hex", "3"),
                ("upgrade_available", "1"),
            ],
        ),
        (
            CopyId::First,
            3,
            &[
                ("mender_boot_part", "3"),
                ("mender_boot_part_hex", "3"),
                ("upgrade_available", "1"),
                ("bootcount", "1"),
            ],
        ),
        (
            CopyId::Second,
            4,
            &[("mender_boot_part", "3"), ("mender_boot_part_hex", "3")],
        ),
    ];
    for (i, changes) in [&r1[..], &r2[..], &r3[..]].into_iter().enumerate() {
        let (copy, flags, vars) = expected[i];
        let out = env.update(&mut buf, changes).unwrap();
        assert_eq!(
            out,
            UpdateOutcome::Written {
                copy,
                flags: Some(flags)
            }
        );
        assert_eq!(fw_printenv_ok(&ours_cfg), env_with(vars), "step r{}", i + 1);

        fw_setenv(&tool_cfg, tool_args[i]);
        let file = if copy == CopyId::First {
            "a.bin"
        } else {
            "b.bin"
        };
        let ours = std::fs::read(ours_dir.join(file)).unwrap();
        let theirs = std::fs::read(tool_dir.join(file)).unwrap();
        let ours_copy = EnvCopy::new(&ours, Redundancy::Redundant).unwrap();
        let theirs_copy = EnvCopy::new(&theirs, Redundancy::Redundant).unwrap();
        assert_eq!(ours_copy.flags(), theirs_copy.flags(), "step r{}", i + 1);
        let used = updraft_boot::uboot::Env::parse(theirs_copy.data())
            .unwrap()
            .used_len();
        assert_eq!(
            &ours_copy.data()[..used],
            &theirs_copy.data()[..used],
            "step r{}: data differs from fw_setenv's",
            i + 1
        );
    }
    // No-op: nothing written, flags do not move (as fw_setenv).
    assert_eq!(
        env.update(&mut buf, &[Change::set("bootcount", "0")])
            .unwrap(),
        UpdateOutcome::Unchanged
    );
    assert_eq!(load_state(&mut env), (CopyId::Second, Some(4)));
}

/// Interleaving: fw_setenv continues from what we wrote and we continue
/// from what it wrote; flags keep counting.
#[test]
fn interleaved_writers() {
    let dir = TempDir::new("interleave");
    let cfg = r0_pair(&dir, SIZE);
    let mut buf = vec![0u8; SIZE];
    let mut expected_flags = 1u8;
    for round in 0..6 {
        let value = format!("v{round}");
        if round % 2 == 0 {
            let mut env = pair_from(&cfg);
            env.update(&mut buf, &[Change::set("counter", &value)])
                .unwrap();
        } else {
            fw_setenv(&cfg, &["counter", &value]);
        }
        expected_flags += 1;
        let mut env = pair_from(&cfg);
        let loaded = env.load(&mut buf).unwrap();
        assert_eq!(loaded.flags, Some(expected_flags));
        assert_eq!(loaded.env.get_str("counter"), Some(value.as_str()));
        let printed = fw_printenv_ok(&cfg);
        assert!(printed.contains(&format!("counter={value}\n")), "{printed}");
    }
}

#[test]
fn single_copy_batched_fw_setenv_and_ours() {
    let dir = TempDir::new("single-batch");
    let img = mkenvimage(&dir, "single.bin", &[], SIZE);
    let cfg = write_config(&dir, "fw_env.config", &[(&img, 0, SIZE)]);
    fw_setenv(
        &cfg,
        &[
            "mender_boot_part",
            "3",
            "mender_boot_part_hex",
            "3",
            "upgrade_available",
            "1",
            "bootcount",
            "0",
        ],
    );
    let mut env = pair_from(&cfg);
    let armed = env_with(&[
        ("mender_boot_part", "3"),
        ("mender_boot_part_hex", "3"),
        ("upgrade_available", "1"),
    ]);
    assert_eq!(print_ours(&mut env), armed);

    let mut buf = vec![0u8; SIZE];
    let out = env
        .update(
            &mut buf,
            &[
                Change::set("upgrade_available", "0"),
                Change::set("new_var", "a b=c\nnext line"),
                Change::remove("zz_last"),
            ],
        )
        .unwrap();
    assert_eq!(
        out,
        UpdateOutcome::Written {
            copy: CopyId::First,
            flags: None
        }
    );
    let printed = fw_printenv_ok(&cfg);
    assert_eq!(printed, print_ours(&mut env));
    assert!(printed.contains("new_var=a b=c\nnext line\n"));
    assert!(!printed.contains("zz_last"));
    let out = run_ok(
        "fw_printenv",
        [
            "-c",
            cfg.to_str().unwrap(),
            "-f",
            "/nonexistent",
            "-n",
            "new_var",
        ],
    );
    assert_eq!(out, b"a b=c\nnext line\n");
}

/// Torn copy: damage in the data area of the copy written last makes the
/// other copy win, for us and for fw_printenv.
#[test]
fn torn_copy_other_copy_wins() {
    let dir = TempDir::new("torn-copy");
    let cfg = r0_pair(&dir, SIZE);
    fw_setenv(&cfg, &["upgrade_available", "1", "bootcount", "0"]);
    let mut env = pair_from(&cfg);
    assert_eq!(load_state(&mut env), (CopyId::Second, Some(2)));
    // Damage a byte of b.bin's variable area (a half-written copy).
    let b = dir.join("b.bin");
    let mut bytes = std::fs::read(&b).unwrap();
    bytes[40] ^= 0x55;
    std::fs::write(&b, &bytes).unwrap();
    let mut env = pair_from(&cfg);
    let mut buf = vec![0u8; SIZE];
    let loaded = env.load(&mut buf).unwrap();
    assert_eq!((loaded.copy, loaded.other_valid), (CopyId::First, false));
    assert_eq!(print_ours(&mut env), vars_text(ENV_VARS));
    assert_eq!(fw_printenv_ok(&cfg), vars_text(ENV_VARS));
    // Damage in the padding counts too (the CRC covers it).
    let mut bytes = std::fs::read(&b).unwrap();
    bytes[40] ^= 0x55;
    bytes[SIZE - 1] ^= 0x01;
    std::fs::write(&b, &bytes).unwrap();
    assert_eq!(load_state(&mut env), (CopyId::First, Some(1)));
    assert_eq!(fw_printenv_ok(&cfg), vars_text(ENV_VARS));
}

/// Torn flags: the flags byte is outside the CRC. A valid copy whose flags
/// read 0xff wins against anything but 0, whichever copy is newer.
#[test]
fn torn_flags_0xff() {
    let dir = TempDir::new("torn-flags");
    let cfg = r0_pair(&dir, SIZE);
    fw_setenv(&cfg, &["upgrade_available", "1"]); // b.bin: flags 2, newer
    let new_vars = env_with(&[("upgrade_available", "1")]);

    // Newer copy's flags torn to 0xff: it still wins.
    let b = dir.join("b.bin");
    let mut bytes = std::fs::read(&b).unwrap();
    bytes[4] = 0xff;
    std::fs::write(&b, &bytes).unwrap();
    let mut env = pair_from(&cfg);
    assert_eq!(load_state(&mut env), (CopyId::Second, Some(0xff)));
    assert_eq!(print_ours(&mut env), new_vars);
    assert_eq!(fw_printenv_ok(&cfg), new_vars);

    // Older copy's flags 0xff (and the newer back to 2): the older wins.
    bytes[4] = 2;
    std::fs::write(&b, &bytes).unwrap();
    let a = dir.join("a.bin");
    let mut a_bytes = std::fs::read(&a).unwrap();
    a_bytes[4] = 0xff;
    std::fs::write(&a, &a_bytes).unwrap();
    assert_eq!(load_state(&mut env), (CopyId::First, Some(0xff)));
    assert_eq!(print_ours(&mut env), vars_text(ENV_VARS));
    assert_eq!(fw_printenv_ok(&cfg), vars_text(ENV_VARS));

    // ...except against 0.
    bytes[4] = 0;
    std::fs::write(&b, &bytes).unwrap();
    assert_eq!(load_state(&mut env), (CopyId::Second, Some(0)));
    assert_eq!(fw_printenv_ok(&cfg), new_vars);

    // Our next write continues from the winner: 0 + 1 into a.bin.
    let mut buf = vec![0u8; SIZE];
    let out = env
        .update(&mut buf, &[Change::set("bootcount", "5")])
        .unwrap();
    assert_eq!(
        out,
        UpdateOutcome::Written {
            copy: CopyId::First,
            flags: Some(1)
        }
    );
    assert!(fw_printenv_ok(&cfg).contains("bootcount=5\n"));
}

/// 255 fw_setenv writes on 0x1000-byte copies end at flags 255/0 and the 0
/// copy wins; we agree, and our next writes keep wrapping correctly.
#[test]
fn flags_wrap_around() {
    let dir = TempDir::new("wrap");
    let cfg = r0_pair(&dir, 0x1000);
    for i in 0..255 {
        fw_setenv(&cfg, &["counter", &i.to_string()]);
    }
    let a = std::fs::read(dir.join("a.bin")).unwrap();
    let b = std::fs::read(dir.join("b.bin")).unwrap();
    let fa = EnvCopy::new(&a, Redundancy::Redundant).unwrap().flags();
    let fb = EnvCopy::new(&b, Redundancy::Redundant).unwrap().flags();
    assert_eq!((fa, fb), (Some(255), Some(0)));
    let mut env = pair_from(&cfg);
    let mut buf = vec![0u8; 0x1000];
    let loaded = env.load(&mut buf).unwrap();
    assert_eq!((loaded.copy, loaded.flags), (CopyId::Second, Some(0)));
    assert_eq!(loaded.env.get_str("counter"), Some("254"));
    assert!(fw_printenv_ok(&cfg).contains("counter=254\n"));

    let out = env
        .update(&mut buf, &[Change::set("counter", "ours")])
        .unwrap();
    assert_eq!(
        out,
        UpdateOutcome::Written {
            copy: CopyId::First,
            flags: Some(1)
        }
    );
    assert!(fw_printenv_ok(&cfg).contains("counter=ours\n"));
    fw_setenv(&cfg, &["counter", "theirs"]);
    assert_eq!(load_state(&mut env), (CopyId::Second, Some(2)));
}

/// eMMC style: both copies in one raw image at 0x1000 and 0x5000, the image
/// opened once per copy.
#[test]
fn two_copies_in_one_image() {
    let dir = TempDir::new("emmc");
    let one = mkenvimage(&dir, "one.bin", &["-r"], SIZE);
    let copy = std::fs::read(&one).unwrap();
    let mut image = vec![0u8; 0x9000];
    image[0x1000..0x1000 + SIZE].copy_from_slice(&copy);
    image[0x5000..0x5000 + SIZE].copy_from_slice(&copy);
    let img = dir.join("disk.img");
    std::fs::write(&img, &image).unwrap();
    let cfg = write_config(
        &dir,
        "fw_env.config",
        &[(&img, 0x1000, SIZE), (&img, 0x5000, SIZE)],
    );

    fw_setenv(&cfg, &["upgrade_available", "1"]);
    let mut env = pair_from(&cfg);
    assert_eq!(load_state(&mut env), (CopyId::Second, Some(2)));
    let mut buf = vec![0u8; SIZE];
    env.update(&mut buf, &[Change::set("bootcount", "1")])
        .unwrap();
    assert_eq!(
        fw_printenv_ok(&cfg),
        env_with(&[("upgrade_available", "1"), ("bootcount", "1")])
    );
    let image = std::fs::read(&img).unwrap();
    assert!(
        image[..0x1000].iter().all(|&b| b == 0),
        "wrote before copy 0"
    );
    assert!(
        image[0x1000 + SIZE..0x5000].iter().all(|&b| b == 0),
        "wrote between copies"
    );
    assert!(
        image[0x5000 + SIZE..].iter().all(|&b| b == 0),
        "wrote after copy 1"
    );
}

/// Config gotchas, checked against fw_printenv: octal-looking and decimal
/// offsets, sizes always hex, comments.
#[test]
fn config_number_formats_match_libubootenv() {
    let dir = TempDir::new("config");
    let one = mkenvimage(&dir, "one.bin", &[], SIZE);
    let copy = std::fs::read(&one).unwrap();
    let mut image = vec![0xffu8; 0x1000 + SIZE];
    image[0x1000..].copy_from_slice(&copy);
    let img = dir.join("img.bin");
    std::fs::write(&img, &image).unwrap();
    let p = img.display();
    for text in [
        format!("# comment\n{p} 0x1000 0x4000\n"),
        format!("{p} 010000 4000\n"), // octal 010000 = 0x1000, size hex
        format!("{p}\t4096\t0x4000\t0x1000\n"), // decimal offset, sector size
        format!("\n#x\n{p} 4096 4000 1000 4\n"),
    ] {
        let cfg = dir.join("cfg");
        std::fs::write(&cfg, &text).unwrap();
        let parsed = FwEnvConfig::parse(&text).unwrap();
        assert_eq!(parsed.first.offset, 0x1000, "{text}");
        assert_eq!(parsed.first.size, 0x4000, "{text}");
        assert_eq!(fw_printenv_ok(&cfg), vars_text(ENV_VARS), "{text}");
        let mut env = open_config_file(&cfg).unwrap();
        assert_eq!(print_ours(&mut env), vars_text(ENV_VARS), "{text}");
    }
    // "16384" is read as 0x16384 by both: no valid env there.
    let text = format!("{p} 0x1000 16384\n");
    let cfg = dir.join("cfg");
    std::fs::write(&cfg, &text).unwrap();
    assert_eq!(FwEnvConfig::parse(&text).unwrap().first.size, 0x16384);
    assert!(!fw_printenv(&cfg).status.success());
    let mut env = open_config_file(&cfg).unwrap();
    let mut buf = vec![0u8; 0x16384];
    assert!(env.load(&mut buf).is_err());
}

/// Negatives: one changed data byte fails the CRC; a config that gives
/// 0x2000 for a 0x4000 copy finds no valid env. Both tools agree (243).
#[test]
fn negatives_crc_and_wrong_size() {
    let dir = TempDir::new("neg");
    let img = mkenvimage(&dir, "single.bin", &[], SIZE);
    let mut bytes = std::fs::read(&img).unwrap();
    bytes[10] ^= 0x20;
    let bad = dir.join("bad.bin");
    std::fs::write(&bad, &bytes).unwrap();
    let cfg = write_config(&dir, "bad.config", &[(&bad, 0, SIZE)]);
    let out = fw_printenv(&cfg);
    assert_eq!(out.status.code(), Some(243));
    let mut env = pair_from(&cfg);
    let mut buf = vec![0u8; SIZE];
    assert!(matches!(env.load(&mut buf), Err(LoadError::NoValidCopy)));
    assert!(env.update(&mut buf, &[Change::set("a", "b")]).is_err());
    assert_eq!(std::fs::read(&bad).unwrap(), bytes, "nothing written");

    let cfg = write_config(&dir, "small.config", &[(&img, 0, 0x2000)]);
    assert_eq!(fw_printenv(&cfg).status.code(), Some(243));
    let mut env = pair_from(&cfg);
    let mut buf = vec![0u8; 0x2000];
    assert!(matches!(env.load(&mut buf), Err(LoadError::NoValidCopy)));
}

/// Both copies written by us from scratch (provisioning with
/// `encode_copy`) are read by fw_printenv.
#[test]
fn encode_copy_read_by_fw_printenv() {
    use updraft_boot::uboot::{encode_copy, Env};
    let dir = TempDir::new("encode");
    let vars = [
        Change::set("bootcmd", "run mender_setup"),
        Change::set("with_newline", "a\nb"),
        Change::set("empty", ""),
        Change::set("bootlimit", "1"),
    ];
    let mut copy = vec![0u8; SIZE];
    encode_copy(
        &mut copy,
        Redundancy::Redundant,
        1,
        Env::empty(),
        &vars,
        0xff,
    )
    .unwrap();
    let a = dir.join("a.bin");
    let b = dir.join("b.bin");
    std::fs::write(&a, &copy).unwrap();
    std::fs::write(&b, &copy).unwrap();
    let cfg = write_config(&dir, "fw_env.config", &[(&a, 0, SIZE), (&b, 0, SIZE)]);
    assert_eq!(
        fw_printenv_ok(&cfg),
        "bootcmd=run mender_setup\nbootlimit=1\nempty=\nwith_newline=a\nb\n"
    );
    fw_setenv(&cfg, &["bootlimit", "2"]);
    let mut env = pair_from(&cfg);
    assert_eq!(load_state(&mut env), (CopyId::Second, Some(2)));

    // A single copy, no flags byte.
    let mut single = vec![0u8; SIZE];
    encode_copy(&mut single, Redundancy::Single, 0, Env::empty(), &vars, 0).unwrap();
    std::fs::write(&a, &single).unwrap();
    let cfg = write_config(&dir, "single.config", &[(&a, 0, SIZE)]);
    assert!(fw_printenv_ok(&cfg).starts_with("bootcmd=run mender_setup\n"));
}

#[test]
fn location_of_copies() {
    let dir = TempDir::new("loc");
    let cfg = r0_pair(&dir, SIZE);
    let env = pair_from(&cfg);
    let second: &EnvLocation<FileStorage> = env.location(CopyId::Second).unwrap();
    assert_eq!(second.offset, 0);
}
