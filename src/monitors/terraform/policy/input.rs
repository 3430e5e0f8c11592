//! The policy input, built during the monitor's one streaming read of a
//! state (or drift report): each top-level member (each element of an array
//! such as `resources`) is deserialized straight into a `regorus` value from
//! the parser's buffer, beside the parser's own summary of it. No second read
//! of the file, no whole-file buffer and no `serde_json` tree: the document is
//! held once, as the engine's value. Object keys are interned across the
//! document (each distinct key is stored once).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;

use regorus::Value;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::super::state::ParseError;
use super::stream::ResourceEval;

/// A document built member by member as it streams past. A member the
/// summary parser skips unread is only checked here: if it is not valid
/// JSON the input is unusable ([`Self::finish`] says so) but the summary
/// parse goes on, as it would without policies.
pub struct DocBuilder {
    members: BTreeMap<Value, Value>,
    keys: HashSet<Arc<str>>,
    failed: Option<InputError>,
    /// JSON text read into the document so far, and the most allowed
    /// (`policy_max_input_size`): past it the document is dropped at once,
    /// so memory stays bounded while the state streams past.
    read: u64,
    limit: u64,
    /// Per-resource policies fed each element of `resources` as it streams
    /// past; `whole`: the document also keeps `resources` (some policy
    /// needs the whole state).
    stream: Option<ResourceEval>,
    stream_failed: Option<InputError>,
    whole: bool,
}

impl Default for DocBuilder {
    fn default() -> Self {
        DocBuilder {
            members: BTreeMap::new(),
            keys: HashSet::new(),
            failed: None,
            read: 0,
            limit: u64::MAX,
            stream: None,
            stream_failed: None,
            whole: true,
        }
    }
}

/// Why a document could not be made a policy input (positions only).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("not usable as a policy input: {0}")]
    Json(ParseError),
    #[error("the document is larger than policy_max_input_size ({limit} bytes of JSON); policies were not evaluated on it. Raise policy_max_input_size (and the memory limit: the policy engine needs several times the file size) or split the state")]
    TooLarge { limit: u64 },
}

impl InputError {
    /// A bounded reason label.
    pub fn reason(&self) -> &'static str {
        match self {
            InputError::Json(_) => "input",
            InputError::TooLarge { .. } => "too_large",
        }
    }
}

impl DocBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder that gives up (`TooLarge`) once more than `limit` bytes of
    /// JSON text were read into the document.
    pub fn with_limit(limit: u64) -> Self {
        DocBuilder {
            limit,
            ..Self::default()
        }
    }

    /// Also feed each resource to `stream` as it streams past; with `whole`
    /// false the document does not keep `resources` (no policy needs them
    /// all at once).
    pub fn streaming(mut self, stream: ResourceEval, whole: bool) -> Self {
        self.stream = Some(stream);
        self.whole = whole;
        self
    }

    /// One element of the top-level array `key`: the value to keep in the
    /// document, if it keeps it (see [`Self::parse`]); each resource also
    /// goes to the per-resource policies.
    pub fn element(&mut self, key: &str, raw: &[u8]) -> Option<Value> {
        let Some(stream) = self.stream.as_mut().filter(|_| key == "resources") else {
            return self.parse(raw);
        };
        if self.stream_failed.is_none() {
            let mut de = serde_json::Deserializer::from_slice(raw);
            match Seed(&mut self.keys)
                .deserialize(&mut de)
                .and_then(|v| de.end().map(|()| v))
            {
                Ok(v) => stream.push(v, raw.len()),
                Err(e) => {
                    self.stream_failed =
                        Some(InputError::Json(ParseError::from_json(&e, "policy input")))
                }
            }
        }
        if self.whole {
            self.parse(raw)
        } else {
            None
        }
    }

    /// A top-level member whose JSON text is `raw`.
    pub fn member(&mut self, key: &str, raw: &[u8]) {
        if let Some(v) = self.parse(raw) {
            self.insert(key, v);
        }
    }

    /// A top-level member given as a value already built (an array built
    /// element by element with [`Self::parse`]).
    pub fn insert(&mut self, key: &str, v: Value) {
        if key == "resources" && self.stream.is_some() && !self.whole {
            return;
        }
        let k = Value::String(intern(&mut self.keys, key));
        self.members.insert(k, v);
    }

    /// One JSON value (an array element) into a `regorus` value; `None` once
    /// anything failed (the input is then dropped whole).
    pub fn parse(&mut self, raw: &[u8]) -> Option<Value> {
        if self.failed.is_some() {
            return None;
        }
        self.read = self.read.saturating_add(raw.len() as u64);
        if self.read > self.limit {
            self.failed = Some(InputError::TooLarge { limit: self.limit });
            self.members = BTreeMap::new();
            self.keys = HashSet::new();
            return None;
        }
        let mut de = serde_json::Deserializer::from_slice(raw);
        match Seed(&mut self.keys)
            .deserialize(&mut de)
            .and_then(|v| de.end().map(|()| v))
        {
            Ok(v) => Some(v),
            Err(e) => {
                self.failed = Some(InputError::Json(ParseError::from_json(&e, "policy input")));
                self.members.clear();
                None
            }
        }
    }

    /// The document, and the per-resource policies fed (or why they could
    /// not be: a resource was not valid JSON).
    pub fn finish_streaming(
        mut self,
    ) -> (Result<Value, InputError>, Option<Result<ResourceEval, InputError>>) {
        let stream = self.stream.take().map(|s| match self.stream_failed.take() {
            Some(e) => Err(e),
            None => Ok(s),
        });
        (self.finish(), stream)
    }

    /// The whole document (the interning table is dropped).
    pub fn finish(self) -> Result<Value, InputError> {
        match self.failed {
            Some(e) => Err(e),
            None => Ok(Value::from(self.members)),
        }
    }
}

