//! `UbootControl` over a redundant U-Boot env: the Mender flow (arm, trial
//! boot through the boot-script logic, confirm / roll back / fallback),
//! errors on invalid variables, and files checked by `fw_printenv` after
//! every operation (and `fw_setenv` changes read back by us).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod control_common;

use common::{run, run_ok, TempDir};
use control_common::{proof, uboot_copy, uboot_defaults, PARTS};
use std::path::{Path, PathBuf};
use updraft_boot::control::{uboot_script_boot, ControlError, ScriptBoot, UbootControl};
use updraft_boot::storage::{FileStorage, MemStorage};
use updraft_boot::uboot::config::open_config_file;
use updraft_boot::uboot::{Change, CopyId, EnvLocation, UbootEnv};
use updraft_core::boot::{BootControl, BootState, Slot, Trial};

const SIZE: usize = 0x1000;
type Mem = MemStorage<Vec<u8>>;

fn mem_env(vars: &[Change<'_>]) -> UbootEnv<Mem> {
    let a = uboot_copy(vars, 1, SIZE);
    UbootEnv::redundant(
        EnvLocation {
            storage: MemStorage::new(a.clone()),
            offset: 0,
        },
        EnvLocation {
            storage: MemStorage::new(a),
            offset: 0,
        },
        SIZE,
    )
}

fn st(active: Slot, trial: Trial) -> BootState {
    BootState { active, trial }
}

fn get(env: &mut UbootEnv<Mem>, name: &str) -> Option<String> {
    let mut buf = vec![0u8; SIZE];
    let loaded = env.load(&mut buf).unwrap();
    loaded.env.get_str(name).map(str::to_owned)
}

#[test]
fn update_confirmed() {
    let mut buf = vec![0u8; SIZE];
    let mut ctl = UbootControl::new(mem_env(&uboot_defaults()), &mut buf, PARTS);
    assert_eq!(ctl.state().unwrap(), st(Slot::A, Trial::None));
    ctl.arm_trial(Slot::B, &proof()).unwrap();
    assert_eq!(ctl.state().unwrap(), st(Slot::A, Trial::Armed(Slot::B)));
    // Arming again the same slot is fine (a retry after a cut).
    ctl.arm_trial(Slot::B, &proof()).unwrap();
    assert_eq!(
        ctl.confirm().unwrap_err(),
        ControlError::NotBooted,
        "confirming a slot that never booted"
    );
    let mut env = ctl.into_inner();
    assert_eq!(get(&mut env, "mender_boot_part_hex").as_deref(), Some("3"));

    let mut b2 = vec![0u8; SIZE];
    let boot = uboot_script_boot(&mut env, &mut b2, PARTS).unwrap();
    assert_eq!(
        boot,
        ScriptBoot {
            slot: Slot::B,
            partition: 3,
            trial: true,
            fell_back: false
        }
    );
    let mut ctl = UbootControl::new(env, &mut buf, PARTS);
    assert_eq!(
        ctl.state().unwrap(),
        st(Slot::B, Trial::Running { boot_count: 1 })
    );
    assert_eq!(
        ctl.arm_trial(Slot::A, &proof()).unwrap_err(),
        ControlError::TrialInProgress
    );
    ctl.confirm().unwrap();
    assert_eq!(ctl.state().unwrap(), st(Slot::B, Trial::None));
    ctl.confirm().unwrap(); // idempotent
    ctl.roll_back().unwrap(); // nothing to abandon
    assert_eq!(ctl.state().unwrap(), st(Slot::B, Trial::None));
    assert_eq!(
        ctl.arm_trial(Slot::B, &proof()).unwrap_err(),
        ControlError::SlotIsActive { slot: Slot::B }
    );
    let mut env = ctl.into_inner();
    // Later boots stay on B without counting.
    let boot = uboot_script_boot(&mut env, &mut b2, PARTS).unwrap();
    assert_eq!((boot.slot, boot.trial), (Slot::B, false));
    assert_eq!(get(&mut env, "bootcount").as_deref(), Some("0"));
}

#[test]
fn unconfirmed_trial_falls_back_after_bootlimit() {
    for bootlimit in ["1", "2", "3"] {
        let mut vars = uboot_defaults();
        vars.push(Change::set("bootlimit", bootlimit));
        let mut buf = vec![0u8; SIZE];
        let mut ctl = UbootControl::new(mem_env(&vars), &mut buf, PARTS);
        ctl.arm_trial(Slot::B, &proof()).unwrap();
        let mut env = ctl.into_inner();
        let limit: u32 = bootlimit.parse().unwrap();
        let mut b2 = vec![0u8; SIZE];
        for n in 1..=limit {
            let boot = uboot_script_boot(&mut env, &mut b2, PARTS).unwrap();
            assert_eq!(
                (boot.slot, boot.trial, boot.fell_back),
                (Slot::B, true, false)
            );
            let mut ctl = UbootControl::new(env, &mut buf, PARTS);
            assert_eq!(
                ctl.state().unwrap(),
                st(Slot::B, Trial::Running { boot_count: n })
            );
            env = ctl.into_inner();
        }
        let boot = uboot_script_boot(&mut env, &mut b2, PARTS).unwrap();
        assert_eq!(
            boot,
            ScriptBoot {
                slot: Slot::A,
                partition: 2,
                trial: false,
                fell_back: true
            },
            "bootlimit {bootlimit}"
        );
        let mut ctl = UbootControl::new(env, &mut buf, PARTS);
        assert_eq!(ctl.state().unwrap(), st(Slot::A, Trial::None));
        // The agent's roll back after the bootloader's fallback: no-op.
        ctl.roll_back().unwrap();
        assert_eq!(ctl.state().unwrap(), st(Slot::A, Trial::None));
        let mut env = ctl.into_inner();
        assert_eq!(get(&mut env, "mender_boot_part_hex").as_deref(), Some("2"));
        assert_eq!(
            get(&mut env, "bootcount"),
            Some((limit + 1).to_string()),
            "bootcount kept, as mender_altbootcmd keeps it"
        );
    }
}

#[test]
fn roll_back_armed_and_running() {
    let mut buf = vec![0u8; SIZE];
    let mut ctl = UbootControl::new(mem_env(&uboot_defaults()), &mut buf, PARTS);
    ctl.arm_trial(Slot::B, &proof()).unwrap();
    ctl.roll_back().unwrap();
    assert_eq!(ctl.state().unwrap(), st(Slot::A, Trial::None));
    ctl.arm_trial(Slot::B, &proof()).unwrap();
    let mut env = ctl.into_inner();
    let mut b2 = vec![0u8; SIZE];
    uboot_script_boot(&mut env, &mut b2, PARTS).unwrap();
    let mut ctl = UbootControl::new(env, &mut buf, PARTS);
    ctl.roll_back().unwrap();
    assert_eq!(ctl.state().unwrap(), st(Slot::A, Trial::None));
    let mut env = ctl.into_inner();
    let boot = uboot_script_boot(&mut env, &mut b2, PARTS).unwrap();
    assert_eq!((boot.slot, boot.trial), (Slot::A, false));
}

#[test]
fn script_writes_the_canary_on_first_boot() {
    let vars: Vec<_> = uboot_defaults()
        .into_iter()
        .filter(|c| c.name() != b"mender_saveenv_canary")
        .collect();
    let mut buf = vec![0u8; SIZE];
    let mut ctl = UbootControl::new(mem_env(&vars), &mut buf, PARTS);
    assert_eq!(ctl.state().unwrap_err(), ControlError::CanaryNotSet);
    assert_eq!(
        ctl.arm_trial(Slot::B, &proof()).unwrap_err(),
        ControlError::CanaryNotSet
    );
    let mut env = ctl.into_inner();
    let mut b2 = vec![0u8; SIZE];
    uboot_script_boot(&mut env, &mut b2, PARTS).unwrap();
    let mut ctl = UbootControl::new(env, &mut buf, PARTS);
    assert_eq!(ctl.state().unwrap(), st(Slot::A, Trial::None));
}

#[test]
fn invalid_variables_are_clear_errors() {
    let cases: Vec<(Vec<Change<'static>>, ControlError<()>)> = vec![
        (
            vec![
                Change::set("mender_boot_part", "5"),
                Change::set("mender_boot_part_hex", "5"),
            ],
            ControlError::UnknownPartition { partition: 5 },
        ),
        (
            vec![Change::set("mender_boot_part_hex", "3")],
            ControlError::HexMismatch,
        ),
        (
            vec![Change::remove("mender_boot_part_hex")],
            ControlError::Missing {
                name: "mender_boot_part_hex",
            },
        ),
        (
            vec![Change::set("upgrade_available", "yes")],
            ControlError::Invalid {
                name: "upgrade_available",
            },
        ),
        (
            vec![Change::remove("upgrade_available")],
            ControlError::Missing {
                name: "upgrade_available",
            },
        ),
        (
            vec![Change::set("bootcount", "-1")],
            ControlError::Invalid { name: "bootcount" },
        ),
    ];
    for (changes, expected) in cases {
        let mut vars = uboot_defaults();
        vars.extend(changes.iter().copied());
        let mut buf = vec![0u8; SIZE];
        let mut ctl = UbootControl::new(mem_env(&vars), &mut buf, PARTS);
        let err = ctl.state().unwrap_err();
        assert_eq!(format!("{err:?}"), format!("{expected:?}"));
        assert!(!err.to_string().is_empty());
        // Writes refuse too, and write nothing.
        assert!(ctl.arm_trial(Slot::B, &proof()).is_err());
        assert!(ctl.roll_back().is_err());
        let env = ctl.into_inner();
        for copy in [CopyId::First, CopyId::Second] {
            assert_eq!(env.location(copy).unwrap().storage.bytes_written(), 0);
        }
    }
}

// ------------------------------------------------------------ real tools

/// A redundant pair made by mkenvimage, and its fw_env.config.
fn tool_pair(dir: &TempDir) -> PathBuf {
    let txt = dir.join("env.txt");
    let text: String = uboot_defaults()
        .iter()
        .map(|c| {
            format!(
                "{}={}\n",
                String::from_utf8_lossy(c.name()),
                String::from_utf8_lossy(c.value().unwrap())
            )
        })
        .collect();
    std::fs::write(&txt, text).unwrap();
    let a = dir.join("a.bin");
    let size = format!("{SIZE:#x}");
    run_ok(
        "mkenvimage",
        [
            "-r",
            "-s",
            &size,
            "-o",
            a.to_str().unwrap(),
            txt.to_str().unwrap(),
        ],
    );
    std::fs::copy(&a, dir.join("b.bin")).unwrap();
    let cfg = dir.join("fw_env.config");
    let line = |p: &Path| format!("{} 0x0 {size}\n", p.display());
    std::fs::write(&cfg, line(&a) + &line(&dir.join("b.bin"))).unwrap();
    cfg
}

fn fw_printenv(cfg: &Path, names: &[&str]) -> String {
    let mut args = vec![
        "-c",
        cfg.to_str().unwrap(),
        "-f",
        "/nonexistent/initial-env",
    ];
    args.extend_from_slice(names);
    let out = run("fw_printenv", &args);
    assert!(
        out.status.success(),
        "fw_printenv: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const MENDER_VARS: [&str; 4] = [
    "bootcount",
    "mender_boot_part",
    "mender_boot_part_hex",
    "upgrade_available",
];

fn expect(cfg: &Path, values: [&str; 4]) {
    let want: String = MENDER_VARS
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{n}={v}\n"))
        .collect();
    assert_eq!(fw_printenv(cfg, &MENDER_VARS), want);
}

fn open_ctl<'b>(cfg: &Path, buf: &'b mut [u8]) -> UbootControl<'b, FileStorage> {
    UbootControl::new(open_config_file(cfg).unwrap(), buf, PARTS)
}

