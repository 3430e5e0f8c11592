//! Hashing attribute values while they stream past, without keeping them.
//!
//! State files hold secrets in attribute values. To detect *which* attributes
//! changed (against a baseline, or since the last read) we keep only a 64-bit
//! hash per top-level attribute, never a value. Hashes are compared inside one
//! process and are never exported.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::Hasher;
use std::sync::{Arc, Mutex, Weak};

use rustc_hash::{FxHashMap, FxHasher};
use serde::de::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// Attribute names seen while parsing one document, in first-seen order.
/// Documents that saw the same names in the same order (a fleet of similar
/// states, the same state read again) share one table.
#[derive(Debug, Default, Clone)]
pub struct PathTable {
    names: Arc<[Box<str>]>,
}

/// The table being filled while one document is parsed.
#[derive(Debug, Default)]
struct TableBuilder {
    names: Vec<Box<str>>,
    /// (Fx, not SipHash: looked up for every attribute of every instance.)
    index: FxHashMap<Box<str>, u32>,
    /// Ids of the last attributes object's keys, by position: the next
    /// instance of a resource usually has the same keys in the same order.
    recent: Vec<u32>,
}

impl PathTable {
    pub fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map(|s| &**s).unwrap_or("?")
    }

    /// Estimated heap bytes, this table's share when several documents hold it.
    pub fn estimated_bytes(&self) -> usize {
        let own = self.names.len() * std::mem::size_of::<Box<str>>()
            + self.names.iter().map(|n| n.len()).sum::<usize>();
        own / Arc::strong_count(&self.names).max(1)
    }

    /// Whether `self` and `other` are one shared table (tests).
    pub fn shares(&self, other: &PathTable) -> bool {
        Arc::ptr_eq(&self.names, &other.names)
    }

    /// The shared table with these names: the one already held by another
    /// document, else a new one (remembered weakly: it goes with its last holder).
    fn share(names: Vec<Box<str>>) -> PathTable {
        type Cache = HashMap<u64, Vec<Weak<[Box<str>]>>>;
        static TABLES: Mutex<Option<(Cache, usize)>> = Mutex::new(None);
        if names.is_empty() {
            return PathTable::default();
        }
        let mut h = FxHasher::default();
        for n in &names {
            h.write(n.as_bytes());
            h.write_u8(0xff);
        }
        let key = h.finish();
        let mut guard = TABLES.lock().unwrap_or_else(|e| e.into_inner());
        let (cache, prune_at) = guard.get_or_insert_with(|| (HashMap::new(), 1024));
        let bucket = cache.entry(key).or_default();
        bucket.retain(|w| w.strong_count() > 0);
        if let Some(found) = bucket
            .iter()
            .filter_map(Weak::upgrade)
            .find(|t| **t == *names)
        {
            return PathTable { names: found };
        }
        let names: Arc<[Box<str>]> = names.into();
        bucket.push(Arc::downgrade(&names));
        // Forget the tables nobody holds any more, now and then: the cache
        // stays within twice the tables alive.
        if cache.len() > *prune_at {
            cache.retain(|_, b| {
                b.retain(|w| w.strong_count() > 0);
                !b.is_empty()
            });
            *prune_at = (2 * cache.len()).max(1024);
        }
        PathTable { names }
    }
}

impl TableBuilder {
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.index.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.into());
        self.index.insert(name.into(), id);
        id
    }

    fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map(|s| &**s).unwrap_or("?")
    }

    /// [`Self::intern`] for the key at position `pos` of an attributes
    /// object: the id of the key at that position last time when it is the
    /// same name (one comparison, no hashing).
    fn intern_at(&mut self, pos: usize, key: &[u8]) -> u32 {
        if let Some(&id) = self.recent.get(pos) {
            if self.names.get(id as usize).map(|n| n.as_bytes()) == Some(key) {
                return id;
            }
        }
        let id = match std::str::from_utf8(key) {
            Ok(name) => self.intern(name),
            Err(_) => self.intern(&String::from_utf8_lossy(key)),
        };
        if pos < self.recent.len() {
            self.recent[pos] = id;
        } else if pos == self.recent.len() {
            self.recent.push(id);
        }
        id
    }
}

thread_local! {
    static TABLE: RefCell<TableBuilder> = RefCell::new(TableBuilder::default());
}

/// Run `f` with a fresh path table on this thread, and return the table it
/// filled (shared with the documents that have the same one).
pub fn with_path_table<T>(f: impl FnOnce() -> T) -> (T, PathTable) {
    TABLE.with(|t| *t.borrow_mut() = TableBuilder::default());
    let out = f();
    let table = TABLE.with(|t| std::mem::take(&mut *t.borrow_mut()));
    (out, PathTable::share(table.names))
}

/// [`TableBuilder::intern_at`] on this thread's table (lossy: the callers'
/// keys are valid UTF-8).
fn intern_at(pos: usize, name: &[u8]) -> u32 {
    TABLE.with(|t| t.borrow_mut().intern_at(pos, name))
}

