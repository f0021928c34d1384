//! NOR flash through the `embedded-storage` [`NorFlash`] traits, which
//! every embedded HAL implements: [`NorStorage`] makes one an
//! [`EnvStorage`] for the codecs of this crate, and (with `alloc`)
//! `SimNor` is a simulated NOR flash for tests that enforces the rules a
//! real chip has and can cut power after any byte.
//!
//! # The rules of NOR flash, and how [`NorStorage`] keeps them
//!
//! * **Erase granularity.** Only whole `ERASE_SIZE` sectors can be erased
//!   (to 0xff). [`Storage::erase`] must cover whole sectors; anything
//!   else is [`NorError::NotAligned`], never a silently wider erase that
//!   would destroy neighbouring data. A U-Boot env copy on NOR therefore
//!   has to start on a sector boundary and span whole sectors (U-Boot's
//!   `CONFIG_ENV_SECT_SIZE` equal to, or a divisor of, `CONFIG_ENV_SIZE`).
//! * **Write granularity.** Writes are whole `WRITE_SIZE` words at aligned
//!   offsets, and reads whole `READ_SIZE` units. Unaligned reads go through
//!   a stack buffer. Unaligned writes are only possible on chips that allow
//!   a word to be programmed twice ([`NorStorage::multiwrite`]): the rest
//!   of each word is written as 0xff, which leaves its bits as they are.
//! * **1 → 0 only.** Programming can only clear bits. Before every write
//!   the target is read back: on a single-write chip each word written must
//!   still be erased, on a multi-write chip no bit may go from 0 to 1.
//!   Otherwise the write is refused ([`NorError::NeedsErase`]) instead of
//!   leaving the AND of old and new bytes, which would be a corrupt copy
//!   that only the CRC would notice.
//!
//! All of this works on caller buffers and a 256-byte stack chunk: no heap.
//! `READ_SIZE` and `WRITE_SIZE` must be powers of two up to 256
//! ([`NorError::UnsupportedGeometry`] otherwise).
//!
//! # Redundant U-Boot env on NOR
//!
//! U-Boot's `env/flash.c` and libubootenv on NOR MTD devices use boolean
//! flags instead of a counter: see
//! [`FlagScheme::Boolean`](crate::uboot::FlagScheme::Boolean), set with
//! [`UbootEnv::with_flag_scheme`](crate::uboot::UbootEnv::with_flag_scheme).
//! Both copies usually live on one chip: share one [`NorStorage`] through a
//! `RefCell` ([`Shared`](crate::storage::Shared)).

use core::fmt;

use embedded_storage::nor_flash::{MultiwriteNorFlash, NorFlash, NorFlashError};

use crate::storage::{EnvStorage, Storage};

/// The largest `READ_SIZE` / `WRITE_SIZE` [`NorStorage`] supports (the
/// size of its stack chunk).
pub const MAX_UNIT: usize = 256;

/// Why a [`NorStorage`] operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NorError<E> {
    /// The flash driver failed.
    Flash(E),
    /// `len` bytes at `offset` are not inside the flash.
    OutOfBounds {
        /// Start of the range.
        offset: u64,
        /// Length of the range.
        len: u64,
    },
    /// An erase that does not cover whole sectors, or a write that does not
    /// cover whole words on a chip that cannot program a word twice.
    NotAligned {
        /// Start of the range.
        offset: u64,
        /// Length of the range.
        len: u64,
        /// The sector (erase) or word (write) size it must align to.
        unit: usize,
    },
    /// The write would have to turn a 0 bit into 1 (or program a word a
    /// second time on a single-write chip): the range must be erased first.
    NeedsErase {
        /// The first offending byte.
        offset: u64,
    },
    /// `READ_SIZE` or `WRITE_SIZE` is not a power of two up to
    /// [`MAX_UNIT`], or `ERASE_SIZE` is not a multiple of `WRITE_SIZE`.
    UnsupportedGeometry {
        /// The flash's `READ_SIZE`.
        read: usize,
        /// The flash's `WRITE_SIZE`.
        write: usize,
        /// The flash's `ERASE_SIZE`.
        erase: usize,
    },
}

