//! The `updraft boot-env` tool: print and set bootloader environment
//! variables, like libubootenv's `fw_printenv` / `fw_setenv`.
//!
//! Two targets ([`Target`]):
//!
//! * a U-Boot environment (single copy or redundant pair) described by an
//!   `fw_env.config` file, through [`updraft_boot::uboot`];
//! * Mender's double GRUB environment in a directory (`mender_grubenv1/`,
//!   `mender_grubenv2/`), through [`updraft_boot::mender_grub`] with its
//!   six-step write protocol. Loading it repairs an interrupted update first,
//!   as Mender's tools do, so even printing may write.
//!
//! Behaviour, compared with libubootenv 0.3.2:
//!
//! * [`print()`]: all variables as `name=value`, U-Boot ones sorted by name
//!   (as `fw_printenv`), GRUB ones in block order (as `grub-editenv list`);
//!   or the named ones in the order given. A name that is not set is an
//!   error (`fw_printenv` prints `NAME=` and exits 0). `-n` needs exactly
//!   one name and prints its value alone.
//! * [`parse_assignments`]: `NAME=VALUE` sets (`NAME=` stores an empty
//!   value, like `fw_setenv NAME ""`); a bare `NAME` removes the variable
//!   (like a trailing unpaired `fw_setenv NAME`).
//! * [`parse_script`]: `fw_setenv -s` script lines: `name=value` sets,
//!   `name=` removes, lines starting with `#` and empty lines are skipped,
//!   lines without `=` (the legacy `name value` form) are skipped too, as
//!   libubootenv 0.3.2 does, but reported so the caller can warn. Names and
//!   values are taken as written (no trimming), as libubootenv does.
//! * [`set`]: all changes in one write; nothing is written when nothing
//!   changes.
//!
//! U-Boot targets, as libubootenv does:
//!
//! * Devices: regular files and block devices ([`FileStorage`]), and raw
//!   NOR MTD partitions `/dev/mtdN` ([`mtd::MtdStorage`]: erase before
//!   write, boolean active/obsolete flags on a redundant pair). NAND MTD
//!   partitions (bad blocks) and UBI volumes are refused with an error.
//! * Locking: both [`print()`] and [`set`] hold libubootenv's lock
//!   ([`DEFAULT_LOCK`], `flock` exclusive, the file created if missing)
//!   while they read and write, so they never interleave with
//!   `fw_printenv`/`fw_setenv` or another `updraft`. When it is busy a
//!   notice goes to stderr, then they wait, up to [`LockSpec::timeout`]
//!   if one is set.
//! * [`print()`] opens the env devices read-only (it works on a read-only
//!   file or `/dev/mtdNro`); only [`set`] opens them read-write.

pub mod mtd;

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use updraft_boot::grub::BLOCK_SIZE;
use updraft_boot::mender_grub::{FileId, FileKind, FsDir, Half, MenderGrubenv};
use updraft_boot::storage::{EnvStorage, FileStorage, Storage};
use updraft_boot::uboot::config::{DeviceKind, EnvDevice, FwEnvConfig};
use updraft_boot::uboot::{EnvLocation, FlagScheme, UbootEnv};
use updraft_boot::Change;

/// The default `fw_env.config`, as libubootenv uses.
pub const DEFAULT_CONFIG: &str = "/etc/fw_env.config";

/// libubootenv's lock file (the same as U-Boot's legacy `fw_printenv`).
pub const DEFAULT_LOCK: &str = "/var/lock/fw_printenv.lock";

/// Which lock to take around U-Boot env access, and how long to wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockSpec {
    /// The lock file ([`DEFAULT_LOCK`]).
    pub path: PathBuf,
    /// Give up after this long; `None` waits as long as it takes (as
    /// `fw_setenv` does).
    pub timeout: Option<Duration>,
}

impl Default for LockSpec {
    fn default() -> Self {
        LockSpec {
            path: PathBuf::from(DEFAULT_LOCK),
            timeout: None,
        }
    }
}

