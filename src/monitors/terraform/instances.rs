//! The current instances of a parsed state, kept compact between
//! collections (issue 21: a fleet of 100,000 small states keeps every
//! state's instances).
//!
//! Parsing builds one [`Instance`] per instance (a boxed address, a boxed
//! slice of `(attribute id, hash)` pairs); a state keeps them as three
//! buffers instead: the addresses one after the other, one fixed-size item
//! per instance (its 64-bit digest, offsets, the tainted flag), and one
//! vector of 32-bit words holding each distinct set of attribute ids once
//! (instances of a resource share their keys) followed by each instance's
//! hashes. About half the bytes, and three allocations per state instead of
//! two per instance.

use rustc_hash::FxHashMap;

use super::digest::{changed_names, PathTable};
use super::state::Instance;

/// One instance's fixed part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Item {
    /// The digest of all its attributes (decides whether it changed).
    whole: u64,
    /// End of its address in `addrs` (it starts where the previous ends).
    addr_end: u32,
    /// Its attribute ids in `words`: the count, then the ids, sorted.
    set_at: u32,
    /// Its attribute hashes in `words`, as many as ids, in their order.
    hash_at: u32,
    tainted: bool,
}

/// The current instances of a state, sorted by address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Instances {
    addrs: Box<str>,
    items: Box<[Item]>,
    words: Box<[u32]>,
}

/// One instance, borrowed from [`Instances`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceRef<'a> {
    pub address: &'a str,
    pub tainted: bool,
    pub digest: DigestRef<'a>,
}

/// An instance's attribute digest, borrowed from [`Instances`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestRef<'a> {
    /// 64-bit hash of every attribute (see `AttrDigest::whole`).
    pub whole: u64,
    /// Attribute ids in the state's [`PathTable`], sorted.
    pub ids: &'a [u32],
    /// 32-bit value hash of each attribute of `ids`.
    pub hashes: &'a [u32],
}

impl DigestRef<'_> {
    /// Names of the attributes whose hash differs between `self` and
    /// `other` (present in only one counts as changed), sorted; as
    /// `AttrDigest::changed_paths`.
    pub fn changed_paths(
        &self,
        table: &PathTable,
        other: &DigestRef<'_>,
        other_table: &PathTable,
    ) -> Vec<String> {
        changed_names(
            self.ids.iter().zip(self.hashes).map(|(id, h)| (table.name(*id), *h)),
            other
                .ids
                .iter()
                .zip(other.hashes)
                .map(|(id, h)| (other_table.name(*id), *h)),
        )
    }
}

/// More than 4 GiB of addresses or attribute words in one state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge;

