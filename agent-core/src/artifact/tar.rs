//! A push parser for tar archives (POSIX ustar, PAX extended headers, GNU
//! long names), with fixed memory.
//!
//! The parser is fed byte slices of any size and reports, one item at a time,
//! an entry header, a run of entry content (which the caller takes straight
//! from its own input slice: content is never copied), the end of an entry,
//! or the end of the archive (two zero blocks).

use core::fmt;

/// Longest entry path the parser keeps (PAX and GNU long names included).
pub const MAX_PATH: usize = 256;
/// Largest PAX extended header or GNU long-name record the parser accepts.
pub const MAX_EXTENDED: usize = 1024;

const BLOCK: usize = 512;

/// Why a tar stream was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TarError {
    /// A header block's checksum does not match its content.
    BadChecksum,
    /// A header's size, mode or checksum field is not a valid number.
    BadNumber,
    /// A header block is neither ustar, GNU nor zero.
    NotUstar,
    /// An entry path is longer than [`MAX_PATH`] bytes or not UTF-8.
    PathTooLong,
    /// An entry path is not valid UTF-8.
    PathNotUtf8,
    /// A PAX or GNU long-name record is larger than [`MAX_EXTENDED`] bytes
    /// or malformed.
    BadExtendedHeader,
    /// A single zero block followed by a non-zero block.
    MisplacedZeroBlock,
    /// The archive ended before its end-of-archive marker.
    Truncated,
}

impl fmt::Display for TarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TarError::BadChecksum => "tar header checksum mismatch",
            TarError::BadNumber => "tar header has an invalid numeric field",
            TarError::NotUstar => "not a ustar/GNU tar header",
            TarError::PathTooLong => "tar entry path is too long (over 256 bytes)",
            TarError::PathNotUtf8 => "tar entry path is not valid UTF-8",
            TarError::BadExtendedHeader => {
                "malformed or oversized PAX extended header or GNU long name"
            }
            TarError::MisplacedZeroBlock => "a zero block in the middle of a tar archive",
            TarError::Truncated => "the tar archive is truncated (no end-of-archive marker)",
        })
    }
}

/// The kind of a tar entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// Anything else (links, devices, fifos).
    Other,
}

/// A parsed tar entry header.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The entry's path, with PAX `path` or GNU long name applied.
    pub path: heapless::String<MAX_PATH>,
    /// Content size in bytes (PAX `size` applied).
    pub size: u64,
    /// Modification time, Unix seconds.
    pub mtime: u64,
    /// What the entry is.
    pub kind: EntryKind,
}

/// What one parser step found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    /// All input was consumed without completing anything.
    NeedMore,
    /// A new entry started; see [`Parser::entry`].
    Entry,
    /// The last `n` of the consumed bytes (`input[consumed - n..consumed]`)
    /// are content of the current entry.
    Data(usize),
    /// The current entry's content is complete.
    EntryEnd,
    /// Two zero blocks: the archive ended.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExtKind {
    Pax,
    GnuLongName,
    Ignore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Content { remaining: u64 },
    Padding { remaining: usize },
    Extended { kind: ExtKind, remaining: u64 },
    End,
}

/// The push parser. About 1.8 KiB.
pub struct Parser {
    block: [u8; BLOCK],
    filled: usize,
    state: State,
    zero_blocks: u8,
    ext: heapless::Vec<u8, MAX_EXTENDED>,
    long_path: Option<heapless::String<MAX_PATH>>,
    pax_size: Option<u64>,
    entry: Entry,
    entry_pending_end: bool,
}

impl Default for Parser {
    fn default() -> Self {
        Self::new()
    }
}

