//! The U-Boot environment: one copy or a redundant pair, as U-Boot's
//! `saveenv` and libubootenv's `fw_setenv` write them.
//!
//! # Layout of one copy
//!
//! ```text
//! single:     [CRC-32 LE (4)] [data ...............................]
//! redundant:  [CRC-32 LE (4)] [flags (1)] [data ....................]
//! data:       name=value\0 name=value\0 ... \0 padding
//! ```
//!
//! The CRC (zlib/IEEE) covers the whole data area, padding included; the
//! flags byte is not covered. Of two copies the valid one wins; of two valid
//! ones the higher flags wins, except that 0 beats 255 (wrap-around), and
//! equal flags pick the first copy ([`select_copy`]).
//!
//! # Two layers
//!
//! * Pure codecs over caller buffers: [`EnvCopy`] (a checked view of one
//!   copy: CRC, flags, data), [`Env`] (a validated variable list),
//!   [`encode_copy`] (serialise a complete copy).
//! * [`UbootEnv`]: one or two copies on [`EnvStorage`], with
//!   [`load`](UbootEnv::load) and a power-safe batched
//!   [`update`](UbootEnv::update).
//!
//! # Memory
//!
//! Nothing here allocates. The caller provides one buffer of exactly the
//! copy size (`CONFIG_ENV_SIZE`, e.g. 0x4000 or Mender's 0x20000) to
//! [`UbootEnv::load`] and [`UbootEnv::update`]; the active copy is read into
//! it and the new copy is produced from it in two streaming passes (one to
//! compute CRC and size, one to write) through a 256-byte stack chunk, so no
//! second copy-sized buffer is needed. Serialising is quadratic in the number
//! of variables (a few hundred at most in practice).
//!
//! # What is written
//!
//! Like U-Boot and libubootenv, variables are written sorted by name (byte
//! order, as `strcmp`), each name once (a later duplicate in the old data
//! wins, as when U-Boot imports it), entries without `=` dropped, then an
//! empty string, then zero padding (U-Boot's `saveenv` pads with 0x00;
//! readers must never look at padding). A redundant write goes to the
//! inactive copy with `flags = active flags + 1 (mod 256)`, in full,
//! followed by a sync; the active copy is never touched.
//!
//! On NOR flash ([`FlagScheme::Boolean`]) the flags byte is not a counter
//! but active (1) / obsolete (0), as U-Boot's `env/flash.c` and libubootenv
//! on NOR MTD devices use it: the inactive copy is erased and written with
//! flags 1, then the old copy is marked obsolete (flags byte 0).
//!
//! Not supported: big-endian CRC targets (`mkenvimage -b`).

pub mod config;

pub use crate::change::{Change, ChangeError, InvalidChange};
use crate::storage::EnvStorage;
use core::fmt;

/// Size of the CRC field at the start of every copy.
pub const CRC_SIZE: usize = 4;

/// Size of the stack chunk used to stream a new copy to storage.
pub const WRITE_CHUNK: usize = 256;

/// Whether the environment has one copy or a redundant pair, which decides
/// whether a copy has a flags byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redundancy {
    /// One copy, no flags byte (`CONFIG_ENV_REDUNDANT` off, one
    /// `fw_env.config` line). Not power-safe.
    Single,
    /// Two copies, each with a flags byte after the CRC.
    Redundant,
}

impl Redundancy {
    /// Bytes before the data area: 4 (CRC) or 5 (CRC + flags).
    pub const fn header_len(self) -> usize {
        match self {
            Redundancy::Single => CRC_SIZE,
            Redundancy::Redundant => CRC_SIZE + 1,
        }
    }
}

/// One of the two copies, in `fw_env.config` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyId {
    /// The first copy (first config line, U-Boot's `CONFIG_ENV_OFFSET`).
    First,
    /// The second copy (second config line, `CONFIG_ENV_OFFSET_REDUND`).
    Second,
}

impl CopyId {
    /// 0 for [`CopyId::First`], 1 for [`CopyId::Second`].
    pub const fn index(self) -> usize {
        match self {
            CopyId::First => 0,
            CopyId::Second => 1,
        }
    }

    /// The other copy.
    pub const fn other(self) -> CopyId {
        match self {
            CopyId::First => CopyId::Second,
            CopyId::Second => CopyId::First,
        }
    }
}

/// Picks the active copy of a redundant pair, exactly as U-Boot's
/// `env_check_redund` and libubootenv 0.3.2 do.
///
/// Each argument is `Some(flags)` when that copy's CRC is valid, `None`
/// otherwise. Only one valid: that one. Both valid: 0 beats 255
/// (wrap-around), otherwise the higher flags wins, equal flags pick the
/// first copy. So a valid copy whose flags byte reads 0xff beats every
/// other flags value except 0. Neither valid: `None`.
pub fn select_copy(first: Option<u8>, second: Option<u8>) -> Option<CopyId> {
    match (first, second) {
        (None, None) => None,
        (Some(_), None) => Some(CopyId::First),
        (None, Some(_)) => Some(CopyId::Second),
        (Some(255), Some(0)) => Some(CopyId::Second),
        (Some(0), Some(255)) => Some(CopyId::First),
        (Some(a), Some(b)) if b > a => Some(CopyId::Second),
        (Some(_), Some(_)) => Some(CopyId::First),
    }
}