/// Digest of an attributes object: one hash of everything, one per top-level attribute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttrDigest {
    /// 64-bit hash of every attribute: decides whether the object changed.
    pub whole: u64,
    /// (path id in the document's [`PathTable`], value hash folded to 32
    /// bits), sorted by id. Kept per instance of every state (issue 21: 8
    /// bytes an attribute, not 16); they only name *which* attributes
    /// changed once `whole` said something did, so a 32-bit collision (one
    /// in four billion per changed attribute) can leave one name out of a
    /// change event, never hide the change.
    pub paths: Box<[(u32, u32)]>,
}

impl AttrDigest {
    /// The digest of an object from its attributes' 64-bit value hashes
    /// (sorted by id): `whole` from the full hashes, the paths folded.
    fn from_paths(whole: u64, paths: &[(u32, u64)]) -> Self {
        AttrDigest {
            whole,
            paths: paths.iter().map(|&(id, h)| (id, fold(h))).collect(),
        }
    }

    /// Names of the attributes whose hash differs between `self` and `other`
    /// (present in only one of them counts as changed), sorted.
    pub fn changed_paths(
        &self,
        table: &PathTable,
        other: &AttrDigest,
        other_table: &PathTable,
    ) -> Vec<String> {
        changed_names(
            self.paths.iter().map(|(id, h)| (table.name(*id), *h)),
            other.paths.iter().map(|(id, h)| (other_table.name(*id), *h)),
        )
    }
}

/// Names whose hash differs between two (name, hash) lists (present in
/// only one counts as changed), sorted.
pub(crate) fn changed_names<'a, 'b>(
    mine: impl Iterator<Item = (&'a str, u32)>,
    theirs: impl Iterator<Item = (&'b str, u32)>,
) -> Vec<String> {
    let mine: HashMap<&str, u32> = mine.collect();
    let theirs: HashMap<&str, u32> = theirs.collect();
    let mut out: Vec<String> = mine
        .iter()
        .filter(|(k, h)| theirs.get(*k) != Some(*h))
        .map(|(k, _)| (*k).to_string())
        .chain(
            theirs
                .keys()
                .filter(|k| !mine.contains_key(*k))
                .map(|k| (*k).to_string()),
        )
        .collect();
    out.sort();
    out.dedup();
    out
}

impl<'de> Deserialize<'de> for AttrDigest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // The raw text, borrowed from the document (serde_json has checked its
        // syntax): numbers are compared by their decimal value, which serde's
        // number types cannot carry (integers over 64 bits, 1e400).
        let raw = <&'de RawValue>::deserialize(d)?;
        Ok(digest_raw(raw.get().as_bytes()))
    }
}

/// Digest of one JSON value: per top-level member for an object, else whole.
fn digest_raw(text: &[u8]) -> AttrDigest {
    let mut w = Walker {
        b: text,
        i: 0,
        depth: 0,
    };
    w.ws();
    match w.peek() {
        Some(b'{') => {
            let mut paths = Vec::new();
            w.object(|w, key| {
                let id = intern_at(paths.len(), &key);
                let h = w.value();
                paths.push((id, h));
            });
            paths.sort_unstable_by_key(|p| p.0);
            // Combine name hashes (not ids: ids depend on first-seen order) with
            // value hashes, independently of order, so digests of two documents compare.
            let whole = TABLE.with(|t| {
                let t = t.borrow();
                paths.iter().fold(paths.len() as u64, |acc, (id, h)| {
                    let mut hn = FxHasher::default();
                    hn.write(t.name(*id).as_bytes());
                    acc.wrapping_add(mix(hn.finish(), *h))
                })
            });
            AttrDigest::from_paths(whole, &paths)
        }
        // null: nothing; another scalar or an array: hashed whole, no paths.
        Some(b'n') | None => AttrDigest::default(),
        Some(_) => AttrDigest {
            whole: w.value(),
            paths: Box::default(),
        },
    }
}

/// A 64-bit hash folded to 32 bits (both halves count).
fn fold(h: u64) -> u32 {
    (h ^ (h >> 32)) as u32
}

fn mix(a: u64, b: u64) -> u64 {
    let mut h = FxHasher::default();
    h.write_u64(a);
    h.write_u64(b);
    h.finish()
}

fn tagged(tag: u8, f: impl FnOnce(&mut FxHasher)) -> u64 {
    let mut h = FxHasher::default();
    h.write_u8(tag);
    f(&mut h);
    h.finish()
}

/// Hashes JSON values from text already validated by serde_json. Equal
/// values (cty semantics) hash equally: maps independently of key order,
/// strings after unescaping, numbers by decimal value (`80` = `80.0` = `8e1`,
/// integers of any size exact, exponents beyond f64 accepted).
struct Walker<'a> {
    b: &'a [u8],
    i: usize,
    /// Nesting depth at the cursor.
    depth: usize,
}

/// Deeper objects and arrays are hashed by their text (no recursion, so a
/// hostile document cannot exhaust the stack; serde_json's own limit is 128).
const MAX_DEPTH: usize = 128;

