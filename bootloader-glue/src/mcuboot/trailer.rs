//! The image trailer at the end of each slot (spec 1.4–1.7): reading the
//! swap state, the bootloader's decision table, and the two writes the
//! application side makes, `set_pending` and `set_confirmed`, byte for byte
//! as MCUboot's `bootutil_public.c` does them.
//!
//! Layout, offsets from the slot end `S`, `A` = BOOT_MAX_ALIGN (8, 16 or
//! 32): magic at `S-16` (written as an `A`-aligned block of
//! `align_up(16, A)` bytes), image_ok at `align_down(S-16-A, A)`, copy_done
//! `A` below it, swap_info `A` below that, then swap_size (one more `A`
//! down in swap-using-offset mode). Each flag is a whole `A`-sized cell
//! whose first byte holds the value; writes are `write_size` bytes padded
//! with the erased value.
//!
//! Power cuts: `set_pending` writes magic → image_ok (permanent only) →
//! swap_info, syncing after each. A cut after the magic leaves a TEST
//! request even when PERM was asked (spec 1.6): safe, it reverts unless
//! confirmed. A torn magic reads BAD, which the bootloader ignores (old
//! state); a later `set_pending` then refuses until the slot is erased,
//! exactly like MCUboot. A GOOD magic is never rewritten.

use core::fmt;

use crate::storage::EnvStorage;

/// The magic for BOOT_MAX_ALIGN 8.
pub const MAGIC_ALIGN8: [u8; 16] = [
    0x77, 0xc2, 0x95, 0xf3, 0x60, 0xd2, 0xef, 0x7f, 0x35, 0x52, 0x50, 0x0f, 0x2c, 0xb6, 0x79, 0x80,
];
/// The last 14 bytes of the magic for other BOOT_MAX_ALIGN values (the
/// first two are the alignment, little-endian).
pub const MAGIC_TAIL: [u8; 14] = [
    0x2d, 0xe1, 0x5d, 0x29, 0x41, 0x0b, 0x8d, 0x77, 0x67, 0x9c, 0x11, 0x0f, 0x1f, 0x8a,
];

/// The value of a set flag (image_ok, copy_done).
pub const FLAG_SET: u8 = 0x01;

/// How the bootloader was built to update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// MCUBOOT_SWAP_USING_SCRATCH (the default swap).
    SwapScratch,
    /// MCUBOOT_SWAP_USING_MOVE.
    SwapMove,
    /// MCUBOOT_SWAP_USING_OFFSET: swap_size is one cell lower and the
    /// secondary slot can itself signal a revert (decision row I).
    SwapOffset,
    /// MCUBOOT_OVERWRITE_ONLY: the secondary is copied over the primary;
    /// no revert. TEST and PERM both mean "overwrite".
    OverwriteOnly,
}

/// Why a trailer layout is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LayoutError {
    /// BOOT_MAX_ALIGN must be 8, 16 or 32.
    MaxAlign(u32),
    /// The write size must be a power of two from 1 to BOOT_MAX_ALIGN.
    WriteSize(u32),
    /// The slot size is not a multiple of BOOT_MAX_ALIGN or too small
    /// for the trailer fields.
    SlotSize(u64),
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutError::MaxAlign(a) => write!(f, "BOOT_MAX_ALIGN {a} is not 8, 16 or 32"),
            LayoutError::WriteSize(w) => write!(
                f,
                "flash write size {w} is not a power of two between 1 and BOOT_MAX_ALIGN"
            ),
            LayoutError::SlotSize(s) => write!(
                f,
                "slot size {s:#x} is not a multiple of BOOT_MAX_ALIGN or too small for a trailer"
            ),
        }
    }
}

impl core::error::Error for LayoutError {}

/// Where the trailer fields are and how they are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrailerLayout {
    mode: Mode,
    max_align: u32,
    write_size: u32,
    erased: u8,
}

impl TrailerLayout {
    /// A layout: `max_align` is BOOT_MAX_ALIGN (8, 16, 32; imgtool's
    /// `--max-align`, default 8), `write_size` the flash's minimum write
    /// (imgtool's `--align`), `erased` what erased flash reads as (0xff, or
    /// 0x00 for imgtool `-R 0`).
    pub fn new(
        mode: Mode,
        max_align: u32,
        write_size: u32,
        erased: u8,
    ) -> Result<Self, LayoutError> {
        if !matches!(max_align, 8 | 16 | 32) {
            return Err(LayoutError::MaxAlign(max_align));
        }
        if !write_size.is_power_of_two() || write_size > max_align {
            return Err(LayoutError::WriteSize(write_size));
        }
        Ok(TrailerLayout {
            mode,
            max_align,
            write_size,
            erased,
        })
    }