/// How the flags bytes of a redundant pair are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlagScheme {
    /// A counter: the new copy gets the active copy's flags + 1 (mod 256),
    /// the old copy is never touched (U-Boot on MMC, SPI flash and NAND,
    /// libubootenv on files, block devices, NAND and UBI). See
    /// [`select_copy`].
    #[default]
    Counter,
    /// Active (1) / obsolete (0) flags: U-Boot's `env/flash.c` (parallel
    /// NOR, `CONFIG_ENV_IS_IN_FLASH`) and libubootenv on NOR and DataFlash
    /// MTD devices. The new copy is written with 1, then the old copy's
    /// flags byte is programmed to 0 (a single byte where the storage
    /// allows it, as libubootenv does; else the old copy is erased and
    /// rewritten with flags 0, as current U-Boot does). A copy whose flags
    /// byte is still 0xff counts as active. See [`select_copy_boolean`].
    Boolean,
}

/// Picks the active copy of a redundant pair with boolean flags
/// ([`FlagScheme::Boolean`]), as U-Boot's `env_flash_init` does.
///
/// Arguments as for [`select_copy`]. Both valid: active (1) beats obsolete
/// (0); equal flags pick the first copy; otherwise a copy whose flags read
/// 0xff wins (first copy first). libubootenv 0.3.2 agrees except for two
/// valid copies both flagged 0xff, where it picks the second: we follow
/// U-Boot, which decides what boots. For pairs U-Boot has no rule for
/// (e.g. counter values 2 and 3 left by a counter-scheme writer; U-Boot
/// would fall back to its default env) we follow libubootenv: the higher
/// flags wins, so the next write repairs the pair.
pub fn select_copy_boolean(first: Option<u8>, second: Option<u8>) -> Option<CopyId> {
    const ACTIVE: u8 = 1;
    const OBSOLETE: u8 = 0;
    match (first, second) {
        (None, None) => None,
        (Some(_), None) => Some(CopyId::First),
        (None, Some(_)) => Some(CopyId::Second),
        (Some(ACTIVE), Some(OBSOLETE)) => Some(CopyId::First),
        (Some(OBSOLETE), Some(ACTIVE)) => Some(CopyId::Second),
        (Some(a), Some(b)) if a == b => Some(CopyId::First),
        (Some(0xff), Some(_)) => Some(CopyId::First),
        (Some(_), Some(0xff)) => Some(CopyId::Second),
        (Some(a), Some(b)) if b > a => Some(CopyId::Second),
        (Some(_), Some(_)) => Some(CopyId::First),
    }
}

/// Why bytes cannot be viewed as an env copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CopyError {
    /// The copy is shorter than its header plus one data byte.
    TooShort {
        /// Bytes given.
        len: usize,
        /// Smallest acceptable size.
        min: usize,
    },
}

impl fmt::Display for CopyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CopyError::TooShort { len, min } => write!(
                f,
                "U-Boot env copy of {len} bytes is too short (at least {min})"
            ),
        }
    }
}

impl core::error::Error for CopyError {}

/// Why a data area is not a valid variable list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// The entry starting at `offset` (in the data area) has no terminating
    /// NUL before the end of the data area.
    Unterminated {
        /// Offset of the entry in the data area.
        offset: usize,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Unterminated { offset } => write!(
                f,
                "U-Boot env entry at data offset {offset} runs past the end of the data area"
            ),
        }
    }
}

impl core::error::Error for ParseError {}

/// A checked view of one env copy: CRC, optional flags byte, data area.
///
/// Accessors never panic once [`EnvCopy::new`] has accepted the bytes.
#[derive(Debug, Clone, Copy)]
pub struct EnvCopy<'a> {
    bytes: &'a [u8],
    redundancy: Redundancy,
}

impl<'a> EnvCopy<'a> {
    /// Views `bytes` (exactly one copy, `CONFIG_ENV_SIZE` bytes) as a copy
    /// with or without a flags byte. Checks only the length.
    pub fn new(bytes: &'a [u8], redundancy: Redundancy) -> Result<Self, CopyError> {
        let min = redundancy.header_len() + 1;
        if bytes.len() < min {
            return Err(CopyError::TooShort {
                len: bytes.len(),
                min,
            });
        }
        Ok(EnvCopy { bytes, redundancy })
    }