impl<'a> Walker<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// Skip `c` (and the whitespace after it) if it is next.
    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            self.ws();
            true
        } else {
            false
        }
    }

    /// Hash of the value at the cursor; the cursor moves past it.
    fn value(&mut self) -> u64 {
        self.ws();
        if self.depth >= MAX_DEPTH && matches!(self.peek(), Some(b'{' | b'[')) {
            let start = self.i;
            self.i = super::json_stream::value_end(&self.b[start..])
                .map(|n| start + n)
                .unwrap_or(self.b.len());
            return tagged(7, |h| h.write(&self.b[start..self.i]));
        }
        self.depth += 1;
        let h = self.value_inner();
        self.depth -= 1;
        h
    }

    fn value_inner(&mut self) -> u64 {
        match self.peek() {
            Some(b'{') => {
                let mut acc: u64 = 0;
                let mut n = 0usize;
                self.object(|w, key| {
                    let k = hash_str(&key);
                    acc = acc.wrapping_add(mix(k, w.value()));
                    n += 1;
                });
                tagged(6, |h| {
                    h.write_u64(acc);
                    h.write_usize(n);
                })
            }
            Some(b'[') => {
                self.i += 1;
                let mut h = FxHasher::default();
                h.write_u8(5);
                let mut n = 0usize;
                self.ws();
                if !self.eat(b']') {
                    loop {
                        h.write_u64(self.value());
                        n += 1;
                        if !self.eat(b',') {
                            self.eat(b']');
                            break;
                        }
                    }
                }
                h.write_usize(n);
                h.finish()
            }
            Some(b'"') => hash_str(&self.string()),
            Some(b't') => {
                self.i += 4;
                tagged(1, |h| h.write_u8(1))
            }
            Some(b'f') => {
                self.i += 5;
                tagged(1, |h| h.write_u8(0))
            }
            Some(b'n') => {
                self.i += 4;
                tagged(0, |_| {})
            }
            Some(_) => self.number(),
            None => tagged(0, |_| {}),
        }
    }

    /// Walk an object at the cursor, calling `f` with each (unescaped) key
    /// while the cursor is at its value; `f` must consume the value.
    fn object(&mut self, mut f: impl FnMut(&mut Self, Cow<'a, [u8]>)) {
        self.i += 1;
        self.ws();
        if self.eat(b'}') {
            return;
        }
        while self.peek() == Some(b'"') {
            let key = self.string();
            self.eat(b':');
            f(self, key);
            if !self.eat(b',') {
                break;
            }
        }
        self.eat(b'}');
    }

    /// The unescaped string at the cursor (which is at its opening quote),
    /// borrowed from the document when it has no escapes.
    fn string(&mut self) -> Cow<'a, [u8]> {
        let b: &'a [u8] = self.b;
        let start = self.i;
        let mut j = self.i + 1;
        let mut escaped = false;
        loop {
            match b
                .get(j..)
                .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
            {
                Some(k) if b[j + k] == b'\\' => {
                    escaped = true;
                    j += k + 2;
                }
                Some(k) => {
                    j += k;
                    break;
                }
                None => {
                    j = b.len();
                    break;
                }
            }
        }
        let end = (j + 1).min(b.len());
        self.i = end;
        if escaped {
            let text = &b[start.min(end)..end];
            Cow::Owned(
                serde_json::from_slice::<String>(text)
                    .unwrap_or_default()
                    .into_bytes(),
            )
        } else {
            Cow::Borrowed(b.get(start + 1..j).unwrap_or(b""))
        }
    }

    /// Hash of the number at the cursor by its decimal value.
    fn number(&mut self) -> u64 {
        let start = self.i;
        while matches!(
            self.peek(),
            Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
        ) {
            self.i += 1;
        }
        number_hash(&self.b[start..self.i])
    }
}

/// Nesting deeper than this leaves the fast scan to the exact path.
const FAST_DEPTH: usize = 100;

/// A validating scan of JSON text that hashes attribute values exactly as
/// [`Walker`] does, in the same pass: the fast path of the state parser.
///
/// It accepts only what `serde_json` accepts (the JSON grammar, no control
/// characters in strings, valid escapes), and gives up (`None`) on anything
/// else *and* on what it does not handle (lone surrogates, nesting deeper
/// than [`FAST_DEPTH`]): the caller then parses the same bytes with
/// `serde_json`, which produces the exact result or error with its position.
/// Strings are scanned once, 16 bytes at a time, for quotes, backslashes and
/// control characters ([`string_stop`]); only strings with non-ASCII bytes
/// are checked for UTF-8, and only strings with escapes are copied (into one
/// reused buffer) before hashing. Everything outside strings must be ASCII,
/// so an accepted text is valid UTF-8.
pub(crate) struct Scan<'a> {
    b: &'a [u8],
    i: usize,
    depth: usize,
    scratch: Vec<u8>,
    /// Attributes of the last digest (the capacity for the next one).
    paths_hint: usize,
}

