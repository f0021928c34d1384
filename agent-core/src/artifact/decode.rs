//! Push decompressors for artifact members: gzip (header and CRC handled
//! here, raw inflate by miniz_oxide's allocation-free core, or by zlib-rs
//! through flate2 with `std`), xz (liblzma, `std` only) and zstd (ruzstd,
//! `std` only).
//!
//! A decoder is fed compressed bytes and keeps its decompressed output
//! inside; the caller drains [`Decoder::pending`] completely before feeding
//! more.

// Without `std` the only backend is gzip, so matches on it are irrefutable.
#![cfg_attr(not(feature = "std"), allow(irrefutable_let_patterns))]

use core::fmt;

/// How an artifact member is compressed, from its name's suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    /// No suffix: a plain tar.
    None,
    /// `.gz`
    Gzip,
    /// `.xz` (decoded only with `std`).
    Xz,
    /// `.zst` (decoded only with `std`; written by mender-artifact 3.10+).
    Zstd,
}

impl Compression {
    /// The compression named by a `.tar*` member's suffix, if any.
    pub fn from_suffix(suffix: &str) -> Option<Compression> {
        match suffix {
            "" => Some(Compression::None),
            ".gz" => Some(Compression::Gzip),
            ".xz" => Some(Compression::Xz),
            ".zst" => Some(Compression::Zstd),
            _ => None,
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
        })
    }
}

/// Why compressed data was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The gzip header is invalid (bad magic, method or flags).
    GzipHeader,
    /// The deflate stream is corrupt.
    Deflate,
    /// The gzip trailer's CRC-32 does not match the data.
    GzipCrc,
    /// The gzip trailer's length does not match the data.
    GzipLength,
    /// Bytes after the end of the compressed stream.
    TrailingData,
    /// The xz stream is corrupt.
    Xz,
    /// The zstd stream is corrupt (or its checksum does not match).
    Zstd,
    /// The compressed stream ended before its end.
    Truncated,
    /// This compression is not supported in this build.
    Unsupported(Compression),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::GzipHeader => f.write_str("invalid gzip header"),
            DecodeError::Deflate => f.write_str("corrupt deflate data"),
            DecodeError::GzipCrc => f.write_str("gzip CRC-32 mismatch"),
            DecodeError::GzipLength => f.write_str("gzip length mismatch"),
            DecodeError::TrailingData => f.write_str("data after the end of the compressed stream"),
            DecodeError::Xz => f.write_str("corrupt xz data"),
            DecodeError::Zstd => f.write_str("corrupt zstd data"),
            DecodeError::Truncated => f.write_str("the compressed stream is truncated"),
            DecodeError::Unsupported(c) => write!(
                f,
                "{c} compression is not supported by this build (xz and zstd need the `std` feature)"
            ),
        }
    }
}

// ---------------------------------------------------------------- inflate

#[cfg(not(feature = "std"))]
mod inflate {
    use super::DecodeError;
    use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
    use miniz_oxide::inflate::TINFLStatus;

    /// miniz_oxide's core inflater writing into a 32 KiB wrapping window
    /// (the window is the LZ77 dictionary, so no other buffer is needed).
    pub struct Inflate {
        core: DecompressorOxide,
        window: [u8; 32 * 1024],
        pos: usize,
    }

    impl Inflate {
        pub fn new() -> Self {
            Inflate {
                core: DecompressorOxide::new(),
                window: [0; 32 * 1024],
                pos: 0,
            }
        }
        pub fn reset(&mut self) {
            self.core.init();
            self.pos = 0;
        }
        /// Returns (consumed, output start, output len, stream done).
        pub fn run(&mut self, input: &[u8]) -> Result<(usize, usize, usize, bool), DecodeError> {
            let start = self.pos;
            let (status, used, out) = decompress(
                &mut self.core,
                input,
                &mut self.window,
                start,
                inflate_flags::TINFL_FLAG_HAS_MORE_INPUT,
            );
            self.pos = (start + out) & (self.window.len() - 1);
            match status {
                TINFLStatus::Done => Ok((used, start, out, true)),
                TINFLStatus::NeedsMoreInput | TINFLStatus::HasMoreOutput => {
                    Ok((used, start, out, false))
                }
                _ => Err(DecodeError::Deflate),
            }
        }
        pub fn output(&self, start: usize, end: usize) -> &[u8] {
            &self.window[start..end]
        }
    }
}

