//! Push decompressors for artifact members: gzip (header and CRC handled
//! here, raw inflate by miniz_oxide's allocation-free core, or by zlib-rs
//! through flate2 with `std`), xz (liblzma, `std` only) and zstd (ruzstd,
//! `std` only).
//!
//! A decoder is fed compressed bytes and keeps its decompressed output
//! inside; the caller drains [`Decoder::pending`] completely before feeding
//! more. With `std`, the content of stored deflate blocks (incompressible
//! data) is not copied: the caller takes it from its own input
//! ([`Decoder::stored_input`]).

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
        /// Give a fresh inflater the history `a` then `b` (at most 32 KiB
        /// in all) as if it had decoded it: one stored block, its output
        /// discarded. The stream then continues at a block boundary.
        pub fn prime(&mut self, a: &[u8], b: &[u8]) -> Result<(), DecodeError> {
            let len = u16::try_from(a.len() + b.len()).map_err(|_| DecodeError::Deflate)?;
            let (l, n) = (len.to_le_bytes(), (!len).to_le_bytes());
            for part in [&[0, l[0], l[1], n[0], n[1]][..], a, b] {
                let mut part = part;
                while !part.is_empty() {
                    let (used, _, _, done) = self.run(part)?;
                    if done || used == 0 {
                        return Err(DecodeError::Deflate);
                    }
                    part = &part[used..];
                }
            }
            Ok(())
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

/// Where the deflate stream is, for the stored-block fast path (`std`):
/// stored blocks (what deflate writes for incompressible data) are not
/// copied through the inflater; the caller takes their bytes straight from
/// its input ([`Decoder::stored_input`], [`Decoder::take_stored`]). At the
/// first other block the inflater takes over for the rest of the stream,
/// primed with the last 32 KiB of output.
#[cfg(feature = "std")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Blocks {
    /// At a byte-aligned block boundary, before the inflater took over.
    Boundary,
    /// Reading a stored block's header byte, LEN and NLEN (in `small`).
    StoredHeader,
    /// Inside a stored block: `left` bytes to come; `last`: BFINAL.
    Stored { left: u16, last: bool },
    /// The inflater has the stream.
    Inflater,
}

/// Deflate's window: the history a back-reference may reach.
#[cfg(feature = "std")]
const WINDOW: usize = 32 * 1024;

/// The last [`WINDOW`] bytes of stored-block output, kept only where the
/// inflater might need them (see [`Decoder::take_stored`]).
#[cfg(feature = "std")]
struct History {
    ring: alloc::vec::Vec<u8>,
    pos: usize,
    len: usize,
}

#[cfg(feature = "std")]
impl History {
    fn new() -> Self {
        History {
            ring: alloc::vec![0; WINDOW],
            pos: 0,
            len: 0,
        }
    }
    fn clear(&mut self) {
        self.pos = 0;
        self.len = 0;
    }
    fn push(&mut self, d: &[u8]) {
        let d = &d[d.len().saturating_sub(WINDOW)..];
        let first = core::cmp::min(WINDOW - self.pos, d.len());
        self.ring[self.pos..self.pos + first].copy_from_slice(&d[..first]);
        self.ring[..d.len() - first].copy_from_slice(&d[first..]);
        self.pos = (self.pos + d.len()) % WINDOW;
        self.len = core::cmp::min(WINDOW, self.len + d.len());
    }
    /// The kept bytes, oldest first, in two pieces.
    fn pieces(&self) -> (&[u8], &[u8]) {
        let start = (self.pos + WINDOW - self.len) % WINDOW;
        if start + self.len <= WINDOW {
            (&self.ring[start..start + self.len], &[])
        } else {
            (&self.ring[start..], &self.ring[..self.pos])
        }
    }
}