    /// The CRC stored in the header (little-endian).
    pub fn stored_crc(&self) -> u32 {
        let mut crc = [0u8; CRC_SIZE];
        crc.copy_from_slice(&self.bytes[..CRC_SIZE]);
        u32::from_le_bytes(crc)
    }

    /// The CRC of the data area as it is now.
    pub fn computed_crc(&self) -> u32 {
        crc32fast::hash(self.data())
    }

    /// Whether the stored CRC matches the data area.
    pub fn crc_ok(&self) -> bool {
        self.stored_crc() == self.computed_crc()
    }

    /// The flags byte of a redundant copy; `None` for a single copy.
    pub fn flags(&self) -> Option<u8> {
        match self.redundancy {
            Redundancy::Single => None,
            Redundancy::Redundant => Some(self.bytes[CRC_SIZE]),
        }
    }

    /// The data area (variables, terminator and padding).
    pub fn data(&self) -> &'a [u8] {
        &self.bytes[self.redundancy.header_len()..]
    }

    /// The variables, if the CRC is valid (`None` otherwise) and the data
    /// area is well formed.
    pub fn env(&self) -> Option<Result<Env<'a>, ParseError>> {
        if self.crc_ok() {
            Some(Env::parse(self.data()))
        } else {
            None
        }
    }
}

/// One variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Var<'a> {
    /// The name (no `=`, no NUL, not empty).
    pub name: &'a [u8],
    /// The value (no NUL; may contain newlines; may be empty).
    pub value: &'a [u8],
}

impl<'a> Var<'a> {
    /// The name as text, if it is UTF-8.
    pub fn name_str(&self) -> Option<&'a str> {
        core::str::from_utf8(self.name).ok()
    }

    /// The value as text, if it is UTF-8.
    pub fn value_str(&self) -> Option<&'a str> {
        core::str::from_utf8(self.value).ok()
    }
}

/// A validated U-Boot variable list (the used part of a data area).
///
/// Reading follows U-Boot and libubootenv: entries are `name=value\0` up to
/// an empty string (or the end of the data area); an entry without `=` or
/// with an empty name is ignored; when a name appears twice the later entry
/// wins. Values are returned as stored: an empty value (`name=`) is a
/// variable with an empty value for libubootenv, while U-Boot itself drops
/// such entries on import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Env<'a> {
    entries: &'a [u8],
}

impl<'a> Env<'a> {
    /// Validates a data area: every entry before the terminating empty
    /// string must be NUL-terminated inside `data`. Reaching the end of
    /// `data` right after a complete entry is accepted as the end of the
    /// list (U-Boot's importer stops there too).
    pub fn parse(data: &'a [u8]) -> Result<Self, ParseError> {
        let mut pos = 0;
        while pos < data.len() && data[pos] != 0 {
            match data[pos..].iter().position(|&b| b == 0) {
                Some(nul) => pos += nul + 1,
                None => return Err(ParseError::Unterminated { offset: pos }),
            }
        }
        Ok(Env {
            entries: &data[..pos],
        })
    }

    /// An empty list.
    pub const fn empty() -> Env<'static> {
        Env { entries: &[] }
    }

    /// Bytes the list occupies in the data area, including the terminating
    /// empty string.
    pub fn used_len(&self) -> usize {
        self.entries.len() + 1
    }

    /// Every valid entry in storage order, duplicates included.
    pub fn entries(&self) -> Entries<'a> {
        Entries { rest: self.entries }
    }

    /// The value of `name` (the last entry with that name).
    pub fn get(&self, name: impl AsRef<[u8]>) -> Option<&'a [u8]> {
        let name = name.as_ref();
        self.entries()
            .filter(|v| v.name == name)
            .last()
            .map(|v| v.value)
    }

    /// The value of `name` as text (`None` when absent or not UTF-8).
    pub fn get_str(&self, name: impl AsRef<[u8]>) -> Option<&'a str> {
        self.get(name).and_then(|v| core::str::from_utf8(v).ok())
    }

    /// The variables as U-Boot and `fw_printenv` see them: each name once
    /// (its last value), sorted by name.
    pub fn sorted(&self) -> Sorted<'a> {
        Sorted {
            env: *self,
            last: None,
        }
    }

    /// Number of distinct names.
    pub fn count(&self) -> usize {
        self.sorted().count()
    }

    /// The smallest name greater than `after` (or the smallest of all).
    fn next_name_after(&self, after: Option<&[u8]>) -> Option<&'a [u8]> {
        let mut best: Option<&'a [u8]> = None;
        for var in self.entries() {
            if after.is_some_and(|a| var.name <= a) {
                continue;
            }
            if best.is_none_or(|b| var.name < b) {
                best = Some(var.name);
            }
        }
        best
    }
}

