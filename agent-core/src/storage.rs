//! Byte-addressed storage for the agent's persisted state, and an
//! in-memory implementation that can cut power in the middle of a write.
//!
//! [`Storage`] is the one thing [`crate::store::DualStore`] needs from a
//! platform: a file, a raw partition, or a few sectors of NOR flash (the
//! embassy adapter maps `embedded-storage` onto it). [`MemStorage`] is the
//! test double: `cut_after(n)` lets exactly `n` more bytes reach the memory,
//! so a test can tear a write at any byte and then "reboot".

use core::fmt;

/// Byte-addressed storage.
///
/// Contract:
/// * [`read`](Storage::read) fills the whole buffer or fails;
/// * [`erase`](Storage::erase) is called before a region is rewritten
///   (flash erases it; files and block devices may do nothing);
/// * [`write`](Storage::write) stores all bytes or fails; a write is
///   durable only once [`sync`](Storage::sync) returns.
pub trait Storage {
    /// The storage's own error.
    type Error: fmt::Debug + fmt::Display;

    /// Reads exactly `buf.len()` bytes starting at `offset`.
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Self::Error>;

    /// Writes all of `data` starting at `offset`.
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), Self::Error>;

    /// Prepares `len` bytes at `offset` for rewriting. The default does
    /// nothing, which is right for files and block devices.
    fn erase(&mut self, offset: u64, len: u64) -> Result<(), Self::Error> {
        let _ = (offset, len);
        Ok(())
    }

    /// Makes every earlier write durable (fsync for files).
    fn sync(&mut self) -> Result<(), Self::Error>;
}

impl<T: Storage + ?Sized> Storage for &mut T {
    type Error = T::Error;

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Self::Error> {
        (**self).read(offset, buf)
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), Self::Error> {
        (**self).write(offset, data)
    }

    fn erase(&mut self, offset: u64, len: u64) -> Result<(), Self::Error> {
        (**self).erase(offset, len)
    }

    fn sync(&mut self) -> Result<(), Self::Error> {
        (**self).sync()
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
        len: u64,
    },
    /// The simulated power cut happened during or before this operation.
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

/// In-memory storage over any byte buffer, with an optional power cut.
///
/// [`cut_after`](MemStorage::cut_after)`(n)` lets exactly `n` more bytes be
/// written: the write that crosses the budget stores its first bytes and
/// fails with [`MemError::PowerLost`], and every later write or erase fails
/// without storing anything. Reads keep working, so a test can read back
/// what survived. Erase fills with `erase_value` (0xff by default, as NOR
/// flash does); an erase happens whole or not at all.
#[derive(Debug, Clone)]
pub struct MemStorage<B> {
    data: B,
    budget: Option<usize>,
    powered: bool,
    writes: usize,
    erase_value: u8,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> MemStorage<B> {
    /// Storage over `data`, power on, no cut scheduled.
    pub fn new(data: B) -> Self {
        MemStorage {
            data,
            budget: None,
            powered: true,
            writes: 0,
            erase_value: 0xff,
        }
    }

    /// Sets the byte erase fills with.
    pub fn with_erase_value(mut self, value: u8) -> Self {
        self.erase_value = value;
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

    /// Number of write and erase operations that started so far.
    pub fn operations(&self) -> usize {
        self.writes
    }

    /// The whole memory.
    pub fn as_bytes(&self) -> &[u8] {
        self.data.as_ref()
    }

    /// The whole memory, writable (bypasses the power-cut simulation).
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        self.data.as_mut()
    }

    fn range(&self, offset: u64, len: u64) -> Result<core::ops::Range<usize>, MemError> {
        let oob = MemError::OutOfBounds { offset, len };
        let start = usize::try_from(offset).map_err(|_| oob)?;
        let len = usize::try_from(len).map_err(|_| oob)?;
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
        let range = self.range(offset, buf.len() as u64)?;
        buf.copy_from_slice(&self.data.as_ref()[range]);
        Ok(())
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), MemError> {
        let range = self.range(offset, data.len() as u64)?;
        self.writes += 1;
        if !self.powered {
            return Err(MemError::PowerLost);
        }
        let allowed = self.budget.map_or(data.len(), |b| b.min(data.len()));
        self.data.as_mut()[range][..allowed].copy_from_slice(&data[..allowed]);
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
        let range = self.range(offset, len)?;
        self.writes += 1;
        if !self.powered || self.budget == Some(0) {
            self.powered = false;
            return Err(MemError::PowerLost);
        }
        let value = self.erase_value;
        self.data.as_mut()[range].fill(value);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_tears_the_write_that_crosses_the_budget() {
        let mut m = MemStorage::new([0u8; 8]);
        m.cut_after(3);
        assert_eq!(m.write(0, &[1, 2]), Ok(()));
        assert_eq!(m.write(2, &[3, 4, 5]), Err(MemError::PowerLost));
        assert_eq!(m.as_bytes(), &[1, 2, 3, 0, 0, 0, 0, 0]);
        assert_eq!(m.erase(0, 8), Err(MemError::PowerLost));
        assert!(m.power_lost());
        let mut b = [0u8; 3];
        assert_eq!(m.read(1, &mut b), Ok(()));
        assert_eq!(b, [2, 3, 0]);
        assert_eq!(
            m.write(7, &[1, 2]),
            Err(MemError::OutOfBounds { offset: 7, len: 2 })
        );
    }
}