fn intern(keys: &mut HashSet<Arc<str>>, k: &str) -> Arc<str> {
    if let Some(existing) = keys.get(k) {
        return existing.clone();
    }
    let a: Arc<str> = Arc::from(k);
    keys.insert(a.clone());
    a
}

/// Deserializes one value as `regorus::Value` does (same numbers, strings,
/// non-finite floats rejected), interning object keys.
struct Seed<'a>(&'a mut HashSet<Arc<str>>);

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

struct KeySeed<'a>(&'a mut HashSet<Arc<str>>);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(intern(self.0, s)))
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        if !v.is_finite() {
            return Err(E::custom("a non-finite number"));
        }
        Ok(Value::from(v))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.into()))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s.into()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element_seed(Seed(&mut *self.0))? {
            out.push(v);
        }
        // Held until the evaluation ends: no spare capacity.
        out.shrink_to_fit();
        Ok(Value::from(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some(k) = map.next_key_seed(KeySeed(&mut *self.0))? {
            // How serde_json hands over a number if `arbitrary_precision` is
            // ever enabled in the build (regorus reads it the same way).
            if out.is_empty() && k.as_string().is_ok_and(|s| &**s == "$serde_json::private::Number") {
                let text: String = map.next_value()?;
                return Value::from_numeric_string(&text)
                    .map_err(|_| de::Error::custom("failed to read a big number"));
            }
            let v = map.next_value_seed(Seed(&mut *self.0))?;
            out.insert(k, v);
        }
        Ok(Value::from(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same value `regorus` builds from the whole document (what the
    /// engine was given before: `Value::from(serde_json::Value)`).
    fn old_way(doc: &str) -> Value {
        Value::from(serde_json::from_str::<serde_json::Value>(doc).unwrap())
    }

    #[test]
    fn members_built_one_by_one_equal_the_whole_document() {
        let doc = r#"{"version": 4, "serial": 18446744073709551615, "neg": -9223372036854775808,
            "f": 1.5e300, "small": 0.1, "int_float": 80.0, "esc": "a\"b\u00e9\n", "null": null,
            "resources": [{"type": "t", "instances": [{"attributes": {"id": "x", "tags": {"k\"ey": "v"},
            "nested": [[1, 2], {"a": true}], "empty": {}, "none": []}}]}, {"type": "u", "instances": null}],
            "outputs": {"o": {"value": {"deep": [1, "two", false]}, "sensitive": true}}}"#;
        let whole: serde_json::Value = serde_json::from_str(doc).unwrap();
        let mut b = DocBuilder::new();
        for (k, v) in whole.as_object().unwrap() {
            let raw = serde_json::to_vec(v).unwrap();
            if k == "resources" {
                let elems: Vec<Value> = v
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| b.parse(&serde_json::to_vec(e).unwrap()).unwrap())
                    .collect();
                b.insert(k, Value::from(elems));
            } else {
                b.member(k, &raw);
            }
        }
        assert_eq!(b.finish().unwrap(), old_way(doc));
    }

    #[test]
    fn an_invalid_member_spoils_the_input_only() {
        let mut b = DocBuilder::new();
        b.member("version", b"4");
        b.member("junk", b"[1, tru]");
        b.member("serial", b"3");
        assert!(matches!(b.finish(), Err(InputError::Json(ParseError::Syntax { .. }))));
    }

    #[test]
    fn keys_are_stored_once() {
        let mut b = DocBuilder::new();
        let v = b
            .parse(br#"[{"name": "a", "id": 1}, {"name": "b", "id": 2}]"#)
            .unwrap();
        let arr = v.as_array().unwrap();
        let key_of = |i: usize| -> Arc<str> {
            let o = arr[i].as_object().unwrap();
            match o.keys().find(|k| k.as_string().is_ok_and(|s| &**s == "name")) {
                Some(Value::String(s)) => s.clone(),
                _ => panic!("no key"),
            }
        };
        assert!(Arc::ptr_eq(&key_of(0), &key_of(1)));
    }
}