/// Iterator over the entries of an [`Env`] in storage order.
#[derive(Debug, Clone)]
pub struct Entries<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Entries<'a> {
    type Item = Var<'a>;

    fn next(&mut self) -> Option<Var<'a>> {
        while !self.rest.is_empty() {
            let end = self
                .rest
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(self.rest.len());
            let entry = &self.rest[..end];
            self.rest = self.rest.get(end + 1..).unwrap_or(&[]);
            if let Some(eq) = entry.iter().position(|&b| b == b'=') {
                if eq > 0 {
                    return Some(Var {
                        name: &entry[..eq],
                        value: &entry[eq + 1..],
                    });
                }
            }
        }
        None
    }
}

/// Iterator over an [`Env`]'s effective variables sorted by name.
#[derive(Debug, Clone)]
pub struct Sorted<'a> {
    env: Env<'a>,
    last: Option<&'a [u8]>,
}

impl<'a> Iterator for Sorted<'a> {
    type Item = Var<'a>;

    fn next(&mut self) -> Option<Var<'a>> {
        let name = self.env.next_name_after(self.last)?;
        self.last = Some(name);
        let value = self.env.get(name)?;
        Some(Var { name, value })
    }
}

fn validate_changes(changes: &[Change<'_>]) -> Result<(), InvalidChange> {
    for (index, change) in changes.iter().enumerate() {
        change
            .validate_uboot()
            .map_err(|error| InvalidChange { index, error })?;
    }
    Ok(())
}

/// The variable set after applying `changes` (in order, the last change of
/// a name wins) to `base`, iterated sorted by name.
struct Merge<'e, 'c> {
    base: Env<'e>,
    changes: &'c [Change<'c>],
}

impl<'e, 'c> Merge<'e, 'c> {
    fn change_for(&self, name: &[u8]) -> Option<&Change<'c>> {
        self.changes.iter().rev().find(|c| c.name() == name)
    }

    fn next_change_name_after(&self, after: Option<&[u8]>) -> Option<&'c [u8]> {
        let mut best: Option<&'c [u8]> = None;
        for change in self.changes {
            if after.is_some_and(|a| change.name() <= a) {
                continue;
            }
            if best.is_none_or(|b| change.name() < b) {
                best = Some(change.name());
            }
        }
        best
    }

    /// Calls `emit(name, value)` for every resulting variable in order.
    fn for_each<E>(&self, mut emit: impl FnMut(&[u8], &[u8]) -> Result<(), E>) -> Result<(), E> {
        let mut last: Option<&[u8]> = None;
        loop {
            let from_base = self.base.next_name_after(last);
            let from_changes = self.next_change_name_after(last);
            let name: &[u8] = match (from_base, from_changes) {
                (None, None) => return Ok(()),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (Some(a), Some(b)) => {
                    if a <= b {
                        a
                    } else {
                        b
                    }
                }
            };
            last = Some(name);
            let value = match self.change_for(name) {
                Some(change) => change.value(),
                None => self.base.get(name),
            };
            if let Some(value) = value {
                emit(name, value)?;
            }
        }
    }

    /// Whether applying the changes leaves every variable as it is.
    fn is_noop(&self) -> bool {
        self.changes.iter().all(|c| {
            // Only the last change of a name counts.
            let effective = self.change_for(c.name()).map(|c| c.value());
            effective == Some(self.base.get(c.name()))
        })
    }

    /// Serialises the data bytes (without padding) into `sink`.
    fn serialize<S: Sink>(&self, sink: &mut S) -> Result<(), S::Error> {
        self.for_each(|name, value| {
            sink.put(name)?;
            sink.put(b"=")?;
            sink.put(value)?;
            sink.put(b"\0")
        })?;
        sink.put(b"\0")
    }
}

trait Sink {
    type Error;
    fn put(&mut self, bytes: &[u8]) -> Result<(), Self::Error>;
}

/// Pass 1: length and CRC of the data area.
struct Measure {
    hasher: crc32fast::Hasher,
    len: usize,
}

impl Sink for Measure {
    type Error = core::convert::Infallible;
    fn put(&mut self, bytes: &[u8]) -> Result<(), Self::Error> {
        self.hasher.update(bytes);
        self.len += bytes.len();
        Ok(())
    }
}

impl Measure {
    fn new() -> Self {
        Measure {
            hasher: crc32fast::Hasher::new(),
            len: 0,
        }
    }

    /// Adds `count` padding bytes of value `pad`.
    fn pad(&mut self, pad: u8, mut count: usize) {
        self.len += count;
        let chunk = [pad; 64];
        while count > 0 {
            let n = count.min(chunk.len());
            self.hasher.update(&chunk[..n]);
            count -= n;
        }
    }
}

/// Writes into a byte slice (bounds already checked by a measuring pass).
struct SliceSink<'a> {
    out: &'a mut [u8],
    pos: usize,
}

impl Sink for SliceSink<'_> {
    type Error = ();
    fn put(&mut self, bytes: &[u8]) -> Result<(), ()> {
        let end = self.pos.checked_add(bytes.len()).ok_or(())?;
        self.out
            .get_mut(self.pos..end)
            .ok_or(())?
            .copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }
}

