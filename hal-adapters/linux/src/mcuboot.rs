//! The `updraft mcuboot` tool: inspect, verify and mark MCUboot images,
//! through [`updraft_boot::mcuboot`].
//!
//! * [`show`]: header fields, every TLV (area, offset, type, length,
//!   value), and the trailer state when the file goes on past the TLVs.
//! * [`load_public_key`] + [`verify_file`]: like `imgtool verify -k KEY`,
//!   with the bootloader's stricter rules (the KEYHASH must match the key).
//!   KEY is PEM as imgtool writes it: a `PUBLIC KEY` (`imgtool getpub -e
//!   pem`), or a private key (ECDSA P-256 or RSA, whose public key is
//!   derived). Ed25519 private keys are refused with a hint to run
//!   `imgtool getpub`.
//! * [`set_pending`] / [`confirm`]: MCUboot's `boot_set_pending` and
//!   `boot_set_confirmed` on a slot file, for the bootloader's update mode
//!   (swap using scratch, move or offset; overwrite-only), BOOT_MAX_ALIGN,
//!   flash write size and erased value ([`Slot`]).

use std::fmt;
use std::io::Write;
use std::path::Path;

use base64ct::Encoding;
use updraft_boot::mcuboot::{
    trailer, verify, Area, Flag, Image, MagicState, Mode, Outcome, PublicKey, SignatureCheck,
    SwapState, TrailerLayout, Validated,
};
use updraft_boot::storage::FileStorage;
use updraft_core::crypto::{Signer, SigningKey, VerifyingKey};

/// An MCUboot tool error, with a message for a person.
#[derive(Debug)]
pub struct McubootError(String);

impl fmt::Display for McubootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for McubootError {}

fn err(path: &Path, e: impl fmt::Display) -> McubootError {
    McubootError(format!("{}: {e}", path.display()))
}

/// Parses a size or offset: decimal, or hex with `0x` (as imgtool takes
/// them).
pub fn parse_number(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => t.parse(),
    };
    r.map_err(|_| format!("{s:?} is not a number (decimal, or hex with 0x)"))
}

/// Decodes PEM text: the label and the DER bytes.
fn decode_pem(text: &str) -> Option<(String, Vec<u8>)> {
    let start = text.find("-----BEGIN ")?;
    let rest = &text[start + "-----BEGIN ".len()..];
    let label_end = rest.find("-----")?;
    let label = &rest[..label_end];
    let body = &rest[label_end + 5..];
    let end = body.find(&format!("-----END {label}-----"))?;
    let b64: String = body[..end]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let der = base64ct::Base64::decode_vec(&b64).ok()?;
    Some((label.to_owned(), der))
}

const GETPUB_HINT: &str =
    "extract the public key with `imgtool getpub -k KEY -e pem -o KEY.pub.pem` \
                           and pass that";

/// Loads a verification key from a PEM file (see the [module docs](self)).
pub fn load_public_key(path: &Path) -> Result<PublicKey, McubootError> {
    let bytes = std::fs::read(path).map_err(|e| err(path, e))?;
    let Some((text, (label, der))) = String::from_utf8(bytes)
        .ok()
        .and_then(|t| decode_pem(&t).map(|p| (t, p)))
    else {
        return Err(err(
            path,
            "not a PEM file (no valid -----BEGIN ...----- block)",
        ));
    };
    match label.as_str() {
        "PUBLIC KEY" | "RSA PUBLIC KEY" => PublicKey::from_der(&der).map_err(|e| err(path, e)),
        "PRIVATE KEY" | "EC PRIVATE KEY" | "RSA PRIVATE KEY" => {
            let key = SigningKey::from_pem(&text).map_err(|e| {
                err(
                    path,
                    format!(
                        "cannot derive a public key from this private key ({e}): {GETPUB_HINT}"
                    ),
                )
            })?;
            match key.verifying_key() {
                VerifyingKey::EcdsaP256(k) => Ok(PublicKey::EcdsaP256(k)),
                VerifyingKey::Rsa(k) => {
                    let bytes = key.signature_len();
                    if bytes != 256 && bytes != 384 {
                        return Err(err(
                            path,
                            format!(
                                "RSA keys must have 2048 or 3072 bits, this one has {}",
                                bytes * 8
                            ),
                        ));
                    }
                    Ok(PublicKey::Rsa(k))
                }
                _ => Err(err(path, format!("unsupported private key: {GETPUB_HINT}"))),
            }
        }
        "ENCRYPTED PRIVATE KEY" => Err(err(
            path,
            format!("the private key is password-protected: {GETPUB_HINT}"),
        )),
        other => Err(err(
            path,
            format!("unexpected PEM block {other:?}: expected a PUBLIC KEY or a PRIVATE KEY"),
        )),
    }
}

/// Verifies the image in `path` (hash only without a key).
pub fn verify_file(path: &Path, key: Option<&PublicKey>) -> Result<Validated, McubootError> {
    let bytes = std::fs::read(path).map_err(|e| err(path, e))?;
    verify(&bytes, key).map_err(|e| err(path, e))
}

