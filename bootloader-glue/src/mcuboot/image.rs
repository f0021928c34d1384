//! Locating an image's TLV areas with the bootloader's rules, over bytes in
//! memory ([`Image`], a checked view) or on storage (used by
//! [`verify_slot`](super::verify_slot)).
//!
//! Rules (spec 1.2, MCUboot `tlv.c`): when `ih_protect_tlv_size` is not 0
//! the first info header must be 0x6908 with `it_tlv_tot` equal to it; when
//! it is 0 the first info header must be 0x6907. Every record must end
//! inside its area, and the areas inside the bytes given.

use core::convert::Infallible;
use core::fmt;

use super::header::{HeaderError, ImageHeader, HEADER_SIZE};
use super::tlv::{TlvIter, TlvKind, TLV_HEADER_SIZE, TLV_INFO_MAGIC, TLV_PROT_INFO_MAGIC};
use crate::storage::EnvStorage;

/// Why an image's structure is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImageError {
    /// The header is missing or invalid.
    Header(HeaderError),
    /// The header or a TLV area lies beyond the end of the bytes (or the
    /// slot) given.
    Truncated {
        /// End offset the image needs.
        needed: u64,
        /// Bytes available.
        available: u64,
    },
    /// `ih_protect_tlv_size` is not 0 but no 0x6908 info header follows
    /// the payload.
    MissingProtectedArea {
        /// The `it_magic` found instead.
        found: u16,
    },
    /// The protected area's `it_tlv_tot` differs from
    /// `ih_protect_tlv_size` (the bootloader rejects such an image).
    ProtectedSizeMismatch {
        /// `ih_protect_tlv_size` from the header.
        header: u16,
        /// `it_tlv_tot` from the 0x6908 info header.
        info: u16,
    },
    /// A 0x6908 area follows the payload although `ih_protect_tlv_size`
    /// is 0.
    UnexpectedProtectedArea,
    /// The unprotected area does not start with the 0x6907 magic.
    BadTlvInfoMagic {
        /// Offset of the info header.
        offset: u64,
        /// The `it_magic` found.
        found: u16,
    },
    /// An area's `it_tlv_tot` is smaller than its own 4-byte info header.
    TlvAreaTooSmall {
        /// Offset of the info header.
        offset: u64,
        /// The `it_tlv_tot` found.
        tot: u16,
    },
    /// A TLV record (its header or its value) runs past the end of its
    /// area.
    TlvOverrun {
        /// Offset of the record.
        offset: u64,
        /// Whether it is in the protected area.
        protected: bool,
    },
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageError::Header(e) => e.fmt(f),
            ImageError::Truncated { needed, available } => write!(
                f,
                "image truncated: it needs {needed} bytes, only {available} are there"
            ),
            ImageError::MissingProtectedArea { found } => write!(
                f,
                "ih_protect_tlv_size is set but the TLV info magic after the payload is \
                 {found:#06x}, not 0x6908"
            ),
            ImageError::ProtectedSizeMismatch { header, info } => write!(
                f,
                "protected TLV area size {info} differs from ih_protect_tlv_size {header}"
            ),
            ImageError::UnexpectedProtectedArea => f.write_str(
                "a protected TLV area (0x6908) follows the payload but ih_protect_tlv_size is 0",
            ),
            ImageError::BadTlvInfoMagic { offset, found } => write!(
                f,
                "invalid TLV info magic {found:#06x} at offset {offset:#x} (expected 0x6907)"
            ),
            ImageError::TlvAreaTooSmall { offset, tot } => write!(
                f,
                "TLV area at offset {offset:#x} has it_tlv_tot {tot}, smaller than its header"
            ),
            ImageError::TlvOverrun { offset, protected } => write!(
                f,
                "the {} TLV at offset {offset:#x} runs past the end of its area",
                if *protected {
                    "protected"
                } else {
                    "unprotected"
                }
            ),
        }
    }
}

impl core::error::Error for ImageError {}

impl From<HeaderError> for ImageError {
    fn from(e: HeaderError) -> Self {
        ImageError::Header(e)
    }
}

/// One TLV area: where its info header is and its `it_tlv_tot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlvArea {
    /// Offset of the 4-byte info header from the image start.
    pub offset: u64,
    /// `it_tlv_tot`: the whole area including the info header.
    pub len: u64,
}

impl TlvArea {
    /// Offset just past the area.
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// Where an image's parts are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The decoded header.
    pub header: ImageHeader,
    /// The protected area, if the image has one.
    pub protected: Option<TlvArea>,
    /// The unprotected area (always present).
    pub unprotected: TlvArea,
}