/// Pass 2: streams bytes to storage in [`WRITE_CHUNK`]-sized writes.
struct ChunkWriter<'s, S> {
    storage: &'s mut S,
    offset: u64,
    chunk: [u8; WRITE_CHUNK],
    fill: usize,
}

impl<S: EnvStorage> ChunkWriter<'_, S> {
    fn flush(&mut self) -> Result<(), S::Error> {
        if self.fill > 0 {
            self.storage.write(self.offset, &self.chunk[..self.fill])?;
            self.offset = self.offset.saturating_add(self.fill as u64);
            self.fill = 0;
        }
        Ok(())
    }
}

impl<S: EnvStorage> Sink for ChunkWriter<'_, S> {
    type Error = S::Error;
    fn put(&mut self, mut bytes: &[u8]) -> Result<(), S::Error> {
        while !bytes.is_empty() {
            let n = bytes.len().min(WRITE_CHUNK - self.fill);
            self.chunk[self.fill..self.fill + n].copy_from_slice(&bytes[..n]);
            self.fill += n;
            bytes = &bytes[n..];
            if self.fill == WRITE_CHUNK {
                self.flush()?;
            }
        }
        Ok(())
    }
}

fn put_padding<S: Sink>(sink: &mut S, pad: u8, mut count: usize) -> Result<(), S::Error> {
    let chunk = [pad; 64];
    while count > 0 {
        let n = count.min(chunk.len());
        sink.put(&chunk[..n])?;
        count -= n;
    }
    Ok(())
}

/// Why [`encode_copy`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// The output buffer cannot hold the header and one data byte.
    BufferTooSmall {
        /// Bytes given.
        len: usize,
    },
    /// A change has an invalid name or value.
    InvalidChange(InvalidChange),
    /// The variables do not fit in the data area.
    TooLarge {
        /// Data bytes needed, terminator included.
        needed: usize,
        /// Size of the data area.
        available: usize,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::BufferTooSmall { len } => {
                write!(f, "a {len}-byte buffer is too small for a U-Boot env copy")
            }
            EncodeError::InvalidChange(e) => write!(f, "{e}"),
            EncodeError::TooLarge { needed, available } => write!(
                f,
                "U-Boot env needs {needed} data bytes but the data area holds {available}"
            ),
        }
    }
}

impl core::error::Error for EncodeError {}

/// Serialises a complete copy into `out` (the copy size): `base` with
/// `changes` applied, sorted by name, then the terminator, then `pad` bytes;
/// the CRC; and for [`Redundancy::Redundant`] the given `flags`.
///
/// Use it to provision an env (`base` = [`Env::empty`]) or to build test
/// images. Returns the number of data bytes used, terminator included.
pub fn encode_copy(
    out: &mut [u8],
    redundancy: Redundancy,
    flags: u8,
    base: Env<'_>,
    changes: &[Change<'_>],
    pad: u8,
) -> Result<usize, EncodeError> {
    let header = redundancy.header_len();
    if out.len() <= header {
        return Err(EncodeError::BufferTooSmall { len: out.len() });
    }
    validate_changes(changes).map_err(EncodeError::InvalidChange)?;
    let merge = Merge { base, changes };
    let available = out.len() - header;
    let mut measure = Measure::new();
    let Ok(()) = merge.serialize(&mut measure);
    if measure.len > available {
        return Err(EncodeError::TooLarge {
            needed: measure.len,
            available,
        });
    }
    let used = measure.len;
    let (head, data) = out.split_at_mut(header);
    let mut sink = SliceSink { out: data, pos: 0 };
    // Cannot fail: the measuring pass proved the data fits.
    if merge.serialize(&mut sink).is_err() {
        return Err(EncodeError::TooLarge {
            needed: used,
            available,
        });
    }
    data[used..].fill(pad);
    head[..CRC_SIZE].copy_from_slice(&crc32fast::hash(data).to_le_bytes());
    if redundancy == Redundancy::Redundant {
        head[CRC_SIZE] = flags;
    }
    Ok(used)
}

/// Where one copy lives: a storage and the offset of the copy in it.
#[derive(Debug)]
pub struct EnvLocation<S> {
    /// The device or file holding the copy.
    pub storage: S,
    /// Byte offset of the copy's first (CRC) byte.
    pub offset: u64,
}

/// Why [`UbootEnv::load`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoadError<E> {
    /// Reading the storage failed.
    Storage(E),
    /// The buffer is not exactly the copy size.
    BufferSize {
        /// The configured copy size.
        expected: usize,
        /// The buffer length given.
        actual: usize,
    },
    /// The configured copy size cannot hold a header and one data byte.
    SizeTooSmall {
        /// The configured copy size.
        size: usize,
    },
    /// No copy has a valid CRC: U-Boot would boot with its built-in default
    /// env and `fw_printenv` reports "Cannot read environment".
    NoValidCopy,
    /// The active copy has a valid CRC but its variable list is malformed.
    Malformed {
        /// The active copy.
        copy: CopyId,
        /// What is wrong.
        error: ParseError,
    },
    /// The selected copy's CRC no longer matched when it was re-read: the
    /// env changed while it was being read (someone wrote it without the
    /// lock).
    ChangedWhileReading,
}