/// Takes the lock of `spec` (exclusive `flock`, as libubootenv does); it
/// is released when the returned file is dropped.
pub fn take_lock(spec: &LockSpec) -> Result<File, BootEnvError> {
    use rustix::fs::{flock, FlockOperation};
    let path = &spec.path;
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o666)
        .open(path)
        .map_err(|e| BootEnvError::new(format!("cannot open lock file {}: {e}", path.display())))?;
    let busy = |e: rustix::io::Errno| e == rustix::io::Errno::WOULDBLOCK;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => return Ok(file),
        Err(e) if busy(e) => {}
        Err(e) => {
            return Err(BootEnvError::new(format!(
                "cannot lock {}: {e}",
                path.display()
            )))
        }
    }
    eprintln!(
        "updraft: waiting for {} (held by another fw_printenv, fw_setenv or updraft)",
        path.display()
    );
    let Some(timeout) = spec.timeout else {
        flock(&file, FlockOperation::LockExclusive)
            .map_err(|e| BootEnvError::new(format!("cannot lock {}: {e}", path.display())))?;
        return Ok(file);
    };
    let deadline = Instant::now() + timeout;
    loop {
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(file),
            Err(e) if busy(e) => {}
            Err(e) => {
                return Err(BootEnvError::new(format!(
                    "cannot lock {}: {e}",
                    path.display()
                )))
            }
        }
        if Instant::now() >= deadline {
            return Err(BootEnvError::new(format!(
                "timed out after {:.1} s waiting for {}: another fw_printenv, fw_setenv or \
                 updraft holds it",
                timeout.as_secs_f64(),
                path.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Which environment to work on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A U-Boot env described by this `fw_env.config`.
    Uboot {
        /// The config file.
        config: PathBuf,
    },
    /// A Mender double GRUB env in this directory.
    Grub {
        /// The directory holding `mender_grubenv1/` and `mender_grubenv2/`.
        dir: PathBuf,
    },
}

/// A boot-env error, with a message for a person.
#[derive(Debug)]
pub struct BootEnvError(String);

impl BootEnvError {
    fn new(msg: impl Into<String>) -> Self {
        BootEnvError(msg.into())
    }
}

impl fmt::Display for BootEnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BootEnvError {}

impl From<io::Error> for BootEnvError {
    fn from(e: io::Error) -> Self {
        BootEnvError(e.to_string())
    }
}

/// One owned change: set `name` to `value`, or remove it (`value` `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedChange {
    /// The variable name.
    pub name: Vec<u8>,
    /// The new value; `None` removes the variable.
    pub value: Option<Vec<u8>>,
}

impl OwnedChange {
    fn as_change(&self) -> Change<'_> {
        match &self.value {
            Some(v) => Change::set_bytes(&self.name, v),
            None => Change::remove_bytes(&self.name),
        }
    }
}

/// Parses command-line assignments: `NAME=VALUE` sets (an empty VALUE
/// stores `NAME=`), a bare `NAME` removes. An empty name is an error.
pub fn parse_assignments(args: &[String]) -> Result<Vec<OwnedChange>, BootEnvError> {
    args.iter()
        .map(|arg| {
            let (name, value) = match arg.split_once('=') {
                Some((n, v)) => (n, Some(v.as_bytes().to_vec())),
                None => (arg.as_str(), None),
            };
            if name.is_empty() {
                return Err(BootEnvError::new(format!(
                    "{arg:?}: expected NAME=VALUE (or NAME to remove it)"
                )));
            }
            Ok(OwnedChange {
                name: name.as_bytes().to_vec(),
                value,
            })
        })
        .collect()
}

/// The result of [`parse_script`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Script {
    /// The changes, in order.
    pub changes: Vec<OwnedChange>,
    /// 1-based numbers of lines skipped because they have no `=` (or an
    /// empty name), as `fw_setenv -s` silently skips them.
    pub skipped: Vec<usize>,
}

