//! MCUboot support: the image header and TLVs, image verification, the
//! image trailer, and a [`BootControl`](updraft_core::boot::BootControl)
//! over MCUboot's primary and secondary slots. Layouts follow
//! `spec/boot-formats.md` section 1 and are tested against imgtool 2.5.0.
//!
//! * [`header`]: the 32-byte image header ([`ImageHeader`], [`Version`],
//!   [`Flags`]).
//! * [`tlv`]: TLV kinds ([`TlvKind`]) and records.
//! * [`image`]: [`Image`], a checked view of an image in memory, with the
//!   bootloader's rules for the protected (0x6908) and unprotected (0x6907)
//!   areas; no accessor panics on any input.
//! * [`verify`](mod@verify): hash and signature checks ([`verify()`] in
//!   memory, [`verify_slot`] streaming from storage with a caller buffer);
//!   ECDSA P-256, Ed25519 (also pure), RSA-2048/3072 PSS with `alloc`.
//!   Encrypted images are reported as such and cannot be verified.
//! * [`trailer`]: swap state, the decision table, `set_pending`,
//!   `set_confirmed`, for swap-scratch/move/offset and overwrite-only,
//!   BOOT_MAX_ALIGN 8/16/32, any write size, 0xff or 0x00 erased flash.
//! * [`control`]: the agent's [`McubootControl`].
//!
//! Not supported: ECDSA P-384 signatures, decrypting encrypted images,
//! compressed images' inner checks, direct-XIP/RAM-load trailers (the
//! library's direct-XIP writes differ, spec 1.6), multi-image pairs
//! (image number is always 0), big-endian images (`--endian big`).

pub mod control;
pub mod header;
pub mod image;
pub mod tlv;
pub mod trailer;
pub mod verify;

pub use control::{ArmCheck, ControlError, McubootControl};
pub use header::{Flags, HeaderError, ImageHeader, Version};
pub use image::{Image, ImageError, Layout, TlvArea};
pub use tlv::{Tlv, TlvIter, TlvKind};
pub use trailer::{
    Area, Flag, LayoutError, MagicState, Mode, Outcome, SwapState, SwapType, TrailerError,
    TrailerLayout,
};
pub use verify::{
    verify, verify_slot, HashAlg, KeyError, KeyKind, PublicKey, SignatureCheck, Validated,
    VerifyError,
};