#[cfg(feature = "std")]
extern crate alloc;

#[cfg(feature = "std")]
mod inflate {
    extern crate alloc;
    use super::DecodeError;
    use alloc::vec::Vec;
    use flate2::{Decompress, FlushDecompress, Status};

    /// zlib-rs inflate through flate2, into a 256 KiB output buffer.
    pub struct Inflate {
        z: Decompress,
        out: Vec<u8>,
    }

    impl Inflate {
        pub fn new() -> Self {
            Inflate {
                z: Decompress::new(false),
                out: alloc::vec![0; 256 * 1024],
            }
        }
        pub fn reset(&mut self) {
            self.z.reset(false);
        }
        pub fn run(&mut self, input: &[u8]) -> Result<(usize, usize, usize, bool), DecodeError> {
            let (in0, out0) = (self.z.total_in(), self.z.total_out());
            let status = self
                .z
                .decompress(input, &mut self.out, FlushDecompress::None)
                .map_err(|_| DecodeError::Deflate)?;
            let used = (self.z.total_in() - in0) as usize;
            let out = (self.z.total_out() - out0) as usize;
            Ok((used, 0, out, status == Status::StreamEnd))
        }
        pub fn output(&self, start: usize, end: usize) -> &[u8] {
            &self.out[start..end]
        }
    }
}

#[cfg(feature = "std")]
mod xz {
    extern crate alloc;
    use super::DecodeError;
    use alloc::vec::Vec;
    use liblzma::stream::{Action, Status, Stream};

    pub struct Xz {
        s: Stream,
        out: Vec<u8>,
    }

    impl Xz {
        pub fn new() -> Result<Self, DecodeError> {
            Ok(Xz {
                s: Stream::new_stream_decoder(u64::MAX, 0).map_err(|_| DecodeError::Xz)?,
                out: alloc::vec![0; 256 * 1024],
            })
        }
        pub fn run(&mut self, input: &[u8]) -> Result<(usize, usize, bool), DecodeError> {
            let (in0, out0) = (self.s.total_in(), self.s.total_out());
            let status = self
                .s
                .process(input, &mut self.out, Action::Run)
                .map_err(|_| DecodeError::Xz)?;
            let used = (self.s.total_in() - in0) as usize;
            let out = (self.s.total_out() - out0) as usize;
            Ok((used, out, status == Status::StreamEnd))
        }
        pub fn output(&self, end: usize) -> &[u8] {
            &self.out[..end]
        }
    }
}

#[cfg(feature = "std")]
mod zstd {
    extern crate alloc;
    use super::DecodeError;
    use alloc::vec::Vec;
    use ruzstd::decoding::FrameDecoder;

    /// ruzstd decodes whole blocks only: buffer up to one maximal block
    /// (128 KiB) plus block and frame headers.
    const IN_CAP: usize = 128 * 1024 + 3 + 18;

    pub struct Zstd {
        dec: FrameDecoder,
        started: bool,
        input: Vec<u8>,
        out: Vec<u8>,
    }

    impl Zstd {
        pub fn new() -> Self {
            Zstd {
                dec: FrameDecoder::new(),
                started: false,
                input: Vec::with_capacity(IN_CAP),
                out: alloc::vec![0; 256 * 1024],
            }
        }

        /// Take input into the block buffer; returns how much was taken.
        pub fn take(&mut self, input: &[u8]) -> usize {
            let n = core::cmp::min(IN_CAP - self.input.len(), input.len());
            self.input.extend_from_slice(&input[..n]);
            n
        }

        pub fn buffer_full(&self) -> bool {
            self.input.len() == IN_CAP
        }