    /// The update mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// BOOT_MAX_ALIGN.
    pub fn max_align(&self) -> u32 {
        self.max_align
    }

    /// The flash write size.
    pub fn write_size(&self) -> u32 {
        self.write_size
    }

    /// The erased value.
    pub fn erased(&self) -> u8 {
        self.erased
    }

    /// The 16-byte magic for this BOOT_MAX_ALIGN.
    pub fn magic(&self) -> [u8; 16] {
        if self.max_align == 8 {
            return MAGIC_ALIGN8;
        }
        let mut m = [0u8; 16];
        m[..2].copy_from_slice(&(self.max_align as u16).to_le_bytes());
        m[2..].copy_from_slice(&MAGIC_TAIL);
        m
    }

    fn a(&self) -> u64 {
        u64::from(self.max_align)
    }

    /// Size of the magic block as written: `align_up(16, A)`.
    pub fn magic_block(&self) -> u64 {
        16u64.max(self.a())
    }

    /// Offset of the 16 magic bytes in a slot of `size` bytes.
    pub fn magic_off(&self, size: u64) -> u64 {
        size - 16
    }

    /// Offset of image_ok.
    pub fn image_ok_off(&self, size: u64) -> u64 {
        (size - 16 - self.a()) & !(self.a() - 1)
    }

    /// Offset of copy_done.
    pub fn copy_done_off(&self, size: u64) -> u64 {
        self.image_ok_off(size) - self.a()
    }

    /// Offset of swap_info.
    pub fn swap_info_off(&self, size: u64) -> u64 {
        self.copy_done_off(size) - self.a()
    }

    /// Offset of swap_size (u32).
    pub fn swap_size_off(&self, size: u64) -> u64 {
        let extra = if self.mode == Mode::SwapOffset {
            self.a()
        } else {
            0
        };
        self.swap_info_off(size) - self.a() - extra
    }

    /// The trailer size the bootloader reserves for `max_sectors` sectors
    /// (imgtool's `-M`, default 128), without encryption keys.
    pub fn trailer_size(&self, max_sectors: u32) -> u64 {
        let a = self.a();
        if self.mode == Mode::OverwriteOnly {
            return 2 * a + self.magic_block();
        }
        let (entries, cells) = match self.mode {
            Mode::SwapOffset => (2, 5),
            _ => (3, 4),
        };
        u64::from(max_sectors) * entries * u64::from(self.write_size)
            + cells * a
            + self.magic_block()
    }

    /// Checks a slot size is usable with this layout.
    pub fn check_slot(&self, size: u64) -> Result<(), LayoutError> {
        if size % self.a() != 0 || size < self.magic_block() + 5 * self.a() {
            return Err(LayoutError::SlotSize(size));
        }
        Ok(())
    }
}

/// The state of a trailer magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MagicState {
    /// All 16 bytes erased.
    Unset,
    /// The exact magic for the layout's BOOT_MAX_ALIGN.
    Good,
    /// Anything else (also a torn magic write, or the magic of another
    /// BOOT_MAX_ALIGN).
    Bad,
}

/// The state of a one-byte flag (image_ok, copy_done).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flag {
    /// The erased value.
    Unset,
    /// 0x01.
    Set,
    /// Anything else; matches no row of the decision table.
    Bad(u8),
}

impl Flag {
    fn decode(b: u8, erased: u8) -> Flag {
        if b == erased {
            Flag::Unset
        } else if b == FLAG_SET {
            Flag::Set
        } else {
            Flag::Bad(b)
        }
    }
}

/// A swap type (swap_info bits 0-3, or the bootloader's decision).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SwapType {
    /// 1: boot the primary as it is.
    None,
    /// 2: swap in the secondary once; revert unless confirmed.
    Test,
    /// 3: swap in the secondary for good.
    Perm,
    /// 4: swap the previous image back.
    Revert,
}

impl SwapType {
    /// The swap_info nibble.
    pub fn code(self) -> u8 {
        match self {
            SwapType::None => 1,
            SwapType::Test => 2,
            SwapType::Perm => 3,
            SwapType::Revert => 4,
        }
    }
}