impl<E: NorFlashError> fmt::Display for NorError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NorError::Flash(e) => write!(f, "NOR flash error: {} ({e:?})", e.kind()),
            NorError::OutOfBounds { offset, len } => write!(
                f,
                "{len} bytes at offset {offset:#x} are outside the NOR flash"
            ),
            NorError::NotAligned { offset, len, unit } => write!(
                f,
                "{len} bytes at offset {offset:#x} are not aligned to the NOR flash's \
                 {unit}-byte unit"
            ),
            NorError::NeedsErase { offset } => write!(
                f,
                "NOR flash at {offset:#x} is not erased: the write would need bits to go \
                 from 0 to 1 (or a word to be programmed twice)"
            ),
            NorError::UnsupportedGeometry { read, write, erase } => write!(
                f,
                "unsupported NOR flash geometry: read size {read}, write size {write}, erase \
                 size {erase} (read and write sizes must be powers of two up to {MAX_UNIT}, \
                 the erase size a multiple of the write size)"
            ),
        }
    }
}

impl<E: NorFlashError> core::error::Error for NorError<E> {}

/// A [`NorFlash`] as an [`EnvStorage`] (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct NorStorage<F> {
    flash: F,
    multiwrite: bool,
}

impl<F: NorFlash> NorStorage<F> {
    /// A chip whose words can be programmed only once between erases (the
    /// [`NorFlash`] contract): writes must be word-aligned and land on
    /// erased words.
    pub fn new(flash: F) -> Self {
        NorStorage {
            flash,
            multiwrite: false,
        }
    }

    /// A chip that allows programming a word again, bits going only from
    /// 1 to 0 ([`MultiwriteNorFlash`]): writes may be unaligned, and
    /// [`EnvStorage::byte_rewritable`] is true.
    pub fn multiwrite(flash: F) -> Self
    where
        F: MultiwriteNorFlash,
    {
        NorStorage {
            flash,
            multiwrite: true,
        }
    }

    /// The flash.
    pub fn flash(&mut self) -> &mut F {
        &mut self.flash
    }

    /// Gives the flash back.
    pub fn into_inner(self) -> F {
        self.flash
    }

    fn check_geometry(&self) -> Result<(), NorError<F::Error>> {
        let (read, write, erase) = (F::READ_SIZE, F::WRITE_SIZE, F::ERASE_SIZE);
        let unit_ok = |u: usize| u.is_power_of_two() && u <= MAX_UNIT;
        if unit_ok(read) && unit_ok(write) && erase != 0 && erase % write == 0 {
            Ok(())
        } else {
            Err(NorError::UnsupportedGeometry { read, write, erase })
        }
    }

    /// `offset..offset + len` as flash addresses, checked against the
    /// capacity (which also bounds them to `u32`).
    fn range(&self, offset: u64, len: usize) -> Result<(u32, u32), NorError<F::Error>> {
        let oob = || NorError::OutOfBounds {
            offset,
            len: len as u64,
        };
        let end = offset.checked_add(len as u64).ok_or_else(oob)?;
        if end > self.flash.capacity() as u64 {
            return Err(oob());
        }
        let start = u32::try_from(offset).map_err(|_| oob())?;
        let end = u32::try_from(end).map_err(|_| oob())?;
        Ok((start, end))
    }
}

fn align_down(x: u32, unit: usize) -> u32 {
    x - x % unit as u32
}

/// Rounds up; saturates at the largest aligned `u32` (out-of-range ends
/// were refused before).
fn align_up(x: u32, unit: usize) -> u32 {
    let rem = x % unit as u32;
    if rem == 0 {
        x
    } else {
        x.saturating_add(unit as u32 - rem)
    }
}

