//! Where a bootloader environment lives: [`EnvStorage`], the core's
//! [`Storage`] (read, write, erase, sync at byte offsets) plus what the
//! env codecs need to know about the device; an in-memory implementation
//! that can cut power in the middle of a write; and (with the `std`
//! feature) a file- or block-device-backed one.
//!
//! The codecs in this crate only ever call [`EnvStorage`]; they never open
//! files or touch hardware themselves. Any [`Storage`] becomes an
//! [`EnvStorage`] with an empty `impl` (the defaults suit files and block
//! devices), so one storage type serves both the agent's state store and
//! the bootloader env.

use core::cell::RefCell;
use core::fmt;

pub use updraft_core::storage::Storage;

/// Byte-addressed storage holding one or more environment copies: a
/// [`Storage`], plus its size and whether a written byte can be written
/// again.
///
/// Offsets are absolute positions in the device or file. One `EnvStorage`
/// value stands for one device; two U-Boot copies on two devices (or on the
/// same file opened twice, as libubootenv does) use two values.
///
/// Contract the codecs rely on (that of [`Storage`]):
/// * [`read`](Storage::read) fills the whole buffer or fails;
/// * [`erase`](Storage::erase) is called once before a region is
///   rewritten (flash erases it; files and block devices do nothing);
/// * [`write`](Storage::write) stores all bytes or fails; a write is not
///   durable until [`sync`](Storage::sync) returns.
pub trait EnvStorage: Storage {
    /// Total size in bytes, when the storage knows it. Used to resolve
    /// negative `fw_env.config` offsets (counted from the end).
    fn size(&mut self) -> Option<u64> {
        None
    }

    /// Whether one byte that is already written can be written again on
    /// its own, changing bits only from 1 to 0, without an erase first.
    ///
    /// True for files, block devices and memory (the default). NOR flash:
    /// only when the chip allows programming a word twice
    /// ([`NorStorage::multiwrite`](crate::nor::NorStorage::multiwrite)).
    /// The U-Boot codec uses it to mark a NOR env copy obsolete in place
    /// (one flags byte, as libubootenv does); without it the copy is erased
    /// and rewritten with the new flags byte, as current U-Boot does.
    fn byte_rewritable(&self) -> bool {
        true
    }
}

impl<T: EnvStorage + ?Sized> EnvStorage for &mut T {
    fn size(&mut self) -> Option<u64> {
        (**self).size()
    }

    fn byte_rewritable(&self) -> bool {
        (**self).byte_rewritable()
    }
}

/// Several users of one device: both copies of a redundant U-Boot env on
/// one NOR flash, for instance, each [`EnvLocation`](crate::uboot::EnvLocation)
/// holding a `Shared` of the same `RefCell`.
///
/// Each call borrows the cell for its own duration only; the codecs never
/// call a storage from inside another storage call, so the borrow cannot
/// clash unless the caller holds a borrow of its own across a codec call.
#[derive(Debug)]
pub struct Shared<'a, T: ?Sized>(pub &'a RefCell<T>);

impl<T: ?Sized> Clone for Shared<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: ?Sized> Copy for Shared<'_, T> {}

impl<T: Storage + ?Sized> Storage for Shared<'_, T> {
    type Error = T::Error;

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Self::Error> {
        self.0.borrow_mut().read(offset, buf)
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), Self::Error> {
        self.0.borrow_mut().write(offset, data)
    }

    fn erase(&mut self, offset: u64, len: u64) -> Result<(), Self::Error> {
        self.0.borrow_mut().erase(offset, len)
    }

    fn sync(&mut self) -> Result<(), Self::Error> {
        self.0.borrow_mut().sync()
    }
}

impl<T: EnvStorage + ?Sized> EnvStorage for Shared<'_, T> {
    fn size(&mut self) -> Option<u64> {
        self.0.borrow_mut().size()
    }

    fn byte_rewritable(&self) -> bool {
        self.0.borrow().byte_rewritable()
    }
}

/// Why a [`MemStorage`] operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MemError {
    /// The range `offset..offset + len` is not inside the memory.
    OutOfBounds {
        /// Start of the requested range.
        offset: u64,
        /// Length of the requested range.
        len: usize,
    },
    /// The simulated power cut happened during or before this write or
    /// erase: only the bytes allowed by the cut budget reached the memory.
    PowerLost,
}