impl<'a> Scan<'a> {
    /// A scan of `b`.
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Scan {
            b,
            i: 0,
            depth: 0,
            scratch: Vec::new(),
            paths_hint: 0,
        }
    }

    /// Bytes consumed so far.
    pub(crate) fn offset(&self) -> usize {
        self.i
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    pub(crate) fn ws(&mut self) {
        self.i = super::json_stream::skip_ws(self.b, self.i);
    }

    /// The byte `c` next (after whitespace): consume it.
    #[inline]
    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// Validate the string at the cursor (at its opening quote); the cursor
    /// moves past it. Returns its content range and whether it has escapes.
    /// One pass: [`string_stop`] finds the next quote, backslash or control
    /// character 16 bytes at a time and notes non-ASCII bytes on the way;
    /// only a string that has some is checked for UTF-8 (outside strings
    /// the scan accepts ASCII only, so this is the document's UTF-8 check).
    fn string_span(&mut self) -> Option<(usize, usize, bool)> {
        let b = self.b;
        let start = self.i + 1;
        let mut j = start;
        let mut escaped = false;
        let mut high = false;
        loop {
            let k = string_stop(b, j, &mut high)?;
            match b[k] {
                b'"' => {
                    if high && simdutf8::basic::from_utf8(&b[start..k]).is_err() {
                        return None;
                    }
                    self.i = k + 1;
                    return Some((start, k, escaped));
                }
                b'\\' => {
                    escaped = true;
                    j = match *b.get(k + 1)? {
                        b'u' => unicode_escape(b, k)?.1,
                        c => {
                            simple_escape(c)?;
                            k + 2
                        }
                    };
                }
                // A control character: serde_json refuses them unescaped.
                _ => return None,
            }
        }
    }

    /// [`Self::string_span`] and the hash of the unescaped content
    /// ([`hash_str`]) in one pass: after the first escape, the text is copied
    /// into the reused buffer 16 bytes at a time as it is scanned
    /// ([`string_copy`]); nothing is copied without escapes.
    fn string_hash(&mut self) -> Option<u64> {
        let b = self.b;
        let start = self.i + 1;
        let mut j = start;
        let mut high = false;
        let mut escaped = false;
        loop {
            let k = if escaped {
                string_copy(b, j, &mut high, &mut self.scratch)?
            } else {
                string_stop(b, j, &mut high)?
            };
            match b[k] {
                b'"' => {
                    if high && simdutf8::basic::from_utf8(&b[start..k]).is_err() {
                        return None;
                    }
                    self.i = k + 1;
                    return Some(if escaped {
                        hash_str(&self.scratch)
                    } else {
                        hash_str(&b[start..k])
                    });
                }
                b'\\' => {
                    if !escaped {
                        escaped = true;
                        self.scratch.clear();
                        self.scratch.extend_from_slice(&b[j..k]);
                    }
                    match *b.get(k + 1)? {
                        b'u' => {
                            let (ch, next) = unicode_escape(b, k)?;
                            j = next;
                            let mut buf = [0u8; 4];
                            self.scratch
                                .extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        c => {
                            self.scratch.push(simple_escape(c)?);
                            j = k + 2;
                        }
                    }
                }
                _ => return None,
            }
        }
    }

    /// The unescaped content of a validated string span.
    fn unescaped(&mut self, start: usize, end: usize, escaped: bool) -> &[u8] {
        if !escaped {
            return &self.b[start..end];
        }
        let b = self.b;
        let out = &mut self.scratch;
        out.clear();
        let mut j = start;
        while let Some(k) = backslash(&b[j..end]).map(|k| j + k) {
            out.extend_from_slice(&b[j..k]);
            let c = b[k + 1];
            j = k + 2;
            let byte = if c == b'u' {
                // Validated by string_span: hex digits, surrogates paired.
                let (ch, next) = unicode_escape(b, k).unwrap_or(('\u{FFFD}', k + 6));
                j = next;
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                continue;
            } else {
                simple_escape(c).unwrap_or(c)
            };
            out.push(byte);
        }
        out.extend_from_slice(&b[j..end]);
        &self.scratch
    }

    /// Validate the number at the cursor (JSON grammar); returns its text.
    fn number(&mut self) -> Option<&'a [u8]> {
        let b = self.b;
        let start = self.i;
        let mut j = start;
        if b.get(j) == Some(&b'-') {
            j += 1;
        }
        match b.get(j)? {
            b'0' => j += 1,
            b'1'..=b'9' => {
                while b.get(j).is_some_and(u8::is_ascii_digit) {
                    j += 1;
                }
            }
            _ => return None,
        }
        if b.get(j) == Some(&b'.') {
            j += 1;
            if !b.get(j).is_some_and(u8::is_ascii_digit) {
                return None;
            }
            while b.get(j).is_some_and(u8::is_ascii_digit) {
                j += 1;
            }
        }
        if matches!(b.get(j), Some(b'e' | b'E')) {
            j += 1;
            if matches!(b.get(j), Some(b'+' | b'-')) {
                j += 1;
            }
            if !b.get(j).is_some_and(u8::is_ascii_digit) {
                return None;
            }
            while b.get(j).is_some_and(u8::is_ascii_digit) {
                j += 1;
            }
        }
        self.i = j;
        Some(&b[start..j])
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.b.get(self.i..self.i + word.len())? == word {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }

    /// Walk the object at the cursor (after whitespace), calling `f` with
    /// each unescaped key while the cursor is at its value; `f` must
    /// consume the value.
    pub(crate) fn object(
        &mut self,
        mut f: impl FnMut(&mut Self, &[u8]) -> Option<()>,
    ) -> Option<()> {
        if !self.eat(b'{') {
            return None;
        }
        if self.eat(b'}') {
            return Some(());
        }
        let b = self.b;
        let mut owned = Vec::new();
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return None;
            }
            let (a, z, esc) = self.string_span()?;
            // Borrowed from the text unless it has escapes.
            let key: &[u8] = if esc {
                owned.clear();
                owned.extend_from_slice(self.unescaped(a, z, esc));
                &owned
            } else {
                &b[a..z]
            };
            if !self.eat(b':') {
                return None;
            }
            self.ws();
            f(self, key)?;
            if self.eat(b',') {
                continue;
            }
            return if self.eat(b'}') { Some(()) } else { None };
        }
    }

    /// Walk the array at the cursor, calling `f` at each element (which it
    /// must consume).
    pub(crate) fn array(&mut self, mut f: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        if !self.eat(b'[') {
            return None;
        }
        if self.eat(b']') {
            return Some(());
        }
        loop {
            self.ws();
            f(self)?;
            if self.eat(b',') {
                continue;
            }
            return if self.eat(b']') { Some(()) } else { None };
        }
    }

    /// Validate and skip the value at the cursor; returns its text.
    pub(crate) fn skip(&mut self) -> Option<&'a [u8]> {
        self.ws();
        let start = self.i;
        self.value(false)?;
        Some(&self.b[start..self.i])
    }

    /// Is the value at the cursor `null`? (consumed if so)
    pub(crate) fn null(&mut self) -> bool {
        self.ws();
        if self.b.get(self.i..self.i + 4) == Some(b"null") {
            self.i += 4;
            true
        } else {
            false
        }
    }

    /// Validate the value at the cursor; with `hash`, its hash as
    /// [`Walker::value`] computes it (0 without).
    fn value(&mut self, hash: bool) -> Option<u64> {
        self.ws();
        match self.peek()? {
            b'{' | b'[' if self.depth >= FAST_DEPTH => None,
            b'{' => {
                self.depth += 1;
                let mut acc: u64 = 0;
                let mut n = 0usize;
                self.object(|s, key| {
                    let k = if hash { hash_str(key) } else { 0 };
                    let v = s.value(hash)?;
                    if hash {
                        acc = acc.wrapping_add(mix(k, v));
                    }
                    n += 1;
                    Some(())
                })?;
                self.depth -= 1;
                Some(if hash {
                    tagged(6, |h| {
                        h.write_u64(acc);
                        h.write_usize(n);
                    })
                } else {
                    0
                })
            }
            b'[' => {
                self.depth += 1;
                let mut h = FxHasher::default();
                h.write_u8(5);
                let mut n = 0usize;
                self.array(|s| {
                    let v = s.value(hash)?;
                    if hash {
                        h.write_u64(v);
                    }
                    n += 1;
                    Some(())
                })?;
                self.depth -= 1;
                h.write_usize(n);
                Some(if hash { h.finish() } else { 0 })
            }
            b'"' if hash => self.string_hash(),
            b'"' => self.string_span().map(|_| 0),
            b't' => {
                self.literal(b"true")?;
                Some(tagged(1, |h| h.write_u8(1)))
            }
            b'f' => {
                self.literal(b"false")?;
                Some(tagged(1, |h| h.write_u8(0)))
            }
            b'n' => {
                self.literal(b"null")?;
                Some(tagged(0, |_| {}))
            }
            _ => {
                let t = self.number()?;
                Some(if hash { number_hash(t) } else { 0 })
            }
        }
    }

    /// The digest of the attributes value at the cursor, as
    /// `AttrDigest::deserialize` computes it (`null` is the caller's `None`).
    pub(crate) fn digest(&mut self) -> Option<AttrDigest> {
        self.ws();
        if self.peek() != Some(b'{') {
            return Some(AttrDigest {
                whole: self.value(true)?,
                paths: Box::default(),
            });
        }
        // Sized like the previous one: instances of a resource have the same
        // attributes, so the vector neither grows nor shrinks, usually.
        let mut paths = Vec::with_capacity(self.paths_hint);
        self.depth += 1;
        self.object(|s, key| {
            let id = intern_at(paths.len(), key);
            let h = s.value(true)?;
            paths.push((id, h));
            Some(())
        })?;
        self.depth -= 1;
        self.paths_hint = paths.len();
        paths.sort_unstable_by_key(|p| p.0);
        let whole = TABLE.with(|t| {
            let t = t.borrow();
            paths.iter().fold(paths.len() as u64, |acc, (id, h)| {
                let mut hn = FxHasher::default();
                hn.write(t.name(*id).as_bytes());
                acc.wrapping_add(mix(hn.finish(), *h))
            })
        });
        Some(AttrDigest::from_paths(whole, &paths))
    }
}

