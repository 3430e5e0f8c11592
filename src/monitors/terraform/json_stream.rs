//! Streaming over a large top-level JSON object with bounded memory.
//!
//! Reads the document in chunks; each top-level member value (and each element
//! of a top-level array, such as a state's `resources`) is located by a small
//! structural scan and then deserialized by serde_json from a slice, which is
//! several times faster than `serde_json::from_reader`. Only one member or
//! element is buffered at a time, so a 150 MB state costs a few MB of buffer.
//! Errors carry positions only.

use std::io::Read;

use serde::de::DeserializeOwned;

use super::state::ParseError;

/// Initial buffer; it doubles when one member or element does not fit.
const CHUNK: usize = 256 << 10;
/// The buffer never grows past this: one member or element (say an
/// unterminated string in a sparse file) larger than this is an error, so one
/// read holds at most this much whatever the file size.
pub const MAX_VALUE: usize = 64 << 20;

/// Cursor over a top-level JSON object read from `R`.
pub struct ObjectStream<R> {
    reader: R,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    eof: bool,
    /// Largest buffer (one value must fit): [`MAX_VALUE`] unless set for tests.
    max_value: usize,
    /// Held once the buffer grew past [`crate::core::safe_open::LARGE_READ`]: bounds
    /// how many large reads hold memory at once.
    large: Option<crate::core::safe_open::LargeReadPermit>,
    /// Newlines in bytes already discarded from `buf`.
    line_base: usize,
    /// Bytes since the last discarded newline, at the start of `buf`.
    col_base: usize,
    first_member: bool,
    what: &'static str,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The index of the first `"` or `\\` in `s`: a plain loop over the first
/// bytes (escape-heavy strings have them every few bytes, where a SIMD
/// search costs more to set up than it saves), then `memchr2`.
#[inline]
pub(crate) fn quote_or_backslash(s: &[u8]) -> Option<usize> {
    const SHORT: usize = 16;
    for (k, &c) in s.iter().take(SHORT).enumerate() {
        if c == b'"' || c == b'\\' {
            return Some(k);
        }
    }
    if s.len() <= SHORT {
        return None;
    }
    memchr::memchr2(b'"', b'\\', &s[SHORT..]).map(|k| k + SHORT)
}

/// The index of the first non-whitespace byte at or after `i` (or `s.len()`):
/// runs of whitespace (a newline and pretty-printed indentation) are skipped
/// 16 bytes at a time.
#[inline]
pub(crate) fn skip_ws(s: &[u8], mut i: usize) -> usize {
    loop {
        // Most calls find a token at once (`":"`, `,`).
        if !s.get(i).is_some_and(|&c| is_ws(c)) {
            return i;
        }
        match s.get(i..i + 16).and_then(|c| <&[u8; 16]>::try_from(c).ok()) {
            Some(chunk) => {
                let ws = ws16(chunk);
                if ws != 0xffff {
                    return i + (!ws).trailing_zeros() as usize;
                }
                i += 16;
            }
            None => i += 1,
        }
    }
}

/// A bit per byte of `chunk` (bit `k` for byte `k`) that is JSON whitespace.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn ws16(chunk: &[u8; 16]) -> u32 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of the x86-64 baseline (always enabled), and
    // `chunk` is 16 readable bytes (`_mm_loadu_si128` needs no alignment).
    unsafe {
        let v = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
        let is = |c: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8));
        let ws = _mm_or_si128(_mm_or_si128(is(b' '), is(b'\n')), _mm_or_si128(is(b'\t'), is(b'\r')));
        _mm_movemask_epi8(ws) as u32
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn ws16(chunk: &[u8; 16]) -> u32 {
    ws16_portable(chunk)
}

#[cfg(any(not(target_arch = "x86_64"), test))]
fn ws16_portable(chunk: &[u8; 16]) -> u32 {
    chunk
        .iter()
        .enumerate()
        .fold(0, |m, (k, &c)| m | (u32::from(is_ws(c)) << k))
}