impl Instances {
    /// The compact form of `v` in its order (the parser sorts it first).
    pub fn new(v: Vec<Instance>) -> Result<Self, TooLarge> {
        let off = |n: usize| u32::try_from(n).map_err(|_| TooLarge);
        let mut addrs = String::with_capacity(v.iter().map(|i| i.address.len()).sum());
        let mut items = Vec::with_capacity(v.len());
        let mut words: Vec<u32> = Vec::new();
        // Where each set of ids was written (the last one is checked first:
        // consecutive instances are usually of one resource).
        let mut sets: FxHashMap<Vec<u32>, u32> = FxHashMap::default();
        let mut last: Option<u32> = None;
        let mut ids: Vec<u32> = Vec::new();
        for inst in v {
            addrs.push_str(&inst.address);
            ids.clear();
            ids.extend(inst.digest.paths.iter().map(|p| p.0));
            let is_last = last.is_some_and(|at| {
                let at = at as usize;
                words[at] as usize == ids.len() && words[at + 1..at + 1 + ids.len()] == ids[..]
            });
            let set_at = match (last, is_last) {
                (Some(at), true) => at,
                _ => match sets.get(&ids[..]) {
                    Some(&at) => at,
                    None => {
                        let at = off(words.len())?;
                        words.push(off(ids.len())?);
                        words.extend_from_slice(&ids);
                        sets.insert(ids.clone(), at);
                        at
                    }
                },
            };
            last = Some(set_at);
            let hash_at = off(words.len())?;
            words.extend(inst.digest.paths.iter().map(|p| p.1));
            items.push(Item {
                whole: inst.digest.whole,
                addr_end: off(addrs.len())?,
                set_at,
                hash_at,
                tainted: inst.tainted,
            });
        }
        off(words.len())?;
        Ok(Instances {
            addrs: addrs.into_boxed_str(),
            items: items.into_boxed_slice(),
            words: words.into_boxed_slice(),
        })
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The instance at `i` (in address order).
    pub fn get(&self, i: usize) -> Option<InstanceRef<'_>> {
        let item = self.items.get(i)?;
        let start = match i {
            0 => 0,
            _ => self.items.get(i - 1).map_or(0, |p| p.addr_end as usize),
        };
        let w = &self.words;
        let set = item.set_at as usize;
        let n = w.get(set).copied().unwrap_or(0) as usize;
        let ids = w.get(set + 1..set + 1 + n).unwrap_or(&[]);
        let at = item.hash_at as usize;
        let hashes = w.get(at..at + n).unwrap_or(&[]);
        Some(InstanceRef {
            address: self.addrs.get(start..item.addr_end as usize).unwrap_or(""),
            tainted: item.tainted,
            digest: DigestRef {
                whole: item.whole,
                ids,
                hashes,
            },
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = InstanceRef<'_>> {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// Heap bytes kept (the three buffers).
    pub fn heap_bytes(&self) -> usize {
        self.addrs.len()
            + std::mem::size_of_val(&*self.items)
            + std::mem::size_of_val(&*self.words)
    }

    /// Heap bytes by part: (addresses, items, attribute ids and hashes).
    pub fn heap_parts(&self) -> (usize, usize, usize) {
        (
            self.addrs.len(),
            std::mem::size_of_val(&*self.items),
            std::mem::size_of_val(&*self.words),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitors::terraform::digest::AttrDigest;

    fn digest(whole: u64, paths: &[(u32, u32)]) -> AttrDigest {
        AttrDigest {
            whole,
            paths: paths.into(),
        }
    }

    fn inst(address: &str, tainted: bool, d: AttrDigest) -> Instance {
        Instance {
            address: address.into(),
            tainted,
            digest: d,
        }
    }

    fn sample() -> Vec<Instance> {
        vec![
            inst("a.x[0]", false, digest(1, &[(0, 10), (1, 11), (2, 12)])),
            inst("a.x[1]", true, digest(2, &[(0, 20), (1, 21), (2, 22)])),
            // No attributes (null, a scalar, an empty object).
            inst("b.y", false, digest(3, &[])),
            inst("c.z", false, digest(4, &[(1, 30), (3, 31)])),
            inst("c.zz", false, digest(5, &[(0, 40), (1, 41), (2, 42)])),
        ]
    }

    /// Every instance reads back as it was given: address, flag, digest.
    #[test]
    fn reads_back_what_it_was_given() {
        let v = sample();
        let c = Instances::new(v.clone()).unwrap();
        assert_eq!(c.len(), v.len());
        assert!(c.get(v.len()).is_none());
        for (r, i) in c.iter().zip(&v) {
            assert_eq!(r.address, &*i.address);
            assert_eq!(r.tainted, i.tainted);
            assert_eq!(r.digest.whole, i.digest.whole);
            let pairs: Vec<(u32, u32)> =
                r.digest.ids.iter().copied().zip(r.digest.hashes.iter().copied()).collect();
            assert_eq!(&pairs[..], &*i.digest.paths, "{}", r.address);
        }
        // The three-attribute key set is written once for the three
        // instances having it: sets (count and ids) of 3, 0 and 2
        // attributes, then 3 + 3 + 0 + 2 + 3 hashes.
        let (_, _, words) = c.heap_parts();
        assert_eq!(words / 4, 4 + 1 + 3 + 11, "{c:?}");
        assert_eq!(Instances::new(v).unwrap(), c);
    }

    #[test]
    fn empty_and_default_are_the_same() {
        let c = Instances::new(Vec::new()).unwrap();
        assert_eq!(c, Instances::default());
        assert!(c.is_empty());
        assert_eq!(c.iter().count(), 0);
        assert_eq!(c.heap_bytes(), 0);
    }

    /// The changed attributes it names are the ones the parse-time digests name.
    #[test]
    fn changed_paths_are_those_of_the_digests_it_replaces() {
        let table = crate::monitors::terraform::digest::test_table(&["id", "name", "tags", "zone"]);
        let v = sample();
        let c = Instances::new(v.clone()).unwrap();
        for (a, x) in c.iter().zip(&v) {
            for (b, y) in c.iter().zip(&v) {
                assert_eq!(
                    a.digest.changed_paths(&table, &b.digest, &table),
                    x.digest.changed_paths(&table, &y.digest, &table),
                    "{} vs {}",
                    a.address,
                    b.address
                );
            }
        }
        let (x, z) = (c.get(0).unwrap(), c.get(3).unwrap());
        assert_eq!(
            x.digest.changed_paths(&table, &z.digest, &table),
            ["id", "name", "tags", "zone"]
        );
    }

    #[test]
    fn addresses_with_multibyte_characters_keep_their_bounds() {
        let v = vec![
            inst("a.b[\"é\"]", false, digest(1, &[(0, 1)])),
            inst("a.b[\"日本\"]", false, digest(2, &[(0, 2)])),
        ];
        let c = Instances::new(v).unwrap();
        let addrs: Vec<&str> = c.iter().map(|i| i.address).collect();
        assert_eq!(addrs, ["a.b[\"é\"]", "a.b[\"日本\"]"]);
    }
}
