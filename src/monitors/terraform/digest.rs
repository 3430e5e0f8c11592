//! Hashing attribute values while they stream past, without keeping them.
//!
//! State files hold secrets in attribute values. To detect *which* attributes
//! changed (against a baseline, or since the last read) we keep only a 64-bit
//! hash per top-level attribute, never a value. Hashes are compared inside one
//! process and are never exported.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hasher;

use rustc_hash::FxHasher;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// Attribute names seen while parsing one document, in first-seen order.
#[derive(Debug, Default, Clone)]
pub struct PathTable {
    names: Vec<Box<str>>,
    index: HashMap<Box<str>, u32>,
}

impl PathTable {
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.index.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.into());
        self.index.insert(name.into(), id);
        id
    }

    pub fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map(|s| &**s).unwrap_or("?")
    }
}

thread_local! {
    static TABLE: RefCell<PathTable> = RefCell::new(PathTable::default());
}

/// Run `f` with a fresh path table on this thread, and return the table it filled.
pub fn with_path_table<T>(f: impl FnOnce() -> T) -> (T, PathTable) {
    TABLE.with(|t| *t.borrow_mut() = PathTable::default());
    let out = f();
    let table = TABLE.with(|t| std::mem::take(&mut *t.borrow_mut()));
    (out, table)
}

fn intern(name: &str) -> u32 {
    TABLE.with(|t| t.borrow_mut().intern(name))
}

/// Digest of an attributes object: one hash of everything, one per top-level attribute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttrDigest {
    pub whole: u64,
    /// (path id in the document's [`PathTable`], value hash), sorted by id.
    pub paths: Vec<(u32, u64)>,
}

impl AttrDigest {
    /// Names of the attributes whose hash differs between `self` and `other`
    /// (present in only one of them counts as changed), sorted.
    pub fn changed_paths(&self, table: &PathTable, other: &AttrDigest, other_table: &PathTable) -> Vec<String> {
        let mine: HashMap<&str, u64> = self.paths.iter().map(|(id, h)| (table.name(*id), *h)).collect();
        let theirs: HashMap<&str, u64> = other
            .paths
            .iter()
            .map(|(id, h)| (other_table.name(*id), *h))
            .collect();
        let mut out: Vec<String> = mine
            .iter()
            .filter(|(k, h)| theirs.get(*k) != Some(*h))
            .map(|(k, _)| (*k).to_string())
            .chain(theirs.keys().filter(|k| !mine.contains_key(*k)).map(|k| (*k).to_string()))
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

impl<'de> Deserialize<'de> for AttrDigest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AttrVisitor)
    }
}

struct AttrVisitor;

impl<'de> Visitor<'de> for AttrVisitor {
    type Value = AttrDigest;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an attributes object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AttrDigest, A::Error> {
        let mut paths = Vec::new();
        while let Some(id) = map.next_key::<PathId>()? {
            let ValueHash(h) = map.next_value()?;
            paths.push((id.0, h));
        }
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
        Ok(AttrDigest {
            whole,
            paths,
        })
    }

    // Anything else (null, a scalar): hash it whole, no paths.
    fn visit_unit<E: de::Error>(self) -> Result<AttrDigest, E> {
        Ok(AttrDigest::default())
    }
    fn visit_none<E: de::Error>(self) -> Result<AttrDigest, E> {
        Ok(AttrDigest::default())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<AttrDigest, E> {
        Ok(whole_only(ValueVisitor.visit_bool::<E>(v)?.0))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<AttrDigest, E> {
        Ok(whole_only(ValueVisitor.visit_i64::<E>(v)?.0))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<AttrDigest, E> {
        Ok(whole_only(ValueVisitor.visit_u64::<E>(v)?.0))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<AttrDigest, E> {
        Ok(whole_only(ValueVisitor.visit_f64::<E>(v)?.0))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<AttrDigest, E> {
        Ok(whole_only(ValueVisitor.visit_str::<E>(v)?.0))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<AttrDigest, A::Error> {
        Ok(whole_only(ValueVisitor.visit_seq(seq)?.0))
    }
}

fn whole_only(h: u64) -> AttrDigest {
    AttrDigest {
        whole: h,
        paths: Vec::new(),
    }
}

fn mix(a: u64, b: u64) -> u64 {
    let mut h = FxHasher::default();
    h.write_u64(a);
    h.write_u64(b);
    h.finish()
}

/// An attribute name, interned.
struct PathId(u32);

impl<'de> Deserialize<'de> for PathId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PathId;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an attribute name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PathId, E> {
                Ok(PathId(intern(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Hash of any JSON value; maps are hashed independently of key order.
pub struct ValueHash(pub u64);

impl<'de> Deserialize<'de> for ValueHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

fn tagged(tag: u8, f: impl FnOnce(&mut FxHasher)) -> ValueHash {
    let mut h = FxHasher::default();
    h.write_u8(tag);
    f(&mut h);
    ValueHash(h.finish())
}

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = ValueHash;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<ValueHash, E> {
        Ok(tagged(0, |_| {}))
    }
    fn visit_none<E: de::Error>(self) -> Result<ValueHash, E> {
        Ok(tagged(0, |_| {}))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<ValueHash, E> {
        Ok(tagged(1, |h| h.write_u8(v as u8)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ValueHash, E> {
        Ok(tagged(2, |h| h.write_i64(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ValueHash, E> {
        Ok(tagged(2, |h| h.write_u64(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<ValueHash, E> {
        Ok(tagged(3, |h| h.write_u64(v.to_bits())))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<ValueHash, E> {
        Ok(tagged(4, |h| {
            h.write(v.as_bytes());
            h.write_usize(v.len());
        }))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ValueHash, A::Error> {
        let mut h = FxHasher::default();
        h.write_u8(5);
        let mut n = 0usize;
        while let Some(ValueHash(x)) = seq.next_element()? {
            h.write_u64(x);
            n += 1;
        }
        h.write_usize(n);
        Ok(ValueHash(h.finish()))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ValueHash, A::Error> {
        let mut acc: u64 = 0;
        let mut n = 0usize;
        while let Some(ValueHash(k)) = map.next_key()? {
            let ValueHash(v) = map.next_value()?;
            acc = acc.wrapping_add(mix(k, v));
            n += 1;
        }
        Ok(tagged(6, |h| {
            h.write_u64(acc);
            h.write_usize(n);
        }))
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

    #[test]
    fn types_are_distinguished() {
        let (a, _) = digest(r#"{"v":"1"}"#);
        let (b, _) = digest(r#"{"v":1}"#);
        assert_ne!(a.whole, b.whole);
    }
}
