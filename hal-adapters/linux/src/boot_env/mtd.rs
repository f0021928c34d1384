//! A U-Boot environment on a raw MTD partition (`/dev/mtdN`), read and
//! written the way libubootenv does it: `MEMGETINFO` tells the flash type
//! and erase size, each copy's erase blocks are erased (`MEMERASE`) before
//! the copy is written, and on NOR (and DataFlash) the redundant pair uses
//! the boolean active/obsolete flags
//! ([`FlagScheme::Boolean`]), the obsolete mark being one byte
//! programmed in place.
//!
//! The ioctls live in the small `updraft-mtd-ioctl` crate (the only
//! `unsafe` code of the adapter); everything here is safe code.
//!
//! Not supported, refused with an error that says so: NAND partitions
//! (libubootenv skips bad blocks there, and NAND needs page-aligned
//! writes), UBI volumes, RAM/ROM MTD devices (libubootenv refuses those
//! too), and devices or offsets beyond 4 GiB (`MEMERASE64`).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use updraft_boot::storage::{EnvStorage, Storage};
use updraft_boot::uboot::FlagScheme;
use updraft_mtd_ioctl as ioctl;

/// What kind of flash an MTD device is (`MEMGETINFO`'s type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtdKind {
    /// `MTD_NORFLASH`.
    Nor,
    /// `MTD_DATAFLASH` (treated as NOR, as libubootenv does).
    DataFlash,
    /// `MTD_NANDFLASH` or `MTD_MLCNANDFLASH`.
    Nand,
    /// Anything else (RAM, ROM, UBI volume, absent), with its type number.
    Other(u8),
}

impl MtdKind {
    fn from_type(t: u8) -> MtdKind {
        match t {
            ioctl::MTD_NORFLASH => MtdKind::Nor,
            ioctl::MTD_DATAFLASH => MtdKind::DataFlash,
            ioctl::MTD_NANDFLASH | ioctl::MTD_MLCNANDFLASH => MtdKind::Nand,
            other => MtdKind::Other(other),
        }
    }
}

/// The geometry `MEMGETINFO` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MtdInfo {
    /// The flash type.
    pub kind: MtdKind,
    /// Partition size in bytes.
    pub size: u64,
    /// Erase block size in bytes.
    pub erase_size: u32,
    /// Minimal write unit in bytes (1 on NOR).
    pub write_size: u32,
}

/// One MTD character device opened for an env copy.
#[derive(Debug)]
pub struct MtdStorage {
    file: File,
    path: PathBuf,
    info: MtdInfo,
    sector: u32,
}

fn err(path: &Path, kind: io::ErrorKind, msg: impl std::fmt::Display) -> io::Error {
    io::Error::new(kind, format!("{}: {msg}", path.display()))
}