impl<F: NorFlash> Storage for NorStorage<F> {
    type Error = NorError<F::Error>;

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Self::Error> {
        self.check_geometry()?;
        let (start, end) = self.range(offset, buf.len())?;
        let unit = F::READ_SIZE;
        if start as usize % unit == 0 && buf.len() % unit == 0 {
            return self.flash.read(start, buf).map_err(NorError::Flash);
        }
        let mut chunk = [0u8; MAX_UNIT];
        let mut pos = start;
        while pos < end {
            let from = align_down(pos, unit);
            let to = align_up(end, unit).min(from + MAX_UNIT as u32);
            let n = (to - from) as usize;
            self.flash
                .read(from, &mut chunk[..n])
                .map_err(NorError::Flash)?;
            let take = (to.min(end) - pos) as usize;
            let skip = (pos - from) as usize;
            let at = (pos - start) as usize;
            buf[at..at + take].copy_from_slice(&chunk[skip..skip + take]);
            pos += take as u32;
        }
        Ok(())
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), Self::Error> {
        self.check_geometry()?;
        let (start, end) = self.range(offset, data.len())?;
        let unit = F::WRITE_SIZE;
        let aligned = start as usize % unit == 0 && data.len() % unit == 0;
        if !aligned && !self.multiwrite {
            return Err(NorError::NotAligned {
                offset,
                len: data.len() as u64,
                unit,
            });
        }
        let mut current = [0u8; MAX_UNIT];
        let mut program = [0u8; MAX_UNIT];
        let mut pos = start;
        while pos < end {
            let from = align_down(pos, unit);
            let to = align_up(end, unit).min(from + MAX_UNIT as u32);
            let n = (to - from) as usize;
            // Reading needs READ_SIZE alignment, which `read` handles.
            Storage::read(self, u64::from(from), &mut current[..n])?;
            let take = (to.min(end) - pos) as usize;
            let skip = (pos - from) as usize;
            let at = (pos - start) as usize;
            program[..n].fill(0xff);
            program[skip..skip + take].copy_from_slice(&data[at..at + take]);
            for (i, (&old, &new)) in current[..n].iter().zip(&program[..n]).enumerate() {
                let in_data = i >= skip && i < skip + take;
                let ok = if self.multiwrite {
                    old & new == new
                } else {
                    // Each word is programmed once: it must still be erased.
                    old == 0xff
                };
                if in_data && !ok {
                    return Err(NorError::NeedsErase {
                        offset: u64::from(from) + i as u64,
                    });
                }
            }
            self.flash
                .write(from, &program[..n])
                .map_err(NorError::Flash)?;
            pos += take as u32;
        }
        Ok(())
    }

    fn erase(&mut self, offset: u64, len: u64) -> Result<(), Self::Error> {
        self.check_geometry()?;
        let len_usize = usize::try_from(len).map_err(|_| NorError::OutOfBounds { offset, len })?;
        let (start, end) = self.range(offset, len_usize)?;
        let sector = F::ERASE_SIZE;
        if start as usize % sector != 0 || len_usize % sector != 0 {
            return Err(NorError::NotAligned {
                offset,
                len,
                unit: sector,
            });
        }
        if start == end {
            return Ok(());
        }
        self.flash.erase(start, end).map_err(NorError::Flash)
    }

