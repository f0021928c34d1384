//! `fw_env.config`, read the way libubootenv 0.3.2 reads it.
//!
//! Each line is scanned like `sscanf(line, "%ms %lli %zx %zx %lx")`:
//!
//! ```text
//! DEVICE  OFFSET  ENVSIZE  [SECTORSIZE  [NSECTORS]]
//! /dev/mmcblk0  0x400000  0x4000
//! /dev/mmcblk0  0x800000  0x4000
//! ```
//!
//! * OFFSET is a C integer: `0x` hex, a leading `0` is **octal**, otherwise
//!   decimal; negative counts from the end of the device.
//! * ENVSIZE, SECTORSIZE and NSECTORS are **always hex**, with or without
//!   `0x`: `16384` means 0x16384, `4000` means 0x4000.
//! * Numbers end at the first character that cannot continue them, and the
//!   next field starts right there (`09` is offset 0 followed by size 9).
//! * A line starting with `#`, and any line where fewer than three fields
//!   scan, is ignored without error. ENVSIZE 0 is an error.
//! * The first two device lines are used (two lines = redundant pair), the
//!   rest is ignored. Both copies must have the same size and device type.
//! * DEVICE `/dev/mtd*` is an MTD device (UBI if it contains `:`),
//!   `/dev/ubi*` a UBI volume, anything else a file or block device, with
//!   relative paths resolved against the current directory.
//!
//! Deviations: a number too large for its field, or a negative size, is an
//! error here (libc saturates or wraps).
//!
//! With the `std` feature, `FwEnvConfig::open` and `open_config_file` open
//! the copies as `FileStorage` (files and block devices only). MTD devices
//! need ioctls and are opened by the Linux adapter (`updraft boot-env`),
//! which also takes libubootenv's lock file (`/var/lock/fw_printenv.lock`);
//! UBI volumes are not supported.

use core::fmt;

use super::Redundancy;

/// What kind of device a config line names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeviceKind {
    /// A regular file or a block device (eMMC, SD).
    File,
    /// A raw MTD character device (`/dev/mtdN`).
    Mtd,
    /// A UBI volume (`/dev/ubiX:volume`, `/dev/ubiX_Y`, `/dev/mtdN:volume`).
    Ubi,
}

impl DeviceKind {
    /// The kind libubootenv infers from a device path.
    pub fn of_path(path: &str) -> DeviceKind {
        if path.starts_with("/dev/mtd") {
            if path.contains(':') {
                DeviceKind::Ubi
            } else {
                DeviceKind::Mtd
            }
        } else if path.starts_with("/dev/ubi") {
            DeviceKind::Ubi
        } else {
            DeviceKind::File
        }
    }
}

/// One device line of `fw_env.config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvDevice<'a> {
    /// DEVICE as written (not resolved).
    pub path: &'a str,
    /// The device kind inferred from the path.
    pub kind: DeviceKind,
    /// OFFSET; negative means counted back from the end of the device.
    pub offset: i64,
    /// ENVSIZE: the size of one copy.
    pub size: usize,
    /// SECTORSIZE, if given.
    pub sector_size: Option<u64>,
    /// NSECTORS, if given.
    pub sectors: Option<u64>,
    /// 1-based line number in the file.
    pub line: usize,
}

impl EnvDevice<'_> {
    /// The absolute offset on a device of `device_size` bytes (`None` when a
    /// negative offset reaches before the start).
    pub fn resolve_offset(&self, device_size: u64) -> Option<u64> {
        if self.offset >= 0 {
            u64::try_from(self.offset).ok()
        } else {
            device_size.checked_sub(self.offset.unsigned_abs())
        }
    }
}

/// A parsed `fw_env.config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FwEnvConfig<'a> {
    /// The first device line (copy 0).
    pub first: EnvDevice<'a>,
    /// The second device line (copy 1), for a redundant env.
    pub second: Option<EnvDevice<'a>>,
}