/// Parses an `fw_setenv -s` script (see the [module docs](self)).
pub fn parse_script(text: &[u8]) -> Script {
    let mut script = Script::default();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() || line.first() == Some(&b'#') {
            continue;
        }
        match line.iter().position(|&b| b == b'=') {
            Some(eq) if eq > 0 => {
                let value = &line[eq + 1..];
                script.changes.push(OwnedChange {
                    name: line[..eq].to_vec(),
                    value: (!value.is_empty()).then(|| value.to_vec()),
                });
            }
            _ => script.skipped.push(i + 1),
        }
    }
    script
}

/// An env device: a file or block device, or an MTD partition.
#[derive(Debug)]
pub enum Device {
    /// A regular file or block device.
    File(FileStorage),
    /// A raw NOR MTD partition.
    Mtd(mtd::MtdStorage),
}

impl Storage for Device {
    type Error = io::Error;

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        match self {
            Device::File(f) => f.read(offset, buf),
            Device::Mtd(m) => m.read(offset, buf),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        match self {
            Device::File(f) => f.write(offset, data),
            Device::Mtd(m) => m.write(offset, data),
        }
    }

    fn erase(&mut self, offset: u64, len: u64) -> io::Result<()> {
        match self {
            Device::File(f) => f.erase(offset, len),
            Device::Mtd(m) => m.erase(offset, len),
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        match self {
            Device::File(f) => f.sync(),
            Device::Mtd(m) => m.sync(),
        }
    }
}

impl EnvStorage for Device {
    fn size(&mut self) -> Option<u64> {
        match self {
            Device::File(f) => f.size(),
            Device::Mtd(m) => m.size(),
        }
    }

