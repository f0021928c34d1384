//! # updraft-boot
//!
//! Bootloader integration for Updraft: the on-disk formats the device agent
//! reads and writes to hand an update to the bootloader, confirm it, and
//! survive a power cut at any byte. The formats follow
//! `spec/boot-formats.md` and are tested against the real tools
//! (`mkenvimage`, `fw_printenv`/`fw_setenv` from libubootenv 0.3.2,
//! `grub-editenv` 2.06).
//!
//! ## Modules
//!
//! * [`storage`]: the [`EnvStorage`](storage::EnvStorage) trait, the
//!   core's `Storage` (read, write, erase, sync at byte offsets) plus the
//!   device's size and whether a byte can be rewritten;
//!   [`Shared`](storage::Shared) for two env copies on one device;
//!   [`MemStorage`](storage::MemStorage),
//!   an in-memory implementation that can cut power after any number of
//!   written bytes (torn writes); and, with `std`,
//!   `FileStorage` (write + fsync).
//! * [`nor`]: NOR flash through the `embedded-storage` `NorFlash` traits
//!   ([`NorStorage`](nor::NorStorage): erase and write granularity, 1 → 0
//!   only), and with `alloc` a simulated NOR flash (`SimNor`) that enforces
//!   those rules and can cut power after any byte.
//! * [`uboot`]: the U-Boot environment, single copy or redundant pair: CRC
//!   and flags checks, the exact rule for which copy wins (wrap-around and
//!   0xff quirk), variable parsing, and a batched, power-safe update that
//!   writes only the inactive copy with flags + 1, or on NOR flash the
//!   boolean active/obsolete flags U-Boot's `env/flash.c` and libubootenv
//!   use there. [`uboot::config`] parses
//!   `fw_env.config` the way libubootenv does (hex sizes, octal-looking
//!   offsets) and, with `std`, opens the devices it names.
//! * [`grub`]: the GRUB environment block (`grubenv`): signature, escapes,
//!   `#` padding, in-place set/unset byte-identical to `grub-editenv`, a
//!   size-limit error, and with `std` an atomic file replacement.
//! * [`change`]: [`Change`], one variable set or removal of a batch, shared
//!   by both codecs.
//! * [`mender_grub`]: Mender's double GRUB environment (`mender_grubenv1/2`
//!   with `env`, `lock`, `lock.sha256sum`): the six-step write protocol and
//!   the repair-at-read rule, over a small directory trait (in-memory with
//!   power cuts, or a real directory).
//! * [`control`]: `BootControl` (from `updraft-core`) for U-Boot
//!   ([`control::UbootControl`]) and GRUB ([`control::GrubControl`]) with
//!   Mender's variables, and simulators of the boot scripts' logic
//!   (`scripts/boot.cmd`, `scripts/grub.cfg` in this crate).
//! * [`mcuboot`]: MCUboot image header, TLVs, verification (SHA-256,
//!   ECDSA P-256, Ed25519, RSA-PSS with `alloc`, KEYHASH), the image trailer
//!   with `boot_set_pending`/`boot_set_confirmed` semantics, and
//!   `McubootControl`.
//!
//! ## Memory and errors
//!
//! The codecs never allocate: they work on caller buffers (the U-Boot copy
//! size, the grubenv block) and a 256-byte stack chunk. Every fallible
//! operation has its own small `#[non_exhaustive]` error enum with
//! `Display` and `core::error::Error`; storage errors are passed through as
//! the storage's own type.
//!
//! ## Features
//!
//! * `std` (off by default): file-backed storage, opening an
//!   `fw_env.config`'s devices, atomic grubenv file replacement. Without it
//!   the crate is `#![no_std]` and builds for `thumbv7em-none-eabihf`.
//! * `alloc` (implied by `std`): RSA-PSS verification of MCUboot images.
//!   Everything else needs no heap.
//!
//! ## Not supported yet
//!
//! UBI volumes and NAND (bad-block skipping), big-endian env CRCs
//! (`mkenvimage -b`), and NOR env copies that share an erase sector with
//! other data (U-Boot saves and restores the rest of the sector; we refuse
//! such an erase). Opening `/dev/mtdN` devices (ioctls) and taking
//! libubootenv's lock file (`/var/lock/fw_printenv.lock`) are left to the
//! caller: the `updraft` command does both. The boot
//! scripts are checked by `mkimage`, `sh -n` and `grub-script-check` and
//! simulated against our codecs, but have not run on a real U-Boot or GRUB.
//! See [`mcuboot`]'s docs for what it does not support.
#![no_std]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

#[cfg(any(feature = "std", test))]
extern crate std;

pub mod change;
pub mod control;
pub mod grub;
pub mod mcuboot;
pub mod mender_grub;
pub mod nor;
pub mod storage;
pub mod uboot;

pub use change::{Change, ChangeError, InvalidChange};
