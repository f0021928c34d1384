//! # updraft-core
//!
//! The sans-IO core of Updraft, an over-the-air update system compatible
//! with Mender: it does no I/O and reads no clock. Its caller feeds it bytes
//! and gets events back.
//!
//! * [`artifact`]: the streaming Mender Artifact (format v3) reader, with
//!   manifest signature and digest checks.
//! * [`crypto`]: SHA-256, signature verification and signing behind small
//!   traits, so hardware crypto can plug in.
//! * [`boot`]: the [`boot::BootControl`] trait a bootloader integration
//!   implements, and the [`boot::Verified`] proof needed to arm a trial boot.
//! * [`machine`]: the update state machine (Mender's states), one for
//!   managed and standalone updates: inputs and `now` in, one action out.
//! * [`api`]: the Mender device-API messages (auth request signed through a
//!   [`crypto::Signer`], inventory, `next`, status, log), built into fixed
//!   buffers.
//! * [`script`]: Mender's state script hooks (Enter/Leave/Error) and
//!   script names; the machine asks for them as actions.
//! * [`install`]: the [`install::SlotWriter`] trait and
//!   [`install::Install`], which streams an artifact through the reader into
//!   a slot after the device-type and depends checks.
//! * [`store`]: the persisted [`store::StateRecord`], the
//!   [`store::StateStore`] trait and [`store::DualStore`] (two copies, sequence
//!   number, CRC) over a [`storage::Storage`].
//!
//! ## Features
//!
//! | feature | adds |
//! | --- | --- |
//! | *(none)* | `no_std`, no heap: uncompressed and gzip artifacts, ECDSA P-256 signatures, `sha2` SHA-256 |
//! | `alloc` | RSA signatures, PEM keys |
//! | `std` (default) | `alloc`, plus ring's assembly SHA-256, zlib-rs inflate, xz artifacts, and the artifact writer ([`artifact::write`]) |
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod api;
pub mod artifact;
pub mod boot;
pub mod crypto;
pub mod install;
pub mod machine;
pub mod script;
pub mod storage;
pub mod store;