/// Why a `fw_env.config` was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// No line has a device, an offset and a size.
    NoDevice,
    /// ENVSIZE is 0.
    ZeroSize {
        /// 1-based line number.
        line: usize,
    },
    /// A number does not fit its field, or a size is negative.
    NumberOutOfRange {
        /// 1-based line number.
        line: usize,
    },
    /// The two copies have different sizes.
    SizeMismatch {
        /// Size on the first device line.
        first: usize,
        /// Size on the second device line.
        second: usize,
    },
    /// The two copies are on different kinds of device.
    KindMismatch,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NoDevice => f.write_str("fw_env.config has no device line"),
            ConfigError::ZeroSize { line } => {
                write!(f, "fw_env.config line {line}: env size is 0")
            }
            ConfigError::NumberOutOfRange { line } => {
                write!(f, "fw_env.config line {line}: number out of range")
            }
            ConfigError::SizeMismatch { first, second } => write!(
                f,
                "fw_env.config: the two copies differ in size ({first:#x} and {second:#x})"
            ),
            ConfigError::KindMismatch => {
                f.write_str("fw_env.config: the two copies are on different kinds of device")
            }
        }
    }
}

impl core::error::Error for ConfigError {}

/// A `sscanf`-like cursor over one line.
struct Scan<'a> {
    s: &'a str,
    pos: usize,
}

/// Result of one numeric conversion.
enum Num {
    /// Matched; the value (sign applied).
    Value(i128),
    /// Matched, but does not fit in an `i128`.
    Overflow,
    /// No digits: the conversion fails and scanning stops.
    NoMatch,
}

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

impl<'a> Scan<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.s.as_bytes()
    }

    fn peek(&self, ahead: usize) -> Option<u8> {
        self.bytes().get(self.pos + ahead).copied()
    }

    fn skip_space(&mut self) {
        while self.peek(0).is_some_and(is_c_space) {
            self.pos += 1;
        }
    }

    /// `%s`: a run of non-space characters.
    fn word(&mut self) -> Option<&'a str> {
        self.skip_space();
        let start = self.pos;
        while self.peek(0).is_some_and(|b| !is_c_space(b)) {
            self.pos += 1;
        }
        // Whitespace is ASCII, so both ends are char boundaries.
        self.s.get(start..self.pos).filter(|w| !w.is_empty())
    }

    /// `%i` when `base` is `None` (C prefixes), `%x` when `Some(16)`.
    fn number(&mut self, base: Option<u32>) -> Num {
        self.skip_space();
        let mut negative = false;
        if let Some(sign @ (b'+' | b'-')) = self.peek(0) {
            negative = sign == b'-';
            self.pos += 1;
        }
        let has_hex_prefix = self.peek(0) == Some(b'0')
            && matches!(self.peek(1), Some(b'x' | b'X'))
            && self.peek(2).is_some_and(|b| b.is_ascii_hexdigit());
        let radix = match base {
            Some(radix) => {
                if radix == 16 && has_hex_prefix {
                    self.pos += 2;
                }
                radix
            }
            None if has_hex_prefix => {
                self.pos += 2;
                16
            }
            None if self.peek(0) == Some(b'0') => 8,
            None => 10,
        };
        let mut value: i128 = 0;
        let mut digits = 0;
        let mut overflow = false;
        while let Some(d) = self.peek(0).and_then(|b| (b as char).to_digit(radix)) {
            match value
                .checked_mul(i128::from(radix))
                .and_then(|v| v.checked_add(i128::from(d)))
            {
                Some(v) => value = v,
                None => overflow = true,
            }
            digits += 1;
            self.pos += 1;
        }
        if digits == 0 {
            Num::NoMatch
        } else if overflow {
            Num::Overflow
        } else if negative {
            Num::Value(-value)
        } else {
            Num::Value(value)
        }
    }
}

/// The fields of one line, `None` when fewer than three scanned.
fn scan_line(text: &str, line: usize) -> Result<Option<EnvDevice<'_>>, ConfigError> {
    let out_of_range = ConfigError::NumberOutOfRange { line };
    let mut scan = Scan { s: text, pos: 0 };
    let Some(path) = scan.word() else {
        return Ok(None);
    };
    let offset = match scan.number(None) {
        Num::Value(v) => i64::try_from(v).map_err(|_| out_of_range)?,
        Num::Overflow => return Err(out_of_range),
        Num::NoMatch => return Ok(None),
    };
    let size = match scan.number(Some(16)) {
        Num::Value(v) => usize::try_from(v).map_err(|_| out_of_range)?,
        Num::Overflow => return Err(out_of_range),
        Num::NoMatch => return Ok(None),
    };
    let mut optional = || -> Result<Option<u64>, ConfigError> {
        match scan.number(Some(16)) {
            Num::Value(v) => u64::try_from(v).map(Some).map_err(|_| out_of_range),
            Num::Overflow => Err(out_of_range),
            Num::NoMatch => Ok(None),
        }
    };
    let sector_size = optional()?;
    let sectors = if sector_size.is_some() {
        optional()?
    } else {
        None
    };
    if size == 0 {
        return Err(ConfigError::ZeroSize { line });
    }
    Ok(Some(EnvDevice {
        path,
        kind: DeviceKind::of_path(path),
        offset,
        size,
        sector_size,
        sectors,
        line,
    }))
}