/// True if `after` shows a stored block of at least [`WINDOW`] bytes
/// starting `at` bytes in: the history before it will never be needed.
#[cfg(feature = "std")]
fn big_stored_block_at(after: &[u8], at: usize) -> bool {
    match after.get(at..at + 3) {
        Some(h) => (h[0] >> 1) & 3 == 0 && usize::from(u16::from_le_bytes([h[1], h[2]])) >= WINDOW,
        None => false,
    }
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
    #[cfg(feature = "std")]
    blocks: Blocks,
    #[cfg(feature = "std")]
    history: History,
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
            #[cfg(feature = "std")]
            blocks: Blocks::Boundary,
            #[cfg(feature = "std")]
            history: History::new(),
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
        self.new_deflate_stream();
        Ok(())
    }

    fn new_deflate_stream(&mut self) {
        #[cfg(feature = "std")]
        {
            self.blocks = Blocks::Boundary;
            self.history.clear();
        }
    }

    /// How many of the next input bytes are the content of a stored
    /// deflate block: the decompressed data itself. The caller may take
    /// them from its input directly, telling [`Decoder::take_stored`],
    /// instead of feeding them (which then consumes nothing).
    pub fn stored_input(&self) -> usize {
        #[cfg(feature = "std")]
        if let (Gz::Body, Blocks::Stored { left, .. }) = (self.gz, self.blocks) {
            return usize::from(left);
        }
        0
    }

    /// The caller took `data`, the next bytes of input (at most
    /// [`Decoder::stored_input`]), as decompressed output; `after` is the
    /// input that follows it (if any is at hand). Checks them into the
    /// CRC, and keeps the bytes a later compressed block may refer back
    /// to: those within 32 KiB of the block's end, unless `after` shows
    /// that a stored block of 32 KiB or more comes next, or this is the
    /// last block.
    #[cfg_attr(not(feature = "std"), allow(unused_variables))]
    pub fn take_stored(&mut self, data: &[u8], after: &[u8]) {
        #[cfg(feature = "std")]
        if let Blocks::Stored { left, last } = self.blocks {
            let data = &data[..core::cmp::min(data.len(), usize::from(left))];
            self.crc.update(data);
            self.size = self.size.wrapping_add(data.len() as u32);
            let left = left - data.len() as u16;
            let keep = WINDOW.saturating_sub(usize::from(left));
            if keep > 0 && !last && !big_stored_block_at(after, usize::from(left)) {
                self.history.push(&data[data.len().saturating_sub(keep)..]);
            }
            self.blocks = Blocks::Stored { left, last };
            if left == 0 {
                self.end_stored_block();
            }
        }
    }

    #[cfg(feature = "std")]
    fn end_stored_block(&mut self) {
        if let Blocks::Stored { last: true, .. } = self.blocks {
            self.gz = Gz::Trailer;
            self.small_len = 0;
        } else {
            self.blocks = Blocks::Boundary;
        }
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
                #[cfg(feature = "std")]
                if self.blocks != Blocks::Inflater {
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
                    self.new_deflate_stream();
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
                    #[cfg(feature = "std")]
                    match self.blocks {
                        Blocks::Inflater => {}
                        Blocks::Boundary => {
                            if (rest[0] >> 1) & 3 == 0 {
                                self.small[0] = rest[0];
                                self.small_len = 1;
                                used += 1;
                                self.blocks = Blocks::StoredHeader;
                            } else {
                                let (a, b) = self.history.pieces();
                                if !a.is_empty() {
                                    inf.prime(a, b)?;
                                }
                                self.blocks = Blocks::Inflater;
                            }
                            continue;
                        }
                        Blocks::StoredHeader => {
                            let n = core::cmp::min(5 - self.small_len, rest.len());
                            self.small[self.small_len..self.small_len + n]
                                .copy_from_slice(&rest[..n]);
                            self.small_len += n;
                            used += n;
                            if self.small_len < 5 {
                                continue;
                            }
                            self.small_len = 0;
                            let s = self.small;
                            let len = u16::from_le_bytes([s[1], s[2]]);
                            if u16::from_le_bytes([s[3], s[4]]) != !len {
                                return Err(DecodeError::Deflate);
                            }
                            self.blocks = Blocks::Stored {
                                left: len,
                                last: s[0] & 1 != 0,
                            };
                            if len == 0 {
                                self.end_stored_block();
                            }
                            continue;
                        }
                        // The caller takes these bytes (`stored_input`).
                        Blocks::Stored { .. } => return Ok(used),
                    }
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

#[cfg(all(test, feature = "std"))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use alloc::vec::Vec;

    /// A deflate stream writer for the tests: stored blocks, and fixed
    /// Huffman blocks of literals and matches (so that a compressed block
    /// can reach back into stored data).
    struct Bits {
        out: Vec<u8>,
        acc: u64,
        n: u32,
    }

    enum Sym {
        Lit(u8),
        /// (length 3..=258, distance 1..=32768)
        Match(u16, u16),
    }

    impl Bits {
        fn new() -> Self {
            Bits {
                out: Vec::new(),
                acc: 0,
                n: 0,
            }
        }
        fn put(&mut self, v: u32, bits: u32) {
            self.acc |= u64::from(v) << self.n;
            self.n += bits;
            while self.n >= 8 {
                self.out.push(self.acc as u8);
                self.acc >>= 8;
                self.n -= 8;
            }
        }
        /// A Huffman code, most significant bit first.
        fn code(&mut self, code: u32, bits: u32) {
            self.put(code.reverse_bits() >> (32 - bits), bits);
        }
        fn align(&mut self) {
            if self.n > 0 {
                self.put(0, 8 - self.n);
            }
        }
        fn stored(&mut self, data: &[u8], last: bool) {
            self.put(u32::from(last), 1);
            self.put(0, 2);
            self.align();
            let len = data.len() as u16;
            self.out.extend_from_slice(&len.to_le_bytes());
            self.out.extend_from_slice(&(!len).to_le_bytes());
            self.out.extend_from_slice(data);
        }
        fn litlen(&mut self, v: u32) {
            match v {
                0..=143 => self.code(0x30 + v, 8),
                144..=255 => self.code(0x190 + v - 144, 9),
                256..=279 => self.code(v - 256, 7),
                _ => self.code(0xc0 + v - 280, 8),
            }
        }
        fn fixed(&mut self, syms: &[Sym], last: bool) {
            const LEN_BASE: [u16; 29] = [
                3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83,
                99, 115, 131, 163, 195, 227, 258,
            ];
            const LEN_EXTRA: [u32; 29] = [
                0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5,
                0,
            ];
            self.put(u32::from(last), 1);
            self.put(1, 2);
            for s in syms {
                match *s {
                    Sym::Lit(b) => self.litlen(u32::from(b)),
                    Sym::Match(len, dist) => {
                        let i = LEN_BASE.iter().rposition(|&b| b <= len).unwrap();
                        self.litlen(257 + i as u32);
                        self.put(u32::from(len - LEN_BASE[i]), LEN_EXTRA[i]);
                        // Distance codes: base 1,2,3,4 then doubling pairs.
                        let d = u32::from(dist) - 1;
                        let (code, extra, base) = if d < 4 {
                            (d, 0, d)
                        } else {
                            let top = 31 - d.leading_zeros(); // >= 2
                            let extra = top - 1;
                            let half = (d >> extra) & 1;
                            (2 * top + half, extra, ((2 | half) << extra))
                        };
                        self.code(code, 5);
                        self.put(d - base, extra);
                    }
                }
            }
            self.litlen(256);
        }
        fn gzip(mut self, data: &[u8]) -> Vec<u8> {
            self.align();
            let mut g = alloc::vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
            g.extend_from_slice(&self.out);
            g.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
            g.extend_from_slice(&(data.len() as u32).to_le_bytes());
            g
        }
    }

    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    /// Decode `gz` fed in pieces of the sizes `split` cycles through, the
    /// way the reader does: stored bytes taken from the input directly.
    fn decode(gz: &[u8], split: &[usize]) -> Result<Vec<u8>, DecodeError> {
        let mut d = Decoder::gzip();
        d.reset(Compression::Gzip)?;
        let mut out = Vec::new();
        let mut at = 0;
        let mut sizes = split.iter().cycle();
        while at < gz.len() {
            let end = core::cmp::min(gz.len(), at + *sizes.next().unwrap());
            let mut input = &gz[at..end];
            while !input.is_empty() {
                let n = match d.stored_input() {
                    0 => d.feed(input)?,
                    k => {
                        let k = core::cmp::min(k, input.len());
                        out.extend_from_slice(&input[..k]);
                        d.take_stored(&input[..k], &input[k..]);
                        k
                    }
                };
                input = &input[n..];
                out.extend_from_slice(d.pending());
                d.consume(d.pending().len());
            }
            at = end;
        }
        while d.flush()? {
            out.extend_from_slice(d.pending());
            d.consume(d.pending().len());
        }
        if !d.finished() {
            return Err(DecodeError::Truncated);
        }
        Ok(out)
    }

    /// What a compressed block after stored ones refers back to must come
    /// out right whatever the split: near and 32 KiB back, across small
    /// and large stored blocks, with and without the look-ahead.
    #[test]
    fn stored_blocks_then_back_references() {
        let cases: Vec<Vec<usize>> = alloc::vec![
            alloc::vec![40_000, 1_000],
            alloc::vec![65_535, 65_535],
            alloc::vec![100],
            alloc::vec![20_000, 20_000, 5],
            alloc::vec![33_000, 0, 10],
            alloc::vec![],
        ];
        for (ci, blocks) in cases.iter().enumerate() {
            let mut b = Bits::new();
            let mut data = Vec::new();
            for (i, &len) in blocks.iter().enumerate() {
                let part = noise(len, (ci * 10 + i) as u64 + 1);
                b.stored(&part, false);
                data.extend_from_slice(&part);
            }
            let mut syms = alloc::vec![Sym::Lit(b'u'), Sym::Lit(b'p')];
            let mut tail: Vec<u8> = b"up".to_vec();
            for (len, dist) in [
                (258u16, 32_768u16),
                (10, 1),
                (3, 100),
                (200, 5_000),
                (40, 2),
            ] {
                let total = data.len() + tail.len();
                if usize::from(dist) > total {
                    continue;
                }
                syms.push(Sym::Match(len, dist));
                for _ in 0..len {
                    let all = data.len() + tail.len();
                    let from = all - usize::from(dist);
                    let byte = if from < data.len() {
                        data[from]
                    } else {
                        tail[from - data.len()]
                    };
                    tail.push(byte);
                }
            }
            b.fixed(&syms, false);
            data.extend_from_slice(&tail);
            // A stored block the inflater handles, then the end.
            let last = noise(3_000, 99);
            b.stored(&last, true);
            data.extend_from_slice(&last);
            let gz = b.gzip(&data);
            for split in [
                &[usize::MAX][..],
                &[1],
                &[7, 4096, 3],
                &[65_536],
                &[32_771, 5],
            ] {
                let out = decode(&gz, split).unwrap();
                assert!(out == data, "case {ci}, split {split:?}");
            }
            // An independent inflater agrees.
            let mut back = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz.as_slice()), &mut back)
                .unwrap();
            assert!(back == data, "case {ci}: flate2");
        }
    }

    /// All-stored streams (what deflate writes for random data), in any
    /// split; a bad NLEN, a bad CRC and a cut are still caught.
    #[test]
    fn all_stored_and_damaged() {
        let data = noise(200_000, 5);
        let mut b = Bits::new();
        for (i, part) in data.chunks(65_535).enumerate() {
            b.stored(part, i == 3);
        }
        let gz = b.gzip(&data);
        for split in [&[usize::MAX][..], &[1], &[5, 65_540], &[1 << 20]] {
            assert!(decode(&gz, split).unwrap() == data);
        }
        let mut bad = gz.clone();
        bad[10 + 3] ^= 1; // NLEN of the first block
        assert_eq!(decode(&bad, &[usize::MAX]), Err(DecodeError::Deflate));
        let mut bad = gz.clone();
        let n = bad.len();
        bad[n - 8] ^= 1; // CRC
        assert_eq!(decode(&bad, &[usize::MAX]), Err(DecodeError::GzipCrc));
        let mut bad = gz.clone();
        bad[70_000] ^= 0x40; // content: only the CRC can tell
        assert_eq!(decode(&bad, &[4096]), Err(DecodeError::GzipCrc));
        assert_eq!(
            decode(&gz[..gz.len() - 9], &[usize::MAX]),
            Err(DecodeError::Truncated)
        );
    }
}