fn padding_for(size: u64) -> usize {
    ((BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64) as usize
}

impl Parser {
    /// A parser at the start of an archive.
    pub fn new() -> Self {
        Parser {
            block: [0; BLOCK],
            filled: 0,
            state: State::Header,
            zero_blocks: 0,
            ext: heapless::Vec::new(),
            long_path: None,
            pax_size: None,
            entry: Entry {
                path: heapless::String::new(),
                size: 0,
                mtime: 0,
                kind: EntryKind::Other,
            },
            entry_pending_end: false,
        }
    }

    /// The current entry (valid after [`Item::Entry`]).
    pub fn entry(&self) -> &Entry {
        &self.entry
    }

    /// Bytes of the current entry's content not yet delivered.
    pub fn remaining(&self) -> u64 {
        match self.state {
            State::Content { remaining } => remaining,
            _ => 0,
        }
    }

    /// True once the end-of-archive marker was read.
    pub fn ended(&self) -> bool {
        self.state == State::End
    }

    /// True between entries (at a header boundary, nothing partially read):
    /// a stream that stops here is cleanly cut at a member boundary.
    pub fn at_boundary(&self) -> bool {
        self.state == State::Header && self.filled == 0 && !self.entry_pending_end
    }

    /// Parse from `input`; returns the bytes consumed and what was found.
    ///
    /// After [`Item::End`], further calls consume nothing and return
    /// [`Item::End`]; the caller decides what trailing bytes mean.
    pub fn step(&mut self, input: &[u8]) -> Result<(usize, Item), TarError> {
        let mut used = 0;
        loop {
            if self.entry_pending_end {
                self.entry_pending_end = false;
                let pad = padding_for(self.entry.size);
                self.state = if pad > 0 {
                    State::Padding { remaining: pad }
                } else {
                    State::Header
                };
                return Ok((used, Item::EntryEnd));
            }
            let rest = &input[used..];
            match self.state {
                State::End => return Ok((used, Item::End)),
                State::Content { remaining } => {
                    if remaining == 0 {
                        self.entry_pending_end = true;
                        continue;
                    }
                    if rest.is_empty() {
                        return Ok((used, Item::NeedMore));
                    }
                    let n = core::cmp::min(remaining, rest.len() as u64) as usize;
                    self.state = State::Content {
                        remaining: remaining - n as u64,
                    };
                    if remaining == n as u64 {
                        self.entry_pending_end = true;
                    }
                    return Ok((used + n, Item::Data(n)));
                }
                State::Padding { remaining } => {
                    if rest.is_empty() {
                        return Ok((used, Item::NeedMore));
                    }
                    let n = core::cmp::min(remaining, rest.len());
                    used += n;
                    self.state = if n == remaining {
                        State::Header
                    } else {
                        State::Padding {
                            remaining: remaining - n,
                        }
                    };
                }
                State::Extended { kind, remaining } => {
                    if remaining == 0 {
                        let size = self.entry.size;
                        self.finish_extended(kind)?;
                        let pad = padding_for(size);
                        self.state = if pad > 0 {
                            State::Padding { remaining: pad }
                        } else {
                            State::Header
                        };
                        continue;
                    }
                    if rest.is_empty() {
                        return Ok((used, Item::NeedMore));
                    }
                    let n = core::cmp::min(remaining, rest.len() as u64) as usize;
                    if kind != ExtKind::Ignore {
                        self.ext
                            .extend_from_slice(&rest[..n])
                            .map_err(|_| TarError::BadExtendedHeader)?;
                    }
                    used += n;
                    self.state = State::Extended {
                        kind,
                        remaining: remaining - n as u64,
                    };
                }
                State::Header => {
                    if rest.is_empty() {
                        return Ok((used, Item::NeedMore));
                    }
                    let n = core::cmp::min(BLOCK - self.filled, rest.len());
                    self.block[self.filled..self.filled + n].copy_from_slice(&rest[..n]);
                    self.filled += n;
                    used += n;
                    if self.filled < BLOCK {
                        return Ok((used, Item::NeedMore));
                    }
                    self.filled = 0;
                    if self.block.iter().all(|&b| b == 0) {
                        self.zero_blocks += 1;
                        if self.zero_blocks == 2 {
                            self.state = State::End;
                            return Ok((used, Item::End));
                        }
                        continue;
                    }
                    if self.zero_blocks != 0 {
                        return Err(TarError::MisplacedZeroBlock);
                    }
                    if let Some(item) = self.parse_header()? {
                        return Ok((used, item));
                    }
                }
            }
        }
    }

    fn parse_header(&mut self) -> Result<Option<Item>, TarError> {
        let b = &self.block;
        let stored = parse_octal(&b[148..156])?;
        let mut unsigned: u64 = 0;
        let mut signed: i64 = 0;
        for (i, &byte) in b.iter().enumerate() {
            let v = if (148..156).contains(&i) { b' ' } else { byte };
            unsigned += v as u64;
            signed += (v as i8) as i64;
        }
        if stored != unsigned && stored as i64 != signed {
            return Err(TarError::BadChecksum);
        }
        let magic = &b[257..263];
        let ustar = magic == b"ustar\0";
        let gnu = magic == b"ustar ";
        if !ustar && !gnu {
            return Err(TarError::NotUstar);
        }
        let size = parse_size(&b[124..136])?;
        let typeflag = b[156];
        let b = &self.block;
        match typeflag {
            b'x' | b'L' | b'g' | b'K' => {
                let kind = match typeflag {
                    b'x' => ExtKind::Pax,
                    b'L' => ExtKind::GnuLongName,
                    _ => ExtKind::Ignore,
                };
                if kind != ExtKind::Ignore && size > MAX_EXTENDED as u64 {
                    return Err(TarError::BadExtendedHeader);
                }
                self.ext.clear();
                self.entry.size = size;
                self.state = State::Extended {
                    kind,
                    remaining: size,
                };
                return Ok(None);
            }
            _ => {}
        }
        let kind = match typeflag {
            b'0' | 0 | b'7' => EntryKind::File,
            b'5' => EntryKind::Directory,
            _ => EntryKind::Other,
        };
        let mut path = heapless::String::<MAX_PATH>::new();
        if let Some(long) = self.long_path.take() {
            path = long;
        } else {
            let name = cstr(&b[0..100]);
            let prefix = if ustar { cstr(&b[345..500]) } else { &[][..] };
            if !prefix.is_empty() {
                push_path(&mut path, prefix)?;
                push_path(&mut path, b"/")?;
            }
            push_path(&mut path, name)?;
        }
        let size = self.pax_size.take().unwrap_or(size);
        let size = if kind == EntryKind::File { size } else { 0 };
        let mtime = parse_size(&b[136..148])?;
        self.entry = Entry {
            path,
            size,
            mtime,
            kind,
        };
        self.state = State::Content { remaining: size };
        Ok(Some(Item::Entry))
    }

    fn finish_extended(&mut self, kind: ExtKind) -> Result<(), TarError> {
        match kind {
            ExtKind::Ignore => {}
            ExtKind::GnuLongName => {
                let name = cstr(&self.ext);
                let mut path = heapless::String::new();
                push_path(&mut path, name)?;
                self.long_path = Some(path);
            }
            ExtKind::Pax => {
                let mut rec: &[u8] = &self.ext;
                while !rec.is_empty() {
                    let sp = rec
                        .iter()
                        .position(|&c| c == b' ')
                        .ok_or(TarError::BadExtendedHeader)?;
                    let len: usize = core::str::from_utf8(&rec[..sp])
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .ok_or(TarError::BadExtendedHeader)?;
                    if len <= sp + 1 || len > rec.len() || rec[len - 1] != b'\n' {
                        return Err(TarError::BadExtendedHeader);
                    }
                    let kv = &rec[sp + 1..len - 1];
                    let eq = kv
                        .iter()
                        .position(|&c| c == b'=')
                        .ok_or(TarError::BadExtendedHeader)?;
                    let (key, value) = (&kv[..eq], &kv[eq + 1..]);
                    match key {
                        b"path" => {
                            let mut path = heapless::String::new();
                            push_path(&mut path, value)?;
                            self.long_path = Some(path);
                        }
                        b"size" => {
                            let size = core::str::from_utf8(value)
                                .ok()
                                .and_then(|s| s.parse().ok())
                                .ok_or(TarError::BadExtendedHeader)?;
                            self.pax_size = Some(size);
                        }
                        _ => {}
                    }
                    rec = &rec[len..];
                }
            }
        }
        self.ext.clear();
        Ok(())
    }
}

fn cstr(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&c| c == 0).unwrap_or(field.len());
    &field[..end]
}