/// A one-line description of a successful verification.
pub fn describe_validated(v: &Validated) -> String {
    let hash = v
        .hash_alg
        .map_or_else(|| "no hash".to_owned(), |h| h.to_string());
    let sig = match v.signature {
        SignatureCheck::Verified { key, pure: true } => format!("{key} pure signature verified"),
        SignatureCheck::Verified { key, .. } => format!("{key} signature verified"),
        _ => "signature not checked (no key)".to_owned(),
    };
    format!(
        "image was correctly validated: version {}, {hash} matches, {sig}",
        v.header.version
    )
}

fn hex(bytes: &[u8]) -> String {
    const MAX: usize = 32;
    let mut s: String = bytes.iter().take(MAX).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > MAX {
        s.push_str("...");
    }
    s
}

fn flag(f: Flag) -> String {
    match f {
        Flag::Unset => "unset".to_owned(),
        Flag::Set => "set (0x01)".to_owned(),
        Flag::Bad(b) => format!("bad ({b:#04x})"),
    }
}

/// Writes a trailer state, one field per line, indented.
fn write_state(out: &mut dyn Write, s: &SwapState) -> std::io::Result<()> {
    let magic = match s.magic {
        MagicState::Unset => "unset",
        MagicState::Good => "good",
        MagicState::Bad => "bad",
    };
    writeln!(out, "  magic: {magic}")?;
    writeln!(
        out,
        "  swap_info: {:#04x} (type {:?}, image {})",
        s.swap_info, s.swap_type, s.image_num
    )?;
    writeln!(out, "  copy_done: {}", flag(s.copy_done))?;
    writeln!(out, "  image_ok: {}", flag(s.image_ok))
}

/// The trailer layout for `mode`, BOOT_MAX_ALIGN `max_align`, flash
/// write size `write_size` and erased value `erased`, or an error that
/// says which one is wrong.
pub fn layout(
    mode: Mode,
    max_align: u32,
    write_size: u32,
    erased: u8,
) -> Result<TrailerLayout, McubootError> {
    if erased != 0xff && erased != 0x00 {
        return Err(McubootError(format!(
            "erased value {erased:#04x} is neither 0xff nor 0x00"
        )));
    }
    TrailerLayout::new(mode, max_align, write_size, erased).map_err(|e| McubootError(e.to_string()))
}

/// Prints an image's header, TLVs and (when the file extends past the
/// TLVs) its trailer, read with slot size `slot_size` (default: the file
/// length) and the trailer layout `lay`.
pub fn show(
    path: &Path,
    slot_size: Option<u64>,
    lay: &TrailerLayout,
    out: &mut dyn Write,
) -> Result<(), McubootError> {
    let bytes = std::fs::read(path).map_err(|e| err(path, e))?;
    let image = Image::parse(&bytes).map_err(|e| err(path, e))?;
    let h = image.header();
    let l = image.layout();
    let io = |e: std::io::Error| McubootError(e.to_string());
    writeln!(out, "header:").map_err(io)?;
    writeln!(out, "  load address: {:#010x}", h.load_addr).map_err(io)?;
    writeln!(out, "  header size: {:#x}", h.hdr_size).map_err(io)?;
    writeln!(out, "  protected TLV size: {:#x}", h.protect_tlv_size).map_err(io)?;
    writeln!(out, "  image size: {:#x} ({})", h.img_size, h.img_size).map_err(io)?;
    writeln!(out, "  flags: {:#x}", h.flags.0).map_err(io)?;
    writeln!(out, "  version: {}", h.version).map_err(io)?;
    writeln!(out, "TLVs:").map_err(io)?;
    // Record offsets: walk each area in order from its info header.
    let mut prot_off = l.protected.map_or(0, |a| a.offset + 4);
    let mut unprot_off = l.unprotected.offset + 4;
    if let Some(p) = l.protected {
        writeln!(out, "  protected area at {:#x}, {} bytes", p.offset, p.len).map_err(io)?;
    }
    let mut announced_unprot = false;
    for tlv in image.tlvs() {
        let off = if tlv.protected {
            &mut prot_off
        } else {
            if !announced_unprot {
                writeln!(
                    out,
                    "  unprotected area at {:#x}, {} bytes",
                    l.unprotected.offset, l.unprotected.len
                )
                .map_err(io)?;
                announced_unprot = true;
            }
            &mut unprot_off
        };
        writeln!(
            out,
            "    {:#07x} {} len {}: {}",
            *off,
            tlv.kind,
            tlv.value.len(),
            hex(tlv.value)
        )
        .map_err(io)?;
        *off += 4 + tlv.value.len() as u64;
    }
    if !announced_unprot {
        writeln!(
            out,
            "  unprotected area at {:#x}, {} bytes (empty)",
            l.unprotected.offset, l.unprotected.len
        )
        .map_err(io)?;
    }
    let file_len = bytes.len() as u64;
    if file_len <= l.total_len() && slot_size.is_none() {
        writeln!(out, "trailer: none (the file ends with the TLVs)").map_err(io)?;
        return Ok(());
    }
    let size = slot_size.unwrap_or(file_len);
    if size > file_len {
        writeln!(
            out,
            "trailer: none (the file is {file_len:#x} bytes, shorter than the slot size {size:#x})"
        )
        .map_err(io)?;
        return Ok(());
    }
    let mut storage = FileStorage::open_read_only(path).map_err(|e| err(path, e))?;
    let state = trailer::read_state(
        &mut storage,
        Area {
            offset: 0,
            size,
            sector_size: size,
        },
        lay,
    )
    .map_err(|e| err(path, e))?;
    writeln!(
        out,
        "trailer (slot size {size:#x}, {:?}, max-align {}, erased {:#04x}):",
        lay.mode(),
        lay.max_align(),
        lay.erased()
    )
    .map_err(io)?;
    write_state(out, &state).map_err(io)
}