/// The index of the first `"`, `\\` or control character (< 0x20) at or
/// after `j` in `b`, 16 bytes at a time; sets `high` when a byte >= 0x80
/// comes before it (from `j`). `None` when `b` ends first.
#[inline]
fn string_stop(b: &[u8], mut j: usize, high: &mut bool) -> Option<usize> {
    while let Some(chunk) = b.get(j..j + 16).and_then(|c| <&[u8; 16]>::try_from(c).ok()) {
        let (stops, hi) = stops16(chunk);
        if stops != 0 {
            // Non-ASCII bytes before the stop only.
            *high |= hi & (stops & stops.wrapping_neg()).wrapping_sub(1) != 0;
            return Some(j + stops.trailing_zeros() as usize);
        }
        *high |= hi != 0;
        j += 16;
    }
    for (k, &c) in b.get(j..)?.iter().enumerate() {
        if c == b'"' || c == b'\\' || c < 0x20 {
            return Some(j + k);
        }
        *high |= c >= 0x80;
    }
    None
}

/// [`string_stop`] that also appends the bytes before the stop to `out`:
/// whole 16-byte blocks are appended, then cut back to the stop (no copy
/// call per segment between escapes). Two-character escapes (`\\"`, `\\n`...)
/// are unescaped on the way; it stops at a quote, a control character, a
/// `\\u` escape or an invalid one (for the caller to handle or refuse).
#[inline]
fn string_copy(b: &[u8], mut j: usize, high: &mut bool, out: &mut Vec<u8>) -> Option<usize> {
    loop {
        let Some(chunk) = b.get(j..j + 16).and_then(|c| <&[u8; 16]>::try_from(c).ok()) else {
            let k = string_stop(b, j, high)?;
            out.extend_from_slice(&b[j..k]);
            return Some(k);
        };
        let (stops, hi) = stops16(chunk);
        let len = out.len();
        out.extend_from_slice(chunk);
        if stops == 0 {
            *high |= hi != 0;
            j += 16;
            continue;
        }
        let n = stops.trailing_zeros() as usize;
        *high |= hi & (stops & stops.wrapping_neg()).wrapping_sub(1) != 0;
        out.truncate(len + n);
        let k = j + n;
        if b[k] == b'\\' {
            if let Some(byte) = b.get(k + 1).and_then(|&c| simple_escape(c)) {
                out.push(byte);
                j = k + 2;
                continue;
            }
        }
        return Some(k);
    }
}

