//! What the agent needs from a bootloader: [`BootControl`].
//!
//! An update is handed to the bootloader as a *trial*: the new slot boots
//! once, and unless the running system confirms it, the bootloader goes
//! back to the old slot. `updraft-boot` implements this trait for U-Boot
//! and GRUB (Mender's variables) and for MCUboot (image trailers).
//!
//! Arming takes a [`Verified`] proof, which only the artifact reader hands
//! out after every digest (and, with keys, the signature) matched, so an
//! unverified image cannot be armed by mistake.

use core::fmt;

/// One of the two slots of an A/B system. For MCUboot, `A` is the primary
/// slot (always the one that runs) and `B` the secondary (the one written).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Slot {
    /// The first slot (rootfs A, MCUboot primary).
    A,
    /// The second slot (rootfs B, MCUboot secondary).
    B,
}

impl Slot {
    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Slot::A => "A",
            Slot::B => "B",
        })
    }
}

/// Where a trial boot stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trial {
    /// Nothing armed, nothing on trial.
    None,
    /// A trial boot of this slot happens at the next reboot.
    Armed(Slot),
    /// The system runs a trial boot; it must confirm or roll back.
    /// `boot_count` is how many times the trial slot was booted (U-Boot's
    /// `bootcount`; 1 for bootloaders that do not count).
    Running {
        /// Boots of the trial slot so far.
        boot_count: u32,
    },
}

/// What the bootloader's state says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootState {
    /// The slot that runs now (or will run at the next boot, when nothing
    /// is armed).
    pub active: Slot,
    /// The trial state.
    pub trial: Trial,
}

impl BootState {
    /// The slot an update should be written to.
    pub fn inactive(&self) -> Slot {
        self.active.other()
    }
}

/// Proof that an artifact was read completely and every check passed.
///
/// Only [`crate::artifact::Reader::verified`] makes one, after
/// [`crate::artifact::Event::Done`].
#[derive(Debug)]
pub struct Verified {
    pub(crate) _private: (),
}

/// A bootloader, as the update agent drives it. Every method must be
/// power-safe: after a cut at any point the bootloader state is either the
/// old or the new one.
pub trait BootControl {
    /// The error of the underlying storage or format.
    type Error: fmt::Debug + fmt::Display;

    /// Read the current state.
    fn state(&mut self) -> Result<BootState, Self::Error>;

    /// Arm a one-time trial boot of `slot` (the inactive one), which holds
    /// the image `proof` vouches for.
    fn arm_trial(&mut self, slot: Slot, proof: &Verified) -> Result<(), Self::Error>;

    /// The running trial is healthy: make it permanent.
    fn confirm(&mut self) -> Result<(), Self::Error>;

    /// Abandon the trial (armed or running): the next boot uses the
    /// previous slot.
    fn roll_back(&mut self) -> Result<(), Self::Error>;
}
