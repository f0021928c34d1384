//! TLV (type-length-value) records after the payload (spec 1.2): the kinds
//! MCUboot and imgtool know, the info header of each area, and an iterator
//! over an area that was checked beforehand.

use core::fmt;

/// `it_magic` of the unprotected TLV area.
pub const TLV_INFO_MAGIC: u16 = 0x6907;
/// `it_magic` of the protected TLV area (covered by the hash).
pub const TLV_PROT_INFO_MAGIC: u16 = 0x6908;
/// Size of a TLV area info header and of a TLV header (4 bytes each).
pub const TLV_HEADER_SIZE: usize = 4;

/// The type of a TLV record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlvKind {
    /// 0x01: hash of the public key that signed the image.
    KeyHash,
    /// 0x02: the full public key (`--public-key-format full`).
    PubKey,
    /// 0x10: SHA-256 of the hashed region.
    Sha256,
    /// 0x11: SHA-384 of the hashed region.
    Sha384,
    /// 0x12: SHA-512 of the hashed region.
    Sha512,
    /// 0x20: RSA-2048 PSS signature.
    Rsa2048Pss,
    /// 0x21: obsolete ECDSA P-224 signature.
    Ecdsa224,
    /// 0x22: ECDSA signature (DER), P-256 or P-384.
    EcdsaSig,
    /// 0x23: RSA-3072 PSS signature.
    Rsa3072Pss,
    /// 0x24: Ed25519 signature.
    Ed25519,
    /// 0x25: the signature covers the whole hashed region, not its digest.
    SigPure,
    /// 0x30: AES key encrypted with RSA-OAEP.
    EncRsa2048,
    /// 0x31: AES key wrapped with AES key-wrap.
    EncKw,
    /// 0x32: AES key for ECIES-P256.
    EncEc256,
    /// 0x33: AES key for ECIES-X25519.
    EncX25519,
    /// 0x34: AES key for ECIES-X25519 with SHA-512.
    EncX25519Sha512,
    /// 0x40: dependency on another image's minimum version.
    Dependency,
    /// 0x50: security counter (u32).
    SecurityCounter,
    /// 0x60: CBOR measured-boot record.
    BootRecord,
    /// 0x70: decompressed size.
    DecompSize,
    /// 0x71: hash of the decompressed image.
    DecompSha,
    /// 0x72: signature of the decompressed image.
    DecompSignature,
    /// 0x73: size of the compressed image when decompressed.
    CompDecSize,
    /// 0x74: vendor UUID.
    UuidVid,
    /// 0x75: class UUID.
    UuidCid,
    /// A vendor-reserved type (low byte 0xa0..=0xff, `--custom-tlv`).
    Vendor(u16),
    /// Any other type.
    Unknown(u16),
}

impl TlvKind {
    /// The kind of a raw `it_type`.
    pub fn from_raw(t: u16) -> TlvKind {
        match t {
            0x01 => TlvKind::KeyHash,
            0x02 => TlvKind::PubKey,
            0x10 => TlvKind::Sha256,
            0x11 => TlvKind::Sha384,
            0x12 => TlvKind::Sha512,
            0x20 => TlvKind::Rsa2048Pss,
            0x21 => TlvKind::Ecdsa224,
            0x22 => TlvKind::EcdsaSig,
            0x23 => TlvKind::Rsa3072Pss,
            0x24 => TlvKind::Ed25519,
            0x25 => TlvKind::SigPure,
            0x30 => TlvKind::EncRsa2048,
            0x31 => TlvKind::EncKw,
            0x32 => TlvKind::EncEc256,
            0x33 => TlvKind::EncX25519,
            0x34 => TlvKind::EncX25519Sha512,
            0x40 => TlvKind::Dependency,
            0x50 => TlvKind::SecurityCounter,
            0x60 => TlvKind::BootRecord,
            0x70 => TlvKind::DecompSize,
            0x71 => TlvKind::DecompSha,
            0x72 => TlvKind::DecompSignature,
            0x73 => TlvKind::CompDecSize,
            0x74 => TlvKind::UuidVid,
            0x75 => TlvKind::UuidCid,
            t if t & 0xff >= 0xa0 && t != 0xffff => TlvKind::Vendor(t),
            t => TlvKind::Unknown(t),
        }
    }

    /// The raw `it_type`.
    pub fn raw(self) -> u16 {
        match self {
            TlvKind::KeyHash => 0x01,
            TlvKind::PubKey => 0x02,
            TlvKind::Sha256 => 0x10,
            TlvKind::Sha384 => 0x11,
            TlvKind::Sha512 => 0x12,
            TlvKind::Rsa2048Pss => 0x20,
            TlvKind::Ecdsa224 => 0x21,
            TlvKind::EcdsaSig => 0x22,
            TlvKind::Rsa3072Pss => 0x23,
            TlvKind::Ed25519 => 0x24,
            TlvKind::SigPure => 0x25,
            TlvKind::EncRsa2048 => 0x30,
            TlvKind::EncKw => 0x31,
            TlvKind::EncEc256 => 0x32,
            TlvKind::EncX25519 => 0x33,
            TlvKind::EncX25519Sha512 => 0x34,
            TlvKind::Dependency => 0x40,
            TlvKind::SecurityCounter => 0x50,
            TlvKind::BootRecord => 0x60,
            TlvKind::DecompSize => 0x70,
            TlvKind::DecompSha => 0x71,
            TlvKind::DecompSignature => 0x72,
            TlvKind::CompDecSize => 0x73,
            TlvKind::UuidVid => 0x74,
            TlvKind::UuidCid => 0x75,
            TlvKind::Vendor(t) | TlvKind::Unknown(t) => t,
        }
    }