/// What a trailer says (MCUboot's `boot_swap_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SwapState {
    /// The magic.
    pub magic: MagicState,
    /// swap_info's type; `None` when swap_info is erased or its type is
    /// above 4, as MCUboot reads it.
    pub swap_type: SwapType,
    /// swap_info's image number (bits 4-7; 0 when erased).
    pub image_num: u8,
    /// The raw swap_info byte.
    pub swap_info: u8,
    /// copy_done.
    pub copy_done: Flag,
    /// image_ok.
    pub image_ok: Flag,
}

/// A slot: `size` bytes at `offset` on the storage, erased in sectors of
/// `sector_size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Area {
    /// Start of the slot on the storage.
    pub offset: u64,
    /// Slot size (the image trailer ends here).
    pub size: u64,
    /// Erase granularity (only used to neutralise a trailer).
    pub sector_size: u64,
}

/// Why a trailer operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrailerError<E> {
    /// The storage failed (or power was lost).
    Storage(E),
    /// The slot does not fit the layout.
    Layout(LayoutError),
    /// The trailer magic is neither erased nor valid (e.g. a torn write):
    /// MCUboot refuses to mark such a slot too; erase the slot (rewrite
    /// the image) first.
    BadMagic,
}

impl<E: fmt::Display> fmt::Display for TrailerError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrailerError::Storage(e) => write!(f, "trailer storage failed: {e}"),
            TrailerError::Layout(e) => e.fmt(f),
            TrailerError::BadMagic => f.write_str(
                "the trailer magic is corrupt (neither erased nor valid): erase and rewrite the \
                 slot first",
            ),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for TrailerError<E> {}

/// Whether a call wrote anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The fields were written.
    Written,
    /// Nothing had to be written (already pending / confirmed / nothing to
    /// confirm), as MCUboot returns 0 without writing.
    Unchanged,
}

fn read_byte<S: EnvStorage + ?Sized>(s: &mut S, at: u64) -> Result<u8, TrailerError<S::Error>> {
    let mut b = [0u8; 1];
    s.read(at, &mut b).map_err(TrailerError::Storage)?;
    Ok(b[0])
}

/// Reads the trailer of `area` (MCUboot's `boot_read_swap_state`).
pub fn read_state<S: EnvStorage + ?Sized>(
    storage: &mut S,
    area: Area,
    layout: &TrailerLayout,
) -> Result<SwapState, TrailerError<S::Error>> {
    layout.check_slot(area.size).map_err(TrailerError::Layout)?;
    let size = area.size;
    let mut magic = [0u8; 16];
    storage
        .read(area.offset + layout.magic_off(size), &mut magic)
        .map_err(TrailerError::Storage)?;
    let magic = if magic.iter().all(|&b| b == layout.erased) {
        MagicState::Unset
    } else if magic == layout.magic() {
        MagicState::Good
    } else {
        MagicState::Bad
    };
    let info = read_byte(storage, area.offset + layout.swap_info_off(size))?;
    let (swap_type, image_num) = match info & 0x0f {
        _ if info == layout.erased => (SwapType::None, 0),
        2 => (SwapType::Test, info >> 4),
        3 => (SwapType::Perm, info >> 4),
        4 => (SwapType::Revert, info >> 4),
        1 | 0 => (SwapType::None, info >> 4),
        _ => (SwapType::None, 0),
    };
    let copy_done = Flag::decode(
        read_byte(storage, area.offset + layout.copy_done_off(size))?,
        layout.erased,
    );
    let image_ok = Flag::decode(
        read_byte(storage, area.offset + layout.image_ok_off(size))?,
        layout.erased,
    );
    Ok(SwapState {
        magic,
        swap_type,
        image_num,
        swap_info: info,
        copy_done,
        image_ok,
    })
}

