//! [`McubootControl`]: the agent's [`BootControl`] over MCUboot's two
//! slots.
//!
//! MCUboot always runs the primary slot, so the active slot is always
//! [`Slot::A`]; an update is written to the secondary ([`Slot::B`]) and
//! swapped in by the bootloader.
//!
//! | trailers (decision, spec 1.7) | [`BootState::trial`] |
//! | --- | --- |
//! | TEST or PERM (secondary magic GOOD) | `Armed(B)` |
//! | REVERT (primary GOOD, copy_done set, image_ok unset; secondary erased) | `Running { boot_count: 1 }` |
//! | NONE | `None` |
//!
//! * `arm_trial(B, proof)`: checks the image in the secondary (hash, and
//!   signature when a key is configured; see [`ArmCheck`]), then
//!   `set_pending(test)`.
//! * `confirm()`: `set_confirmed` on the primary (image_ok = 1).
//! * `roll_back()` while armed: [`neutralise`](super::trailer::neutralise)s
//!   the secondary trailer. MCUboot then finds no request (magic erased,
//!   or BAD after a cut mid-erase: both mean NONE) and boots the primary
//!   as it is; the secondary's last sector is gone, so the image must be
//!   rewritten before it can be armed again. A cut before the erase
//!   leaves it armed; calling `roll_back` again finishes the job.
//! * `roll_back()` while running: writes nothing. The trailers already
//!   say REVERT, so at the next reset MCUboot swaps the previous image
//!   back; the caller reboots. (Confirming is the only way to keep it.)

use core::fmt;

use updraft_core::boot::{BootControl, BootState, Slot, Trial, Verified};

use super::trailer::{
    self, Area, Flag, LayoutError, MagicState, SwapState, SwapType, TrailerError, TrailerLayout,
};
use super::verify::{verify_slot, PublicKey, VerifyError};
use crate::storage::EnvStorage;

/// What [`McubootControl::arm_trial`] checks in the secondary slot before
/// arming it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ArmCheck {
    /// The image structure and its hash (the default). MCUboot checks the
    /// signature itself before swapping.
    Hash,
    /// Structure, hash and signature with this key, as MCUboot will.
    Signature(PublicKey),
    /// Nothing: needed for encrypted images, whose hash covers the
    /// plaintext (MCUboot decrypts and checks them at boot).
    Skip,
}

/// Why a [`McubootControl`] operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ControlError<E> {
    /// Reading or writing a trailer failed.
    Trailer(TrailerError<E>),
    /// The image in the secondary slot failed the [`ArmCheck`]; nothing
    /// was written.
    Image(VerifyError<E>),
    /// Only the secondary slot ([`Slot::B`]) can be armed.
    NotSecondary(Slot),
    /// A trial is running unconfirmed (the next reset reverts): confirm or
    /// roll back before arming another image.
    TrialRunning,
    /// The secondary trailer already requests a permanent swap (an image
    /// made with `imgtool --confirm`?): no trial can be armed.
    PermanentPending,
    /// The trailer holds a GOOD magic but the bootloader would still not
    /// swap (a corrupt image_ok, e.g. a torn earlier write): erase and
    /// rewrite the secondary slot.
    NotArmed,
    /// The two slots overlap, or a slot size does not fit the layout or
    /// its sector size.
    Geometry(LayoutError),
}

