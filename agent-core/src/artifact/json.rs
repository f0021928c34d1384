//! A minimal JSON scanner over a complete, bounded buffer, for the small
//! JSON members of an artifact (`version`, `header-info`, `type-info`).
//!
//! We do not use `serde-json-core` because it cannot deserialize a value
//! whose type is only known when it is read (`deserialize_any`), which
//! Mender's `type-info` needs (`"type"` is a string or `null`; depends
//! values are strings or lists). Nesting depth is bounded, so hostile input
//! cannot exhaust the stack.

/// What was wrong with a JSON document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonError {
    /// Not valid JSON (at the given byte offset).
    Syntax(usize),
    /// Nested deeper than the scanner allows.
    TooDeep,
    /// A value of another type than the field needs.
    Type(usize),
}

const MAX_DEPTH: u8 = 32;

/// A cursor over a JSON document.
pub struct Json<'a> {
    s: &'a [u8],
    pos: usize,
    depth: u8,
}

/// A string value: borrowed when it has no escapes, else unescaped into
/// the caller's scratch buffer.
impl<'a> Json<'a> {
    pub fn new(s: &'a [u8]) -> Self {
        Json {
            s,
            pos: 0,
            depth: 0,
        }
    }

    fn ws(&mut self) {
        while let Some(&c) = self.s.get(self.pos) {
            if matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    /// The next non-space byte, not consumed.
    pub fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.pos).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), JsonError> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(JsonError::Syntax(self.pos))
        }
    }

    fn type_err(&self) -> JsonError {
        JsonError::Type(self.pos)
    }

    /// Check that only whitespace is left.
    pub fn end(&mut self) -> Result<(), JsonError> {
        if self.peek().is_none() {
            Ok(())
        } else {
            Err(JsonError::Syntax(self.pos))
        }
    }

    /// Consume `null` if it is next; returns whether it was.
    pub fn null(&mut self) -> Result<bool, JsonError> {
        if self.peek() == Some(b'n') {
            self.literal(b"null")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn literal(&mut self, lit: &[u8]) -> Result<(), JsonError> {
        if self.s[self.pos..].starts_with(lit) {
            self.pos += lit.len();
            Ok(())
        } else {
            Err(JsonError::Syntax(self.pos))
        }
    }

    /// Iterate an object: `f(self, key)` must consume the member's value.
    pub fn object<E: From<JsonError>>(
        &mut self,
        mut f: impl FnMut(&mut Self, &str) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.peek() != Some(b'{') {
            return Err(self.type_err().into());
        }
        self.enter()?;
        self.pos += 1;
        if self.peek() == Some(b'}') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            let mut key = [0u8; 128];
            let k = self.string_into(&mut key)?;
            // A key longer than the scratch buffer can match no field we know.
            let key_str = match k {
                Some(len) => core::str::from_utf8(&key[..len]).unwrap_or(""),
                None => "",
            };
            self.expect(b':')?;
            f(self, key_str)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                _ => return Err(JsonError::Syntax(self.pos).into()),
            }
        }
    }

    /// Iterate an array: `f(self)` must consume each element.
    pub fn array<E: From<JsonError>>(
        &mut self,
        mut f: impl FnMut(&mut Self) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.peek() != Some(b'[') {
            return Err(self.type_err().into());
        }
        self.enter()?;
        self.pos += 1;
        if self.peek() == Some(b']') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            f(self)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                _ => return Err(JsonError::Syntax(self.pos).into()),
            }
        }
    }

    fn enter(&mut self) -> Result<(), JsonError> {
        if self.depth >= MAX_DEPTH {
            return Err(JsonError::TooDeep);
        }
        self.depth += 1;
        Ok(())
    }

    /// Read a string, unescaped, into `out`; returns its length, or `None`
    /// if it did not fit (the string is still consumed).
    pub fn string_into(&mut self, out: &mut [u8]) -> Result<Option<usize>, JsonError> {
        if self.peek() != Some(b'"') {
            return Err(self.type_err());
        }
        self.pos += 1;
        let mut n = 0usize;
        let mut fits = true;
        let mut put = |bytes: &[u8], n: &mut usize| {
            if *n + bytes.len() <= out.len() {
                out[*n..*n + bytes.len()].copy_from_slice(bytes);
            } else {
                fits = false;
            }
            *n += bytes.len();
        };
        loop {
            let c = *self.s.get(self.pos).ok_or(JsonError::Syntax(self.pos))?;
            self.pos += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let e = *self.s.get(self.pos).ok_or(JsonError::Syntax(self.pos))?;
                    self.pos += 1;
                    let simple = match e {
                        b'"' => Some(b'"'),
                        b'\\' => Some(b'\\'),
                        b'/' => Some(b'/'),
                        b'b' => Some(8),
                        b'f' => Some(12),
                        b'n' => Some(b'\n'),
                        b'r' => Some(b'\r'),
                        b't' => Some(b'\t'),
                        b'u' => None,
                        _ => return Err(JsonError::Syntax(self.pos - 1)),
                    };
                    if let Some(b) = simple {
                        put(&[b], &mut n);
                        continue;
                    }
                    let mut cp = self.hex4()?;
                    if (0xd800..0xdc00).contains(&cp) {
                        if self.s.get(self.pos..self.pos + 2) != Some(b"\\u") {
                            return Err(JsonError::Syntax(self.pos));
                        }
                        self.pos += 2;
                        let lo = self.hex4()?;
                        if !(0xdc00..0xe000).contains(&lo) {
                            return Err(JsonError::Syntax(self.pos));
                        }
                        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    }
                    let ch = char::from_u32(cp).ok_or(JsonError::Syntax(self.pos))?;
                    let mut buf = [0u8; 4];
                    put(ch.encode_utf8(&mut buf).as_bytes(), &mut n);
                }
                0..=0x1f => return Err(JsonError::Syntax(self.pos - 1)),
                _ => put(&[c], &mut n),
            }
        }
        Ok(if fits { Some(n) } else { None })
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let h = self
            .s
            .get(self.pos..self.pos + 4)
            .ok_or(JsonError::Syntax(self.pos))?;
        let mut v = 0u32;
        for &c in h {
            let d = (c as char)
                .to_digit(16)
                .ok_or(JsonError::Syntax(self.pos))?;
            v = v * 16 + d;
        }
        self.pos += 4;
        Ok(v)
    }

    /// Read an unsigned integer.
    pub fn uint(&mut self) -> Result<u64, JsonError> {
        self.ws();
        let start = self.pos;
        let mut v: u64 = 0;
        while let Some(&c) = self.s.get(self.pos) {
            if !c.is_ascii_digit() {
                break;
            }
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add((c - b'0') as u64))
                .ok_or(JsonError::Type(start))?;
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.type_err());
        }
        if matches!(self.s.get(self.pos), Some(b'.' | b'e' | b'E')) {
            return Err(JsonError::Type(start));
        }
        Ok(v)
    }

    /// Skip any value, checking its syntax.
    pub fn skip(&mut self) -> Result<(), JsonError> {
        match self.peek() {
            Some(b'{') => self.object(|j, _| j.skip()),
            Some(b'[') => self.array(Self::skip),
            Some(b'"') => self.string_into(&mut []).map(|_| ()),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => {
                let start = self.pos;
                while let Some(&c) = self.s.get(self.pos) {
                    if matches!(c, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                        self.pos += 1;
                    } else {
                        break;
                    }
                }
                if self.pos == start {
                    Err(JsonError::Syntax(start))
                } else {
                    Ok(())
                }
            }
            _ => Err(JsonError::Syntax(self.pos)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_escapes() {
        let mut j = Json::new(br#" "a\"b\\c\n\u00e9\ud83d\ude00" "#);
        let mut out = [0u8; 32];
        let n = j.string_into(&mut out).unwrap().unwrap();
        assert_eq!(core::str::from_utf8(&out[..n]).unwrap(), "a\"b\\c\né😀");
        j.end().unwrap();
    }

    #[test]
    fn too_deep_is_an_error() {
        let mut s = [b'['; 100];
        s[99] = b']';
        assert_eq!(Json::new(&s).skip(), Err(JsonError::TooDeep));
    }

    #[test]
    fn skip_mixed() {
        let mut j = Json::new(br#"{"a":[1,-2.5e3,true,false,null,{"b":"c"}],"d":{}}"#);
        j.skip().unwrap();
        j.end().unwrap();
        assert!(Json::new(b"{\"a\":}").skip().is_err());
        assert!(Json::new(b"[1,]").skip().is_err());
    }
}