/// What the bootloader will do at the next reset, from both trailers
/// (MCUboot's `boot_swap_type_multi` table, spec 1.7; rows in order):
///
/// | row | primary | secondary | result |
/// | --- | --- | --- | --- |
/// | I (swap-offset only) | any | magic GOOD, image_ok unset, copy_done set | REVERT |
/// | II | any | magic GOOD, image_ok unset | TEST |
/// | III | any | magic GOOD, image_ok set | PERM |
/// | IV | magic GOOD, image_ok unset, copy_done set | magic **unset** | REVERT |
/// | – | otherwise | | NONE |
///
/// Row IV requires an erased secondary magic, as upstream's table does
/// (`magic_secondary_slot = BOOT_MAGIC_UNSET`); the spec's table says
/// "any" there.
pub fn swap_type(primary: &SwapState, secondary: &SwapState, mode: Mode) -> SwapType {
    let sec_good = secondary.magic == MagicState::Good;
    if mode == Mode::SwapOffset
        && sec_good
        && secondary.image_ok == Flag::Unset
        && secondary.copy_done == Flag::Set
    {
        return SwapType::Revert;
    }
    if sec_good && secondary.image_ok == Flag::Unset {
        return SwapType::Test;
    }
    if sec_good && secondary.image_ok == Flag::Set {
        return SwapType::Perm;
    }
    if primary.magic == MagicState::Good
        && primary.image_ok == Flag::Unset
        && primary.copy_done == Flag::Set
        && secondary.magic == MagicState::Unset
    {
        return SwapType::Revert;
    }
    SwapType::None
}

fn write_cell<S: EnvStorage + ?Sized>(
    storage: &mut S,
    at: u64,
    value: u8,
    layout: &TrailerLayout,
) -> Result<(), TrailerError<S::Error>> {
    let mut cell = [layout.erased; 32];
    cell[0] = value;
    let n = layout.write_size as usize;
    storage
        .write(at, &cell[..n])
        .and_then(|()| storage.sync())
        .map_err(TrailerError::Storage)
}

fn write_magic<S: EnvStorage + ?Sized>(
    storage: &mut S,
    area: Area,
    layout: &TrailerLayout,
) -> Result<(), TrailerError<S::Error>> {
    let mut block = [layout.erased; 32];
    let n = layout.magic_block() as usize;
    block[n - 16..n].copy_from_slice(&layout.magic());
    storage
        .write(area.offset + area.size - n as u64, &block[..n])
        .and_then(|()| storage.sync())
        .map_err(TrailerError::Storage)
}

/// Marks the image in the secondary slot `area` for a swap at the next
/// reset (MCUboot's `boot_set_pending`): TEST (one trial boot, reverted
/// unless confirmed) or, with `permanent`, PERM.
///
/// Erased magic: writes magic, then image_ok (permanent only), then
/// swap_info (type 2 or 3, image 0), each one write, synced. GOOD magic:
/// writes nothing ([`Outcome::Unchanged`]; a pending TEST cannot be turned
/// into PERM this way). BAD magic: [`TrailerError::BadMagic`], nothing
/// written (MCUboot also erases the slot; we leave that to the caller).
///
/// In [`Mode::OverwriteOnly`] swap_info is not written: that bootloader
/// never reads it, and imgtool's overwrite-only trailer (2 cells + magic)
/// does not reserve its cell, so the write could land on image bytes.
pub fn set_pending<S: EnvStorage + ?Sized>(
    storage: &mut S,
    area: Area,
    layout: &TrailerLayout,
    permanent: bool,
) -> Result<Outcome, TrailerError<S::Error>> {
    let state = read_state(storage, area, layout)?;
    match state.magic {
        MagicState::Good => return Ok(Outcome::Unchanged),
        MagicState::Bad => return Err(TrailerError::BadMagic),
        MagicState::Unset => {}
    }
    write_magic(storage, area, layout)?;
    if permanent {
        write_cell(
            storage,
            area.offset + layout.image_ok_off(area.size),
            FLAG_SET,
            layout,
        )?;
    }
    if layout.mode != Mode::OverwriteOnly {
        let t = if permanent {
            SwapType::Perm
        } else {
            SwapType::Test
        };
        write_cell(
            storage,
            area.offset + layout.swap_info_off(area.size),
            t.code(),
            layout,
        )?;
    }
    Ok(Outcome::Written)
}

/// Confirms the image in the primary slot `area` (MCUboot's
/// `boot_set_confirmed`): when the magic is GOOD and image_ok is unset,
/// writes image_ok = 1 (one cell); otherwise writes nothing. A BAD magic
/// is an error, as in MCUboot.
pub fn set_confirmed<S: EnvStorage + ?Sized>(
    storage: &mut S,
    area: Area,
    layout: &TrailerLayout,
) -> Result<Outcome, TrailerError<S::Error>> {
    let state = read_state(storage, area, layout)?;
    match state.magic {
        MagicState::Unset => return Ok(Outcome::Unchanged),
        MagicState::Bad => return Err(TrailerError::BadMagic),
        MagicState::Good => {}
    }
    if state.image_ok != Flag::Unset {
        return Ok(Outcome::Unchanged);
    }
    write_cell(
        storage,
        area.offset + layout.image_ok_off(area.size),
        FLAG_SET,
        layout,
    )?;
    Ok(Outcome::Written)
}

