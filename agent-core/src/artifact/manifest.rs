//! The `manifest` (and `manifest-augment`) member: `sha256sum`-style lines,
//! parsed as they stream in, kept in fixed memory.

use super::meta::Limit;

/// Most lines `manifest` and `manifest-augment` may have together.
pub const MAX_MANIFEST_LINES: usize = 64;
/// Bytes available for all manifest paths together.
pub const MANIFEST_PATH_BYTES: usize = 2048;
const MAX_LINE: usize = 64 + 2 + 300;

/// Why a manifest was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ManifestError {
    /// Line number (1-based) that is not `<64 hex>  <path>`.
    Syntax(u16),
    /// Line number of a path listed twice.
    Duplicate(u16),
    Limit(Limit),
}

#[derive(Debug, Clone, Copy)]
struct Line {
    start: u16,
    len: u16,
    digest: [u8; 32],
    augment: bool,
    seen: bool,
}

/// The parsed manifest lines.
pub(crate) struct Manifest {
    paths: [u8; MANIFEST_PATH_BYTES],
    used: usize,
    lines: heapless::Vec<Line, MAX_MANIFEST_LINES>,
    line: heapless::Vec<u8, MAX_LINE>,
    line_no: u16,
}

impl Manifest {
    pub fn new() -> Self {
        Manifest {
            paths: [0; MANIFEST_PATH_BYTES],
            used: 0,
            lines: heapless::Vec::new(),
            line: heapless::Vec::new(),
            line_no: 0,
        }
    }

    /// Parse more manifest bytes.
    pub fn feed(&mut self, mut data: &[u8], augment: bool) -> Result<(), ManifestError> {
        while !data.is_empty() {
            match data.iter().position(|&c| c == b'\n') {
                Some(i) => {
                    self.push_line_bytes(&data[..i])?;
                    self.end_line(augment)?;
                    data = &data[i + 1..];
                }
                None => {
                    self.push_line_bytes(data)?;
                    data = &[];
                }
            }
        }
        Ok(())
    }

    /// The member ended: take a last line without a newline.
    pub fn finish(&mut self, augment: bool) -> Result<(), ManifestError> {
        if !self.line.is_empty() {
            self.end_line(augment)?;
        }
        self.line_no = 0;
        Ok(())
    }

    fn push_line_bytes(&mut self, b: &[u8]) -> Result<(), ManifestError> {
        self.line
            .extend_from_slice(b)
            .map_err(|_| ManifestError::Syntax(self.line_no + 1))
    }

    fn end_line(&mut self, augment: bool) -> Result<(), ManifestError> {
        self.line_no += 1;
        let no = self.line_no;
        let line = core::mem::take(&mut self.line);
        let bad = ManifestError::Syntax(no);
        if line.len() < 64 + 2 {
            return Err(bad);
        }
        let mut digest = [0u8; 32];
        for (i, d) in digest.iter_mut().enumerate() {
            let hi = hex_val(line[2 * i]).ok_or(bad)?;
            let lo = hex_val(line[2 * i + 1]).ok_or(bad)?;
            *d = hi << 4 | lo;
        }
        // sha256sum: two spaces (text mode) or space + '*' (binary mode).
        let sep = &line[64..66];
        if sep != b"  " && sep != b" *" {
            return Err(bad);
        }
        let path = &line[66..];
        if path.is_empty() || core::str::from_utf8(path).is_err() {
            return Err(bad);
        }
        if self
            .find(core::str::from_utf8(path).unwrap_or(""))
            .is_some()
        {
            return Err(ManifestError::Duplicate(no));
        }
        let start = self.used;
        let dst = self
            .paths
            .get_mut(start..start + path.len())
            .ok_or(ManifestError::Limit(Limit::ManifestLines))?;
        dst.copy_from_slice(path);
        self.used += path.len();
        self.lines
            .push(Line {
                start: start as u16,
                len: path.len() as u16,
                digest,
                augment,
                seen: false,
            })
            .map_err(|_| ManifestError::Limit(Limit::ManifestLines))
    }

    fn path(&self, l: &Line) -> &str {
        let b = &self.paths[l.start as usize..l.start as usize + l.len as usize];
        core::str::from_utf8(b).unwrap_or("")
    }

    /// The index of `path`'s line.
    pub fn find(&self, path: &str) -> Option<usize> {
        self.lines.iter().position(|l| self.path(l) == path)
    }

    /// Digest and whether the line came from `manifest-augment`.
    pub fn entry(&self, i: usize) -> Option<([u8; 32], bool)> {
        self.lines.get(i).map(|l| (l.digest, l.augment))
    }

    /// Mark line `i` as matched by a file in the artifact; false if it was
    /// already.
    pub fn mark_seen(&mut self, i: usize) -> bool {
        match self.lines.get_mut(i) {
            Some(l) if !l.seen => {
                l.seen = true;
                true
            }
            _ => false,
        }
    }

    /// The first line not matched by any file.
    pub fn first_unseen(&self) -> Option<&str> {
        self.lines.iter().find(|l| !l.seen).map(|l| self.path(l))
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_in_any_split() {
        let text = b"96bcd965947569404798bcbdb614f103db5a004eb6e364cfc162c146890ea35b  version\n5cc98ecf38c0e6284003471cc0c59fcd3a1ab78f074a072e5c8ae19673916cb5  header.tar.gz\n";
        for split in 1..text.len() {
            let mut m = Manifest::new();
            m.feed(&text[..split], false).unwrap();
            m.feed(&text[split..], false).unwrap();
            m.finish(false).unwrap();
            assert_eq!(m.find("version"), Some(0));
            assert_eq!(m.find("header.tar.gz"), Some(1));
            assert_eq!(m.entry(0).unwrap().0[0], 0x96);
        }
    }

    #[test]
    fn rejects_bad_lines() {
        let mut m = Manifest::new();
        assert_eq!(
            m.feed(b"abc  version\n", false),
            Err(ManifestError::Syntax(1))
        );
        let mut m = Manifest::new();
        let line = b"96bcd965947569404798bcbdb614f103db5a004eb6e364cfc162c146890ea35b  version\n";
        m.feed(line, false).unwrap();
        assert_eq!(m.feed(line, false), Err(ManifestError::Duplicate(2)));
    }
}