impl<E: fmt::Display> fmt::Display for LoadError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Storage(e) => write!(f, "reading the U-Boot env failed: {e}"),
            LoadError::BufferSize { expected, actual } => write!(
                f,
                "buffer of {actual} bytes given for a {expected}-byte U-Boot env copy"
            ),
            LoadError::SizeTooSmall { size } => {
                write!(f, "U-Boot env size {size} is too small")
            }
            LoadError::NoValidCopy => f.write_str("no U-Boot env copy has a valid CRC"),
            LoadError::Malformed { copy, error } => {
                write!(f, "U-Boot env copy {}: {error}", copy.index())
            }
            LoadError::ChangedWhileReading => {
                f.write_str("the U-Boot env changed while it was being read")
            }
        }
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for LoadError<E> {}

/// Why [`UbootEnv::update`] failed. Unless the error is
/// [`UpdateError::Storage`], nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpdateError<E> {
    /// The current env could not be loaded; an update never starts from
    /// scratch (that would drop `bootcmd` and friends).
    Load(LoadError<E>),
    /// A change has an invalid name or value.
    InvalidChange(InvalidChange),
    /// The new variables do not fit in the data area.
    TooLarge {
        /// Data bytes needed, terminator included.
        needed: usize,
        /// Size of the data area.
        available: usize,
    },
    /// Erasing, writing or syncing the target copy failed; the target copy
    /// may be torn, the other copy is untouched.
    Storage(E),
}

impl<E: fmt::Display> fmt::Display for UpdateError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpdateError::Load(e) => write!(f, "{e}"),
            UpdateError::InvalidChange(e) => write!(f, "{e}"),
            UpdateError::TooLarge { needed, available } => write!(
                f,
                "U-Boot env needs {needed} data bytes but the data area holds {available}"
            ),
            UpdateError::Storage(e) => write!(f, "writing the U-Boot env failed: {e}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for UpdateError<E> {}

/// What [`UbootEnv::update`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpdateOutcome {
    /// Every change was already in effect; nothing was written (as
    /// `fw_setenv` does).
    Unchanged,
    /// The new env was written and synced.
    Written {
        /// The copy that was written and is now active.
        copy: CopyId,
        /// Its flags byte (`None` for a single copy).
        flags: Option<u8>,
    },
}

/// The env as loaded: the active copy's variables and where they came from.
#[derive(Debug, Clone, Copy)]
pub struct LoadedEnv<'b> {
    /// The variables of the active copy.
    pub env: Env<'b>,
    /// The active copy.
    pub copy: CopyId,
    /// The active copy's flags byte (`None` for a single copy).
    pub flags: Option<u8>,
    /// Whether the other copy of a redundant pair also has a valid CRC
    /// (always `false` for a single copy).
    pub other_valid: bool,
}

/// A U-Boot env on storage: one copy, or a redundant pair.
///
/// All copies have the same size (`CONFIG_ENV_SIZE`). Each copy has its
/// own storage value: for two copies on one device (eMMC style), open the
/// device once per copy, as libubootenv does.
#[derive(Debug)]
pub struct UbootEnv<S> {
    first: EnvLocation<S>,
    second: Option<EnvLocation<S>>,
    size: usize,
    scheme: FlagScheme,
}

impl<S: EnvStorage> UbootEnv<S> {
    /// A single-copy env (no flags byte). Not power-safe: a torn write
    /// leaves no valid copy.
    pub fn single(storage: S, offset: u64, size: usize) -> Self {
        UbootEnv {
            first: EnvLocation { storage, offset },
            second: None,
            size,
            scheme: FlagScheme::Counter,
        }
    }

    /// A redundant pair (each copy has a flags byte).
    pub fn redundant(first: EnvLocation<S>, second: EnvLocation<S>, size: usize) -> Self {
        UbootEnv {
            first,
            second: Some(second),
            size,
            scheme: FlagScheme::Counter,
        }
    }

    /// Sets how the flags bytes are used (default [`FlagScheme::Counter`];
    /// [`FlagScheme::Boolean`] for a redundant env on NOR flash). Has no
    /// effect on a single copy.
    pub fn with_flag_scheme(mut self, scheme: FlagScheme) -> Self {
        self.scheme = scheme;
        self
    }

    /// How the flags bytes are used.
    pub fn flag_scheme(&self) -> FlagScheme {
        self.scheme
    }

    /// The size of one copy.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Single or redundant.
    pub fn redundancy(&self) -> Redundancy {
        if self.second.is_some() {
            Redundancy::Redundant
        } else {
            Redundancy::Single
        }
    }

