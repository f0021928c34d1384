//! The 32-byte MCUboot image header (spec 1.1): a validated value decoded
//! from untrusted bytes.
//!
//! [`ImageHeader::parse`] never panics: it takes any slice and returns an
//! error naming the problem when the slice is short or the fields are
//! impossible.

use core::fmt;

/// Size of the image header in bytes.
pub const HEADER_SIZE: usize = 32;
/// `ih_magic` of an image in the current format (bytes `3d b8 f3 96`).
pub const IMAGE_MAGIC: u32 = 0x96f3_b83d;
/// `ih_magic` of the old V1 format, which is not supported.
pub const IMAGE_MAGIC_V1: u32 = 0x96f3_b83c;

/// Image flags (`ih_flags`), a bit set. Unknown bits are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u32);

impl Flags {
    /// Position-independent code (not supported by MCUboot).
    pub const PIC: u32 = 0x1;
    /// Payload encrypted with AES-128-CTR.
    pub const ENCRYPTED_AES128: u32 = 0x4;
    /// Payload encrypted with AES-256-CTR.
    pub const ENCRYPTED_AES256: u32 = 0x8;
    /// The image is not bootable on its own (e.g. a second core's image).
    pub const NON_BOOTABLE: u32 = 0x10;
    /// The image is copied to RAM at `ih_load_addr` (`--load-addr`).
    pub const RAM_LOAD: u32 = 0x20;
    /// The image is linked for a fixed flash address (`--rom-fixed`).
    pub const ROM_FIXED: u32 = 0x100;
    /// LZMA1-compressed payload.
    pub const COMPRESSED_LZMA1: u32 = 0x200;
    /// LZMA2-compressed payload.
    pub const COMPRESSED_LZMA2: u32 = 0x400;
    /// ARM Thumb filter applied before compression.
    pub const COMPRESSED_ARM_THUMB: u32 = 0x800;

    /// Whether every bit of `flag` is set.
    pub fn contains(self, flag: u32) -> bool {
        self.0 & flag == flag
    }

    /// Whether the payload is encrypted (AES-128 or AES-256).
    pub fn encrypted(self) -> bool {
        self.0 & (Self::ENCRYPTED_AES128 | Self::ENCRYPTED_AES256) != 0
    }

    /// Whether the payload is compressed.
    pub fn compressed(self) -> bool {
        self.0 & (Self::COMPRESSED_LZMA1 | Self::COMPRESSED_LZMA2) != 0
    }
}

/// An image version, printed as `major.minor.revision+build`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Version {
    /// `iv_major`.
    pub major: u8,
    /// `iv_minor`.
    pub minor: u8,
    /// `iv_revision`.
    pub revision: u16,
    /// `iv_build_num`.
    pub build: u32,
}

impl Version {
    /// Decodes the 8-byte `image_version` layout (also used by the
    /// DEPENDENCY TLV).
    pub fn from_bytes(b: &[u8; 8]) -> Version {
        Version {
            major: b[0],
            minor: b[1],
            revision: u16::from_le_bytes([b[2], b[3]]),
            build: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }

    /// The security counter imgtool derives with `--security-counter auto`:
    /// `major << 24 | minor << 16 | revision`.
    pub fn auto_security_counter(self) -> u32 {
        (u32::from(self.major) << 24) | (u32::from(self.minor) << 16) | u32::from(self.revision)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{}+{}",
            self.major, self.minor, self.revision, self.build
        )
    }
}

/// A decoded image header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageHeader {
    /// `ih_load_addr`: RAM load address (RAM_LOAD) or ROM address
    /// (ROM_FIXED); 0 otherwise.
    pub load_addr: u32,
    /// `ih_hdr_size`: offset of the payload (at least 32).
    pub hdr_size: u16,
    /// `ih_protect_tlv_size`: size of the whole protected TLV area,
    /// including its 4-byte info header; 0 if there is none.
    pub protect_tlv_size: u16,
    /// `ih_img_size`: payload size, header excluded.
    pub img_size: u32,
    /// `ih_flags`.
    pub flags: Flags,
    /// The image version.
    pub version: Version,
}