        /// Decode what the buffer allows; returns the output length.
        /// `end`: no more input will come (the member ended).
        pub fn run(&mut self, end: bool) -> Result<usize, DecodeError> {
            loop {
                if self.started && self.dec.is_finished() && self.dec.can_collect() == 0 {
                    self.check_frame()?;
                    if self.input.is_empty() {
                        return Ok(0);
                    }
                    // Another frame follows (concatenated zstd).
                    self.dec = FrameDecoder::new();
                    self.started = false;
                }
                if !self.started && self.input.len() < 18 && !end {
                    return Ok(0);
                }
                let (read, written) = self
                    .dec
                    .decode_from_to(&self.input, &mut self.out)
                    .map_err(|_| DecodeError::Zstd)?;
                self.started = true;
                self.input.drain(..read);
                if written > 0 {
                    return Ok(written);
                }
                if read == 0 {
                    if self.input.len() == IN_CAP {
                        // A full buffer always holds a whole valid block.
                        return Err(DecodeError::Zstd);
                    }
                    // No whole block buffered: more input is needed, or at
                    // the end of the member the stream is cut short.
                    let finished = self.dec.is_finished() && self.dec.can_collect() == 0;
                    if end && !finished {
                        return Err(DecodeError::Truncated);
                    }
                    if !finished {
                        return Ok(0);
                    }
                }
            }
        }

        fn check_frame(&self) -> Result<(), DecodeError> {
            match self.dec.get_checksum_from_data() {
                Some(stored) if Some(stored) != self.dec.get_calculated_checksum() => {
                    Err(DecodeError::Zstd)
                }
                _ => Ok(()),
            }
        }

        /// True when a frame ended and nothing is left over.
        pub fn done(&self) -> bool {
            self.started
                && self.input.is_empty()
                && self.dec.is_finished()
                && self.dec.can_collect() == 0
                && self.check_frame().is_ok()
        }

        pub fn output(&self, end: usize) -> &[u8] {
            &self.out[..end]
        }
    }
}

// ---------------------------------------------------------------- gzip

const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gz {
    /// Reading the 10 fixed header bytes.
    Fixed,
    /// FEXTRA: reading the 2-byte length, then skipping it.
    ExtraLen,
    Extra(u16),
    Name,
    Comment,
    HeaderCrc(u8),
    Body,
    Trailer,
    /// A complete member ended; another may follow.
    MemberEnd,
}

enum Backend {
    Gzip(inflate::Inflate),
    #[cfg(feature = "std")]
    Xz(xz::Xz),
    #[cfg(feature = "std")]
    Zstd(alloc::boxed::Box<zstd::Zstd>),
}

/// A streaming decoder for one compressed member.
pub struct Decoder {
    backend: Backend,
    gz: Gz,
    small: [u8; 10],
    small_len: usize,
    flags: u8,
    crc: crc32fast::Hasher,
    size: u32,
    out: (usize, usize),
    done: bool,
}

impl Decoder {
    /// A decoder for a gzip member.
    pub fn gzip() -> Self {
        Decoder {
            backend: Backend::Gzip(inflate::Inflate::new()),
            gz: Gz::Fixed,
            small: [0; 10],
            small_len: 0,
            flags: 0,
            crc: crc32fast::Hasher::new(),
            size: 0,
            out: (0, 0),
            done: false,
        }
    }

    /// A decoder for `c`, reusing this one's buffers where possible.
    pub fn reset(&mut self, c: Compression) -> Result<(), DecodeError> {
        match c {
            Compression::Gzip => {
                if let Backend::Gzip(inf) = &mut self.backend {
                    inf.reset();
                } else {
                    self.backend = Backend::Gzip(inflate::Inflate::new());
                }
            }
            #[cfg(feature = "std")]
            Compression::Xz => self.backend = Backend::Xz(xz::Xz::new()?),
            #[cfg(feature = "std")]
            Compression::Zstd => {
                self.backend = Backend::Zstd(alloc::boxed::Box::new(zstd::Zstd::new()))
            }
            other => return Err(DecodeError::Unsupported(other)),
        }
        self.gz = Gz::Fixed;
        self.small_len = 0;
        self.crc = crc32fast::Hasher::new();
        self.size = 0;
        self.out = (0, 0);
        self.done = false;
        Ok(())
    }