    /// The location of a copy (`None` for the second copy of a single env).
    pub fn location(&self, copy: CopyId) -> Option<&EnvLocation<S>> {
        match copy {
            CopyId::First => Some(&self.first),
            CopyId::Second => self.second.as_ref(),
        }
    }

    /// The location of a copy, mutably.
    pub fn location_mut(&mut self, copy: CopyId) -> Option<&mut EnvLocation<S>> {
        match copy {
            CopyId::First => Some(&mut self.first),
            CopyId::Second => self.second.as_mut(),
        }
    }

    /// Gives back the storages.
    pub fn into_locations(self) -> (EnvLocation<S>, Option<EnvLocation<S>>) {
        (self.first, self.second)
    }

    /// Reads the env into `buf` (exactly [`size`](UbootEnv::size) bytes)
    /// and returns the active copy's variables, borrowed from `buf`.
    ///
    /// A redundant pair costs at most three reads: the first copy into
    /// `buf`, the second one streamed through a stack chunk for its CRC, and
    /// the second one again into `buf` if it wins (its CRC is checked again).
    pub fn load<'b>(&mut self, buf: &'b mut [u8]) -> Result<LoadedEnv<'b>, LoadError<S::Error>> {
        let redundancy = self.redundancy();
        if buf.len() != self.size {
            return Err(LoadError::BufferSize {
                expected: self.size,
                actual: buf.len(),
            });
        }
        if self.size <= redundancy.header_len() {
            return Err(LoadError::SizeTooSmall { size: self.size });
        }
        self.first
            .storage
            .read(self.first.offset, buf)
            .map_err(LoadError::Storage)?;
        let (first_ok, first_flags) = {
            let copy = EnvCopy::new(buf, redundancy)
                .map_err(|_| LoadError::SizeTooSmall { size: self.size })?;
            (copy.crc_ok(), copy.flags())
        };
        let Some(second) = self.second.as_mut() else {
            if !first_ok {
                return Err(LoadError::NoValidCopy);
            }
            return finish_load(buf, redundancy, CopyId::First, false);
        };

        let (second_ok, second_flags) = scan_copy(second, self.size)?;
        let first_state = first_ok.then_some(first_flags.unwrap_or(0));
        let second_state = second_ok.then_some(second_flags);
        let selected = match self.scheme {
            FlagScheme::Counter => select_copy(first_state, second_state),
            FlagScheme::Boolean => select_copy_boolean(first_state, second_state),
        };
        match selected {
            None => Err(LoadError::NoValidCopy),
            Some(CopyId::First) => finish_load(buf, redundancy, CopyId::First, second_ok),
            Some(CopyId::Second) => {
                second
                    .storage
                    .read(second.offset, buf)
                    .map_err(LoadError::Storage)?;
                finish_load(buf, redundancy, CopyId::Second, first_ok)
            }
        }
    }

    /// Applies `changes` (in order; for a name changed twice the last
    /// change wins) in one write, the way `fw_setenv a 1 b 2` does.
    ///
    /// `buf` must be exactly [`size`](UbootEnv::size) bytes; its content
    /// afterwards is the old active copy (with [`FlagScheme::Boolean`] and
    /// storage that is not [`byte_rewritable`](EnvStorage::byte_rewritable),
    /// its flags byte reads 0). Redundant: writes the inactive
    /// copy in full (erase, [`WRITE_CHUNK`]-sized writes from the CRC
    /// onwards, sync) with the active copy's flags + 1 (mod 256), leaving
    /// the active copy untouched, so a power cut at any byte leaves either
    /// the old or the new env. With [`FlagScheme::Boolean`] the new copy
    /// gets flags 1 and, once it is complete, the old copy is marked
    /// obsolete (flags 0); until then the pair still reads as the old env
    /// or (new copy first in the config) already as the new one, never
    /// anything else. Single: rewrites the only copy (not power-safe). If
    /// no change alters anything, nothing is written.
    pub fn update(
        &mut self,
        buf: &mut [u8],
        changes: &[Change<'_>],
    ) -> Result<UpdateOutcome, UpdateError<S::Error>> {
        validate_changes(changes).map_err(UpdateError::InvalidChange)?;
        let redundancy = self.redundancy();
        let size = self.size;
        let loaded = self.load(buf).map_err(UpdateError::Load)?;
        let merge = Merge {
            base: loaded.env,
            changes,
        };
        if merge.is_noop() {
            return Ok(UpdateOutcome::Unchanged);
        }

        let header = redundancy.header_len();
        let available = size - header;
        let mut measure = Measure::new();
        let Ok(()) = merge.serialize(&mut measure);
        if measure.len > available {
            return Err(UpdateError::TooLarge {
                needed: measure.len,
                available,
            });
        }
        let pad_len = available - measure.len;
        measure.pad(0, pad_len);
        let crc = measure.hasher.finalize();

        let old_copy = loaded.copy;
        let old_flags = loaded.flags.unwrap_or(0);
        let (target_id, flags) = match (redundancy, self.scheme) {
            (Redundancy::Single, _) => (CopyId::First, None),
            (Redundancy::Redundant, FlagScheme::Counter) => {
                (old_copy.other(), Some(old_flags.wrapping_add(1)))
            }
            (Redundancy::Redundant, FlagScheme::Boolean) => (old_copy.other(), Some(1)),
        };
        let target = match target_id {
            CopyId::First => &mut self.first,
            CopyId::Second => match self.second.as_mut() {
                Some(second) => second,
                None => &mut self.first,
            },
        };
        target
            .storage
            .erase(target.offset, size as u64)
            .map_err(UpdateError::Storage)?;
        let mut writer = ChunkWriter {
            storage: &mut target.storage,
            offset: target.offset,
            chunk: [0; WRITE_CHUNK],
            fill: 0,
        };
        writer
            .put(&crc.to_le_bytes())
            .map_err(UpdateError::Storage)?;
        if let Some(flags) = flags {
            writer.put(&[flags]).map_err(UpdateError::Storage)?;
        }
        merge.serialize(&mut writer).map_err(UpdateError::Storage)?;
        put_padding(&mut writer, 0, pad_len).map_err(UpdateError::Storage)?;
        writer.flush().map_err(UpdateError::Storage)?;
        target.storage.sync().map_err(UpdateError::Storage)?;
        if redundancy == Redundancy::Redundant && self.scheme == FlagScheme::Boolean {
            self.mark_obsolete(old_copy, old_flags, buf)
                .map_err(UpdateError::Storage)?;
        }
        Ok(UpdateOutcome::Written {
            copy: target_id,
            flags,
        })
    }

    /// Boolean flags: programs the flags byte of `copy` (whose bytes are in
    /// `buf`) to 0, in place when the storage can rewrite one byte, else by
    /// erasing and rewriting the copy.
    fn mark_obsolete(&mut self, copy: CopyId, flags: u8, buf: &mut [u8]) -> Result<(), S::Error> {
        const OBSOLETE: u8 = 0;
        if flags == OBSOLETE {
            return Ok(());
        }
        let loc = match copy {
            CopyId::First => &mut self.first,
            CopyId::Second => match self.second.as_mut() {
                Some(second) => second,
                None => return Ok(()),
            },
        };
        let flags_at = loc.offset.saturating_add(CRC_SIZE as u64);
        if loc.storage.byte_rewritable() {
            loc.storage.write(flags_at, &[OBSOLETE])?;
            return loc.storage.sync();
        }
        if let Some(b) = buf.get_mut(CRC_SIZE) {
            *b = OBSOLETE;
        }
        loc.storage.erase(loc.offset, buf.len() as u64)?;
        let mut at = loc.offset;
        for chunk in buf.chunks(WRITE_CHUNK) {
            loc.storage.write(at, chunk)?;
            at = at.saturating_add(chunk.len() as u64);
        }
        loc.storage.sync()
    }
}