/// The number of `\n` in `s`. Every byte read passes here once (line numbers
/// for error positions), so it counts 16 bytes at a time in byte lanes
/// (`memchr_iter(..).count()` stops at every newline: millions of them in a
/// pretty-printed state).
#[cfg(target_arch = "x86_64")]
pub(crate) fn count_newlines(s: &[u8]) -> usize {
    use std::arch::x86_64::{
        __m128i, _mm_add_epi8, _mm_cmpeq_epi8, _mm_cvtsi128_si64, _mm_loadu_si128, _mm_sad_epu8,
        _mm_set1_epi8, _mm_setzero_si128, _mm_sub_epi8, _mm_unpackhi_epi64,
    };
    let mut blocks = s.chunks_exact(64);
    let mut n = 0usize;
    // SAFETY: SSE2 is part of the x86-64 baseline (always enabled), and each
    // block is 64 readable bytes, loaded as four unaligned 16-byte vectors
    // (`_mm_loadu_si128` needs no alignment).
    unsafe {
        let newline = _mm_set1_epi8(b'\n' as i8);
        let zero = _mm_setzero_si128();
        let sum = |acc: __m128i| {
            // Byte lanes summed into the two 64-bit halves.
            let sums = _mm_sad_epu8(acc, zero);
            (_mm_cvtsi128_si64(sums) + _mm_cvtsi128_si64(_mm_unpackhi_epi64(sums, sums))) as usize
        };
        let mut acc = zero;
        let mut in_acc = 0;
        for block in &mut blocks {
            // A match is -1 (0xff): the sum of four is -4..0 per lane, and
            // subtracting it counts up to four in that lane.
            let is = |k: usize| {
                let v = _mm_loadu_si128(block.as_ptr().add(16 * k).cast::<__m128i>());
                _mm_cmpeq_epi8(v, newline)
            };
            let m = _mm_add_epi8(_mm_add_epi8(is(0), is(1)), _mm_add_epi8(is(2), is(3)));
            acc = _mm_sub_epi8(acc, m);
            in_acc += 1;
            // 63 x 4 = 252: no lane overflows.
            if in_acc == 63 {
                n += sum(acc);
                acc = zero;
                in_acc = 0;
            }
        }
        n += sum(acc);
    }
    n + count_newlines_portable(blocks.remainder())
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn count_newlines(s: &[u8]) -> usize {
    count_newlines_portable(s)
}

/// [`count_newlines`] in byte lanes of 255 bytes, which compilers vectorise.
fn count_newlines_portable(s: &[u8]) -> usize {
    s.chunks(255)
        .map(|c| c.iter().fold(0u8, |n, &b| n + u8::from(b == b'\n')) as usize)
        .sum()
}

/// Where a complete value starting at `s[0]` ends (exclusive), or `None` if `s` ends first.
pub(crate) fn value_end(s: &[u8]) -> Option<usize> {
    let first = *s.first()?;
    match first {
        b'"' => string_end(s, 1),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = 0;
            while i < s.len() {
                match s[i] {
                    b'"' => {
                        i = string_end(s, i + 1)?;
                        continue;
                    }
                    b' ' | b'\n' => {
                        i = skip_ws(s, i);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        _ => {
            // A scalar: up to the next delimiter (it must not be cut by the buffer end).
            let end = s
                .iter()
                .position(|&b| is_ws(b) || matches!(b, b',' | b'}' | b']'))?;
            Some(end.max(1))
        }
    }
}

/// End (exclusive) of a string whose opening quote is at `from - 1`.
fn string_end(s: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let i = from + quote_or_backslash(s.get(from..)?)?;
        if s[i] == b'\\' {
            from = i + 2;
            if from > s.len() {
                return None;
            }
        } else {
            return Some(i + 1);
        }
    }
}

impl<R: Read> ObjectStream<R> {
    /// Start reading; fails with `Empty` for an empty/blank document and with a
    /// syntax or schema error when the document is not a JSON object.
    pub fn new(reader: R, what: &'static str) -> Result<Self, ParseError> {
        let mut s = ObjectStream {
            reader,
            buf: vec![0; CHUNK],
            pos: 0,
            len: 0,
            eof: false,
            max_value: MAX_VALUE,
            large: None,
            line_base: 0,
            col_base: 0,
            first_member: true,
            what,
        };
        match s.peek_non_ws()? {
            None => Err(ParseError::Empty),
            Some(b'{') => {
                s.pos += 1;
                Ok(s)
            }
            Some(b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => {
                Err(ParseError::Schema {
                    line: 1,
                    column: 1,
                    what,
                })
            }
            Some(_) => Err(s.syntax_here()),
        }
    }

    /// Lower the per-value limit (tests).
    pub fn with_max_value(mut self, max: usize) -> Self {
        self.max_value = max.max(CHUNK);
        self
    }

    /// The first bytes of the document (for sniffing), as far as buffered.
    pub fn head(&self) -> &[u8] {
        if self.line_base == 0 && self.col_base == 0 {
            &self.buf[..self.len.min(4096)]
        } else {
            &[]
        }
    }

    /// Read more input, compacting the buffer; false at end of input.
    fn fill(&mut self) -> Result<bool, ParseError> {
        if self.eof {
            return Ok(false);
        }
        if self.pos > 0 {
            let gone = &self.buf[..self.pos];
            let nl = count_newlines(gone);
            if nl > 0 {
                self.line_base += nl;
                self.col_base = self.pos - memchr::memrchr(b'\n', gone).map(|i| i + 1).unwrap_or(0);
            } else {
                self.col_base += self.pos;
            }
            self.buf.copy_within(self.pos..self.len, 0);
            self.len -= self.pos;
            self.pos = 0;
        }
        if self.len == self.buf.len() {
            if self.buf.len() >= self.max_value {
                let (line, column) = self.position(self.pos);
                return Err(ParseError::ValueTooLarge {
                    line,
                    column,
                    limit_mib: self.max_value >> 20,
                });
            }
            let new_len = (self.buf.len() * 2).min(self.max_value);
            if new_len as u64 > crate::core::safe_open::LARGE_READ && self.large.is_none() {
                self.large = Some(crate::core::safe_open::LargeReadPermit::acquire());
            }
            self.buf.resize(new_len, 0);
        }
        loop {
            match self.reader.read(&mut self.buf[self.len..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.len += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ParseError::Io(format!("{:?}", e.kind()))),
            }
        }
    }

    fn peek_non_ws(&mut self) -> Result<Option<u8>, ParseError> {
        loop {
            while self.pos < self.len {
                let b = self.buf[self.pos];
                if !is_ws(b) {
                    return Ok(Some(b));
                }
                self.pos += 1;
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    /// (line, column) of buffer offset `at` (1-based).
    fn position(&self, at: usize) -> (usize, usize) {
        let before = &self.buf[..at.min(self.len)];
        let nl = count_newlines(before);
        let col = match memchr::memrchr(b'\n', before) {
            Some(i) => at - i,
            None => self.col_base + at + 1,
        };
        (self.line_base + nl + 1, col)
    }

    fn syntax_here(&self) -> ParseError {
        let (line, column) = self.position(self.pos);
        ParseError::Syntax { line, column }
    }

    fn truncated(&self) -> ParseError {
        let (line, column) = self.position(self.len);
        ParseError::Truncated { line, column }
    }

    fn map_err(&self, slice_start: usize, e: &serde_json::Error) -> ParseError {
        let (l0, c0) = self.position(slice_start);
        let (line, column) = if e.line() <= 1 {
            (l0, c0 + e.column().saturating_sub(1))
        } else {
            (l0 + e.line() - 1, e.column())
        };
        let mut err = ParseError::from_json(e, self.what);
        match &mut err {
            ParseError::Truncated { line: l, column: c }
            | ParseError::Syntax { line: l, column: c }
            | ParseError::Schema {
                line: l, column: c, ..
            } => {
                *l = line;
                *c = column;
            }
            _ => {}
        }
        err
    }

    /// Locate the complete value at the cursor; returns its buffer range.
    fn scan_value(&mut self) -> Result<(usize, usize), ParseError> {
        if self.peek_non_ws()?.is_none() {
            return Err(self.truncated());
        }
        loop {
            if let Some(n) = value_end(&self.buf[self.pos..self.len]) {
                return Ok((self.pos, self.pos + n));
            }
            if !self.fill()? {
                // A scalar may legitimately end at end of input only at top level,
                // which never happens inside an object: the document is cut short.
                return Err(self.truncated());
            }
        }
    }

    /// Next member key, or `None` after the closing brace.
    pub fn next_key(&mut self) -> Result<Option<String>, ParseError> {
        match self.peek_non_ws()? {
            None => return Err(self.truncated()),
            Some(b'}') => {
                self.pos += 1;
                return Ok(None);
            }
            Some(b',') if !self.first_member => {
                self.pos += 1;
            }
            Some(b'"') if self.first_member => {}
            Some(_) => return Err(self.syntax_here()),
        }
        if self.peek_non_ws()? != Some(b'"') {
            return Err(if self.len == self.pos {
                self.truncated()
            } else {
                self.syntax_here()
            });
        }
        self.first_member = false;
        let (a, b) = self.scan_value()?;
        let key: String =
            serde_json::from_slice(&self.buf[a..b]).map_err(|e| self.map_err(a, &e))?;
        self.pos = b;
        match self.peek_non_ws()? {
            Some(b':') => {
                self.pos += 1;
                Ok(Some(key))
            }
            None => Err(self.truncated()),
            Some(_) => Err(self.syntax_here()),
        }
    }

    /// Deserialize the current member's value.
    pub fn value<T: DeserializeOwned>(&mut self) -> Result<T, ParseError> {
        self.raw_value(|raw| serde_json::from_slice(raw))
    }

    /// Hand the current member's JSON text (one value, as buffered) to `f`,
    /// which may read it more than once (e.g. into a summary and into a policy
    /// input); its errors get the value's position in the document.
    pub fn raw_value<T>(
        &mut self,
        f: impl FnOnce(&[u8]) -> Result<T, serde_json::Error>,
    ) -> Result<T, ParseError> {
        let (a, b) = self.scan_value()?;
        let v = f(&self.buf[a..b]).map_err(|e| self.map_err(a, &e))?;
        self.pos = b;
        Ok(v)
    }

    /// Skip the current member's value.
    pub fn skip(&mut self) -> Result<(), ParseError> {
        let (_, b) = self.scan_value()?;
        self.pos = b;
        Ok(())
    }

    /// The current member's value is an array (or null): deserialize and hand
    /// over its elements one at a time. Returns false for null.
    pub fn each<T: DeserializeOwned>(&mut self, mut f: impl FnMut(T)) -> Result<bool, ParseError> {
        self.each_raw(|raw| {
            f(serde_json::from_slice(raw)?);
            Ok(())
        })
    }

    /// Steps into an array: false for `null` (consumed), true past its `[`;
    /// anything else is a schema error at its position.
    fn open_array(&mut self) -> Result<bool, ParseError> {
        match self.peek_non_ws()? {
            None => return Err(self.truncated()),
            Some(b'n') => {
                let () = self.value::<()>()?;
                return Ok(false);
            }
            Some(b'[') => self.pos += 1,
            Some(_) => {
                let (line, column) = self.position(self.pos);
                return Err(ParseError::Schema {
                    line,
                    column,
                    what: self.what,
                });
            }
        }
        Ok(true)
    }

    /// [`Self::each`] over the elements' JSON text (see [`Self::raw_value`]).
    pub fn each_raw(
        &mut self,
        mut f: impl FnMut(&[u8]) -> Result<(), serde_json::Error>,
    ) -> Result<bool, ParseError> {
        if !self.open_array()? {
            return Ok(false);
        }
        let mut first = true;
        loop {
            match self.peek_non_ws()? {
                None => return Err(self.truncated()),
                Some(b']') => {
                    self.pos += 1;
                    return Ok(true);
                }
                Some(b',') if !first => self.pos += 1,
                Some(_) if first => {}
                Some(_) => return Err(self.syntax_here()),
            }
            first = false;
            self.raw_value(&mut f)?;
        }
    }

    /// [`Self::each_raw`] with a fast path: `fast` is tried first on the
    /// buffered bytes at each element and returns the element and its length
    /// when it read one completely and validly; otherwise (invalid, unusual,
    /// or not all buffered) the element is located by the structural scan
    /// and handed to `slow`, whose errors are the reference. So a valid
    /// element is read in one pass, and every error is `slow`'s, with its
    /// exact position. `f` gets each element with its JSON text.
    pub fn each_raw_fast<T>(
        &mut self,
        mut fast: impl FnMut(&[u8]) -> Option<(T, usize)>,
        mut slow: impl FnMut(&[u8]) -> Result<T, serde_json::Error>,
        mut f: impl FnMut(T, &[u8]),
    ) -> Result<bool, ParseError> {
        if !self.open_array()? {
            return Ok(false);
        }
        let mut first = true;
        // The largest element so far: keep a quarter more than that
        // buffered, so that the fast path usually sees a whole element.
        let mut largest = 0usize;
        loop {
            match self.peek_non_ws()? {
                None => return Err(self.truncated()),
                Some(b']') => {
                    self.pos += 1;
                    return Ok(true);
                }
                Some(b',') if !first => self.pos += 1,
                Some(_) if first => {}
                Some(_) => return Err(self.syntax_here()),
            }
            first = false;
            if self.peek_non_ws()?.is_none() {
                return Err(self.truncated());
            }
            let want = (largest + largest / 4).clamp(CHUNK / 2, self.max_value / 2);
            self.ensure(want)?;
            if let Some((v, n)) = fast(&self.buf[self.pos..self.len]) {
                let (a, b) = (self.pos, self.pos + n);
                f(v, &self.buf[a..b]);
                self.pos = b;
                largest = largest.max(n);
                continue;
            }
            let (a, b) = self.scan_value()?;
            let v = slow(&self.buf[a..b]).map_err(|e| self.map_err(a, &e))?;
            f(v, &self.buf[a..b]);
            self.pos = b;
            largest = largest.max(b - a);
        }
    }

    /// Buffer at least `n` bytes from the cursor, or all that is left.
    fn ensure(&mut self, n: usize) -> Result<(), ParseError> {
        while self.len - self.pos < n && !self.eof {
            if self.buf.len() < n {
                let new_len = n.min(self.max_value);
                if new_len as u64 > crate::core::safe_open::LARGE_READ && self.large.is_none() {
                    self.large = Some(crate::core::safe_open::LargeReadPermit::acquire());
                }
                if new_len > self.buf.len() {
                    self.buf.resize(new_len, 0);
                }
            }
            if !self.fill()? {
                break;
            }
        }
        Ok(())
    }

    /// After the closing brace: only whitespace may follow.
    pub fn finish(&mut self) -> Result<(), ParseError> {
        match self.peek_non_ws()? {
            None => Ok(()),
            Some(_) => Err(self.syntax_here()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_end_handles_strings_escapes_and_nesting() {
        assert_eq!(value_end(br#""a\"b" ,"#), Some(6));
        assert_eq!(value_end(br#"{"a":["}",{"b":"\\"}]} x"#), Some(22));
        assert_eq!(value_end(b"123,"), Some(3));
        assert_eq!(value_end(b"123"), None);
        assert_eq!(value_end(br#"{"a": "unterminated"#), None);
        assert_eq!(value_end(br#""ends with backslash\"#), None);
    }

    #[test]
    fn whitespace_and_newlines_are_counted_exactly() {
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet = b" \n\t\r{\"a:,\x0b\x0c\x00\xa0";
        for len in 0..600 {
            // Mostly whitespace, so that runs cross 16-byte blocks.
            let s: Vec<u8> = (0..len)
                .map(|_| match next() % 4 {
                    0 => alphabet[(next() % alphabet.len() as u64) as usize],
                    _ => b" \n"[(next() % 2) as usize],
                })
                .collect();
            let want = s.iter().filter(|&&c| c == b'\n').count();
            assert_eq!(count_newlines(&s), want, "{s:?}");
            assert_eq!(count_newlines_portable(&s), want);
            for i in 0..=s.len() {
                let want = s[i..].iter().position(|&c| !is_ws(c)).map_or(s.len(), |k| i + k);
                assert_eq!(skip_ws(&s, i), want, "{i} {s:?}");
            }
            if let Some(c) = s.get(..16).and_then(|c| <&[u8; 16]>::try_from(c).ok()) {
                assert_eq!(ws16(c), ws16_portable(c));
            }
        }
        // Over 255 blocks of newlines (the lane counters are flushed).
        let many = vec![b'\n'; 16 * 700 + 5];
        assert_eq!(count_newlines(&many), many.len());
        assert_eq!(skip_ws(&many, 3), many.len());
    }

    /// A reader that returns one byte at a time (worst case for chunking).
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            match self.0.split_first() {
                Some((b, rest)) if !out.is_empty() => {
                    out[0] = *b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn members_and_elements_survive_tiny_reads() {
        let doc = br#" { "a" : 1, "list": [ {"x": "}]"}, {"x": "y"} ] , "n": null, "s": "t" } "#;
        let mut s = ObjectStream::new(Trickle(doc), "test").unwrap();
        assert_eq!(s.next_key().unwrap().as_deref(), Some("a"));
        assert_eq!(s.value::<u64>().unwrap(), 1);
        assert_eq!(s.next_key().unwrap().as_deref(), Some("list"));
        let mut got = Vec::new();
        assert!(s
            .each(|v: serde_json::Value| got.push(v["x"].as_str().unwrap().to_string()))
            .unwrap());
        assert_eq!(got, vec!["}]", "y"]);
        assert_eq!(s.next_key().unwrap().as_deref(), Some("n"));
        assert!(!s.each(|_: serde_json::Value| ()).unwrap());
        assert_eq!(s.next_key().unwrap().as_deref(), Some("s"));
        s.skip().unwrap();
        assert_eq!(s.next_key().unwrap(), None);
        s.finish().unwrap();
    }

    /// A reader of endless bytes (a string that never ends, as in a sparse file).
    struct Endless(u8);
    impl Read for Endless {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            out.fill(self.0);
            Ok(out.len())
        }
    }

    #[test]
    fn one_value_never_buffers_more_than_the_limit() {
        let doc = std::io::Cursor::new(&b"{\"a\": \""[..]).chain(Endless(b'x'));
        let mut s = ObjectStream::new(doc, "test")
            .unwrap()
            .with_max_value(1 << 20);
        s.next_key().unwrap();
        let e = s.skip().unwrap_err();
        assert!(
            matches!(
                e,
                ParseError::ValueTooLarge {
                    line: 1,
                    limit_mib: 1,
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(e.metric_label(), "too_large");
        assert!(s.buf.len() <= 1 << 20, "{}", s.buf.len());
        // The default limit holds too (an endless zero-filled file).
        let doc = std::io::Cursor::new(&b"{\"a\": \""[..]).chain(Endless(0));
        let mut s = ObjectStream::new(doc, "test").unwrap();
        s.next_key().unwrap();
        assert!(matches!(s.skip(), Err(ParseError::ValueTooLarge { .. })));
        assert!(s.buf.len() <= MAX_VALUE);
    }

    #[test]
    fn errors_have_positions() {
        let doc = b"{\n  \"a\": 1,\n  \"b\": [1, 2\n";
        let mut s = ObjectStream::new(&doc[..], "test").unwrap();
        s.next_key().unwrap();
        s.skip().unwrap();
        s.next_key().unwrap();
        let e = s.each(|_: u64| ()).unwrap_err();
        assert!(matches!(e, ParseError::Truncated { line: 4, .. }), "{e:?}");
        let doc = b"{\n  \"a\": 1,\n  \"b\": {\"x\": tru}\n}";
        let mut s = ObjectStream::new(&doc[..], "test").unwrap();
        s.next_key().unwrap();
        s.skip().unwrap();
        s.next_key().unwrap();
        let e = s.value::<serde_json::Value>().unwrap_err();
        assert!(matches!(e, ParseError::Syntax { line: 3, .. }), "{e:?}");
        let e = ObjectStream::new(&b"{} x"[..], "t").and_then(|mut s| {
            s.next_key()?;
            s.finish()
        });
        assert!(matches!(e, Err(ParseError::Syntax { .. })));
    }
}