    /// Decompressed bytes not yet taken by the caller.
    pub fn pending(&self) -> &[u8] {
        self.slice(self.out.0, self.out.1)
    }

    /// Offset of [`Decoder::pending`] in the decoder's buffer, for
    /// [`Decoder::slice`].
    pub fn pending_start(&self) -> usize {
        self.out.0
    }

    /// Bytes `start..end` of the decoder's output buffer (ranges of earlier
    /// [`Decoder::pending`] output stay valid until the next `feed`).
    pub fn slice(&self, start: usize, end: usize) -> &[u8] {
        match &self.backend {
            Backend::Gzip(inf) => inf.output(start, end),
            #[cfg(feature = "std")]
            Backend::Xz(x) => &x.output(end)[start..],
            #[cfg(feature = "std")]
            Backend::Zstd(z) => &z.output(end)[start..],
        }
    }

    /// All input is in: let the decoder emit output it still holds.
    /// Returns whether it produced any.
    pub fn flush(&mut self) -> Result<bool, DecodeError> {
        match &mut self.backend {
            #[cfg(feature = "std")]
            Backend::Xz(x) => {
                if self.done {
                    return Ok(false);
                }
                let (_, out, end) = x.run(&[])?;
                self.out = (0, out);
                self.done = end;
                Ok(out > 0)
            }
            #[cfg(feature = "std")]
            Backend::Zstd(z) => {
                let out = z.run(true)?;
                self.out = (0, out);
                Ok(out > 0)
            }
            Backend::Gzip(inf) => {
                if self.gz != Gz::Body {
                    return Ok(false);
                }
                let (_, start, len, done) = inf.run(&[])?;
                if done {
                    self.gz = Gz::Trailer;
                    self.small_len = 0;
                }
                if len > 0 {
                    self.crc.update(inf.output(start, start + len));
                    self.size = self.size.wrapping_add(len as u32);
                    self.out = (start, start + len);
                }
                Ok(len > 0)
            }
        }
    }

    /// The caller took `n` bytes of [`Decoder::pending`].
    pub fn consume(&mut self, n: usize) {
        self.out.0 += n;
    }

    /// True when the whole compressed stream has been decoded and checked
    /// (and its output drained).
    pub fn finished(&self) -> bool {
        self.out.0 == self.out.1
            && match self.backend {
                Backend::Gzip(_) => self.gz == Gz::MemberEnd,
                #[cfg(feature = "std")]
                Backend::Xz(_) => self.done,
                #[cfg(feature = "std")]
                Backend::Zstd(ref z) => z.done(),
            }
    }

    /// Decode from `input`; returns the bytes consumed. Call only when
    /// [`Decoder::pending`] is empty. Stops as soon as output is available.
    pub fn feed(&mut self, input: &[u8]) -> Result<usize, DecodeError> {
        debug_assert!(self.out.0 == self.out.1);
        match &mut self.backend {
            #[cfg(feature = "std")]
            Backend::Xz(x) => {
                if self.done {
                    return if input.is_empty() {
                        Ok(0)
                    } else {
                        Err(DecodeError::TrailingData)
                    };
                }
                let (used, out, end) = x.run(input)?;
                self.out = (0, out);
                self.done = end;
                Ok(used)
            }
            #[cfg(feature = "std")]
            Backend::Zstd(z) => {
                let used = z.take(input);
                if z.buffer_full() {
                    let out = z.run(false)?;
                    self.out = (0, out);
                }
                Ok(used)
            }
            Backend::Gzip(_) => self.feed_gzip(input),
        }
    }