/// Makes the trailer of `area` read as erased (magic unset), so a pending
/// swap is dropped: erases the sectors holding the trailer fields and,
/// on storage whose erase does nothing (files, block devices), overwrites
/// the fields with the erased value, magic first. Every intermediate
/// state is "still pending" (magic GOOD) or "nothing pending" (magic
/// torn = BAD, or erased). On flash this destroys the rest of the slot's
/// last sector(s): the image there must be rewritten before it is armed
/// again.
pub fn neutralise<S: EnvStorage + ?Sized>(
    storage: &mut S,
    area: Area,
    layout: &TrailerLayout,
) -> Result<(), TrailerError<S::Error>> {
    layout.check_slot(area.size).map_err(TrailerError::Layout)?;
    let size = area.size;
    let low = layout.swap_size_off(size);
    let sector = area.sector_size.max(1);
    let start = low - low % sector;
    storage
        .erase(area.offset + start, size - start)
        .map_err(TrailerError::Storage)?;
    let state = read_state(storage, area, layout)?;
    let erased_cell = [layout.erased; 32];
    if state.magic != MagicState::Unset {
        // The erase did nothing: clear the fields by writing, magic first.
        let n = layout.magic_block() as usize;
        storage
            .write(area.offset + size - n as u64, &erased_cell[..n])
            .and_then(|()| storage.sync())
            .map_err(TrailerError::Storage)?;
    }
    for off in [
        layout.image_ok_off(size),
        layout.copy_done_off(size),
        layout.swap_info_off(size),
    ] {
        if read_byte(storage, area.offset + off)? != layout.erased {
            let n = layout.write_size as usize;
            storage
                .write(area.offset + off, &erased_cell[..n])
                .map_err(TrailerError::Storage)?;
        }
    }
    storage.sync().map_err(TrailerError::Storage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;

    const S: u64 = 0x20000;

    #[test]
    fn offsets_match_the_spec_table() {
        // spec 1.4: (A, image_ok, copy_done, swap_info, swap_size) from S.
        for (a, ok, cd, si, ss) in [
            (8, 24, 32, 40, 48),
            (16, 32, 48, 64, 80),
            (32, 64, 96, 128, 160),
        ] {
            let l = TrailerLayout::new(Mode::SwapScratch, a, 1, 0xff).unwrap();
            assert_eq!(S - l.image_ok_off(S), ok, "A={a}");
            assert_eq!(S - l.copy_done_off(S), cd, "A={a}");
            assert_eq!(S - l.swap_info_off(S), si, "A={a}");
            assert_eq!(S - l.swap_size_off(S), ss, "A={a}");
            assert_eq!(S - l.magic_off(S), 16);
            let o = TrailerLayout::new(Mode::SwapOffset, a, 1, 0xff).unwrap();
            assert_eq!(S - o.swap_size_off(S), ss + u64::from(a));
        }
        let l16 = TrailerLayout::new(Mode::SwapMove, 16, 1, 0xff).unwrap();
        assert_eq!(l16.magic()[..4], [0x10, 0x00, 0x2d, 0xe1]);
        let l32 = TrailerLayout::new(Mode::SwapMove, 32, 1, 0xff).unwrap();
        assert_eq!(l32.magic()[..4], [0x20, 0x00, 0x2d, 0xe1]);
        assert_eq!(l32.magic_block(), 32);
        // imgtool's defaults: --align 1 reserves 432 bytes, 8 needs 3120.
        let l = TrailerLayout::new(Mode::SwapScratch, 8, 1, 0xff).unwrap();
        assert_eq!(l.trailer_size(128), 432);
        let l = TrailerLayout::new(Mode::SwapScratch, 8, 8, 0xff).unwrap();
        assert_eq!(l.trailer_size(128), 3120);
        let l = TrailerLayout::new(Mode::OverwriteOnly, 8, 8, 0xff).unwrap();
        assert_eq!(l.trailer_size(128), 32);
    }

    #[test]
    fn invalid_layouts_are_refused() {
        assert_eq!(
            TrailerLayout::new(Mode::SwapScratch, 4, 1, 0xff),
            Err(LayoutError::MaxAlign(4))
        );
        assert_eq!(
            TrailerLayout::new(Mode::SwapScratch, 8, 16, 0xff),
            Err(LayoutError::WriteSize(16))
        );
        assert_eq!(
            TrailerLayout::new(Mode::SwapScratch, 8, 3, 0xff),
            Err(LayoutError::WriteSize(3))
        );
        let l = TrailerLayout::new(Mode::SwapScratch, 8, 8, 0xff).unwrap();
        let mut mem = MemStorage::new([0xffu8; 64]);
        let area = Area {
            offset: 0,
            size: 60,
            sector_size: 4,
        };
        assert_eq!(
            read_state(&mut mem, area, &l),
            Err(TrailerError::Layout(LayoutError::SlotSize(60)))
        );
    }

    #[test]
    fn writes_exactly_the_cells_of_spec_1_6() {
        let l = TrailerLayout::new(Mode::SwapScratch, 8, 8, 0xff).unwrap();
        let area = Area {
            offset: 0,
            size: 256,
            sector_size: 256,
        };
        let mut mem = MemStorage::new([0xffu8; 256]);
        assert_eq!(set_pending(&mut mem, area, &l, true), Ok(Outcome::Written));
        let b = mem.as_bytes();
        assert_eq!(b[256 - 16..], MAGIC_ALIGN8);
        assert_eq!(
            b[256 - 24..256 - 16],
            [1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(
            b[256 - 40..256 - 32],
            [3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
        assert!(b[..256 - 40].iter().all(|&x| x == 0xff));
        assert_eq!(mem.bytes_written(), 32);
        // Bad magic: refused, nothing written.
        let mut mem = MemStorage::new([0xffu8; 256]);
        mem.as_bytes_mut()[250] = 0;
        mem.reset_counter();
        assert_eq!(
            set_pending(&mut mem, area, &l, false),
            Err(TrailerError::BadMagic)
        );
        assert_eq!(
            set_confirmed(&mut mem, area, &l),
            Err(TrailerError::BadMagic)
        );
        assert_eq!(mem.bytes_written(), 0);
        // Confirm on an erased primary writes nothing.
        let mut mem = MemStorage::new([0xffu8; 256]);
        assert_eq!(set_confirmed(&mut mem, area, &l), Ok(Outcome::Unchanged));
        assert_eq!(mem.bytes_written(), 0);
    }

    #[test]
    fn decision_table() {
        let st = |magic, image_ok, copy_done| SwapState {
            magic,
            swap_type: SwapType::None,
            image_num: 0,
            swap_info: 0xff,
            copy_done,
            image_ok,
        };
        use Flag::{Set, Unset};
        use MagicState::{Bad, Good, Unset as Erased};
        let none = st(Erased, Unset, Unset);
        let m = Mode::SwapScratch;
        assert_eq!(swap_type(&none, &none, m), SwapType::None);
        assert_eq!(swap_type(&none, &st(Good, Unset, Unset), m), SwapType::Test);
        assert_eq!(swap_type(&none, &st(Good, Set, Unset), m), SwapType::Perm);
        assert_eq!(
            swap_type(&none, &st(Good, Flag::Bad(7), Unset), m),
            SwapType::None
        );
        assert_eq!(swap_type(&none, &st(Bad, Unset, Unset), m), SwapType::None);
        let running = st(Good, Unset, Set);
        assert_eq!(swap_type(&running, &none, m), SwapType::Revert);
        assert_eq!(
            swap_type(&running, &st(Bad, Unset, Unset), m),
            SwapType::None
        );
        assert_eq!(swap_type(&st(Good, Set, Set), &none, m), SwapType::None);
        // Secondary requests come first.
        assert_eq!(
            swap_type(&running, &st(Good, Unset, Unset), m),
            SwapType::Test
        );
        // Row I only in swap-using-offset.
        let sec_rev = st(Good, Unset, Set);
        assert_eq!(swap_type(&none, &sec_rev, m), SwapType::Test);
        assert_eq!(
            swap_type(&none, &sec_rev, Mode::SwapOffset),
            SwapType::Revert
        );
    }
}
