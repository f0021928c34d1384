//! `updraft boot-env` on a NOR MTD partition, side by side with
//! libubootenv's `fw_printenv`/`fw_setenv`; libubootenv's lock file; and
//! read-only access for `print`.
//!
//! This machine cannot load kernel modules (no `mtdram`/`nandsim`), so the
//! MTD partition is `tests/fake_mtd.c`, compiled here and loaded with
//! `LD_PRELOAD` into both our command and libubootenv's tools: it maps a
//! `/dev/mtd...` path to a regular file, answers `MEMGETINFO` as a NOR
//! chip with the given erase size and `MEMERASE` by filling 0xff, and makes
//! writes behave like NOR programming (a 0 → 1 bit fails with EIO). Both
//! tools thus run their real MTD code paths (ioctls, erase before write,
//! boolean active/obsolete flags) on the same bytes; only the kernel driver
//! is simulated.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn updraft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_updraft"))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", cmd.get_program()))
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
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The shim, compiled once per test process.
fn shim() -> &'static Path {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("updraft-fake-mtd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let so = dir.join("fake_mtd.so");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake_mtd.c");
        ok(Command::new("gcc")
            .args(["-shared", "-fPIC", "-Wall", "-Werror", "-o"])
            .arg(&so)
            .arg(&src)
            .arg("-ldl"));
        so
    })
}

const ERASE: usize = 0x1000;
const ENV: usize = 0x1000;
const COPY1: usize = 0x2000;

/// A fake NOR partition of four 0x1000-byte erase blocks: copy 0 at 0,
/// copy 1 at 0x2000, starting as one `mkenvimage -r` copy (flags 1) and
/// an erased copy 1.
struct FakeMtd {
    dir: tempfile::TempDir,
    dev: String,
}