impl Layout {
    /// The image's total size: header, payload and both TLV areas.
    pub fn total_len(&self) -> u64 {
        self.unprotected.end()
    }
}

/// Random-access reads of an image, in memory or on storage.
pub(crate) trait Source {
    type Error;
    /// Bytes available (the slice length, or the slot size).
    fn len(&self) -> u64;
    /// Reads `buf.len()` bytes at `offset`; the caller checked bounds.
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Self::Error>;
}

/// Either a storage failure or a structural error.
#[derive(Debug)]
pub(crate) enum Fail<E> {
    Storage(E),
    Image(ImageError),
}

impl<E> From<ImageError> for Fail<E> {
    fn from(e: ImageError) -> Self {
        Fail::Image(e)
    }
}

impl Source for &[u8] {
    type Error = Infallible;

    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Infallible> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        if let Some(src) = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
        {
            buf.copy_from_slice(src);
        }
        Ok(())
    }
}

/// A slot (`len` bytes at `base`) on an [`EnvStorage`].
pub(crate) struct StorageSource<'s, S: ?Sized> {
    pub storage: &'s mut S,
    pub base: u64,
    pub len: u64,
}

impl<S: EnvStorage + ?Sized> Source for StorageSource<'_, S> {
    type Error = S::Error;

    fn len(&self) -> u64 {
        self.len
    }

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), S::Error> {
        self.storage.read(self.base + offset, buf)
    }
}

/// Reads after checking that `offset..offset + buf.len()` is inside.
pub(crate) fn read_checked<S: Source>(
    src: &mut S,
    offset: u64,
    buf: &mut [u8],
) -> Result<(), Fail<S::Error>> {
    let needed = offset.saturating_add(buf.len() as u64);
    if needed > src.len() {
        return Err(ImageError::Truncated {
            needed,
            available: src.len(),
        }
        .into());
    }
    src.read(offset, buf).map_err(Fail::Storage)
}

fn read_info<S: Source>(src: &mut S, offset: u64) -> Result<(u16, u16), Fail<S::Error>> {
    let mut b = [0u8; 4];
    read_checked(src, offset, &mut b)?;
    Ok((
        u16::from_le_bytes([b[0], b[1]]),
        u16::from_le_bytes([b[2], b[3]]),
    ))
}

/// Reads the header and both info headers and checks the bootloader's
/// rules; the records themselves are checked by [`walk`].
pub(crate) fn locate<S: Source>(src: &mut S) -> Result<Layout, Fail<S::Error>> {
    let mut h = [0u8; HEADER_SIZE];
    read_checked(src, 0, &mut h)?;
    let header = ImageHeader::parse(&h).map_err(ImageError::Header)?;
    let tlv_off = header.tlv_offset();
    let (magic, tot) = read_info(src, tlv_off)?;
    let (protected, unprot_off) = if header.protect_tlv_size != 0 {
        if magic != TLV_PROT_INFO_MAGIC {
            return Err(ImageError::MissingProtectedArea { found: magic }.into());
        }
        if tot != header.protect_tlv_size {
            return Err(ImageError::ProtectedSizeMismatch {
                header: header.protect_tlv_size,
                info: tot,
            }
            .into());
        }
        if usize::from(tot) < TLV_HEADER_SIZE {
            return Err(ImageError::TlvAreaTooSmall {
                offset: tlv_off,
                tot,
            }
            .into());
        }
        let area = TlvArea {
            offset: tlv_off,
            len: u64::from(tot),
        };
        (Some(area), area.end())
    } else {
        if magic == TLV_PROT_INFO_MAGIC {
            return Err(ImageError::UnexpectedProtectedArea.into());
        }
        (None, tlv_off)
    };
    let (magic, tot) = read_info(src, unprot_off)?;
    if magic != TLV_INFO_MAGIC {
        return Err(ImageError::BadTlvInfoMagic {
            offset: unprot_off,
            found: magic,
        }
        .into());
    }
    if usize::from(tot) < TLV_HEADER_SIZE {
        return Err(ImageError::TlvAreaTooSmall {
            offset: unprot_off,
            tot,
        }
        .into());
    }
    let unprotected = TlvArea {
        offset: unprot_off,
        len: u64::from(tot),
    };
    if unprotected.end() > src.len() {
        return Err(ImageError::Truncated {
            needed: unprotected.end(),
            available: src.len(),
        }
        .into());
    }
    Ok(Layout {
        header,
        protected,
        unprotected,
    })
}

/// A record found by [`walk`]: kind, offset of its value, and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TlvRef {
    pub kind: TlvKind,
    pub offset: u64,
    pub len: u16,
}