/// For 16 bytes: a bit per byte (bit `k` for byte `k`) that is `"`, `\\` or
/// below 0x20, and a bit per byte >= 0x80. SSE2 (part of every x86-64).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn stops16(chunk: &[u8; 16]) -> (u32, u32) {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of the x86-64 baseline (always enabled), and
    // `chunk` is 16 readable bytes (`_mm_loadu_si128` needs no alignment).
    unsafe {
        let v = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        // Unsigned v <= 0x1f  <=>  min(v, 0x1f) == v.
        let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
        let stops = _mm_or_si128(_mm_or_si128(quote, backslash), control);
        (
            _mm_movemask_epi8(stops) as u32,
            _mm_movemask_epi8(v) as u32,
        )
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn stops16(chunk: &[u8; 16]) -> (u32, u32) {
    stops16_swar(chunk)
}

/// [`stops16`] on two 64-bit words (other architectures, and the reference
/// the SSE2 version is tested against).
#[cfg(any(not(target_arch = "x86_64"), test))]
#[inline(always)]
fn stops16_swar(chunk: &[u8; 16]) -> (u32, u32) {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // The high bit of each byte of `w` that is zero (exact for every byte:
    // no carry crosses bytes).
    fn zero_bytes(w: u64) -> u64 {
        !(((w & !HIGH) + !HIGH) | w) & HIGH
    }
    fn below_0x20(w: u64) -> u64 {
        // Bytes with no bit of 0xe0 set.
        zero_bytes(w & u64::from_ne_bytes([0xe0; 8]))
    }
    // One bit per byte from the high bits of `m` (bytes in memory order).
    fn pack(m: u64) -> u32 {
        let mut out = 0u32;
        for (k, byte) in m.to_le_bytes().iter().enumerate() {
            out |= ((byte >> 7) as u32) << k;
        }
        out
    }
    let mut stops = 0u32;
    let mut high = 0u32;
    for (half, w) in chunk.chunks_exact(8).enumerate() {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        let w = u64::from_le_bytes(a);
        let m = zero_bytes(w ^ (ONES * b'"' as u64))
            | zero_bytes(w ^ (ONES * b'\\' as u64))
            | below_0x20(w);
        stops |= pack(m) << (8 * half);
        high |= pack(w & HIGH) << (8 * half);
    }
    (stops, high)
}

/// The first `\\` in `s` (a plain loop first: escapes are often close).
#[inline]
fn backslash(s: &[u8]) -> Option<usize> {
    const SHORT: usize = 16;
    if let Some(k) = s.iter().take(SHORT).position(|&c| c == b'\\') {
        return Some(k);
    }
    if s.len() <= SHORT {
        return None;
    }
    memchr::memchr(b'\\', &s[SHORT..]).map(|k| k + SHORT)
}

/// The value of four hex digits.
/// The byte a two-character JSON escape (`\\n`, `\\"`...) stands for; `None`
/// for anything JSON does not allow after a backslash (and for `u`).
#[inline]
fn simple_escape(c: u8) -> Option<u8> {
    Some(match c {
        b'"' => b'"',
        b'\\' => b'\\',
        b'/' => b'/',
        b'b' => 0x08,
        b'f' => 0x0c,
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        _ => return None,
    })
}

/// The `\\uXXXX` escape whose backslash is at `k` (a high surrogate must be
/// followed by a low one, a lone low surrogate is refused): the character and
/// the index after the escape.
#[inline]
fn unicode_escape(b: &[u8], k: usize) -> Option<(char, usize)> {
    let n = hex4(b.get(k + 2..k + 6)?)?;
    let j = k + 6;
    if (0xD800..0xDC00).contains(&n) {
        if b.get(j..j + 2)? != b"\\u" {
            return None;
        }
        let lo = hex4(b.get(j + 2..j + 6)?)?;
        if !(0xDC00..0xE000).contains(&lo) {
            return None;
        }
        let cp = 0x10000 + ((n - 0xD800) << 10) + (lo - 0xDC00);
        return Some((char::from_u32(cp)?, j + 6));
    }
    Some((char::from_u32(n)?, j))
}

fn hex4(d: &[u8]) -> Option<u32> {
    let mut n = 0u32;
    for &c in d.get(..4)? {
        n = n * 16 + (c as char).to_digit(16)?;
    }
    Some(n)
}

fn hash_str(s: &[u8]) -> u64 {
    tagged(4, |h| {
        h.write(s);
        h.write_usize(s.len());
    })
}

/// Hash of a JSON number by its value: sign, significant digits (no leading
/// or trailing zeros) and the exponent `e` of `0.DIGITS x 10^e`. Zero is one
/// value (`-0` = `0`). Exponents longer than 30 digits are hashed by their text.
fn number_hash(t: &[u8]) -> u64 {
    let (negative, t) = match t.first() {
        Some(b'-') => (true, &t[1..]),
        _ => (false, t),
    };
    let (mant, exp) = match t.iter().position(|c| matches!(c, b'e' | b'E')) {
        Some(i) => (&t[..i], &t[i + 1..]),
        None => (t, &b""[..]),
    };
    let (int, frac) = match mant.iter().position(|&c| c == b'.') {
        Some(i) => (&mant[..i], &mant[i + 1..]),
        None => (mant, &b""[..]),
    };
    let digit = |k: usize| -> u8 {
        if k < int.len() {
            int[k]
        } else {
            frac[k - int.len()]
        }
    };
    let n = int.len() + frac.len();
    let Some(first) = (0..n).find(|&k| digit(k) != b'0') else {
        return tagged(2, |h| h.write_u8(0));
    };
    let last = (0..n).rev().find(|&k| digit(k) != b'0').unwrap_or(first);
    let (exp_neg, exp_digits) = match exp.first() {
        Some(b'-') => (true, &exp[1..]),
        Some(b'+') => (false, &exp[1..]),
        _ => (false, exp),
    };
    let z = exp_digits.iter().take_while(|&&c| c == b'0').count();
    let exp_digits = &exp_digits[z..];
    let adjust = int.len() as i128 - first as i128;
    tagged(2, |h| {
        h.write_u8(1 + negative as u8);
        for k in first..=last {
            h.write_u8(digit(k));
        }
        h.write_usize(last + 1 - first);
        if exp_digits.len() <= 30 {
            let e = std::str::from_utf8(exp_digits)
                .ok()
                .and_then(|s| s.parse::<i128>().ok())
                .unwrap_or(0);
            h.write_i128(if exp_neg { -e } else { e } + adjust);
        } else {
            h.write_i128(adjust);
            h.write_u8(exp_neg as u8);
            h.write(exp_digits);
        }
    })
}

/// A table of these names (ids in their order), unshared (tests).
#[cfg(test)]
pub(crate) fn test_table(names: &[&str]) -> PathTable {
    PathTable {
        names: names.iter().map(|n| Box::<str>::from(*n)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(json: &str) -> (AttrDigest, PathTable) {
        let (r, t) = with_path_table(|| serde_json::from_str::<AttrDigest>(json));
        (r.unwrap(), t)
    }

    #[test]
    fn key_order_does_not_matter_values_do() {
        let (a, ta) = digest(r#"{"id":"1","tags":{"a":"x","b":"y"},"n":[1,2]}"#);
        let (b, tb) = digest(r#"{"n":[1,2],"tags":{"b":"y","a":"x"},"id":"1"}"#);
        assert_eq!(a.whole, b.whole);
        assert!(a.changed_paths(&ta, &b, &tb).is_empty());
        let (c, tc) = digest(r#"{"id":"1","tags":{"a":"x","b":"z"},"n":[2,1],"new":null}"#);
        assert_ne!(a.whole, c.whole);
        assert_eq!(a.changed_paths(&ta, &c, &tc), vec!["n", "new", "tags"]);
    }

    /// Issue 21: the per-attribute hashes kept for every instance take 8
    /// bytes each (id and a 32-bit fold), in a slice with no spare capacity;
    /// whether the object changed is still decided by the 64-bit `whole`,
    /// and both parsers (serde and the scanner) fold alike.
    #[test]
    fn attribute_hashes_are_compact_and_still_name_the_changes() {
        let (a, ta) = digest(r#"{"id":"1","size":2,"tags":{"a":"x"}}"#);
        assert_eq!(std::mem::size_of_val(&*a.paths), 3 * 8);
        let (b, tb) = digest(r#"{"id":"1","size":3,"tags":{"a":"x"}}"#);
        assert_ne!(a.whole, b.whole);
        assert_eq!(a.changed_paths(&ta, &b, &tb), vec!["size"]);
        let text = r#"{"id":"1","size":2,"tags":{"a":"x"}}"#;
        let (scanned, _) = with_path_table(|| Scan::new(text.as_bytes()).digest());
        assert_eq!(scanned, Some(a));
    }

    #[test]
    fn numbers_compare_by_value_like_cty() {
        let h = |json: &str| digest(&format!(r#"{{"v":{json}}}"#)).0.whole;
        // 80, 80.0 and 8e1 are one number in JSON/cty.
        for same in ["80.0", "8e1", "0.8E+2", "800e-1", "80.000"] {
            assert_eq!(h("80"), h(same), "{same}");
        }
        assert_eq!(h("0"), h("-0.0"));
        assert_eq!(h("0"), h("0e10"));
        assert_ne!(h("80"), h("81"));
        assert_ne!(h("80"), h("-80"));
        assert_ne!(h("80"), h("8"));
        // Integers beyond 64 bits are compared exactly (an f64 would merge these).
        assert_ne!(h("18446744073709551617"), h("18446744073709551616"));
        assert_ne!(
            h("123456789012345678901234567890"),
            h("123456789012345678901234567891")
        );
        assert_eq!(
            h("123456789012345678901234567890"),
            h("1.2345678901234567890123456789e29")
        );
        // Beyond f64 range: accepted, as Terraform does.
        assert_eq!(h("1e400"), h("10e399"));
        assert_ne!(h("1e400"), h("1e401"));
        assert_ne!(h("1e-400"), h("0"));
        // Nested numbers too.
        assert_eq!(h(r#"{"a":[1,2.0]}"#), h(r#"{"a":[1.0,2]}"#));
    }

    #[test]
    fn number_hash_normal_form() {
        assert_eq!(number_hash(b"-0.0120e3"), number_hash(b"-12"));
        assert_eq!(number_hash(b"-0"), number_hash(b"0.000"));
        assert_ne!(number_hash(b"-12"), number_hash(b"12"));
        assert_ne!(number_hash(b"1.2"), number_hash(b"12"));
        let long = format!("1e{}", "9".repeat(40));
        assert_eq!(number_hash(long.as_bytes()), number_hash(long.as_bytes()));
        assert_ne!(number_hash(long.as_bytes()), number_hash(b"1e400"));
    }

    #[test]
    fn strings_compare_unescaped() {
        let (a, _) = digest(r#"{"v":"<a&b>","k":{"\u0041":1}}"#);
        let (b, _) = digest(r#"{"v":"\u003ca\u0026b\u003e","k":{"A":1}}"#);
        assert_eq!(a.whole, b.whole);
        let (c, _) = digest(r#"{"v":"<a&b>!","k":{"A":1}}"#);
        assert_ne!(a.whole, c.whole);
    }

    #[test]
    fn deep_nesting_does_not_exhaust_the_stack() {
        let deep =
            |n: usize, leaf: &str| format!(r#"{{"v":{}{leaf}{}}}"#, "[".repeat(n), "]".repeat(n));
        // serde_json validates RawValue without a depth limit.
        let (a, _) = digest(&deep(100_000, "1"));
        let (b, _) = digest(&deep(100_000, "1"));
        let (c, _) = digest(&deep(100_000, "2"));
        assert_eq!(a.whole, b.whole);
        assert_ne!(a.whole, c.whole);
    }

    /// The 16-byte classifier (SSE2 on x86-64, SWAR elsewhere) against a
    /// plain byte loop, on every byte value at every position.
    #[test]
    fn string_stops_are_found_exactly() {
        let reference = |c: &[u8; 16]| {
            let mut stops = 0u32;
            let mut high = 0u32;
            for (k, &x) in c.iter().enumerate() {
                stops |= u32::from(x == b'"' || x == b'\\' || x < 0x20) << k;
                high |= u32::from(x >= 0x80) << k;
            }
            (stops, high)
        };
        let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
        let mut chunks = Vec::new();
        for x in 0..=255u8 {
            for at in 0..16 {
                let mut c = [b'a'; 16];
                c[at] = x;
                chunks.push(c);
            }
        }
        for _ in 0..20_000 {
            let mut c = [0u8; 16];
            for b in &mut c {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *b = seed as u8;
            }
            chunks.push(c);
        }
        for c in &chunks {
            assert_eq!(stops16(c), reference(c), "{c:?}");
            assert_eq!(stops16_swar(c), reference(c), "{c:?}");
        }
        // string_stop: the first stop at any offset, non-ASCII only before it.
        let mut high = false;
        let text = b"0123456789abcdef0123\\xy\"";
        assert_eq!(string_stop(text, 0, &mut high), Some(20));
        assert!(!high);
        assert_eq!(string_stop(text, 21, &mut high), Some(23));
        let text = "0123456789abcdef01é3\"héé".as_bytes();
        let mut high = false;
        assert_eq!(string_stop(text, 0, &mut high), Some(21));
        assert!(high);
        let text = "0123456789\"cdéf0123456789".as_bytes();
        let mut high = false;
        assert_eq!(string_stop(text, 0, &mut high), Some(10));
        assert!(!high, "a non-ASCII byte after the stop is not this string's");
        let mut high = false;
        assert_eq!(string_stop(b"0123456789abcdef0123456789\x01", 0, &mut high), Some(26));
        assert_eq!(string_stop(b"0123456789abcdef0123456789", 3, &mut high), None);
    }

    #[test]
    fn types_are_distinguished() {
        let (a, _) = digest(r#"{"v":"1"}"#);
        let (b, _) = digest(r#"{"v":1}"#);
        assert_ne!(a.whole, b.whole);
    }
}
