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

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use updraft_boot::grub::BLOCK_SIZE;
use updraft_boot::mender_grub::{FileId, FileKind, FsDir, Half, MenderGrubenv};
use updraft_boot::uboot::config::FwEnvConfig;
use updraft_boot::Change;

/// The default `fw_env.config`, as libubootenv uses.
pub const DEFAULT_CONFIG: &str = "/etc/fw_env.config";

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

fn open_uboot(
    config: &Path,
) -> Result<updraft_boot::uboot::UbootEnv<updraft_boot::storage::FileStorage>, BootEnvError> {
    let text = std::fs::read_to_string(config)
        .map_err(|e| BootEnvError::new(format!("{}: {e}", config.display())))?;
    let parsed = FwEnvConfig::parse(&text)
        .map_err(|e| BootEnvError::new(format!("{}: {e}", config.display())))?;
    parsed
        .open()
        .map_err(|e| BootEnvError::new(format!("{}: {e}", config.display())))
}

/// A work buffer large enough for every env and lock file in `dir` (two
/// halves, each at least one standard block).
fn grub_work(dir: &FsDir) -> Vec<u8> {
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
pub fn print(
    target: &Target,
    names: &[String],
    value_only: bool,
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
            let mut env = open_uboot(config)?;
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

/// Applies `changes` in one write (see the [module docs](self)).
pub fn set(target: &Target, changes: &[OwnedChange]) -> Result<SetOutcome, BootEnvError> {
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
            let mut env = open_uboot(config)?;
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