/// Calls `f` for every record of `area`, checking each stays inside it.
pub(crate) fn walk<S: Source, F>(
    src: &mut S,
    area: TlvArea,
    protected: bool,
    mut f: F,
) -> Result<(), Fail<S::Error>>
where
    F: FnMut(&mut S, TlvRef) -> Result<(), Fail<S::Error>>,
{
    let end = area.end();
    let mut off = area.offset + TLV_HEADER_SIZE as u64;
    while off < end {
        let overrun = ImageError::TlvOverrun {
            offset: off,
            protected,
        };
        if off + TLV_HEADER_SIZE as u64 > end {
            return Err(overrun.into());
        }
        let (t, len) = read_info(src, off)?;
        let value = off + TLV_HEADER_SIZE as u64;
        if value + u64::from(len) > end {
            return Err(overrun.into());
        }
        f(
            src,
            TlvRef {
                kind: TlvKind::from_raw(t),
                offset: value,
                len,
            },
        )?;
        off = value + u64::from(len);
    }
    Ok(())
}

fn infallible(f: Fail<Infallible>) -> ImageError {
    match f {
        Fail::Image(e) => e,
        Fail::Storage(never) => match never {},
    }
}

/// A checked view of an image in memory: the header decoded, both TLV
/// areas located and every record checked to lie inside its area. After
/// [`Image::parse`] succeeds no accessor can fail or panic.
///
/// This checks structure only; [`verify()`](super::verify()) checks the hash
/// and signature.
#[derive(Debug, Clone, Copy)]
pub struct Image<'a> {
    bytes: &'a [u8],
    layout: Layout,
}

impl<'a> Image<'a> {
    /// Checks the structure of the image at the start of `bytes` (which
    /// may go on past the image, e.g. a whole slot with its trailer).
    pub fn parse(bytes: &'a [u8]) -> Result<Image<'a>, ImageError> {
        let mut src = bytes;
        let layout = locate(&mut src).map_err(infallible)?;
        if let Some(p) = layout.protected {
            walk(&mut src, p, true, |_, _| Ok(())).map_err(infallible)?;
        }
        walk(&mut src, layout.unprotected, false, |_, _| Ok(())).map_err(infallible)?;
        Ok(Image { bytes, layout })
    }

    /// The decoded header.
    pub fn header(&self) -> &ImageHeader {
        &self.layout.header
    }

    /// Where the parts are.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    fn slice(&self, start: u64, end: u64) -> &'a [u8] {
        let s = usize::try_from(start).unwrap_or(usize::MAX);
        let e = usize::try_from(end).unwrap_or(usize::MAX);
        self.bytes.get(s..e).unwrap_or(&[])
    }

    /// The payload (`ih_img_size` bytes after the header).
    pub fn payload(&self) -> &'a [u8] {
        let h = &self.layout.header;
        self.slice(u64::from(h.hdr_size), h.tlv_offset())
    }

    /// The hashed region: header, padding, payload and protected area.
    pub fn hashed_region(&self) -> &'a [u8] {
        self.slice(0, self.layout.header.hashed_len())
    }

    /// The whole image (header to the end of the unprotected area).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.slice(0, self.layout.total_len())
    }

    /// All records: the protected ones first, then the unprotected ones.
    pub fn tlvs(&self) -> TlvIter<'a> {
        let unprot = area_records(self.layout.unprotected);
        match self.layout.protected {
            Some(p) => {
                let (pos, end) = area_records(p);
                TlvIter {
                    bytes: self.bytes,
                    pos,
                    end,
                    protected: true,
                    next: Some(unprot),
                }
            }
            None => TlvIter {
                bytes: self.bytes,
                pos: unprot.0,
                end: unprot.1,
                protected: false,
                next: None,
            },
        }
    }

    /// The value of the first record of `kind`, in either area.
    pub fn find(&self, kind: TlvKind) -> Option<&'a [u8]> {
        self.tlvs().find(|t| t.kind == kind).map(|t| t.value)
    }

    /// The protected SEC_CNT value, when present and 4 bytes long.
    pub fn security_counter(&self) -> Option<u32> {
        self.tlvs()
            .find(|t| t.protected && t.kind == TlvKind::SecurityCounter)
            .and_then(|t| <[u8; 4]>::try_from(t.value).ok())
            .map(u32::from_le_bytes)
    }

    /// Whether the payload is encrypted (header flag, or an encryption key
    /// record). Encrypted images cannot be verified by this crate.
    pub fn is_encrypted(&self) -> bool {
        self.layout.header.flags.encrypted() || self.tlvs().any(|t| t.kind.is_encryption_key())
    }
}