impl fmt::Display for MemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemError::OutOfBounds { offset, len } => {
                write!(f, "{len} bytes at offset {offset} are outside the memory")
            }
            MemError::PowerLost => f.write_str("simulated power cut: write lost"),
        }
    }
}

impl core::error::Error for MemError {}

/// In-memory storage over any byte buffer (`[u8; N]`, `&mut [u8]`,
/// `Vec<u8>`), with an optional simulated power cut.
///
/// [`cut_after`](MemStorage::cut_after)`(n)` lets exactly `n` more bytes be
/// written: the write that crosses the budget stores its first bytes up to
/// the budget and fails with [`MemError::PowerLost`]; every later write and
/// erase stores nothing and fails the same way. Reads keep working, so a test
/// can "reboot" and read back what survived, or call
/// [`restore_power`](MemStorage::restore_power) to go on writing.
///
/// It differs from the core's `MemStorage` (flash-like: erase always
/// fills, it counts operations) where the codecs' tests need it to: erase
/// does nothing by default (block-device semantics), and it counts the
/// bytes written. With
/// [`with_erase_value`](MemStorage::with_erase_value) it fills the range with
/// that byte, like NOR flash (an erase is all-or-nothing: it happens only
/// while the budget is not exhausted).
#[derive(Debug, Clone)]
pub struct MemStorage<B> {
    data: B,
    budget: Option<usize>,
    powered: bool,
    written: usize,
    erase_value: Option<u8>,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> MemStorage<B> {
    /// Storage over `data`, power on, no cut scheduled.
    pub fn new(data: B) -> Self {
        MemStorage {
            data,
            budget: None,
            powered: true,
            written: 0,
            erase_value: None,
        }
    }

    /// Makes [`Storage::erase`] fill erased ranges with `value`.
    pub fn with_erase_value(mut self, value: u8) -> Self {
        self.erase_value = Some(value);
        self
    }

    /// Schedules a power cut after `bytes` more written bytes.
    pub fn cut_after(&mut self, bytes: usize) {
        self.budget = Some(bytes);
    }

    /// Powers the storage back on and cancels any scheduled cut.
    pub fn restore_power(&mut self) {
        self.budget = None;
        self.powered = true;
    }

    /// Whether a scheduled cut has happened.
    pub fn power_lost(&self) -> bool {
        !self.powered
    }

    /// Bytes actually stored by writes since creation (or the last
    /// [`reset_counter`](MemStorage::reset_counter)).
    pub fn bytes_written(&self) -> usize {
        self.written
    }

    /// Sets [`bytes_written`](MemStorage::bytes_written) back to 0.
    pub fn reset_counter(&mut self) {
        self.written = 0;
    }

    /// The whole memory.
    pub fn as_bytes(&self) -> &[u8] {
        self.data.as_ref()
    }

    /// The whole memory, writable (bypasses the power-cut simulation).
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        self.data.as_mut()
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> B {
        self.data
    }

    fn range(&self, offset: u64, len: usize) -> Result<core::ops::Range<usize>, MemError> {
        let oob = MemError::OutOfBounds { offset, len };
        let start = usize::try_from(offset).map_err(|_| oob)?;
        let end = start.checked_add(len).ok_or(oob)?;
        if end > self.data.as_ref().len() {
            return Err(oob);
        }
        Ok(start..end)
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Storage for MemStorage<B> {
    type Error = MemError;

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let range = self.range(offset, buf.len())?;
        buf.copy_from_slice(&self.data.as_ref()[range]);
        Ok(())
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), MemError> {
        let range = self.range(offset, data.len())?;
        if !self.powered {
            return Err(MemError::PowerLost);
        }
        let allowed = match self.budget {
            Some(budget) => budget.min(data.len()),
            None => data.len(),
        };
        let dest = &mut self.data.as_mut()[range];
        dest[..allowed].copy_from_slice(&data[..allowed]);
        self.written += allowed;
        if let Some(budget) = self.budget.as_mut() {
            *budget -= allowed;
            if allowed < data.len() {
                self.powered = false;
                return Err(MemError::PowerLost);
            }
        }
        Ok(())
    }

    fn erase(&mut self, offset: u64, len: u64) -> Result<(), MemError> {
        let len_usize = usize::try_from(len).map_err(|_| MemError::OutOfBounds {
            offset,
            len: usize::MAX,
        })?;
        let range = self.range(offset, len_usize)?;
        if !self.powered || self.budget == Some(0) {
            self.powered = false;
            return Err(MemError::PowerLost);
        }
        if let Some(value) = self.erase_value {
            self.data.as_mut()[range].fill(value);
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), MemError> {
        if self.powered {
            Ok(())
        } else {
            Err(MemError::PowerLost)
        }
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> EnvStorage for MemStorage<B> {
    fn size(&mut self) -> Option<u64> {
        u64::try_from(self.data.as_ref().len()).ok()
    }
}

#[cfg(feature = "std")]
pub use file::FileStorage;

#[cfg(feature = "std")]
mod file {
    use super::{EnvStorage, Storage};
    use std::fs::{File, OpenOptions};
    use std::io::{self, Read, Seek, SeekFrom, Write};
    use std::path::Path;

    /// A file or block device opened read-write (never created, never
    /// truncated), like libubootenv opens an env device. Writes go through
    /// `write_all`; [`Storage::sync`] is `fsync`.
    #[derive(Debug)]
    pub struct FileStorage {
        file: File,
    }

    impl FileStorage {
        /// Opens an existing file or device for reading and writing.
        pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
            let file = OpenOptions::new().read(true).write(true).open(path)?;
            Ok(FileStorage { file })
        }

        /// Opens an existing file or device for reading only; writes fail.
        pub fn open_read_only(path: impl AsRef<Path>) -> io::Result<Self> {
            Ok(FileStorage {
                file: File::open(path)?,
            })
        }

        /// Wraps an already open file.
        pub fn from_file(file: File) -> Self {
            FileStorage { file }
        }

        /// The underlying file.
        pub fn into_file(self) -> File {
            self.file
        }
    }

    impl Storage for FileStorage {
        type Error = io::Error;

        fn read(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
            self.file.seek(SeekFrom::Start(offset))?;
            self.file.read_exact(buf)
        }

        fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
            self.file.seek(SeekFrom::Start(offset))?;
            self.file.write_all(data)
        }

        fn sync(&mut self) -> io::Result<()> {
            self.file.sync_all()
        }
    }

    impl EnvStorage for FileStorage {
        fn size(&mut self) -> Option<u64> {
            // Seeking to the end works for regular files and block devices.
            self.file.seek(SeekFrom::End(0)).ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_stops_after_exact_byte_count() {
        let mut mem = MemStorage::new([0u8; 16]);
        mem.cut_after(5);
        assert_eq!(mem.write(0, &[1, 1, 1]), Ok(()));
        assert_eq!(mem.write(3, &[2, 2, 2, 2]), Err(MemError::PowerLost));
        assert_eq!(mem.write(8, &[3]), Err(MemError::PowerLost));
        assert_eq!(mem.erase(0, 16), Err(MemError::PowerLost));
        assert_eq!(&mem.as_bytes()[..9], &[1, 1, 1, 2, 2, 0, 0, 0, 0]);
        assert_eq!(mem.bytes_written(), 5);
        assert!(mem.power_lost());
        mem.restore_power();
        assert_eq!(mem.write(8, &[3]), Ok(()));
    }

    #[test]
    fn cut_at_zero_drops_the_first_write() {
        let mut mem = MemStorage::new([0u8; 4]);
        mem.cut_after(0);
        assert_eq!(mem.write(0, &[9]), Err(MemError::PowerLost));
        assert_eq!(mem.as_bytes(), &[0, 0, 0, 0]);
    }

    #[test]
    fn out_of_bounds_is_an_error() {
        let mut mem = MemStorage::new([0u8; 4]);
        let mut buf = [0u8; 2];
        assert!(matches!(
            mem.read(3, &mut buf),
            Err(MemError::OutOfBounds { .. })
        ));
        assert!(matches!(
            mem.write(u64::MAX, &[1]),
            Err(MemError::OutOfBounds { .. })
        ));
    }

    #[test]
    fn erase_fills_when_configured() {
        let mut mem = MemStorage::new([0u8; 4]).with_erase_value(0xff);
        mem.erase(1, 2).unwrap();
        assert_eq!(mem.as_bytes(), &[0, 0xff, 0xff, 0]);
    }
}