/// Every operation on files made by mkenvimage, checked by fw_printenv;
/// and the bootloader's side done with fw_setenv (as U-Boot would save it),
/// read back by us.
#[test]
fn operations_checked_by_fw_printenv() {
    let dir = TempDir::new("ctl-uboot-tools");
    let cfg = tool_pair(&dir);
    let mut buf = vec![0u8; SIZE];
    expect(&cfg, ["0", "2", "2", "0"]);

    open_ctl(&cfg, &mut buf)
        .arm_trial(Slot::B, &proof())
        .unwrap();
    expect(&cfg, ["0", "3", "3", "1"]);

    // U-Boot's bootcount_inc, done by fw_setenv.
    let c = cfg.to_str().unwrap();
    run_ok("fw_setenv", ["-c", c, "bootcount", "1"]);
    let mut ctl = open_ctl(&cfg, &mut buf);
    assert_eq!(
        ctl.state().unwrap(),
        st(Slot::B, Trial::Running { boot_count: 1 })
    );
    ctl.confirm().unwrap();
    expect(&cfg, ["0", "3", "3", "0"]);
    assert!(fw_printenv(&cfg, &["mender_saveenv_canary"]).contains("=1"));

    let mut ctl = open_ctl(&cfg, &mut buf);
    ctl.arm_trial(Slot::A, &proof()).unwrap();
    expect(&cfg, ["0", "2", "2", "1"]);
    ctl.roll_back().unwrap();
    expect(&cfg, ["0", "3", "3", "0"]);

    // A boot through the script logic on the files themselves.
    let mut ctl = open_ctl(&cfg, &mut buf);
    ctl.arm_trial(Slot::A, &proof()).unwrap();
    let mut env = ctl.into_inner();
    uboot_script_boot(&mut env, &mut buf, PARTS).unwrap();
    expect(&cfg, ["1", "2", "2", "1"]);
    let boot = uboot_script_boot(&mut env, &mut buf, PARTS).unwrap();
    assert!(boot.fell_back);
    expect(&cfg, ["2", "3", "3", "0"]);
    let mut ctl = open_ctl(&cfg, &mut buf);
    assert_eq!(ctl.state().unwrap(), st(Slot::B, Trial::None));

    // The whole env other than Mender's variables is kept.
    let all = fw_printenv(&cfg, &[]);
    assert!(
        all.contains("bootcmd=run mender_setup; run mmcboot\n"),
        "{all}"
    );
    assert!(all.contains("altbootcmd=run mender_altbootcmd; run bootcmd\n"));
}

/// A fw_setenv that sets an invalid value is reported, not guessed at.
#[test]
fn tool_written_garbage_is_an_error() {
    let dir = TempDir::new("ctl-uboot-garbage");
    let cfg = tool_pair(&dir);
    let c = cfg.to_str().unwrap();
    run_ok("fw_setenv", ["-c", c, "mender_boot_part", "7"]);
    let mut buf = vec![0u8; SIZE];
    let mut ctl = open_ctl(&cfg, &mut buf);
    let err = ctl.state().unwrap_err();
    assert!(matches!(
        err,
        ControlError::UnknownPartition { partition: 7 }
    ));
    assert_eq!(
        err.to_string(),
        "mender_boot_part=7 is neither the A nor the B partition"
    );
}