/// Why a header could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderError {
    /// Fewer than 32 bytes were given.
    Truncated {
        /// Bytes available.
        len: usize,
    },
    /// The header is all erased bytes (0xff, or 0x00 on zero-erased
    /// flash): the slot holds no image.
    Erased,
    /// `ih_magic` is the old V1 magic `0x96f3b83c`, not supported.
    OldMagic,
    /// `ih_magic` is not an MCUboot image magic (a big-endian image from
    /// `imgtool --endian big` lands here too).
    BadMagic {
        /// The value read (little-endian).
        found: u32,
    },
    /// `ih_hdr_size` is smaller than the 32-byte header itself.
    HeaderSizeTooSmall {
        /// The value read.
        hdr_size: u16,
    },
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::Truncated { len } => {
                write!(f, "image header truncated: {len} of 32 bytes")
            }
            HeaderError::Erased => f.write_str("no image: the header is erased"),
            HeaderError::OldMagic => {
                f.write_str("image header has the old V1 magic 0x96f3b83c (not supported)")
            }
            HeaderError::BadMagic { found } => write!(
                f,
                "invalid image magic {found:#010x} (expected {IMAGE_MAGIC:#010x}); is this an \
                 MCUboot image?"
            ),
            HeaderError::HeaderSizeTooSmall { hdr_size } => {
                write!(
                    f,
                    "ih_hdr_size {hdr_size} is smaller than the 32-byte header"
                )
            }
        }
    }
}

impl core::error::Error for HeaderError {}

fn le16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(&[x, y]) => u16::from_le_bytes([x, y]),
        _ => 0,
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(&[a, b2, c, d]) => u32::from_le_bytes([a, b2, c, d]),
        _ => 0,
    }
}

impl ImageHeader {
    /// Decodes the header from the first 32 bytes of `bytes` (more bytes
    /// are ignored).
    pub fn parse(bytes: &[u8]) -> Result<ImageHeader, HeaderError> {
        let Some(b) = bytes.get(..HEADER_SIZE) else {
            return Err(HeaderError::Truncated { len: bytes.len() });
        };
        let magic = le32(b, 0);
        if magic != IMAGE_MAGIC {
            if b.iter().all(|&x| x == 0xff) || b.iter().all(|&x| x == 0) {
                return Err(HeaderError::Erased);
            }
            if magic == IMAGE_MAGIC_V1 {
                return Err(HeaderError::OldMagic);
            }
            return Err(HeaderError::BadMagic { found: magic });
        }
        let hdr_size = le16(b, 0x08);
        if usize::from(hdr_size) < HEADER_SIZE {
            return Err(HeaderError::HeaderSizeTooSmall { hdr_size });
        }
        let mut version = [0u8; 8];
        version.copy_from_slice(&b[0x14..0x1c]);
        Ok(ImageHeader {
            load_addr: le32(b, 0x04),
            hdr_size,
            protect_tlv_size: le16(b, 0x0a),
            img_size: le32(b, 0x0c),
            flags: Flags(le32(b, 0x10)),
            version: Version::from_bytes(&version),
        })
    }

    /// Offset of the first TLV area (`hdr_size + img_size`).
    pub fn tlv_offset(&self) -> u64 {
        u64::from(self.hdr_size) + u64::from(self.img_size)
    }

    /// Length of the hashed region: header, padding, payload and the
    /// protected TLV area.
    pub fn hashed_len(&self) -> u64 {
        self.tlv_offset() + u64::from(self.protect_tlv_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn parses_the_spec_example() {
        let mut b = [0u8; 32];
        b[..16].copy_from_slice(&[
            0x3d, 0xb8, 0xf3, 0x96, 0, 0, 0, 0, 0x00, 0x02, 0x0c, 0x00, 0xe8, 0x03, 0, 0,
        ]);
        b[16..24].copy_from_slice(&[0, 0, 0, 0, 1, 2, 3, 0]);
        b[24] = 4;
        let h = ImageHeader::parse(&b).unwrap();
        assert_eq!(h.hdr_size, 0x200);
        assert_eq!(h.protect_tlv_size, 0x0c);
        assert_eq!(h.img_size, 1000);
        assert_eq!(h.version.to_string(), "1.2.3+4");
        assert_eq!(h.version.auto_security_counter(), 0x0102_0003);
        assert_eq!(h.hashed_len(), 0x200 + 1000 + 0x0c);
    }

    #[test]
    fn rejects_short_erased_and_foreign_headers() {
        assert_eq!(
            ImageHeader::parse(&[0x3d; 5]),
            Err(HeaderError::Truncated { len: 5 })
        );
        assert_eq!(ImageHeader::parse(&[0xff; 32]), Err(HeaderError::Erased));
        assert_eq!(ImageHeader::parse(&[0; 32]), Err(HeaderError::Erased));
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&IMAGE_MAGIC_V1.to_le_bytes());
        assert_eq!(ImageHeader::parse(&b), Err(HeaderError::OldMagic));
        b[..4].copy_from_slice(&IMAGE_MAGIC.to_be_bytes());
        assert!(matches!(
            ImageHeader::parse(&b),
            Err(HeaderError::BadMagic { .. })
        ));
        b[..4].copy_from_slice(&IMAGE_MAGIC.to_le_bytes());
        b[8] = 31;
        assert_eq!(
            ImageHeader::parse(&b),
            Err(HeaderError::HeaderSizeTooSmall { hdr_size: 31 })
        );
    }
}