/// Reads a copy through a stack chunk: (CRC valid, flags byte).
fn scan_copy<S: EnvStorage>(
    loc: &mut EnvLocation<S>,
    size: usize,
) -> Result<(bool, u8), LoadError<S::Error>> {
    let header = Redundancy::Redundant.header_len();
    let mut head = [0u8; CRC_SIZE + 1];
    loc.storage
        .read(loc.offset, &mut head)
        .map_err(LoadError::Storage)?;
    let mut hasher = crc32fast::Hasher::new();
    let mut chunk = [0u8; WRITE_CHUNK];
    let mut pos = header;
    while pos < size {
        let n = (size - pos).min(WRITE_CHUNK);
        loc.storage
            .read(loc.offset.saturating_add(pos as u64), &mut chunk[..n])
            .map_err(LoadError::Storage)?;
        hasher.update(&chunk[..n]);
        pos += n;
    }
    let stored = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    Ok((stored == hasher.finalize(), head[CRC_SIZE]))
}

fn finish_load<E>(
    buf: &[u8],
    redundancy: Redundancy,
    copy_id: CopyId,
    other_valid: bool,
) -> Result<LoadedEnv<'_>, LoadError<E>> {
    let copy =
        EnvCopy::new(buf, redundancy).map_err(|_| LoadError::SizeTooSmall { size: buf.len() })?;
    match copy.env() {
        None => Err(LoadError::ChangedWhileReading),
        Some(Err(error)) => Err(LoadError::Malformed {
            copy: copy_id,
            error,
        }),
        Some(Ok(env)) => Ok(LoadedEnv {
            env,
            copy: copy_id,
            flags: copy.flags(),
            other_valid,
        }),
    }
}

#[cfg(test)]
mod tests;