    /// Whether this is an image hash (SHA-256/384/512).
    pub fn is_hash(self) -> bool {
        matches!(self, TlvKind::Sha256 | TlvKind::Sha384 | TlvKind::Sha512)
    }

    /// Whether this is a signature record.
    pub fn is_signature(self) -> bool {
        matches!(
            self,
            TlvKind::Rsa2048Pss
                | TlvKind::Ecdsa224
                | TlvKind::EcdsaSig
                | TlvKind::Rsa3072Pss
                | TlvKind::Ed25519
        )
    }

    /// Whether this carries an image encryption key.
    pub fn is_encryption_key(self) -> bool {
        matches!(
            self,
            TlvKind::EncRsa2048
                | TlvKind::EncKw
                | TlvKind::EncEc256
                | TlvKind::EncX25519
                | TlvKind::EncX25519Sha512
        )
    }

    /// Whether MCUboot accepts this type in the unprotected area (hashes,
    /// key ids, signatures, SIG_PURE and encryption keys); every other
    /// type must be protected by the hash, or the bootloader rejects the
    /// image.
    pub fn allowed_unprotected(self) -> bool {
        self.is_hash()
            || self.is_signature()
            || self.is_encryption_key()
            || matches!(self, TlvKind::KeyHash | TlvKind::PubKey | TlvKind::SigPure)
    }

    /// imgtool's name for the type, as `dumpinfo` prints it (`None` for
    /// vendor and unknown types).
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            TlvKind::KeyHash => "KEYHASH",
            TlvKind::PubKey => "PUBKEY",
            TlvKind::Sha256 => "SHA256",
            TlvKind::Sha384 => "SHA384",
            TlvKind::Sha512 => "SHA512",
            TlvKind::Rsa2048Pss => "RSA2048",
            TlvKind::Ecdsa224 => "ECDSA224",
            TlvKind::EcdsaSig => "ECDSASIG",
            TlvKind::Rsa3072Pss => "RSA3072",
            TlvKind::Ed25519 => "ED25519",
            TlvKind::SigPure => "SIG_PURE",
            TlvKind::EncRsa2048 => "ENCRSA2048",
            TlvKind::EncKw => "ENCKW",
            TlvKind::EncEc256 => "ENCEC256",
            TlvKind::EncX25519 => "ENCX25519",
            TlvKind::EncX25519Sha512 => "ENCX25519_SHA512",
            TlvKind::Dependency => "DEPENDENCY",
            TlvKind::SecurityCounter => "SEC_CNT",
            TlvKind::BootRecord => "BOOT_RECORD",
            TlvKind::DecompSize => "DECOMP_SIZE",
            TlvKind::DecompSha => "DECOMP_SHA",
            TlvKind::DecompSignature => "DECOMP_SIGNATURE",
            TlvKind::CompDecSize => "COMP_DEC_SIZE",
            TlvKind::UuidVid => "UUID_VID",
            TlvKind::UuidCid => "UUID_CID",
            TlvKind::Vendor(_) | TlvKind::Unknown(_) => return None,
        })
    }
}

impl fmt::Display for TlvKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n} ({:#04x})", self.raw()),
            None => write!(f, "TLV type {:#06x}", self.raw()),
        }
    }
}

/// One TLV record of an image held in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// The record type.
    pub kind: TlvKind,
    /// Whether it sits in the protected (hashed) area.
    pub protected: bool,
    /// The value bytes (`it_len` of them).
    pub value: &'a [u8],
}

/// Iterator over the records of TLV areas that
/// [`Image::parse`](super::Image::parse) already checked, so it cannot
/// fail: a malformed chain is reported by `parse`, never here.
#[derive(Debug, Clone)]
pub struct TlvIter<'a> {
    pub(crate) bytes: &'a [u8],
    /// Next record offset in `bytes` and end of its area.
    pub(crate) pos: usize,
    pub(crate) end: usize,
    pub(crate) protected: bool,
    /// The unprotected area to continue with after the protected one.
    pub(crate) next: Option<(usize, usize)>,
}

impl<'a> Iterator for TlvIter<'a> {
    type Item = Tlv<'a>;

    fn next(&mut self) -> Option<Tlv<'a>> {
        loop {
            if self.pos < self.end {
                let hdr = self.bytes.get(self.pos..self.pos + TLV_HEADER_SIZE)?;
                let kind = TlvKind::from_raw(u16::from_le_bytes([hdr[0], hdr[1]]));
                let len = usize::from(u16::from_le_bytes([hdr[2], hdr[3]]));
                let start = self.pos + TLV_HEADER_SIZE;
                let value = self.bytes.get(start..start + len)?;
                self.pos = start + len;
                return Some(Tlv {
                    kind,
                    protected: self.protected,
                    value,
                });
            }
            let (pos, end) = self.next.take()?;
            self.pos = pos;
            self.end = end;
            self.protected = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn kinds_round_trip() {
        for t in 0u16..=0x1ff {
            assert_eq!(TlvKind::from_raw(t).raw(), t);
        }
        assert_eq!(TlvKind::from_raw(0xffff), TlvKind::Unknown(0xffff));
        assert_eq!(TlvKind::from_raw(0xa0), TlvKind::Vendor(0xa0));
        assert_eq!(TlvKind::from_raw(0x1a0), TlvKind::Vendor(0x1a0));
        assert_eq!(TlvKind::from_raw(0x80), TlvKind::Unknown(0x80));
        assert_eq!(TlvKind::EcdsaSig.to_string(), "ECDSASIG (0x22)");
        assert!(!TlvKind::SecurityCounter.allowed_unprotected());
        assert!(TlvKind::SigPure.allowed_unprotected());
    }
}