fn area_records(a: TlvArea) -> (usize, usize) {
    let start = usize::try_from(a.offset + TLV_HEADER_SIZE as u64).unwrap_or(usize::MAX);
    let end = usize::try_from(a.end()).unwrap_or(usize::MAX);
    (start, end)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::mcuboot::header::IMAGE_MAGIC;
    use std::vec::Vec;

    /// A minimal image: header, `payload` bytes, optional protected
    /// records, unprotected records.
    pub(crate) fn build(payload: usize, prot: &[(u16, &[u8])], unprot: &[(u16, &[u8])]) -> Vec<u8> {
        let area = |magic: u16, recs: &[(u16, &[u8])]| {
            let mut v = Vec::new();
            for (t, val) in recs {
                v.extend_from_slice(&t.to_le_bytes());
                v.extend_from_slice(&(val.len() as u16).to_le_bytes());
                v.extend_from_slice(val);
            }
            let mut a = Vec::new();
            a.extend_from_slice(&magic.to_le_bytes());
            a.extend_from_slice(&((v.len() + 4) as u16).to_le_bytes());
            a.extend_from_slice(&v);
            a
        };
        let p = if prot.is_empty() {
            Vec::new()
        } else {
            area(TLV_PROT_INFO_MAGIC, prot)
        };
        let mut b = Vec::new();
        b.extend_from_slice(&IMAGE_MAGIC.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&0x20u16.to_le_bytes());
        b.extend_from_slice(&(p.len() as u16).to_le_bytes());
        b.extend_from_slice(&(payload as u32).to_le_bytes());
        b.extend_from_slice(&[0; 16]);
        b.extend((0..payload).map(|i| i as u8));
        b.extend_from_slice(&p);
        b.extend_from_slice(&area(TLV_INFO_MAGIC, unprot));
        b
    }

    #[test]
    fn iterates_both_areas() {
        let img = build(
            10,
            &[(0x50, &[1, 2, 3, 4]), (0xa0, &[9])],
            &[(0x10, &[7; 32])],
        );
        let image = Image::parse(&img).unwrap();
        let kinds: Vec<_> = image.tlvs().map(|t| (t.kind, t.protected)).collect();
        assert_eq!(
            kinds,
            [
                (TlvKind::SecurityCounter, true),
                (TlvKind::Vendor(0xa0), true),
                (TlvKind::Sha256, false)
            ]
        );
        assert_eq!(image.security_counter(), Some(0x0403_0201));
        assert_eq!(image.payload().len(), 10);
        assert_eq!(image.hashed_region().len(), 0x20 + 10 + 4 + 8 + 5);
        assert_eq!(image.as_bytes().len(), img.len());
    }

    #[test]
    fn applies_the_bootloader_rules() {
        let mut img = build(10, &[(0x50, &[1, 2, 3, 4])], &[]);
        // ih_protect_tlv_size 12 but it_tlv_tot 13
        img[0x20 + 10 + 2] = 13;
        assert_eq!(
            Image::parse(&img).unwrap_err(),
            ImageError::ProtectedSizeMismatch {
                header: 12,
                info: 13
            }
        );
        let mut img = build(10, &[(0x50, &[1, 2, 3, 4])], &[]);
        img[0x0a] = 0; // header says no protected area
        assert_eq!(
            Image::parse(&img).unwrap_err(),
            ImageError::UnexpectedProtectedArea
        );
        let mut img = build(10, &[], &[(0x10, &[0; 32])]);
        img[0x0a] = 8; // header says protected area, there is none
        assert_eq!(
            Image::parse(&img).unwrap_err(),
            ImageError::MissingProtectedArea {
                found: TLV_INFO_MAGIC
            }
        );
        // a record running past its area
        let mut img = build(10, &[], &[(0x10, &[0; 32])]);
        let len_at = 0x20 + 10 + 4 + 2;
        img[len_at] = 33;
        img.push(0);
        assert!(matches!(
            Image::parse(&img).unwrap_err(),
            ImageError::TlvOverrun {
                protected: false,
                ..
            }
        ));
        // truncated
        let img = build(10, &[], &[(0x10, &[0; 32])]);
        for cut in 0..img.len() {
            assert!(Image::parse(&img[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn never_panics_on_mutations() {
        let img = build(
            40,
            &[(0x50, &[1, 2, 3, 4])],
            &[(0x10, &[7; 32]), (0x01, &[3; 32])],
        );
        let mut x = 0x1234_5678_u32;
        for i in 0..img.len() {
            for v in [0u8, 0xff, 0x7f, 0x80, 1] {
                let mut m = img.clone();
                m[i] = v;
                if let Ok(image) = Image::parse(&m) {
                    let _ = image.tlvs().count();
                    let _ = (image.payload(), image.hashed_region(), image.is_encrypted());
                }
            }
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
        }
    }
}