impl<'a> FwEnvConfig<'a> {
    /// Parses the text of an `fw_env.config`.
    pub fn parse(text: &'a str) -> Result<Self, ConfigError> {
        let mut first: Option<EnvDevice<'a>> = None;
        for (index, line) in text.split('\n').enumerate() {
            if line.starts_with('#') {
                continue;
            }
            let Some(device) = scan_line(line, index + 1)? else {
                continue;
            };
            match first {
                None => first = Some(device),
                Some(first) => {
                    if first.size != device.size {
                        return Err(ConfigError::SizeMismatch {
                            first: first.size,
                            second: device.size,
                        });
                    }
                    if first.kind != device.kind {
                        return Err(ConfigError::KindMismatch);
                    }
                    return Ok(FwEnvConfig {
                        first,
                        second: Some(device),
                    });
                }
            }
        }
        match first {
            Some(first) => Ok(FwEnvConfig {
                first,
                second: None,
            }),
            None => Err(ConfigError::NoDevice),
        }
    }

    /// One line: single copy; two lines: redundant pair.
    pub fn redundancy(&self) -> Redundancy {
        if self.second.is_some() {
            Redundancy::Redundant
        } else {
            Redundancy::Single
        }
    }

    /// The size of one copy.
    pub fn size(&self) -> usize {
        self.first.size
    }
}

#[cfg(feature = "std")]
pub use open::OpenError;

#[cfg(feature = "std")]
mod open {
    use super::{DeviceKind, EnvDevice, FwEnvConfig};
    use crate::storage::{EnvStorage, FileStorage};
    use crate::uboot::{EnvLocation, UbootEnv};
    use std::fmt;
    use std::io;
    use std::path::{Path, PathBuf};

    /// Why the env devices of a config could not be opened.
    #[derive(Debug)]
    #[non_exhaustive]
    pub enum OpenError {
        /// The config file could not be read.
        ReadConfig(io::Error),
        /// The config text is invalid.
        Config(super::ConfigError),
        /// A device is an MTD or UBI device, which is not supported yet.
        UnsupportedDevice {
            /// 1-based config line.
            line: usize,
            /// Its kind.
            kind: DeviceKind,
        },
        /// Opening a device failed.
        Open {
            /// The device path.
            path: PathBuf,
            /// The I/O error.
            error: io::Error,
        },
        /// A negative offset reaches before the start of the device, or the
        /// device size is unknown.
        BadOffset {
            /// 1-based config line.
            line: usize,
        },
    }

    impl fmt::Display for OpenError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                OpenError::ReadConfig(e) => write!(f, "cannot read fw_env.config: {e}"),
                OpenError::Config(e) => write!(f, "{e}"),
                OpenError::UnsupportedDevice { line, kind } => write!(
                    f,
                    "fw_env.config line {line}: {kind:?} env devices are not supported"
                ),
                OpenError::Open { path, error } => {
                    write!(f, "cannot open env device {}: {error}", path.display())
                }
                OpenError::BadOffset { line } => write!(
                    f,
                    "fw_env.config line {line}: negative offset outside the device"
                ),
            }
        }
    }

    impl std::error::Error for OpenError {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            match self {
                OpenError::ReadConfig(e) | OpenError::Open { error: e, .. } => Some(e),
                OpenError::Config(e) => Some(e),
                _ => None,
            }
        }
    }

    fn open_device(device: &EnvDevice<'_>) -> Result<EnvLocation<FileStorage>, OpenError> {
        if device.kind != DeviceKind::File {
            return Err(OpenError::UnsupportedDevice {
                line: device.line,
                kind: device.kind,
            });
        }
        let mut storage = FileStorage::open(device.path).map_err(|error| OpenError::Open {
            path: PathBuf::from(device.path),
            error,
        })?;
        let offset = if device.offset >= 0 {
            device.offset.unsigned_abs()
        } else {
            storage
                .size()
                .and_then(|size| device.resolve_offset(size))
                .ok_or(OpenError::BadOffset { line: device.line })?
        };
        Ok(EnvLocation { storage, offset })
    }

    impl FwEnvConfig<'_> {
        /// Opens each copy's device read-write (one handle per copy, as
        /// libubootenv does, even when both copies share a device).
        pub fn open(&self) -> Result<UbootEnv<FileStorage>, OpenError> {
            let first = open_device(&self.first)?;
            Ok(match &self.second {
                None => UbootEnv::single(first.storage, first.offset, self.first.size),
                Some(second) => UbootEnv::redundant(first, open_device(second)?, self.first.size),
            })
        }
    }

    /// Reads and parses the config file at `path` and opens its devices.
    pub fn open_config_file(path: impl AsRef<Path>) -> Result<UbootEnv<FileStorage>, OpenError> {
        let text = std::fs::read_to_string(path).map_err(OpenError::ReadConfig)?;
        let config = FwEnvConfig::parse(&text).map_err(OpenError::Config)?;
        config.open()
    }
}