impl FakeMtd {
    fn new() -> FakeMtd {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = tempfile::tempdir().unwrap();
        let dev = format!(
            "/dev/mtd-updraft-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        std::fs::write(
            dir.path().join("env.txt"),
            "bootcmd=run mender_setup\nbootcount=0\nbootlimit=1\nmender_boot_part=2\n\
             mender_boot_part_hex=2\nupgrade_available=0\n",
        )
        .unwrap();
        ok(Command::new("mkenvimage")
            .args(["-r", "-s", &format!("{ENV:#x}"), "-o"])
            .arg(dir.path().join("copy.bin"))
            .arg(dir.path().join("env.txt")));
        let mut flash = vec![0xffu8; 4 * ERASE];
        let copy = std::fs::read(dir.path().join("copy.bin")).unwrap();
        flash[..ENV].copy_from_slice(&copy);
        std::fs::write(dir.path().join("flash.bin"), flash).unwrap();
        let m = FakeMtd { dir, dev };
        m.config("fw_env.config", &[(0, ENV, ERASE), (COPY1, ENV, ERASE)]);
        m
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config(&self, name: &str, lines: &[(usize, usize, usize)]) -> PathBuf {
        let text: String = lines
            .iter()
            .map(|(off, size, sector)| format!("{} {off:#x} {size:#x} {sector:#x}\n", self.dev))
            .collect();
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// `program` with the shim preloaded.
    fn cmd(&self, mut cmd: Command) -> Command {
        cmd.env("LD_PRELOAD", shim())
            .env("FAKE_MTD_PATH", &self.dev)
            .env("FAKE_MTD_FILE", self.path("flash.bin"))
            .env("FAKE_MTD_ERASE", format!("{ERASE:#x}"))
            .env("FAKE_MTD_LOG", self.path("log"));
        cmd
    }

    fn fw_printenv(&self) -> String {
        let mut c = self.cmd(Command::new("fw_printenv"));
        c.arg("-c")
            .arg(self.path("fw_env.config"))
            .args(["-f", "/nonexistent"]);
        ok(&mut c)
    }

    fn fw_setenv(&self, args: &[&str]) {
        let mut c = self.cmd(Command::new("fw_setenv"));
        c.arg("-c").arg(self.path("fw_env.config")).args(args);
        ok(&mut c);
    }

    fn ours(&self, sub: &str, config: &str) -> Command {
        let mut c = self.cmd(updraft());
        c.args(["boot-env", sub, "-c"]).arg(self.path(config));
        c
    }

    fn print(&self) -> String {
        ok(&mut self.ours("print", "fw_env.config"))
    }

    /// The flags bytes of copy 0 and copy 1.
    fn flags(&self) -> (u8, u8) {
        let b = std::fs::read(self.path("flash.bin")).unwrap();
        (b[4], b[COPY1 + 4])
    }

    /// The shim's log so far, then cleared.
    fn take_log(&self) -> String {
        let p = self.path("log");
        let log = std::fs::read_to_string(&p).unwrap_or_default();
        let _ = std::fs::remove_file(p);
        log
    }
}

/// Our reads and writes on a NOR MTD partition are byte-compatible with
/// libubootenv's, in both directions, through the Mender flow: same
/// variables, boolean flags (new copy 1, old copy 0), erase before write.
#[test]
fn nor_mtd_round_trips_with_libubootenv() {
    let m = FakeMtd::new();
    assert_eq!(m.print(), m.fw_printenv());
    assert!(m.print().contains("mender_boot_part=2\n"));
    m.take_log();

    // Arm (us): copy 1 erased and written with flags 1, copy 0 marked 0.
    ok(m.ours("set", "fw_env.config").args([
        "mender_boot_part=3",
        "mender_boot_part_hex=3",
        "upgrade_available=1",
        "bootcount=0",
    ]));
    assert_eq!(m.flags(), (0, 1));
    let log = m.take_log();
    assert!(
        log.contains(&format!("erase {COPY1:#x}+{ERASE:#x}")),
        "{log}"
    );
    assert!(!log.contains("0->1"), "{log}");
    let theirs = m.fw_printenv();
    assert_eq!(theirs, m.print());
    assert!(theirs.contains("mender_boot_part=3\n") && theirs.contains("upgrade_available=1\n"));

    // U-Boot's boot count, written the way libubootenv does.
    m.fw_setenv(&["bootcount", "1"]);
    assert_eq!(
        m.flags(),
        (1, 0),
        "libubootenv writes copy 0, obsoletes copy 1"
    );
    assert_eq!(m.print(), m.fw_printenv());
    assert!(m.print().contains("bootcount=1\n"));

    // Commit (us), then once more each way.
    ok(m.ours("set", "fw_env.config")
        .args(["upgrade_available=0", "bootcount=0"]));
    assert_eq!(m.flags(), (0, 1));
    assert_eq!(m.print(), m.fw_printenv());
    m.fw_setenv(&["note", "from fw_setenv"]);
    ok(m.ours("set", "fw_env.config").arg("note2=from updraft"));
    let theirs = m.fw_printenv();
    assert_eq!(theirs, m.print());
    assert!(
        theirs.contains("note=from fw_setenv\nnote2=from updraft\n"),
        "{theirs}"
    );
    assert!(theirs.contains("upgrade_available=0\n"), "{theirs}");
    assert!(!m.take_log().contains("0->1"));
}

/// `print` opens the partition read-only, `set` read-write.
#[test]
fn print_opens_read_only_set_read_write() {
    let m = FakeMtd::new();
    m.take_log();
    m.print();
    let log = m.take_log();
    assert!(log.contains("open ro") && !log.contains("open rw"), "{log}");
    ok(m.ours("set", "fw_env.config").arg("bootcount=1"));
    assert!(m.take_log().contains("open rw"));
}

/// Geometry errors name the problem and write nothing.
#[test]
fn misaligned_or_overlapping_copies_are_refused() {
    let m = FakeMtd::new();
    let before = std::fs::read(m.path("flash.bin")).unwrap();
    // Copy 1 not on an erase block boundary.
    m.config("odd.config", &[(0, ENV, ERASE), (0x2800, ENV, ERASE)]);
    let err = fails(m.ours("set", "odd.config").arg("bootcount=1"));
    assert!(err.contains("erase block boundary"), "{err}");
    // Both copies in one 0x2000-byte sector.
    m.config("shared.config", &[(0, ENV, 0x2000), (ENV, ENV, 0x2000)]);
    let err = fails(m.ours("set", "shared.config").arg("bootcount=1"));
    assert!(err.contains("share an erase block"), "{err}");
    // A sector size that is not a multiple of the erase size.
    m.config("sector.config", &[(0, ENV, 0x800), (COPY1, ENV, 0x800)]);
    let err = fails(m.ours("set", "sector.config").arg("bootcount=1"));
    assert!(
        err.contains("not a multiple of the device's erase size"),
        "{err}"
    );
    assert_eq!(std::fs::read(m.path("flash.bin")).unwrap(), before);
}

// ------------------------------------------------------------- lock file

/// A plain-file redundant pair and its config.
fn file_pair(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("env.txt"), "bootcount=0\nupgrade_available=0\n").unwrap();
    ok(Command::new("mkenvimage")
        .args(["-r", "-s", "0x1000", "-o"])
        .arg(dir.join("a.bin"))
        .arg(dir.join("env.txt")));
    std::fs::copy(dir.join("a.bin"), dir.join("b.bin")).unwrap();
    let cfg = dir.join("fw_env.config");
    std::fs::write(
        &cfg,
        format!(
            "{} 0x0 0x1000\n{} 0x0 0x1000\n",
            dir.join("a.bin").display(),
            dir.join("b.bin").display()
        ),
    )
    .unwrap();
    cfg
}

/// Holds `lock` with util-linux `flock` for `secs` seconds; returns once
/// the lock is taken.
fn hold_lock(lock: &Path, secs: f64) -> std::process::Child {
    static N: AtomicUsize = AtomicUsize::new(0);
    let ready = std::env::temp_dir().join(format!(
        "updraft-lock-held-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_file(&ready);
    // -o: the lock stays with flock itself, so killing it releases it.
    let child = Command::new("flock")
        .arg("-o")
        .arg(lock)
        .args(["sh", "-c"])
        .arg(format!("touch '{}'; sleep {secs}", ready.display()))
        .stdout(Stdio::null())
        .spawn()
        .expect("run flock (util-linux)");
    let start = Instant::now();
    while !ready.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "flock never took the lock"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

/// With libubootenv's lock held elsewhere, `set` and `print` wait for it
/// (saying so on stderr), or give up after --lock-timeout with a clear
/// error and nothing written.
#[test]
fn waits_for_libubootenv_lock() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = file_pair(dir.path());
    let lock = dir.path().join("fw_printenv.lock");
    let before = std::fs::read(dir.path().join("b.bin")).unwrap();

    let mut holder = hold_lock(&lock, 30.0);
    let started = Instant::now();
    let err = fails(
        updraft()
            .args(["boot-env", "set", "--lock-file"])
            .arg(&lock)
            .args(["--lock-timeout", "0.3", "-c"])
            .arg(&cfg)
            .arg("bootcount=1"),
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(err.contains("waiting for"), "{err}");
    assert!(err.contains("timed out after 0.3 s waiting for"), "{err}");
    assert_eq!(std::fs::read(dir.path().join("b.bin")).unwrap(), before);
    let err = fails(
        updraft()
            .args(["boot-env", "print", "--lock-file"])
            .arg(&lock)
            .args(["--lock-timeout", "0", "-c"])
            .arg(&cfg),
    );
    assert!(err.contains("timed out"), "{err}");
    holder.kill().unwrap();
    holder.wait().unwrap();

    // Without a timeout: waits until the holder lets go, then writes.
    let mut holder = hold_lock(&lock, 1.0);
    let started = Instant::now();
    let out = run(updraft()
        .args(["boot-env", "set", "--lock-file"])
        .arg(&lock)
        .arg("-c")
        .arg(&cfg)
        .arg("bootcount=1"));
    holder.wait().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "did not wait: {:?}",
        started.elapsed()
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("waiting for"));
    let printed = ok(updraft()
        .args(["boot-env", "print", "--lock-file"])
        .arg(&lock)
        .arg("-c")
        .arg(&cfg));
    assert!(printed.contains("bootcount=1\n"), "{printed}");
}

/// The default lock is libubootenv's own file: while `fw_setenv`'s lock
/// is held (here by `flock` on /var/lock/fw_printenv.lock, the file
/// fw_setenv locks), our command does not touch the env.
#[test]
fn default_lock_is_the_one_fw_setenv_takes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = file_pair(dir.path());
    let lock = Path::new(updraft_linux::boot_env::DEFAULT_LOCK);
    assert_eq!(lock, Path::new("/var/lock/fw_printenv.lock"));
    let mut holder = hold_lock(lock, 30.0);
    // fw_setenv waits for the same lock: still blocked after 300 ms.
    let mut theirs = Command::new("fw_setenv")
        .arg("-c")
        .arg(&cfg)
        .args(["bootcount", "5"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        theirs.try_wait().unwrap().is_none(),
        "fw_setenv did not wait"
    );
    let err = fails(
        updraft()
            .args(["boot-env", "set", "--lock-timeout", "0.2", "-c"])
            .arg(&cfg)
            .arg("bootcount=1"),
    );
    assert!(err.contains("/var/lock/fw_printenv.lock"), "{err}");
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(theirs.wait().unwrap().success());
    let printed = ok(updraft().args(["boot-env", "print", "-c"]).arg(&cfg));
    assert!(printed.contains("bootcount=5\n"), "{printed}");
}

// ------------------------------------------------------------ read-only

/// Makes files immutable (`chattr +i`: even root cannot open them for
/// writing) and undoes it on drop.
struct Immutable(Vec<PathBuf>);

impl Immutable {
    fn new(files: &[PathBuf]) -> Immutable {
        for f in files {
            ok(Command::new("chattr").arg("+i").arg(f));
        }
        Immutable(files.to_vec())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        for f in &self.0 {
            let _ = Command::new("chattr").arg("-i").arg(f).status();
        }
    }
}

/// `print` works on env files that cannot be opened for writing; `set`
/// fails on them with the reason.
#[test]
fn print_works_on_read_only_files() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = file_pair(dir.path());
    let lock = dir.path().join("lock");
    let files = [dir.path().join("a.bin"), dir.path().join("b.bin")];
    let _ro = Immutable::new(&files);
    assert!(
        std::fs::OpenOptions::new()
            .write(true)
            .open(&files[0])
            .is_err(),
        "chattr +i did not make the file read-only"
    );
    let printed = ok(updraft()
        .args(["boot-env", "print", "--lock-file"])
        .arg(&lock)
        .arg("-c")
        .arg(&cfg));
    assert_eq!(printed, "bootcount=0\nupgrade_available=0\n");
    let err = fails(
        updraft()
            .args(["boot-env", "set", "--lock-file"])
            .arg(&lock)
            .arg("-c")
            .arg(&cfg)
            .arg("bootcount=1"),
    );
    assert!(
        err.contains("a.bin") && err.contains("not permitted"),
        "{err}"
    );
}