impl MtdStorage {
    /// Opens `path` read-only or read-write and asks for its geometry.
    /// Fails unless it is a NOR or DataFlash MTD device.
    ///
    /// `sector_size` is the config's SECTORSIZE (0 or absent: the device's
    /// erase size); it must be a multiple of the erase size.
    pub fn open(path: &Path, writable: bool, sector_size: Option<u64>) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(path)
            .map_err(|e| err(path, e.kind(), e))?;
        let raw = ioctl::mem_get_info(&file).map_err(|e| {
            err(
                path,
                io::ErrorKind::InvalidInput,
                format_args!("not an MTD device (MEMGETINFO failed: {e})"),
            )
        })?;
        let info = MtdInfo {
            kind: MtdKind::from_type(raw.kind),
            size: u64::from(raw.size),
            erase_size: raw.erasesize,
            write_size: raw.writesize,
        };
        match info.kind {
            MtdKind::Nor | MtdKind::DataFlash => {}
            MtdKind::Nand => {
                return Err(err(
                    path,
                    io::ErrorKind::Unsupported,
                    "U-Boot env on NAND MTD partitions is not supported (bad blocks are not \
                     skipped); use a UBI volume with fw_setenv, or NOR",
                ))
            }
            MtdKind::Other(t) => {
                return Err(err(
                    path,
                    io::ErrorKind::Unsupported,
                    format_args!(
                        "MTD type {t} is not NOR, DataFlash or NAND (libubootenv refuses it too)"
                    ),
                ))
            }
        }
        if info.erase_size == 0 || info.write_size == 0 {
            return Err(err(
                path,
                io::ErrorKind::InvalidData,
                "MTD device reports a zero erase or write size",
            ));
        }
        let sector = match sector_size {
            None | Some(0) => info.erase_size,
            Some(s) => {
                let s = u32::try_from(s).ok().filter(|s| s % info.erase_size == 0);
                s.ok_or_else(|| {
                    err(
                        path,
                        io::ErrorKind::InvalidInput,
                        format_args!(
                            "sector size {:#x} in fw_env.config is not a multiple of the \
                             device's erase size {:#x}",
                            sector_size.unwrap_or(0),
                            info.erase_size
                        ),
                    )
                })?
            }
        };
        Ok(MtdStorage {
            file,
            path: path.to_owned(),
            info,
            sector,
        })
    }

    /// The geometry.
    pub fn info(&self) -> MtdInfo {
        self.info
    }

    /// The erase unit used for env copies (the config's sector size, or
    /// the erase size).
    pub fn sector_size(&self) -> u32 {
        self.sector
    }

    /// The flags scheme libubootenv uses on this device: boolean on NOR
    /// and DataFlash.
    pub fn flag_scheme(&self) -> FlagScheme {
        match self.info.kind {
            MtdKind::Nor | MtdKind::DataFlash => FlagScheme::Boolean,
            _ => FlagScheme::Counter,
        }
    }

    /// The byte range an env copy of `len` bytes at `offset` erases:
    /// whole sectors from `offset`.
    pub fn erase_range(&self, offset: u64, len: u64) -> (u64, u64) {
        let sector = u64::from(self.sector);
        let end = offset.saturating_add(len.div_ceil(sector).saturating_mul(sector));
        (offset, end)
    }

    fn check(&self, offset: u64, len: u64) -> io::Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.info.size => Ok(()),
            _ => Err(err(
                &self.path,
                io::ErrorKind::InvalidInput,
                format_args!(
                    "{len:#x} bytes at {offset:#x} run past the end of the {:#x}-byte MTD device",
                    self.info.size
                ),
            )),
        }
    }
}

impl Storage for MtdStorage {
    type Error = io::Error;

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.check(offset, buf.len() as u64)?;
        self.file.read_exact_at(buf, offset)
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.check(offset, data.len() as u64)?;
        self.file.write_all_at(data, offset)
    }

    /// Erases the whole sectors from `offset` covering `len` bytes, as
    /// libubootenv does (so an env copy owns its sectors). `offset` must
    /// be sector-aligned.
    fn erase(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let sector = u64::from(self.sector);
        if offset % sector != 0 {
            return Err(err(
                &self.path,
                io::ErrorKind::InvalidInput,
                format_args!(
                    "env copy at {offset:#x} does not start on an erase block boundary \
                     ({sector:#x} bytes)"
                ),
            ));
        }
        let (start, end) = self.erase_range(offset, len);
        self.check(start, end - start)?;
        let mut at = start;
        while at < end {
            let (Ok(a), Ok(n)) = (u32::try_from(at), u32::try_from(sector)) else {
                return Err(err(
                    &self.path,
                    io::ErrorKind::Unsupported,
                    "MTD offsets beyond 4 GiB are not supported",
                ));
            };
            ioctl::mem_erase(&self.file, a, n).map_err(|e| {
                err(
                    &self.path,
                    e.kind(),
                    format_args!("MEMERASE of {n:#x} bytes at {a:#x} failed: {e}"),
                )
            })?;
            at += sector;
        }
        Ok(())
    }

    /// Writes to an MTD character device reach the flash before `write`
    /// returns; there is nothing to flush (and `fsync` is not supported
    /// there).
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl EnvStorage for MtdStorage {
    fn size(&mut self) -> Option<u64> {
        Some(self.info.size)
    }

    /// NOR programs single bytes (bits 1 → 0) without an erase.
    fn byte_rewritable(&self) -> bool {
        self.info.write_size == 1
    }
}