    fn feed_gzip(&mut self, input: &[u8]) -> Result<usize, DecodeError> {
        let mut used = 0;
        while used < input.len() {
            let rest = &input[used..];
            match self.gz {
                Gz::MemberEnd => {
                    // Another gzip member may follow (concatenated gzip).
                    if rest[0] != 0x1f {
                        return Err(DecodeError::TrailingData);
                    }
                    if let Backend::Gzip(inf) = &mut self.backend {
                        inf.reset();
                    }
                    self.gz = Gz::Fixed;
                    self.small_len = 0;
                    self.crc = crc32fast::Hasher::new();
                    self.size = 0;
                }
                Gz::Fixed | Gz::ExtraLen | Gz::Trailer => {
                    let need = match self.gz {
                        Gz::Fixed => 10,
                        Gz::ExtraLen => 2,
                        _ => 8,
                    };
                    let n = core::cmp::min(need - self.small_len, rest.len());
                    self.small[self.small_len..self.small_len + n].copy_from_slice(&rest[..n]);
                    self.small_len += n;
                    used += n;
                    if self.small_len < need {
                        continue;
                    }
                    self.small_len = 0;
                    let s = self.small;
                    match self.gz {
                        Gz::Fixed => {
                            if s[0] != 0x1f || s[1] != 0x8b || s[2] != 8 || s[3] & 0xe0 != 0 {
                                return Err(DecodeError::GzipHeader);
                            }
                            self.flags = s[3];
                            self.gz = self.after(0);
                        }
                        Gz::ExtraLen => {
                            self.gz = Gz::Extra(u16::from_le_bytes([s[0], s[1]]));
                        }
                        _ => {
                            let crc = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
                            let len = u32::from_le_bytes([s[4], s[5], s[6], s[7]]);
                            if crc != self.crc.clone().finalize() {
                                return Err(DecodeError::GzipCrc);
                            }
                            if len != self.size {
                                return Err(DecodeError::GzipLength);
                            }
                            self.gz = Gz::MemberEnd;
                        }
                    }
                }
                Gz::Extra(left) => {
                    let n = core::cmp::min(left as usize, rest.len());
                    used += n;
                    let left = left - n as u16;
                    self.gz = if left == 0 {
                        self.after(FEXTRA)
                    } else {
                        Gz::Extra(left)
                    };
                }
                Gz::Name | Gz::Comment => {
                    let (flag, zero) = if self.gz == Gz::Name {
                        (FNAME, rest.iter().position(|&c| c == 0))
                    } else {
                        (FCOMMENT, rest.iter().position(|&c| c == 0))
                    };
                    match zero {
                        Some(i) => {
                            used += i + 1;
                            self.gz = self.after(flag);
                        }
                        None => used += rest.len(),
                    }
                }
                Gz::HeaderCrc(left) => {
                    let n = core::cmp::min(left as usize, rest.len());
                    used += n;
                    self.gz = if n == left as usize {
                        Gz::Body
                    } else {
                        Gz::HeaderCrc(left - n as u8)
                    };
                }
                Gz::Body => {
                    let Backend::Gzip(inf) = &mut self.backend else {
                        return Err(DecodeError::GzipHeader);
                    };
                    let (n, start, len, done) = inf.run(rest)?;
                    used += n;
                    if done {
                        self.gz = Gz::Trailer;
                        self.small_len = 0;
                    }
                    if len > 0 {
                        let out = inf.output(start, start + len);
                        self.crc.update(out);
                        self.size = self.size.wrapping_add(len as u32);
                        self.out = (start, start + len);
                        return Ok(used);
                    }
                    if n == 0 && !done {
                        return Err(DecodeError::Deflate);
                    }
                }
            }
        }
        Ok(used)
    }

    /// The next header state after the optional field `done` was handled.
    fn after(&self, done: u8) -> Gz {
        let f = self.flags;
        if done < FEXTRA && f & FEXTRA != 0 {
            Gz::ExtraLen
        } else if done < FNAME && f & FNAME != 0 {
            Gz::Name
        } else if done < FCOMMENT && f & FCOMMENT != 0 {
            Gz::Comment
        } else if f & FHCRC != 0 {
            Gz::HeaderCrc(2)
        } else {
            Gz::Body
        }
    }
}