    fn byte_rewritable(&self) -> bool {
        match self {
            Device::File(f) => f.byte_rewritable(),
            Device::Mtd(m) => m.byte_rewritable(),
        }
    }
}

/// Opens one config line's device: read-only unless `writable`.
fn open_device(
    config: &Path,
    dev: &EnvDevice<'_>,
    writable: bool,
) -> Result<EnvLocation<Device>, BootEnvError> {
    let fail = |msg: String| {
        BootEnvError::new(format!(
            "{} line {}: {}: {msg}",
            config.display(),
            dev.line,
            dev.path
        ))
    };
    let mut storage = match dev.kind {
        DeviceKind::File => {
            let opened = if writable {
                FileStorage::open(dev.path)
            } else {
                FileStorage::open_read_only(dev.path)
            };
            Device::File(opened.map_err(|e| fail(e.to_string()))?)
        }
        DeviceKind::Mtd => Device::Mtd(
            mtd::MtdStorage::open(Path::new(dev.path), writable, dev.sector_size).map_err(|e| {
                BootEnvError::new(format!("{} line {}: {e}", config.display(), dev.line))
            })?,
        ),
        _ => {
            return Err(fail(
                "UBI volumes are not supported (use fw_setenv for those)".to_owned(),
            ))
        }
    };
    let offset = match dev.offset {
        o if o >= 0 => o.unsigned_abs(),
        _ => storage
            .size()
            .and_then(|size| dev.resolve_offset(size))
            .ok_or_else(|| fail("negative offset reaches before the start of the device".into()))?,
    };
    Ok(EnvLocation { storage, offset })
}

/// Opens the env described by `config`, read-only unless `writable`,
/// with the flags scheme libubootenv uses for its devices.
pub fn open_uboot(config: &Path, writable: bool) -> Result<UbootEnv<Device>, BootEnvError> {
    let text = std::fs::read_to_string(config)
        .map_err(|e| BootEnvError::new(format!("{}: {e}", config.display())))?;
    let parsed = FwEnvConfig::parse(&text)
        .map_err(|e| BootEnvError::new(format!("{}: {e}", config.display())))?;
    let first = open_device(config, &parsed.first, writable)?;
    let size = parsed.size();
    let Some(second_dev) = &parsed.second else {
        return Ok(UbootEnv::single(first.storage, first.offset, size));
    };
    let second = open_device(config, second_dev, writable)?;
    let scheme = match (&first.storage, &second.storage) {
        (Device::Mtd(a), Device::Mtd(b)) => {
            if parsed.first.path == second_dev.path {
                let ra = a.erase_range(first.offset, size as u64);
                let rb = b.erase_range(second.offset, size as u64);
                if ra.0 < rb.1 && rb.0 < ra.1 {
                    return Err(BootEnvError::new(format!(
                        "{}: the two env copies on {} share an erase block ({:#x} bytes): \
                         erasing one would destroy the other",
                        config.display(),
                        parsed.first.path,
                        a.sector_size()
                    )));
                }
            }
            a.flag_scheme()
        }
        _ => FlagScheme::Counter,
    };
    Ok(UbootEnv::redundant(first, second, size).with_flag_scheme(scheme))
}

/// A work buffer large enough for every env and lock file in `dir` (two
/// halves, each at least one standard block).
pub(crate) fn grub_work(dir: &FsDir) -> Vec<u8> {
    let mut largest = BLOCK_SIZE;
    for half in [Half::First, Half::Second] {
        for kind in [FileKind::Env, FileKind::Lock] {
            if let Ok(m) = std::fs::metadata(dir.path(FileId::new(half, kind))) {
                largest = largest.max(usize::try_from(m.len()).unwrap_or(usize::MAX / 4));
            }
        }
    }
    vec![0; largest.saturating_mul(2)]
}

fn grub_error(dir: &Path, e: impl fmt::Display) -> BootEnvError {
    BootEnvError::new(format!("Mender grubenv in {}: {e}", dir.display()))
}

/// Prints variables to `out` (see the [module docs](self)). With names,
/// the ones that exist are printed; if any is missing, the error names them.
///
/// A U-Boot env is opened read-only, under the lock of `lock`.
pub fn print(
    target: &Target,
    names: &[String],
    value_only: bool,
    lock: &LockSpec,
    out: &mut dyn Write,
) -> Result<(), BootEnvError> {
    if value_only && names.len() != 1 {
        return Err(BootEnvError::new("-n needs exactly one variable name"));
    }
    // (name, value) pairs to print, in order, and the missing names.
    let mut vars: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut missing: Vec<&str> = Vec::new();
    match target {
        Target::Uboot { config } => {
            let _lock = take_lock(lock)?;
            let mut env = open_uboot(config, false)?;
            let mut buf = vec![0u8; env.size()];
            let loaded = env
                .load(&mut buf)
                .map_err(|e| BootEnvError::new(format!("{}: {e}", config.display())))?;
            if names.is_empty() {
                vars.extend(
                    loaded
                        .env
                        .sorted()
                        .map(|v| (v.name.to_vec(), v.value.to_vec())),
                );
            }
            for name in names {
                match loaded.env.get(name) {
                    Some(v) => vars.push((name.as_bytes().to_vec(), v.to_vec())),
                    None => missing.push(name),
                }
            }
        }
        Target::Grub { dir } => {
            let fs = FsDir::new(dir.clone());
            let mut work = grub_work(&fs);
            let mut env = MenderGrubenv::new(fs);
            let loaded = env.load(&mut work).map_err(|e| grub_error(dir, e))?;
            if names.is_empty() {
                vars.extend(
                    loaded
                        .env
                        .vars()
                        .map(|v| (v.name.to_vec(), v.value.bytes().collect())),
                );
            }
            for name in names {
                match loaded.env.get(name) {
                    Some(v) => vars.push((name.as_bytes().to_vec(), v.bytes().collect())),
                    None => missing.push(name),
                }
            }
        }
    }
    for (name, value) in &vars {
        if !value_only {
            out.write_all(name)?;
            out.write_all(b"=")?;
        }
        out.write_all(value)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    match missing.as_slice() {
        [] => Ok(()),
        [one] => Err(BootEnvError::new(format!("variable {one:?} is not set"))),
        many => Err(BootEnvError::new(format!(
            "variables {} are not set",
            many.iter()
                .map(|n| format!("{n:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// What [`set`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOutcome {
    /// The new environment was written.
    Written,
    /// Every change was already in effect; nothing was written.
    Unchanged,
}

/// Applies `changes` in one write (see the [module docs](self)). A U-Boot
/// env is opened read-write under the lock of `lock`.
pub fn set(
    target: &Target,
    changes: &[OwnedChange],
    lock: &LockSpec,
) -> Result<SetOutcome, BootEnvError> {
    let batch: Vec<Change<'_>> = changes.iter().map(OwnedChange::as_change).collect();
    let describe = |index: usize| {
        changes.get(index).map_or_else(String::new, |c| {
            format!("{:?}: ", String::from_utf8_lossy(&c.name))
        })
    };
    match target {
        Target::Uboot { config } => {
            for (i, c) in batch.iter().enumerate() {
                c.validate_uboot()
                    .map_err(|e| BootEnvError::new(format!("{}{e}", describe(i))))?;
            }
            let _lock = take_lock(lock)?;
            let mut env = open_uboot(config, true)?;
            let mut buf = vec![0u8; env.size()];
            let outcome = env
                .update(&mut buf, &batch)
                .map_err(|e| BootEnvError::new(format!("{}: {e}", config.display())))?;
            Ok(match outcome {
                updraft_boot::uboot::UpdateOutcome::Unchanged => SetOutcome::Unchanged,
                _ => SetOutcome::Written,
            })
        }
        Target::Grub { dir } => {
            for (i, c) in batch.iter().enumerate() {
                c.validate_grub()
                    .map_err(|e| BootEnvError::new(format!("{}{e}", describe(i))))?;
            }
            let fs = FsDir::new(dir.clone());
            let mut work = grub_work(&fs);
            let mut env = MenderGrubenv::new(fs);
            env.update(&mut work, &batch)
                .map_err(|e| grub_error(dir, e))?;
            Ok(SetOutcome::Written)
        }
    }
}

/// Applies to the env what one boot through Updraft's boot script does
/// (`scripts/boot.cmd` for U-Boot, `scripts/grub.cfg` for GRUB: count the
/// trial boot, fall back to the other slot when the trial was not
/// confirmed) and says which slot boots. For images run in an emulator or
/// a demo where no real bootloader runs the script.
pub fn script_boot(
    target: &Target,
    parts: updraft_boot::control::SlotPartitions,
    lock: &LockSpec,
) -> Result<updraft_boot::control::ScriptBoot, BootEnvError> {
    match target {
        Target::Uboot { config } => {
            let _lock = take_lock(lock)?;
            let mut env = open_uboot(config, true)?;
            let mut buf = vec![0u8; env.size()];
            updraft_boot::control::uboot_script_boot(&mut env, &mut buf, parts)
                .map_err(|e| BootEnvError::new(format!("{}: {e}", config.display())))
        }
        Target::Grub { dir } => {
            let fs = FsDir::new(dir.clone());
            let mut work = grub_work(&fs);
            let mut env = MenderGrubenv::new(fs);
            updraft_boot::control::grub_script_boot(&mut env, &mut work, parts)
                .map_err(|e| grub_error(dir, e))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn assignments() {
        let args = [
            "a=1".to_owned(),
            "b=".to_owned(),
            "c".to_owned(),
            "d=x=y".to_owned(),
        ];
        let c = parse_assignments(&args).unwrap();
        assert_eq!(c[0].value.as_deref(), Some(&b"1"[..]));
        assert_eq!(c[1].value.as_deref(), Some(&b""[..]));
        assert_eq!(c[2].value, None);
        assert_eq!(c[3].name, b"d");
        assert_eq!(c[3].value.as_deref(), Some(&b"x=y"[..]));
        assert!(parse_assignments(&["=1".to_owned()]).is_err());
    }

    #[test]
    fn script() {
        let s = parse_script(b"d 4\ne=5\n# x=1\na=\n f=6\r\n\nh\n");
        assert_eq!(s.skipped, vec![1, 7]);
        assert_eq!(s.changes.len(), 3);
        assert_eq!(s.changes[1].value, None);
        assert_eq!(s.changes[2].name, b" f");
        assert_eq!(s.changes[2].value.as_deref(), Some(&b"6"[..]));
    }
}