/// The slot on which [`set_pending`] and [`confirm`] work, and how the
/// bootloader was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Slot size (the trailer ends there).
    pub size: u64,
    /// The bootloader's update mode.
    pub mode: Mode,
    /// BOOT_MAX_ALIGN (8, 16, 32; imgtool's `--max-align`).
    pub max_align: u32,
    /// Flash write size (a power of two up to `max_align`; imgtool's
    /// `--align`).
    pub write_size: u32,
    /// What erased flash reads as: 0xff, or 0x00 (imgtool's `-R 0`).
    pub erased: u8,
}

fn open_slot(path: &Path, slot: &Slot) -> Result<(FileStorage, Area, TrailerLayout), McubootError> {
    let lay = layout(slot.mode, slot.max_align, slot.write_size, slot.erased)?;
    lay.check_slot(slot.size)
        .map_err(|e| McubootError(e.to_string()))?;
    let len = std::fs::metadata(path).map_err(|e| err(path, e))?.len();
    if len < slot.size {
        return Err(err(
            path,
            format!(
                "the file is {len:#x} bytes, shorter than the slot size {:#x}: pad it to the \
                 slot size with the erased value {:#04x}",
                slot.size, slot.erased
            ),
        ));
    }
    let storage = FileStorage::open(path).map_err(|e| err(path, e))?;
    let area = Area {
        offset: 0,
        size: slot.size,
        sector_size: slot.size,
    };
    Ok((storage, area, lay))
}

/// Marks the secondary slot in `path` for a swap at the next reset
/// (`boot_set_pending`): test, or with `permanent` permanent. Returns a
/// line describing what was done.
pub fn set_pending(path: &Path, slot: &Slot, permanent: bool) -> Result<String, McubootError> {
    let (mut storage, area, lay) = open_slot(path, slot)?;
    let outcome =
        trailer::set_pending(&mut storage, area, &lay, permanent).map_err(|e| err(path, e))?;
    Ok(match outcome {
        Outcome::Written => format!(
            "{}: marked pending ({})",
            path.display(),
            match (slot.mode, permanent) {
                (Mode::OverwriteOnly, _) => "overwrite",
                (_, true) => "permanent",
                (_, false) => "test",
            }
        ),
        Outcome::Unchanged => {
            let state = trailer::read_state(&mut storage, area, &lay).map_err(|e| err(path, e))?;
            format!(
                "{}: already pending (magic good, swap type {:?}): nothing written",
                path.display(),
                state.swap_type
            )
        }
    })
}

/// Confirms the image in the primary slot in `path`
/// (`boot_set_confirmed`). Returns a line describing what was done.
pub fn confirm(path: &Path, slot: &Slot) -> Result<String, McubootError> {
    let (mut storage, area, lay) = open_slot(path, slot)?;
    let outcome = trailer::set_confirmed(&mut storage, area, &lay).map_err(|e| err(path, e))?;
    Ok(match outcome {
        Outcome::Written => format!("{}: confirmed (image_ok set)", path.display()),
        Outcome::Unchanged => {
            let state = trailer::read_state(&mut storage, area, &lay).map_err(|e| err(path, e))?;
            if state.magic == MagicState::Unset {
                format!(
                    "{}: nothing to confirm (trailer magic unset): nothing written",
                    path.display()
                )
            } else {
                format!("{}: already confirmed: nothing written", path.display())
            }
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_number("0x20000"), Ok(0x20000));
        assert_eq!(parse_number("8"), Ok(8));
        assert!(parse_number("zz").is_err());
    }

    #[test]
    fn pem() {
        let (label, der) =
            decode_pem("-----BEGIN PUBLIC KEY-----\nAAEC\n-----END PUBLIC KEY-----\n").unwrap();
        assert_eq!(label, "PUBLIC KEY");
        assert_eq!(der, vec![0, 1, 2]);
        assert!(decode_pem("nothing").is_none());
    }
}