    /// NOR writes are done when `write` returns.
    fn sync(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

impl<F: NorFlash> EnvStorage for NorStorage<F> {
    fn size(&mut self) -> Option<u64> {
        Some(self.flash.capacity() as u64)
    }

    fn byte_rewritable(&self) -> bool {
        self.multiwrite
    }
}

#[cfg(feature = "alloc")]
pub use sim::{SimNor, SimNorError};

#[cfg(feature = "alloc")]
mod sim {
    use super::*;
    use embedded_storage::nor_flash::{ErrorType, NorFlashErrorKind, ReadNorFlash};

    extern crate alloc;
    use alloc::vec;
    use alloc::vec::Vec;

    /// Why a [`SimNor`] operation failed.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[non_exhaustive]
    pub enum SimNorError {
        /// Offset or length not a multiple of the read, write or erase
        /// size.
        NotAligned,
        /// Outside the flash.
        OutOfBounds,
        /// The simulated power cut happened during or before this
        /// operation.
        PowerLost,
        /// A single-write chip was asked to program a word a second time
        /// without an erase in between.
        WrittenTwice {
            /// Offset of the word.
            offset: u32,
        },
    }

    impl NorFlashError for SimNorError {
        fn kind(&self) -> NorFlashErrorKind {
            match self {
                SimNorError::NotAligned => NorFlashErrorKind::NotAligned,
                SimNorError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
                _ => NorFlashErrorKind::Other,
            }
        }
    }

    impl fmt::Display for SimNorError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                SimNorError::NotAligned => f.write_str("not aligned to the flash's unit"),
                SimNorError::OutOfBounds => f.write_str("outside the flash"),
                SimNorError::PowerLost => f.write_str("simulated power cut"),
                SimNorError::WrittenTwice { offset } => {
                    write!(f, "word at {offset:#x} programmed twice without an erase")
                }
            }
        }
    }

    impl core::error::Error for SimNorError {}

    /// A simulated NOR flash of `READ`/`WRITE`/`ERASE`-byte read units,
    /// words and sectors. With `MULTI` it is a [`MultiwriteNorFlash`]
    /// (words may be programmed again; the result is the AND of old and
    /// new bytes, as the trait documents); without it each word may be
    /// programmed once per erase, and a second program is an error.
    ///
    /// It enforces what a real chip requires and a careless driver gets
    /// wrong: alignment of every operation, erase before program, bits only
    /// going 1 → 0 (programming ANDs: a 0 never comes back without an
    /// erase).
    ///
    /// [`cut_after`](SimNor::cut_after)`(n)` lets exactly `n` more bytes be
    /// programmed: the write that crosses the budget programs its first
    /// bytes up to it and fails with [`SimNorError::PowerLost`]; later
    /// writes and erases do nothing and fail the same way. An erase reached
    /// with the budget at 0 is **torn**: only the first half of its range
    /// is erased before the power goes (the embedded-storage contract says
    /// the content is then undefined). Reads keep working, so a test can
    /// "reboot" and read what survived, or
    /// [`restore_power`](SimNor::restore_power) to go on.
    #[derive(Debug, Clone)]
    pub struct SimNor<
        const READ: usize,
        const WRITE: usize,
        const ERASE: usize,
        const MULTI: bool = false,
    > {
        data: Vec<u8>,
        programmed: Vec<bool>,
        budget: Option<usize>,
        powered: bool,
        written: usize,
        erases: usize,
    }

    impl<const READ: usize, const WRITE: usize, const ERASE: usize, const MULTI: bool>
        SimNor<READ, WRITE, ERASE, MULTI>
    {
        /// An erased flash of `sectors` sectors.
        pub fn new(sectors: usize) -> Self {
            let len = sectors * ERASE;
            SimNor {
                data: vec![0xff; len],
                programmed: vec![false; len / WRITE.max(1)],
                budget: None,
                powered: true,
                written: 0,
                erases: 0,
            }
        }

        /// Loads `bytes` at `offset` as a flash programmer would (no
        /// checks, no budget): provisioning before a test.
        pub fn load(&mut self, offset: usize, bytes: &[u8]) {
            if let Some(dest) = self.data.get_mut(offset..offset + bytes.len()) {
                dest.copy_from_slice(bytes);
                for w in offset / WRITE..(offset + bytes.len()).div_ceil(WRITE) {
                    if let Some(p) = self.programmed.get_mut(w) {
                        *p = true;
                    }
                }
            }
        }

        /// Schedules a power cut after `bytes` more programmed bytes.
        pub fn cut_after(&mut self, bytes: usize) {
            self.budget = Some(bytes);
        }

        /// Powers back on and cancels any scheduled cut.
        pub fn restore_power(&mut self) {
            self.budget = None;
            self.powered = true;
        }

        /// Whether a scheduled cut has happened.
        pub fn power_lost(&self) -> bool {
            !self.powered
        }

        /// Bytes programmed so far.
        pub fn bytes_written(&self) -> usize {
            self.written
        }

        /// Erase operations so far (torn ones included).
        pub fn erases(&self) -> usize {
            self.erases
        }

        /// The whole flash.
        pub fn as_bytes(&self) -> &[u8] {
            &self.data
        }

        fn check(&self, offset: u32, len: usize, unit: usize) -> Result<usize, SimNorError> {
            let start = offset as usize;
            if start
                .checked_add(len)
                .is_none_or(|end| end > self.data.len())
            {
                return Err(SimNorError::OutOfBounds);
            }
            if start % unit != 0 || len % unit != 0 {
                return Err(SimNorError::NotAligned);
            }
            Ok(start)
        }
    }

    impl<const READ: usize, const WRITE: usize, const ERASE: usize, const MULTI: bool> ErrorType
        for SimNor<READ, WRITE, ERASE, MULTI>
    {
        type Error = SimNorError;
    }

    impl<const READ: usize, const WRITE: usize, const ERASE: usize, const MULTI: bool> ReadNorFlash
        for SimNor<READ, WRITE, ERASE, MULTI>
    {
        const READ_SIZE: usize = READ;

        fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), SimNorError> {
            let start = self.check(offset, bytes.len(), READ)?;
            bytes.copy_from_slice(&self.data[start..start + bytes.len()]);
            Ok(())
        }

        fn capacity(&self) -> usize {
            self.data.len()
        }
    }

    impl<const READ: usize, const WRITE: usize, const ERASE: usize, const MULTI: bool> NorFlash
        for SimNor<READ, WRITE, ERASE, MULTI>
    {
        const WRITE_SIZE: usize = WRITE;
        const ERASE_SIZE: usize = ERASE;

        fn erase(&mut self, from: u32, to: u32) -> Result<(), SimNorError> {
            if to < from {
                return Err(SimNorError::OutOfBounds);
            }
            let start = self.check(from, (to - from) as usize, ERASE)?;
            let end = to as usize;
            if !self.powered {
                return Err(SimNorError::PowerLost);
            }
            self.erases += 1;
            let torn = self.budget == Some(0);
            let stop = if torn { start + (end - start) / 2 } else { end };
            self.data[start..stop].fill(0xff);
            for w in start / WRITE..stop / WRITE {
                self.programmed[w] = false;
            }
            if torn {
                self.powered = false;
                return Err(SimNorError::PowerLost);
            }
            Ok(())
        }

        fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), SimNorError> {
            let start = self.check(offset, bytes.len(), WRITE)?;
            if !self.powered {
                return Err(SimNorError::PowerLost);
            }
            // Check the whole write before programming anything.
            if !MULTI {
                for at in (start..start + bytes.len()).step_by(WRITE.max(1)) {
                    if self.programmed[at / WRITE] {
                        return Err(SimNorError::WrittenTwice { offset: at as u32 });
                    }
                }
            }
            let allowed = self.budget.map_or(bytes.len(), |b| b.min(bytes.len()));
            for (i, &new) in bytes[..allowed].iter().enumerate() {
                self.data[start + i] &= new;
                self.programmed[(start + i) / WRITE] = true;
            }
            self.written += allowed;
            if let Some(budget) = self.budget.as_mut() {
                *budget -= allowed;
                if allowed < bytes.len() {
                    self.powered = false;
                    return Err(SimNorError::PowerLost);
                }
            }
            Ok(())
        }
    }

    impl<const READ: usize, const WRITE: usize, const ERASE: usize> MultiwriteNorFlash
        for SimNor<READ, WRITE, ERASE, true>
    {
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;

    type Single = SimNor<1, 8, 64>;
    type Multi = SimNor<4, 8, 64, true>;

    #[test]
    fn aligned_writes_need_erased_words() {
        let mut nor = NorStorage::new(Single::new(2));
        nor.write(8, &[0; 8]).unwrap();
        assert_eq!(
            nor.write(8, &[0; 8]),
            Err(NorError::NeedsErase { offset: 8 })
        );
        assert!(matches!(
            nor.write(9, &[0; 8]),
            Err(NorError::NotAligned { unit: 8, .. })
        ));
        assert!(!nor.byte_rewritable());
        nor.erase(0, 64).unwrap();
        nor.write(8, &[0; 8]).unwrap();
        assert!(matches!(
            nor.erase(0, 32),
            Err(NorError::NotAligned { unit: 64, .. })
        ));
        assert!(matches!(
            nor.erase(64, 128),
            Err(NorError::OutOfBounds { .. })
        ));
    }

    #[test]
    fn multiwrite_allows_clearing_single_bytes_only() {
        let mut nor = NorStorage::multiwrite(Multi::new(1));
        assert!(nor.byte_rewritable());
        nor.write(3, &[0xf0, 0x0f]).unwrap();
        nor.write(4, &[0x00]).unwrap();
        let mut back = [0u8; 4];
        nor.read(2, &mut back).unwrap();
        assert_eq!(back, [0xff, 0xf0, 0x00, 0xff]);
        // 0 → 1 is refused, nothing written.
        assert_eq!(
            nor.write(3, &[0xff]),
            Err(NorError::NeedsErase { offset: 3 })
        );
        nor.read(3, &mut back[..1]).unwrap();
        assert_eq!(back[0], 0xf0);
    }

    #[test]
    fn unaligned_reads_go_through_the_chunk() {
        let mut flash = Multi::new(16);
        let pattern: std::vec::Vec<u8> = (0..1024u32).map(|i| (i * 7) as u8).collect();
        flash.load(0, &pattern);
        let mut nor = NorStorage::new(flash);
        for (off, len) in [(0usize, 1024usize), (1, 3), (3, 700), (255, 2), (1021, 3)] {
            let mut buf = std::vec![0u8; len];
            nor.read(off as u64, &mut buf).unwrap();
            assert_eq!(buf, pattern[off..off + len], "{off}+{len}");
        }
        let mut buf = [0u8; 2];
        assert!(matches!(
            nor.read(1023, &mut buf),
            Err(NorError::OutOfBounds { .. })
        ));
    }

    #[test]
    fn sim_enforces_the_rules_and_tears() {
        let mut f = Single::new(2);
        assert_eq!(f.write(1, &[0; 8]), Err(SimNorError::NotAligned));
        f.write(0, &[0xf0; 8]).unwrap();
        assert_eq!(
            f.write(0, &[0xf0; 8]),
            Err(SimNorError::WrittenTwice { offset: 0 })
        );
        // Multi-write: programming ANDs, a 0 stays 0.
        let mut m = Multi::new(1);
        m.write(0, &[0xf0; 8]).unwrap();
        m.write(0, &[0x3f; 8]).unwrap();
        assert_eq!(m.as_bytes()[..8], [0x30; 8]);
        // A cut inside a write keeps its first bytes; a cut at an erase
        // erases half of it.
        let mut f = Single::new(2);
        f.cut_after(3);
        assert_eq!(f.write(0, &[0; 8]), Err(SimNorError::PowerLost));
        assert_eq!(f.as_bytes()[..4], [0, 0, 0, 0xff]);
        f.restore_power();
        f.write(64, &[0; 64]).unwrap();
        f.cut_after(0);
        assert_eq!(f.erase(64, 128), Err(SimNorError::PowerLost));
        assert!(f.as_bytes()[64..96].iter().all(|&b| b == 0xff));
        assert!(f.as_bytes()[96..128].iter().all(|&b| b == 0));
        assert_eq!(f.erase(0, 64), Err(SimNorError::PowerLost));
    }
}
