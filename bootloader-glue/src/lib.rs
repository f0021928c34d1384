//! # updraft-boot
//!
//! Bootloader integration for Updraft: the U-Boot environment, the GRUB
//! environment (plain and Mender's double grubenv) and the MCUboot image
//! trailer, each behind a `BootControl` implementation.
//!
//! **Status:** not implemented yet. This crate is a placeholder in the
//! workspace so that the layout of `DESIGN.md` exists; it exports nothing.
//! The work is tracked in the "Bootloader glue" issue.
#![no_std]