fn push_path(path: &mut heapless::String<MAX_PATH>, bytes: &[u8]) -> Result<(), TarError> {
    let s = core::str::from_utf8(bytes).map_err(|_| TarError::PathNotUtf8)?;
    path.push_str(s).map_err(|_| TarError::PathTooLong)
}

fn parse_octal(field: &[u8]) -> Result<u64, TarError> {
    let mut v: u64 = 0;
    let mut seen = false;
    for &c in field {
        match c {
            b'0'..=b'7' => {
                v = v
                    .checked_mul(8)
                    .and_then(|v| v.checked_add((c - b'0') as u64))
                    .ok_or(TarError::BadNumber)?;
                seen = true;
            }
            b' ' | 0 if !seen => {}
            b' ' | 0 => break,
            _ => return Err(TarError::BadNumber),
        }
    }
    Ok(v)
}

/// Size field: octal, or GNU base-256 when the high bit of the first byte is set.
fn parse_size(field: &[u8]) -> Result<u64, TarError> {
    if field[0] & 0x80 != 0 {
        if field[0] & 0x40 != 0 {
            return Err(TarError::BadNumber); // negative
        }
        let mut v: u64 = (field[0] & 0x3f) as u64;
        for &c in &field[1..] {
            v = v
                .checked_mul(256)
                .and_then(|v| v.checked_add(c as u64))
                .ok_or(TarError::BadNumber)?;
        }
        Ok(v)
    } else {
        parse_octal(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_fields() {
        assert_eq!(parse_octal(b"0000644\0"), Ok(0o644));
        assert_eq!(parse_octal(b"   12 \0"), Ok(0o12));
        assert_eq!(parse_octal(b"12x"), Err(TarError::BadNumber));
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[11] = 5;
        big[10] = 1;
        assert_eq!(parse_size(&big), Ok(261));
    }
}