impl<E: fmt::Display> fmt::Display for ControlError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::Trailer(e) => e.fmt(f),
            ControlError::Image(e) => write!(f, "secondary slot image rejected: {e}"),
            ControlError::NotSecondary(s) => {
                write!(f, "MCUboot can only arm the secondary slot (B), not {s}")
            }
            ControlError::TrialRunning => f.write_str(
                "a trial boot is running unconfirmed: confirm or roll back before arming again",
            ),
            ControlError::PermanentPending => f.write_str(
                "the secondary slot already requests a permanent swap (image_ok set, e.g. \
                 imgtool --confirm); a trial cannot be armed",
            ),
            ControlError::NotArmed => f.write_str(
                "the secondary trailer is marked but unusable (corrupt image_ok): erase and \
                 rewrite the slot",
            ),
            ControlError::Geometry(e) => write!(f, "invalid slot geometry: {e}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for ControlError<E> {}

impl<E> From<TrailerError<E>> for ControlError<E> {
    fn from(e: TrailerError<E>) -> Self {
        ControlError::Trailer(e)
    }
}

/// MCUboot's primary and secondary slots on one storage (internal flash,
/// or a test double), as a [`BootControl`].
#[derive(Debug)]
pub struct McubootControl<S> {
    storage: S,
    primary: Area,
    secondary: Area,
    layout: TrailerLayout,
    check: ArmCheck,
}

impl<S: EnvStorage> McubootControl<S> {
    /// Both slots on `storage`. Fails when a slot does not fit the layout,
    /// its size is not a multiple of its sector size, or the slots
    /// overlap.
    pub fn new(
        storage: S,
        primary: Area,
        secondary: Area,
        layout: TrailerLayout,
    ) -> Result<Self, ControlError<S::Error>> {
        for a in [primary, secondary] {
            layout.check_slot(a.size).map_err(ControlError::Geometry)?;
            if a.sector_size == 0 || a.size % a.sector_size != 0 {
                return Err(ControlError::Geometry(LayoutError::SlotSize(a.size)));
            }
        }
        let overlap = primary.offset < secondary.offset.saturating_add(secondary.size)
            && secondary.offset < primary.offset.saturating_add(primary.size);
        if overlap {
            return Err(ControlError::Geometry(LayoutError::SlotSize(
                secondary.size,
            )));
        }
        Ok(McubootControl {
            storage,
            primary,
            secondary,
            layout,
            check: ArmCheck::Hash,
        })
    }

    /// Sets what `arm_trial` checks (default [`ArmCheck::Hash`]).
    pub fn with_check(mut self, check: ArmCheck) -> Self {
        self.check = check;
        self
    }

    /// The storage.
    pub fn storage(&mut self) -> &mut S {
        &mut self.storage
    }

    /// Gives the storage back.
    pub fn into_inner(self) -> S {
        self.storage
    }

    /// The trailer layout.
    pub fn layout(&self) -> &TrailerLayout {
        &self.layout
    }

    /// The primary slot's trailer.
    pub fn primary_state(&mut self) -> Result<SwapState, TrailerError<S::Error>> {
        trailer::read_state(&mut self.storage, self.primary, &self.layout)
    }

    /// The secondary slot's trailer.
    pub fn secondary_state(&mut self) -> Result<SwapState, TrailerError<S::Error>> {
        trailer::read_state(&mut self.storage, self.secondary, &self.layout)
    }

    /// What MCUboot will do at the next reset.
    pub fn swap_type(&mut self) -> Result<SwapType, TrailerError<S::Error>> {
        let p = self.primary_state()?;
        let s = self.secondary_state()?;
        Ok(trailer::swap_type(&p, &s, self.layout.mode()))
    }
}

impl<S: EnvStorage> BootControl for McubootControl<S> {
    type Error = ControlError<S::Error>;

    fn state(&mut self) -> Result<BootState, Self::Error> {
        let trial = match self.swap_type()? {
            SwapType::Test | SwapType::Perm => Trial::Armed(Slot::B),
            SwapType::Revert => Trial::Running { boot_count: 1 },
            SwapType::None => Trial::None,
        };
        Ok(BootState {
            active: Slot::A,
            trial,
        })
    }

    fn arm_trial(&mut self, slot: Slot, _proof: &Verified) -> Result<(), Self::Error> {
        if slot != Slot::B {
            return Err(ControlError::NotSecondary(slot));
        }
        let s = self.secondary_state()?;
        if s.magic == MagicState::Good && s.image_ok == Flag::Set {
            return Err(ControlError::PermanentPending);
        }
        if self.swap_type()? == SwapType::Revert {
            return Err(ControlError::TrialRunning);
        }
        let key = match &self.check {
            ArmCheck::Skip => None,
            ArmCheck::Hash => Some(None),
            ArmCheck::Signature(k) => Some(Some(k)),
        };
        if let Some(key) = key {
            let mut buf = [0u8; 256];
            verify_slot(
                &mut self.storage,
                self.secondary.offset,
                self.secondary.size,
                key,
                &mut buf,
            )
            .map_err(ControlError::Image)?;
        }
        trailer::set_pending(&mut self.storage, self.secondary, &self.layout, false)?;
        match self.swap_type()? {
            SwapType::Test => Ok(()),
            SwapType::Perm => Err(ControlError::PermanentPending),
            SwapType::None | SwapType::Revert => Err(ControlError::NotArmed),
        }
    }

    fn confirm(&mut self) -> Result<(), Self::Error> {
        trailer::set_confirmed(&mut self.storage, self.primary, &self.layout)?;
        Ok(())
    }

    fn roll_back(&mut self) -> Result<(), Self::Error> {
        match self.swap_type()? {
            SwapType::Test | SwapType::Perm => {
                trailer::neutralise(&mut self.storage, self.secondary, &self.layout)?;
            }
            // Running: the next reset reverts; armed-nothing: nothing to do.
            SwapType::Revert | SwapType::None => {}
        }
        Ok(())
    }
}