#[cfg(feature = "std")]
pub use open::open_config_file;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_lines_hex_sizes() {
        let c = FwEnvConfig::parse(
            "# comment\n/dev/mmcblk0 0x400000 0x4000\n\n/dev/mmcblk0 0x800000 4000 0x10000 2\n",
        )
        .unwrap();
        assert_eq!(c.first.offset, 0x400000);
        assert_eq!(c.first.size, 0x4000);
        assert_eq!(c.first.line, 2);
        let second = c.second.unwrap();
        assert_eq!(second.size, 0x4000);
        assert_eq!(second.sector_size, Some(0x10000));
        assert_eq!(second.sectors, Some(2));
        assert_eq!(c.redundancy(), Redundancy::Redundant);
    }

    #[test]
    fn offsets_are_c_integers_sizes_always_hex() {
        let c = FwEnvConfig::parse("a 010 16384\n").unwrap();
        assert_eq!(c.first.offset, 8);
        assert_eq!(c.first.size, 0x16384);
        let c = FwEnvConfig::parse("a 4096 10\n").unwrap();
        assert_eq!(c.first.offset, 4096);
        assert_eq!(c.first.size, 0x10);
        let c = FwEnvConfig::parse("a -0x4000 0x4000\n").unwrap();
        assert_eq!(c.first.offset, -0x4000);
        assert_eq!(c.first.resolve_offset(0x10000), Some(0xc000));
        assert_eq!(c.first.resolve_offset(0x1000), None);
        // "09": octal 0, then the size field starts at "9".
        let c = FwEnvConfig::parse("a 09 0x4000\n").unwrap();
        assert_eq!(c.first.offset, 0);
        assert_eq!(c.first.size, 9);
        assert_eq!(c.first.sector_size, Some(0x4000));
    }

    #[test]
    fn short_and_comment_lines_are_ignored() {
        let c = FwEnvConfig::parse("  # x 0 0x10\nonly 0\nfile zz 0x10\nreal 0 0x20").unwrap();
        assert_eq!(c.first.path, "real");
        assert_eq!(c.second, None);
        assert_eq!(
            FwEnvConfig::parse("# nothing\n"),
            Err(ConfigError::NoDevice)
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            FwEnvConfig::parse("a 0 0\n"),
            Err(ConfigError::ZeroSize { line: 1 })
        );
        assert_eq!(
            FwEnvConfig::parse("a 0 0x4000\nb 0 0x2000\n"),
            Err(ConfigError::SizeMismatch {
                first: 0x4000,
                second: 0x2000
            })
        );
        assert_eq!(
            FwEnvConfig::parse("/dev/mtd0 0 0x4000\nb 0 0x4000\n"),
            Err(ConfigError::KindMismatch)
        );
        assert_eq!(
            FwEnvConfig::parse("a 0 0x1ffffffffffffffffffffffffffffffff\n"),
            Err(ConfigError::NumberOutOfRange { line: 1 })
        );
    }

    #[test]
    fn third_line_is_ignored_and_kinds() {
        let c = FwEnvConfig::parse("a 0 1000\nb 0 1000\nc 0 2000\n").unwrap();
        assert_eq!(c.second.unwrap().path, "b");
        assert_eq!(DeviceKind::of_path("/dev/mtd1"), DeviceKind::Mtd);
        assert_eq!(DeviceKind::of_path("/dev/mtd1:env"), DeviceKind::Ubi);
        assert_eq!(DeviceKind::of_path("/dev/ubi0:env"), DeviceKind::Ubi);
        assert_eq!(DeviceKind::of_path("/dev/mmcblk0"), DeviceKind::File);
    }
}
