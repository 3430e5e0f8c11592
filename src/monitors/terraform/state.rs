//! Pure parser of Terraform / OpenTofu state files (bytes in, summary out).
//!
//! Streams the JSON: attribute values are hashed as they pass and never kept,
//! so memory is proportional to the number of instances, not the file size.
//! Errors carry positions only, never input text.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;

use serde::de::{self, DeserializeOwned, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use super::digest::{with_path_table, AttrDigest, PathTable, Scan};
pub use super::instances::{InstanceRef, Instances};
use super::json_stream::ObjectStream;
use super::policy::{DocBuilder, InputError, ResourceEval};

/// What went wrong while parsing a document; positions only, never content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the file is empty")]
    Empty,
    #[error("the JSON ends early at line {line}, column {column} (truncated, or being written right now)")]
    Truncated { line: usize, column: usize },
    #[error("invalid JSON at line {line}, column {column}")]
    Syntax { line: usize, column: usize },
    #[error("unexpected structure at line {line}, column {column} ({what})")]
    Schema {
        line: usize,
        column: usize,
        what: &'static str,
    },
    #[error("no \"version\" field: this is not a Terraform state file")]
    NotAState,
    #[error("state format version 3 (Terraform 0.11 or older) is not supported; upgrade it by running Terraform >= 0.12 (`terraform plan`/`apply`) on this configuration")]
    Version3,
    #[error(
        "state format version {0} is newer than the supported version 4; upgrade homelab-monitor"
    )]
    FutureVersion(u64),
    #[error("state format version {0} is not supported (only version 4)")]
    OldVersion(u64),
    #[error("the state's instances take more than 4 GiB (addresses, or attribute hashes): a corrupt or hostile file?")]
    TooManyInstances,
    #[error("read error: {0}")]
    Io(String),
    #[error("one JSON value at line {line}, column {column} is larger than {limit_mib} MiB, the limit per value (a corrupt or hostile file?)")]
    ValueTooLarge {
        line: usize,
        column: usize,
        limit_mib: usize,
    },
}

impl ParseError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            ParseError::Empty => "empty",
            ParseError::Truncated { .. } => "truncated",
            ParseError::Syntax { .. } => "syntax",
            ParseError::Schema { .. } => "schema",
            ParseError::NotAState => "not_a_state",
            ParseError::Version3 | ParseError::FutureVersion(_) | ParseError::OldVersion(_) => {
                "unsupported_version"
            }
            ParseError::Io(_) => "io",
            ParseError::ValueTooLarge { .. } | ParseError::TooManyInstances => "too_large",
        }
    }

    /// Map a serde_json error to a content-free error.
    pub(crate) fn from_json(e: &serde_json::Error, what: &'static str) -> Self {
        use serde_json::error::Category;
        let (line, column) = (e.line(), e.column());
        match e.classify() {
            Category::Eof => ParseError::Truncated { line, column },
            Category::Syntax => ParseError::Syntax { line, column },
            Category::Data => ParseError::Schema { line, column, what },
            Category::Io => ParseError::Io(
                e.io_error_kind()
                    .map(|k| format!("{k:?}"))
                    .unwrap_or_else(|| "I/O error".into()),
            ),
        }
    }
}

/// How many root outputs a state has, and how many are sensitive: all the
/// monitor reports of them (never a value; their names are not kept).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct OutputCounts {
    pub total: usize,
    pub sensitive: usize,
}

/// One current resource instance while a state is parsed: its address and
/// a digest of its attributes (the state keeps them as [`Instances`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// (Boxed: no spare capacity, kept per instance.)
    pub address: Box<str>,
    pub tainted: bool,
    pub digest: AttrDigest,
}

/// A check result (config object or one of its instances) by status.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CheckInfo {
    pub address: String,
    pub kind: String,
    pub status: String,
}

/// A resource's (mode, type), as counted per state.
pub type ResourceKind = (Box<str>, Box<str>);

/// Everything the monitor needs from a state file.
#[derive(Debug, Clone, Default)]
pub struct ParsedState {
    pub version: u64,
    /// An OpenTofu encrypted state: only the envelope is readable.
    pub encrypted: bool,
    /// (Boxed strings: kept per state, no spare capacity.)
    pub terraform_version: Option<Box<str>>,
    pub serial: Option<u64>,
    pub lineage: Option<Box<str>>,
    pub outputs: OutputCounts,
    /// Instance counts by (mode, type).
    /// (A sorted vector: a B-tree allocates a node for 11 entries even for
    /// the one type of a small state, and this is kept per state.)
    pub resource_counts: Vec<(ResourceKind, u64)>,
    /// Current objects, sorted by address (compact: see [`Instances`]).
    pub instances: Instances,
    /// Deposed objects, as "address (deposed KEY)".
    pub deposed: Vec<String>,
    /// `check_results`, one entry per object (or per config object without objects).
    pub checks: Vec<CheckInfo>,
    /// Attribute names referenced by the digests.
    pub paths: PathTable,
}

impl ParsedState {
    /// Estimated bytes kept for this state (addresses, digests, counts, names).
    pub fn estimated_bytes(&self) -> usize {
        let s = |x: &String| x.capacity();
        let os = |x: &Option<Box<str>>| x.as_ref().map_or(0, |x| x.len());
        std::mem::size_of::<Self>()
            + os(&self.terraform_version)
            + os(&self.lineage)
            + self.resource_counts.capacity() * std::mem::size_of::<(ResourceKind, u64)>()
            + self
                .resource_counts
                .iter()
                .map(|((m, t), _)| m.len() + t.len())
                .sum::<usize>()
            + self.instances.heap_bytes()
            + self.deposed.capacity() * std::mem::size_of::<String>()
            + self.deposed.iter().map(s).sum::<usize>()
            + self.checks.capacity() * std::mem::size_of::<CheckInfo>()
            + self
                .checks
                .iter()
                .map(|c| s(&c.address) + s(&c.kind) + s(&c.status))
                .sum::<usize>()
            + self.paths.estimated_bytes()
    }

    pub fn tainted(&self) -> impl Iterator<Item = InstanceRef<'_>> {
        self.instances.iter().filter(|i| i.tainted)
    }

    pub fn instance_count(&self) -> u64 {
        self.resource_counts.iter().map(|(_, n)| n).sum()
    }

    /// Check counts by status (pass, fail, error, unknown).
    pub fn check_counts(&self) -> BTreeMap<&str, u64> {
        count_checks(&self.checks)
    }

    pub fn failed_checks(&self) -> impl Iterator<Item = &CheckInfo> {
        self.checks
            .iter()
            .filter(|c| c.status == "fail" || c.status == "error")
    }
}

/// Parse a state document from a reader (streamed, not loaded whole).
pub fn parse_state<R: Read>(reader: R) -> Result<ParsedState, ParseError> {
    parse(reader, None)
}

/// [`parse_state`] that also builds, in the same single pass, the policy
/// input: the whole document as the policy engine's value. The input is
/// `None` for an encrypted state (policies are not evaluated on it) and an
/// error when the document is not valid JSON in a part the summary skips.
pub fn parse_state_with_input<R: Read>(reader: R) -> Result<(ParsedState, PolicyInput), ParseError> {
    parse_state_with_input_limited(reader, u64::MAX)
}

/// [`parse_state_with_input`] whose policy input gives up
/// ([`InputError::TooLarge`]) past `limit` bytes of JSON text, so that its
/// memory stays bounded; the summary parse goes on.
pub fn parse_state_with_input_limited<R: Read>(
    reader: R,
    limit: u64,
) -> Result<(ParsedState, PolicyInput), ParseError> {
    let mut doc = DocBuilder::with_limit(limit);
    let st = parse(reader, Some(&mut doc))?;
    let input = if st.encrypted {
        None
    } else {
        Some(doc.finish())
    };
    Ok((st, input))
}

/// [`parse_state_with_input_limited`] that also feeds each resource to the
/// per-resource policies of `doc` (see [`DocBuilder::streaming`]) as it
/// streams past.
pub fn parse_state_streaming<R: Read>(
    reader: R,
    mut doc: DocBuilder,
) -> Result<(ParsedState, PolicyInput, PolicyStream), ParseError> {
    let st = parse(reader, Some(&mut doc))?;
    let (input, stream) = doc.finish_streaming();
    if st.encrypted {
        return Ok((st, None, None));
    }
    Ok((st, Some(input), stream))
}

/// The per-resource policies fed during a read (see [`parse_state_streaming`]).
pub type PolicyStream = Option<Result<ResourceEval, InputError>>;

/// What [`parse_state_with_input`] built for policies.
pub type PolicyInput = Option<Result<regorus::Value, InputError>>;

fn parse<R: Read>(reader: R, doc: Option<&mut DocBuilder>) -> Result<ParsedState, ParseError> {
    let mut stream = ObjectStream::new(reader, "not a Terraform state")?;
    let head = stream.head().to_vec();
    let (res, paths) = with_path_table(|| read_members(&mut stream, doc));
    match res {
        Ok(mut p) => {
            p.st.paths = paths;
            finish(p)
        }
        Err(err) => {
            // A schema error in a state of another version: say "version".
            if let ParseError::Schema { .. } = err {
                if let Some(v) = sniff_version(&head) {
                    check_version(v)?;
                }
            }
            Err(err)
        }
    }
}

/// Read every top-level member, building the summary as resources stream
/// past (and, with `doc`, the policy input from the same buffered text).
fn read_members<R: Read>(
    s: &mut ObjectStream<R>,
    mut doc: Option<&mut DocBuilder>,
) -> Result<Partial, ParseError> {
    let mut p = Partial::default();
    while let Some(key) = s.next_key()? {
        let mut doc = doc.as_deref_mut();
        let d = &mut doc;
        match key.as_str() {
            "version" => p.version = value(s, d, &key)?,
            "terraform_version" => p.st.terraform_version = value(s, d, &key)?,
            "serial" => p.st.serial = value(s, d, &key)?,
            "lineage" => p.st.lineage = value(s, d, &key)?,
            "outputs" => {
                p.st.outputs = value::<Option<Outputs>, _>(s, d, &key)?
                    .map(|o| o.0)
                    .unwrap_or_default()
            }
            "resources" => {
                if let Some(v) = p.version.filter(|v| *v != 4) {
                    // Do not try to understand another version's resources.
                    check_version(v)?;
                }
                let (st, instances) = (&mut p.st, &mut p.instances);
                elements_with(s, d, &key, fast_resource_prefix, parse_resource, |r| {
                    add_resource(st, instances, r)
                })?;
            }
            "check_results" => {
                let st = &mut p.st;
                elements(s, d, &key, |c: RawCheck| add_check(st, c))?;
            }
            "encrypted_data" => {
                p.encrypted = value::<Option<IgnoredAny>, _>(s, d, &key)?.is_some()
            }
            _ => match doc {
                Some(doc) => s.raw_value(|raw| {
                    doc.member(&key, raw);
                    Ok(())
                })?,
                None => s.skip()?,
            },
        }
    }
    s.finish()?;
    Ok(p)
}

/// One member's value; its text also goes into `doc` when there is one.
pub(crate) fn value<T: DeserializeOwned, R: Read>(
    s: &mut ObjectStream<R>,
    doc: &mut Option<&mut DocBuilder>,
    key: &str,
) -> Result<T, ParseError> {
    s.raw_value(|raw| {
        let v = serde_json::from_slice(raw)?;
        if let Some(doc) = doc.as_deref_mut() {
            doc.member(key, raw);
        }
        Ok(v)
    })
}

/// An array member's elements one at a time (see [`ObjectStream::each`]);
/// with `doc`, the array goes into it too, element by element.
pub(crate) fn elements<T: DeserializeOwned, R: Read>(
    s: &mut ObjectStream<R>,
    doc: &mut Option<&mut DocBuilder>,
    key: &str,
    f: impl FnMut(T),
) -> Result<(), ParseError> {
    elements_with(s, doc, key, |_| None, |raw| serde_json::from_slice(raw), f)
}

/// [`elements`] with the element parser given (`parse` must give what
/// `serde_json::from_slice` gives, errors included).
pub(crate) fn elements_with<T, R: Read>(
    s: &mut ObjectStream<R>,
    doc: &mut Option<&mut DocBuilder>,
    key: &str,
    fast: impl FnMut(&[u8]) -> Option<(T, usize)>,
    parse: impl Fn(&[u8]) -> Result<T, serde_json::Error>,
    mut f: impl FnMut(T),
) -> Result<(), ParseError> {
    let Some(doc) = doc.as_deref_mut() else {
        s.each_raw_fast(fast, parse, |v, _| f(v))?;
        return Ok(());
    };
    let mut kept = Vec::new();
    let array = s.each_raw_fast(fast, parse, |v, raw| {
        f(v);
        if let Some(v) = doc.element(key, raw) {
            kept.push(v);
        }
    })?;
    kept.shrink_to_fit();
    doc.insert(
        key,
        if array {
            regorus::Value::from(kept)
        } else {
            regorus::Value::Null
        },
    );
    Ok(())
}

#[derive(Default)]
struct Partial {
    version: Option<u64>,
    encrypted: bool,
    st: ParsedState,
    /// The current instances as they are parsed.
    instances: Vec<Instance>,
}

fn finish(p: Partial) -> Result<ParsedState, ParseError> {
    let mut st = p.st;
    if p.encrypted {
        return Ok(ParsedState {
            version: p.version.unwrap_or(4),
            encrypted: true,
            terraform_version: st.terraform_version,
            serial: st.serial,
            lineage: st.lineage,
            ..ParsedState::default()
        });
    }
    let version = p.version.ok_or(ParseError::NotAState)?;
    check_version(version)?;
    st.version = version;
    let mut instances = p.instances;
    instances.sort_by(|a, b| a.address.cmp(&b.address));
    // Kept until the file changes: compact, no spare capacity.
    st.instances = Instances::new(instances).map_err(|_| ParseError::TooManyInstances)?;
    st.resource_counts.shrink_to_fit();
    Ok(st)
}

fn check_version(v: u64) -> Result<(), ParseError> {
    match v {
        4 => Ok(()),
        3 => Err(ParseError::Version3),
        v if v > 4 => Err(ParseError::FutureVersion(v)),
        v => Err(ParseError::OldVersion(v)),
    }
}

/// Find `"version": N` near the start (Terraform writes it first).
fn sniff_version(head: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(head);
    let i = text.find("\"version\"")?;
    let rest = text[i + 9..].trim_start().strip_prefix(':')?.trim_start();
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

fn add_resource(st: &mut ParsedState, instances: &mut Vec<Instance>, res: RawResource) {
    let mode = res.mode.unwrap_or_else(|| "managed".into());
    let prefix = resource_address(res.module.as_deref(), &mode, &res.rtype, &res.name);
    let mut current = 0u64;
    for inst in res.instances.unwrap_or_default() {
        let mut address = prefix.clone();
        if let Some(k) = &inst.index_key {
            k.push_to(&mut address);
        }
        if let Some(key) = inst.deposed {
            st.deposed.push(format!("{address} (deposed {key})"));
            continue;
        }
        current += 1;
        let digest = inst.attributes.or(inst.attributes_flat).unwrap_or_default();
        instances.push(Instance {
            address: address.into_boxed_str(),
            tainted: inst.status.as_deref() == Some("tainted"),
            digest,
        });
    }
    let key = (mode.into_boxed_str(), res.rtype.into_boxed_str());
    match st.resource_counts.binary_search_by(|(k, _)| k.cmp(&key)) {
        Ok(i) => st.resource_counts[i].1 += current,
        Err(i) => st.resource_counts.insert(i, (key, current)),
    }
}

fn add_check(st: &mut ParsedState, chk: RawCheck) {
    let kind = chk.object_kind.unwrap_or_else(|| "unknown".into());
    let config_addr = chk.config_addr.unwrap_or_default();
    match chk.objects {
        Some(objs) if !objs.is_empty() => {
            for o in objs {
                st.checks.push(CheckInfo {
                    address: o.object_addr.unwrap_or_else(|| config_addr.clone()),
                    kind: kind.clone(),
                    status: normalize_status(o.status),
                });
            }
        }
        _ => st.checks.push(CheckInfo {
            address: config_addr,
            kind,
            status: normalize_status(chk.status),
        }),
    }
}

/// Check counts by status (pass, fail, error, unknown).
pub(crate) fn count_checks(checks: &[CheckInfo]) -> BTreeMap<&str, u64> {
    let mut m = BTreeMap::new();
    for c in checks {
        *m.entry(c.status.as_str()).or_insert(0) += 1;
    }
    m
}

pub(crate) fn normalize_status(s: Option<String>) -> String {
    match s.as_deref() {
        Some("pass") => "pass",
        Some("fail") => "fail",
        Some("error") => "error",
        _ => "unknown",
    }
    .to_string()
}

/// `module.a.data.type.name` style address (without index).
pub fn resource_address(module: Option<&str>, mode: &str, rtype: &str, name: &str) -> String {
    let mut a = String::with_capacity(64);
    if let Some(m) = module.filter(|m| !m.is_empty()) {
        a.push_str(m);
        a.push('.');
    }
    if mode == "data" {
        a.push_str("data.");
    }
    a.push_str(rtype);
    a.push('.');
    a.push_str(name);
    a
}

/// One element of `resources`: the fast scan ([`fast_resource`]) when it
/// accepts the text, else `serde_json`, whose result (or error, with its
/// exact position) is the reference.
fn parse_resource(raw: &[u8]) -> Result<RawResource, serde_json::Error> {
    match fast_resource(raw) {
        Some(r) => Ok(r),
        None => serde_json::from_slice(raw),
    }
}

/// A resource read in one validating pass that hashes attributes as it
/// goes and skips every other value without building it; `None` whenever
/// the text is not what `serde_json` would read into the same
/// [`RawResource`] (invalid JSON, wrong types, duplicate fields, missing
/// `type`/`name`, lone surrogates, deep nesting, invalid UTF-8): the caller
/// then asks `serde_json`.
fn fast_resource(raw: &[u8]) -> Option<RawResource> {
    match fast_resource_prefix(raw)? {
        (r, n) if raw[n..].iter().all(|c| matches!(c, b' ' | b'\n' | b'\t' | b'\r')) => Some(r),
        _ => None,
    }
}

/// [`fast_resource`] on the start of `raw` (which may hold more, or be cut
/// short): the resource and its length, when one is complete and valid.
fn fast_resource_prefix(raw: &[u8]) -> Option<(RawResource, usize)> {
    let mut scan = Scan::new(raw);
    let mut module = None;
    let mut mode = None;
    let mut rtype = None;
    let mut name = None;
    let mut instances = None;
    scan.object(|s, key| {
        match key {
            b"module" => once(&mut module, small_str(s)?),
            b"mode" => once(&mut mode, small_str(s)?),
            b"type" => once(&mut rtype, small_str(s)?),
            b"name" => once(&mut name, small_str(s)?),
            b"instances" => {
                let list = if s.null() {
                    None
                } else {
                    let mut list = Vec::new();
                    s.array(|s| {
                        list.push(fast_instance(s)?);
                        Some(())
                    })?;
                    Some(list)
                };
                once(&mut instances, list)
            }
            _ => s.skip().map(drop),
        }
    })?;
    // The scan accepts valid UTF-8 only (it checks every string that has a
    // non-ASCII byte, and takes nothing but ASCII outside strings).
    let n = scan.offset();
    let r = RawResource {
        module: module.flatten(),
        mode: mode.flatten(),
        rtype: rtype.flatten()?,
        name: name.flatten()?,
        instances: instances.flatten(),
    };
    Some((r, n))
}

fn fast_instance(s: &mut Scan<'_>) -> Option<RawInstance> {
    let mut index_key = None;
    let mut status = None;
    let mut deposed = None;
    let mut attributes = None;
    let mut attributes_flat = None;
    s.object(|s, key| match key {
        b"index_key" => once(&mut index_key, small_index_key(s)?),
        b"status" => once(&mut status, small_str(s)?),
        b"deposed" => once(&mut deposed, small_str(s)?),
        b"attributes" => once(&mut attributes, attrs(s)?),
        b"attributes_flat" => once(&mut attributes_flat, attrs(s)?),
        _ => s.skip().map(drop),
    })?;
    Some(RawInstance {
        index_key: index_key.flatten(),
        status: status.flatten(),
        deposed: deposed.flatten(),
        attributes: attributes.flatten(),
        attributes_flat: attributes_flat.flatten(),
    })
}

/// A field seen once (serde refuses duplicate fields).
fn once<T>(slot: &mut Option<T>, v: T) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(v);
    Some(())
}

/// A string field (or `null`): a string without escapes is its text (the
/// scan validated it), anything else is read by serde_json from its
/// validated text (exact semantics: `null`, escapes).
fn small_str(s: &mut Scan<'_>) -> Option<Option<String>> {
    match s.skip()? {
        [b'"', text @ .., b'"'] if !text.contains(&b'\\') => {
            std::str::from_utf8(text).ok().map(|t| Some(t.to_owned()))
        }
        other => serde_json::from_slice(other).ok(),
    }
}

/// `index_key`: a string without escapes as [`small_str`], else serde_json
/// (integer ranges, escapes).
fn small_index_key(s: &mut Scan<'_>) -> Option<Option<IndexKey>> {
    match s.skip()? {
        [b'"', text @ .., b'"'] if !text.contains(&b'\\') => std::str::from_utf8(text)
            .ok()
            .map(|t| Some(IndexKey::Str(t.to_owned()))),
        other => serde_json::from_slice(other).ok(),
    }
}

/// `attributes`: `null` is no digest (as `Option<AttrDigest>`), else the digest.
fn attrs(s: &mut Scan<'_>) -> Option<Option<AttrDigest>> {
    if s.null() {
        return Some(None);
    }
    s.digest().map(Some)
}

#[derive(Deserialize)]
struct RawResource {
    #[serde(default)]
    module: Option<String>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(rename = "type")]
    rtype: String,
    name: String,
    /// `null` is read as no instances, as Terraform and OpenTofu do.
    #[serde(default)]
    instances: Option<Vec<RawInstance>>,
}

#[derive(Deserialize)]
struct RawInstance {
    #[serde(default)]
    index_key: Option<IndexKey>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    deposed: Option<String>,
    #[serde(default)]
    attributes: Option<AttrDigest>,
    #[serde(default)]
    attributes_flat: Option<AttrDigest>,
}

#[derive(Deserialize)]
struct RawCheck {
    #[serde(default)]
    object_kind: Option<String>,
    #[serde(default)]
    config_addr: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    objects: Option<Vec<RawCheckObject>>,
}

#[derive(Deserialize)]
struct RawCheckObject {
    #[serde(default)]
    object_addr: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

/// `index_key`: an integer (count) or a string (for_each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexKey {
    Int(i64),
    Str(String),
}

impl IndexKey {
    /// Append `[KEY]` as [`fmt::Display`] writes it, without the formatting
    /// machinery for the common keys (once per instance of a large state).
    fn push_to(&self, out: &mut String) {
        match self {
            IndexKey::Int(i) => {
                out.push('[');
                let mut digits = [0u8; 20];
                let mut n = i.unsigned_abs();
                let mut at = digits.len();
                loop {
                    at -= 1;
                    digits[at] = b'0' + (n % 10) as u8;
                    n /= 10;
                    if n == 0 {
                        break;
                    }
                }
                if *i < 0 {
                    out.push('-');
                }
                out.extend(digits[at..].iter().map(|&d| d as char));
                out.push(']');
            }
            // Printable ASCII that HCL quoting leaves as it is.
            IndexKey::Str(s)
                if s
                    .bytes()
                    .all(|c| (b' '..=b'~').contains(&c) && !matches!(c, b'"' | b'\\' | b'$' | b'%')) =>
            {
                out.push_str("[\"");
                out.push_str(s);
                out.push_str("\"]");
            }
            k => {
                use std::fmt::Write;
                let _ = write!(out, "{k}");
            }
        }
    }
}

impl fmt::Display for IndexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexKey::Int(i) => write!(f, "[{i}]"),
            IndexKey::Str(s) => write!(f, "[{}]", hcl_quoted(s)),
        }
    }
}

/// A string key quoted as Terraform prints it in addresses (`terraform state
/// list`, plans), so it can be pasted into `-replace=` or `-target=`: HCL
/// escapes, `${`/`%{` doubled to `$${`/`%%{`, printable non-ASCII kept as
/// UTF-8 and anything not printable as `\uXXXX` (Terraform's toHCLQuotedString).
pub fn hcl_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '$' | '%' => {
                out.push(c);
                if chars.peek() == Some(&'{') {
                    out.push(c);
                }
            }
            c if !go_is_print(c) => {
                let n = c as u32;
                if n < 0x10000 {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `unicode.IsPrint` for what state keys hold: false for control
/// characters, spaces other than U+0020, line/paragraph separators, format
/// characters and private-use code points (unassigned code points, which Go
/// also escapes, are not tracked here).
fn go_is_print(c: char) -> bool {
    let n = c as u32;
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    const NOT_PRINT: &[(u32, u32)] = &[
        (0x00AD, 0x00AD),
        (0x0600, 0x0605),
        (0x061C, 0x061C),
        (0x06DD, 0x06DD),
        (0x070F, 0x070F),
        (0x0890, 0x0891),
        (0x08E2, 0x08E2),
        (0x180E, 0x180E),
        (0x200B, 0x200F),
        (0x202A, 0x202E),
        (0x2060, 0x2064),
        (0x2066, 0x206F),
        (0xD800, 0xF8FF),
        (0xFDD0, 0xFDEF),
        (0xFEFF, 0xFEFF),
        (0xFFF9, 0xFFFB),
        (0xFFFE, 0xFFFF),
        (0x110BD, 0x110BD),
        (0x110CD, 0x110CD),
        (0x13430, 0x1343F),
        (0x1BCA0, 0x1BCA3),
        (0x1D173, 0x1D17A),
        (0xE0001, 0xE0001),
        (0xE0020, 0xE007F),
        (0xF0000, 0x10FFFF),
    ];
    !NOT_PRINT.iter().any(|(lo, hi)| (*lo..=*hi).contains(&n))
}

impl<'de> Deserialize<'de> for IndexKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IndexKey;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer or string index_key")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IndexKey, E> {
                Ok(IndexKey::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IndexKey, E> {
                i64::try_from(v)
                    .map(IndexKey::Int)
                    .map_err(|_| E::custom("index_key out of range"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IndexKey, E> {
                Ok(IndexKey::Str(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Outputs: counted by sensitivity; values are skipped unread.
struct Outputs(OutputCounts);

impl<'de> Deserialize<'de> for Outputs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Outputs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an outputs object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Outputs, A::Error> {
                let mut out = OutputCounts::default();
                while map.next_key::<IgnoredAny>()?.is_some() {
                    let o: RawOutput = map.next_value()?;
                    out.total += 1;
                    out.sensitive += usize::from(o.sensitive.unwrap_or(false));
                }
                Ok(Outputs(out))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize)]
struct RawOutput {
    #[serde(default)]
    sensitive: Option<bool>,
}

#[cfg(test)]
mod memory_tests {
    use super::*;

    fn doc(names: &[&str], lineage: &str) -> String {
        let attrs: Vec<String> = names.iter().map(|n| format!(r#""{n}": "v-{lineage}""#)).collect();
        format!(
            r#"{{"version": 4, "serial": 1, "lineage": "{lineage}", "resources": [{{"mode": "managed", "type": "t", "name": "a", "instances": [{{"attributes": {{{}}}}}]}}]}}"#,
            attrs.join(", ")
        )
    }

    /// Issue 21: what a state keeps per instance between reads (its
    /// address, the 64-bit hash of its attributes, a 4-byte hash per
    /// top-level attribute) stays within 24 + 4 per attribute + the address,
    /// plus each distinct set of attribute ids once per state (it was 48 +
    /// 8 per attribute + a boxed address, and 64 + 16 with spare capacity
    /// before that).
    #[test]
    fn an_instance_keeps_compact_digests() {
        let names = ["id", "arn", "name", "password", "tags", "ingress", "enabled", "size", "ratio", "user_data", "nothing"];
        let st = parse_state(doc(&names, "x").as_bytes()).unwrap();
        let i = st.instances.get(0).unwrap();
        assert_eq!(i.address, "t.a");
        assert_eq!(i.digest.ids.len(), 11);
        assert_eq!(i.digest.hashes.len(), 11);
        let (address, item, words) = st.instances.heap_parts();
        assert_eq!((address, item), (3, 24));
        assert_eq!(words, 4 * (1 + 11) + 4 * 11, "the id set, then the hashes");
        let kept = address + item + words;
        assert!(kept <= 24 + 11 * 4 + 3 + 4 * 12, "{kept} bytes per instance");
        // retained_bytes counts them (and the shared path table's share).
        let base = parse_state(doc(&[], "x").as_bytes()).unwrap().estimated_bytes();
        assert!(st.estimated_bytes() >= base + 11 * 8, "{} - {base}", st.estimated_bytes());
    }

    #[test]
    fn states_with_the_same_attribute_names_share_one_path_table() {
        let a = parse_state(doc(&["id", "arn", "tags"], "a").as_bytes()).unwrap();
        let b = parse_state(doc(&["id", "arn", "tags"], "b").as_bytes()).unwrap();
        let c = parse_state(doc(&["id", "name"], "c").as_bytes()).unwrap();
        assert!(a.paths.shares(&b.paths), "same names, one table");
        assert!(!a.paths.shares(&c.paths));
        // Shared, the table is counted once between its holders.
        assert!(a.paths.estimated_bytes() < c.paths.estimated_bytes() + 8);
        // Comparisons by name still work across tables.
        fn first(s: &ParsedState) -> crate::monitors::terraform::instances::DigestRef<'_> {
            s.instances.get(0).unwrap().digest
        }
        let (x, y) = (first(&a), first(&c));
        assert_eq!(
            x.changed_paths(&a.paths, &y, &c.paths),
            vec!["arn", "id", "name", "tags"]
        );
        assert!(x.changed_paths(&a.paths, &first(&b), &b.paths) == vec!["arn", "id", "tags"]);
        // No spare capacity kept: the id set and the hashes, 4 bytes each.
        assert_eq!(a.instances.heap_parts().2, 4 * (1 + 3) + 4 * 3);
        drop((a, b));
        // The table goes with its last holder; a new one is made for the next.
        let d = parse_state(doc(&["id", "arn", "tags"], "d").as_bytes()).unwrap();
        assert_eq!(d.paths.name(0), "id");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(s: &ParsedState, mode: &str, rtype: &str) -> u64 {
        s.resource_counts
            .iter()
            .find(|((m, t), _)| &**m == mode && &**t == rtype)
            .map_or(0, |(_, n)| *n)
    }

    fn parse(s: &str) -> Result<ParsedState, ParseError> {
        parse_state(s.as_bytes())
    }

    const V4: &str = r#"{
      "version": 4, "terraform_version": "1.9.0", "serial": 7, "lineage": "abc-123",
      "outputs": {"db_password": {"value": "CANARY-out", "type": "string", "sensitive": true},
                  "ip": {"value": "10.0.0.1", "type": "string"}},
      "resources": [
        {"mode": "managed", "type": "null_resource", "name": "web", "provider": "provider[\"registry.terraform.io/hashicorp/null\"]",
         "instances": [{"index_key": 0, "schema_version": 0, "attributes": {"id": "1", "triggers": {"pw": "CANARY-attr"}}, "private": "Q0FOQVJZ"},
                       {"index_key": 1, "status": "tainted", "attributes": {"id": "2"}},
                       {"index_key": 1, "deposed": "00aa11bb", "attributes": {"id": "3"}}]},
        {"module": "module.net[\"eu\"]", "mode": "data", "type": "null_data_source", "name": "x", "provider": "provider.null",
         "instances": [{"index_key": "a\"b", "attributes_flat": {"id": "x", "inputs.%": "0"}}]},
        {"mode": "managed", "type": "null_resource", "name": "single", "each": null, "instances": [{"attributes": {"id": "4"}, "future_field": {"x": 1}}]}
      ],
      "check_results": [
        {"object_kind": "resource", "config_addr": "null_resource.web", "status": "fail",
         "objects": [{"object_addr": "null_resource.web[0]", "status": "pass"}, {"object_addr": "null_resource.web[1]", "status": "fail", "failure_messages": ["CANARY-msg"]}]},
        {"object_kind": "check", "config_addr": "check.health", "status": "unknown", "objects": null}
      ],
      "some_future_top_level_key": [1, 2, 3]
    }"#;

    #[test]
    fn parses_v4_with_modules_data_flat_and_keys() {
        let s = parse(V4).unwrap();
        assert_eq!(s.version, 4);
        assert_eq!(s.serial, Some(7));
        assert_eq!(s.lineage.as_deref(), Some("abc-123"));
        assert_eq!(s.terraform_version.as_deref(), Some("1.9.0"));
        let addrs: Vec<&str> = s.instances.iter().map(|i| i.address).collect();
        assert_eq!(
            addrs,
            vec![
                "module.net[\"eu\"].data.null_data_source.x[\"a\\\"b\"]",
                "null_resource.single",
                "null_resource.web[0]",
                "null_resource.web[1]",
            ]
        );
        assert_eq!(s.deposed, vec!["null_resource.web[1] (deposed 00aa11bb)"]);
        assert_eq!(s.tainted().count(), 1);
        assert_eq!(
            count(&s, "managed", "null_resource"),
            3
        );
        assert_eq!(
            count(&s, "data", "null_data_source"),
            1
        );
        assert_eq!(
            s.outputs,
            OutputCounts {
                total: 2,
                sensitive: 1
            }
        );
        let counts = s.check_counts();
        assert_eq!(counts.get("pass"), Some(&1));
        assert_eq!(counts.get("fail"), Some(&1));
        assert_eq!(counts.get("unknown"), Some(&1));
        assert_eq!(s.failed_checks().count(), 1);
    }

    #[test]
    fn check_results_null_and_missing_are_fine() {
        let s =
            parse(r#"{"version":4,"serial":1,"lineage":"l","resources":[],"check_results":null}"#)
                .unwrap();
        assert!(s.checks.is_empty());
        let s = parse(r#"{"version":4,"serial":1,"lineage":"l"}"#).unwrap();
        assert_eq!(s.instance_count(), 0);
    }

    #[test]
    fn bad_inputs_have_specific_errors() {
        assert_eq!(parse("").unwrap_err(), ParseError::Empty);
        assert_eq!(parse("  \n").unwrap_err(), ParseError::Empty);
        assert!(matches!(
            parse(&V4[..V4.len() / 2]),
            Err(ParseError::Truncated { .. })
        ));
        assert!(matches!(
            parse("{\"version\": 4,, }"),
            Err(ParseError::Syntax { .. })
        ));
        assert!(matches!(
            parse("\u{0}\u{1}garbage\u{ff}"),
            Err(ParseError::Syntax { .. })
        ));
        assert!(matches!(parse("[1,2]"), Err(ParseError::Schema { .. })));
        assert_eq!(
            parse(r#"{"serial": 1}"#).unwrap_err(),
            ParseError::NotAState
        );
        assert_eq!(
            parse(r#"{"version": 3, "terraform_version": "0.11.14", "serial": 1, "modules": [{"path": ["root"]}]}"#).unwrap_err(),
            ParseError::Version3
        );
        assert_eq!(
            parse(r#"{"version": 5, "serial": 1}"#).unwrap_err(),
            ParseError::FutureVersion(5)
        );
        // A future version whose shape we do not understand still says "version".
        assert_eq!(
            parse(r#"{"version": 5, "resources": {"new": "shape"}}"#).unwrap_err(),
            ParseError::FutureVersion(5)
        );
    }

    #[test]
    fn null_instances_are_an_empty_resource() {
        let s = parse(r#"{"version":4,"serial":2,"lineage":"l","resources":[
            {"mode":"managed","type":"terraform_data","name":"gone","instances":null},
            {"mode":"managed","type":"terraform_data","name":"x","instances":[{"attributes":{"id":"1"}}]}]}"#)
        .unwrap();
        assert_eq!(s.instance_count(), 1);
        assert_eq!(s.instances.get(0).unwrap().address, "terraform_data.x");
    }

    #[test]
    fn string_keys_are_quoted_like_terraform() {
        // Expected texts are what `terraform state list` (1.11) prints for
        // these for_each keys (see tests/terraform_e2e.rs for the live check).
        for (key, printed) in [
            ("${x}", r#""$${x}""#),
            ("%{y}", r#""%%{y}""#),
            ("$x", r#""$x""#),
            ("a${", r#""a$${""#),
            ("a\"b", r#""a\"b""#),
            ("bs\\z", r#""bs\\z""#),
            ("nl\nx", r#""nl\nx""#),
            ("cr\rx", r#""cr\rx""#),
            ("tab\there", r#""tab\there""#),
            ("ctl\u{1}", r#""ctl\u0001""#),
            ("del\u{7f}x", r#""del\u007fx""#),
            ("nbsp\u{a0}x", r#""nbsp\u00a0x""#),
            ("zw\u{200b}x", r#""zw\u200bx""#),
            ("ls\u{2028}x", r#""ls\u2028x""#),
            ("pua\u{e000}x", r#""pua\ue000x""#),
            ("bom\u{feff}x", r#""bom\ufeffx""#),
            ("é ü 日本", r#""é ü 日本""#),
            ("emoji😀", r#""emoji😀""#),
            ("'q'", r#""'q'""#),
        ] {
            assert_eq!(hcl_quoted(key), printed, "{key:?}");
        }
        assert_eq!(IndexKey::Str("${x}".into()).to_string(), r#"["$${x}"]"#);
        assert_eq!(IndexKey::Int(3).to_string(), "[3]");
    }

    #[test]
    fn index_keys_append_like_display() {
        let keys = [
            IndexKey::Int(0),
            IndexKey::Int(7),
            IndexKey::Int(-42),
            IndexKey::Int(i64::MAX),
            IndexKey::Int(i64::MIN),
            IndexKey::Str(String::new()),
            IndexKey::Str("eu-west-1 a_b.c/d~".into()),
            IndexKey::Str("a\"b\\c".into()),
            IndexKey::Str("${x}%{y}$z%w".into()),
            IndexKey::Str("équipe\n\u{7f}\u{200b}".into()),
        ];
        for k in keys {
            let mut out = String::from("x");
            k.push_to(&mut out);
            assert_eq!(out, format!("x{k}"), "{k:?}");
        }
    }

    #[test]
    fn errors_never_quote_content() {
        let e = parse(r#"{"version": 4, "serial": "CANARY-serial"}"#).unwrap_err();
        assert!(!e.to_string().contains("CANARY"), "{e}");
        let e = parse(r#"{"version": 4, "resources": [{"type": "CANARY-type"}]}"#).unwrap_err();
        assert!(!e.to_string().contains("CANARY"), "{e}");
    }

    #[test]
    fn opentofu_encrypted_state_is_recognised() {
        let s = parse(r#"{"serial": 3, "lineage": "enc-l", "meta": {"key_provider.pbkdf2.k": "e30="}, "encrypted_data": "AAAA", "encryption_version": "v0"}"#).unwrap();
        assert!(s.encrypted);
        assert_eq!(s.serial, Some(3));
        let s =
            parse(r#"{"meta": {}, "encrypted_data": "AAAA", "encryption_version": "v0"}"#).unwrap();
        assert!(s.encrypted);
        assert_eq!(s.serial, None);
    }

    #[test]
    fn attribute_changes_are_detected_by_path() {
        let a = parse(r#"{"version":4,"resources":[{"type":"t","name":"n","instances":[{"attributes":{"id":"1","size":1,"pw":"x"}}]}]}"#).unwrap();
        let b = parse(r#"{"version":4,"resources":[{"type":"t","name":"n","instances":[{"attributes":{"id":"1","size":2,"pw":"y"}}]}]}"#).unwrap();
        let (ia, ib) = (a.instances.get(0).unwrap(), b.instances.get(0).unwrap());
        assert_ne!(ia.digest.whole, ib.digest.whole);
        assert_eq!(
            ia.digest.changed_paths(&a.paths, &ib.digest, &b.paths),
            vec!["pw", "size"]
        );
    }

    /// What the fast scan and serde_json read from one resource element, as
    /// comparable text (digests included), each with a fresh path table.
    fn both(raw: &str) -> (Option<String>, Result<String, String>) {
        fn show(r: &RawResource, t: &PathTable) -> String {
            let insts: Vec<String> = r
                .instances
                .iter()
                .flatten()
                .map(|i| {
                    let d = |a: &Option<AttrDigest>| {
                        a.as_ref().map(|a| {
                            let named: Vec<(String, u32)> = a
                                .paths
                                .iter()
                                .map(|(id, h)| (t.name(*id).to_string(), *h))
                                .collect();
                            (a.whole, named)
                        })
                    };
                    format!(
                        "{:?} {:?} {:?} {:?} {:?}",
                        i.index_key,
                        i.status,
                        i.deposed,
                        d(&i.attributes),
                        d(&i.attributes_flat)
                    )
                })
                .collect();
            format!(
                "{:?} {:?} {} {} {:?} {:?}",
                r.module,
                r.mode,
                r.rtype,
                r.name,
                r.instances.is_some(),
                insts
            )
        }
        let (fast, t) = with_path_table(|| fast_resource(raw.as_bytes()));
        let fast = fast.map(|r| show(&r, &t));
        let (slow, t) =
            with_path_table(|| serde_json::from_slice::<RawResource>(raw.as_bytes()));
        (fast, slow.map(|r| show(&r, &t)).map_err(|e| e.to_string()))
    }

    #[test]
    fn fast_scan_reads_what_serde_json_reads() {
        let cases = [
            r##"{"mode": "managed", "type": "aws_iam_policy", "name": "p", "provider": "provider[\"registry.terraform.io/hashicorp/aws\"]",
                "instances": [{"index_key": "k\"1", "schema_version": 1, "attributes": {"policy": "{\"Statement\":[{\"Action\":[\"s3:GetObject\"],\"Effect\":\"Allow\"}],\"Version\":\"2012-10-17\"}",
                "user_data": "#!/bin/bash\necho \"a \u003c b \u0026\u0026 c\" \u003e /tmp/x\n\tdone \u00e9\u2713 \ud83d\ude00 \/ \\ \b\f\r", "tags": {"Name": "équipe ✓", "b": "", "\u0041": 1},
                "n": [0, -0.0, 1.5e3, 80, 8e1, 123456789012345678901234567890, 1E400, -2e-5], "t": true, "f": false, "z": null,
                "blocks": [{"x": [], "y": {}}, [[["deep"]]]]}, "sensitive_attributes": [[{"type": "get_attr", "value": "pw"}]], "private": "eyJ9"},
                {"index_key": 7, "status": "tainted", "attributes_flat": {"id": "x", "a.%": "0"}},
                {"index_key": null, "deposed": "00aa", "attributes": {"id": "3"}},
                {"attributes": null},
                {"attributes": "scalar"}, {"attributes": [1, "two"]}, {}]}"##,
            r##"{"module": "module.net[\"eu\"]", "mode": "data", "type": "t", "name": "n", "each": null, "instances": null}"##,
            r##"{"module": null, "mode": null, "type": "t", "name": "n"}"##,
            r##" { "type" : "t" , "name" : "n" , "instances" : [ ] } "##,
            r##"{"typ\u0065": "t", "name": "n\u00e9", "instances": [{"attributes": {"k\"ey": {"n\\ested": "v"}}}]}"##,
        ];
        for raw in cases {
            let (fast, slow) = both(raw);
            let fast = fast.unwrap_or_else(|| panic!("the fast scan refused a valid element: {raw}"));
            assert_eq!(Ok(fast), slow, "{raw}");
        }
    }

    #[test]
    fn fast_scan_leaves_everything_unusual_to_serde_json() {
        let deep = format!(r#"{{"type":"t","name":"n","instances":[{{"attributes":{{"a":{}1{}}}}}]}}"#, "[".repeat(150), "]".repeat(150));
        // serde_json refuses these: the fast scan must not accept them.
        let invalid = [
            "{\"type\": \"t\", \"name\": \"a\tb\"}",
            r#"{"type": "t", "name": "n", "instances": [{"attributes": {"a": "bad \x escape"}}]}"#,
            r#"{"type": "t", "name": "n", "instances": [{"attributes": {"a": "\u12G4"}}]}"#,
            r#"{"type": "t", "name": "n", "instances": [{"attributes": {"a": [1,]}}]}"#,
            r#"{"type": "t", "name": "n", "instances": [{"attributes": {"a": 01}}]}"#,
            r#"{"type": "t", "name": "n", "instances": [{"attributes": {"a": 1.}}]}"#,
            r#"{"type": "t", "name": "n", "instances": [{"attributes": {"a": -}}]}"#,
            r#"{"type": "t", "name": "n", "instances": [{"attributes": {"a": tru}}]}"#,
            r#"{"type": "t", "name": "n", "instances": [{"attributes": {"a" 1}}]}"#,
            r#"{"type": "t", "name": "n", "instances": [{"attributes": {"a": 1} x}]}"#,
            r#"{"type": "t", "type": "u", "name": "n"}"#,
            r#"{"type": "t"}"#,
            r#"{"type": null, "name": "n"}"#,
            r#"{"type": 5, "name": "n"}"#,
            r#"{"type": "t", "name": "n", "instances": [{"index_key": 1.5}]}"#,
            r#"{"type": "t", "name": "n", "instances": [{"index_key": 99999999999999999999}]}"#,
            r#"{"type": "t", "name": "n", "instances": [{"attributes": {}, "attributes": {}}]}"#,
            r#"{"type": "t", "name": "n", "instances": {}}"#,
            r#"{"type": "t", "name": "n"} {"#,
            r#"{"type": "t", "name": "n",}"#,
        ];
        for raw in invalid {
            let (fast, slow) = both(raw);
            assert_eq!(fast, None, "{raw}");
            assert!(slow.is_err(), "{raw}");
        }
        // Not refused by serde_json, but left to it (same result either way).
        let unusual = [
            r#"{"type": "t", "name": "n", "instances": [{"attributes": {"a": "\ud800"}}]}"#.to_string(),
            deep,
            r#"["m", "managed", "t", "n", null]"#.to_string(),
        ];
        for raw in &unusual {
            assert_eq!(both(raw).0, None, "{raw}");
        }
        let bad_utf8 = b"{\"type\": \"t\", \"name\": \"n\", \"instances\": [{\"attributes\": {\"a\": \"\xff\"}}]}";
        assert!(fast_resource(bad_utf8).is_none());
        assert!(serde_json::from_slice::<RawResource>(bad_utf8).is_err());
    }

    /// A reader that hands out `n` bytes at a time.
    struct Dribble<'a>(&'a [u8], usize);
    impl Read for Dribble<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.1.min(out.len()).min(self.0.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn fast_path_reads_the_same_whatever_the_chunking_and_errors_keep_their_position() {
        let whole = parse(V4).unwrap();
        for n in [1, 7, 100] {
            let st = parse_state(Dribble(V4.as_bytes(), n)).unwrap();
            assert_eq!(st.instances, whole.instances, "{n}");
            assert_eq!(st.resource_counts, whole.resource_counts);
        }
        // Valid resources, then one with invalid JSON deep in its attributes:
        // the position is serde_json's own for the whole document.
        let res = |i: usize| format!("{{\"type\": \"t\", \"name\": \"r{i}\", \"instances\": [{{\"attributes\": {{\"ud\": \"a\\n\\u003e b\"}}}}]}}");
        let mut doc = String::from("{\"version\": 4,\n\"resources\": [\n");
        for i in 0..50 {
            doc.push_str(&res(i));
            doc.push_str(",\n");
        }
        doc.push_str("{\"type\": \"t\", \"name\": \"bad\",\n \"instances\": [{\"attributes\": {\"x\": \"\\u12\", \"y\": 1}}]}\n]}\n");
        let want = serde_json::from_str::<serde_json::Value>(&doc).unwrap_err();
        for n in [3, 4096] {
            let e = parse_state(Dribble(doc.as_bytes(), n)).unwrap_err();
            assert_eq!(
                e,
                ParseError::Syntax {
                    line: want.line(),
                    column: want.column()
                },
                "{n}"
            );
        }
    }

    /// Differential check (a small in-tree fuzz): byte mutations of a
    /// resource element; whenever the fast scan accepts one, serde_json must
    /// accept it too and read exactly the same.
    #[test]
    fn fast_scan_never_accepts_what_serde_json_reads_differently() {
        let base = br##"{"module": "module.a[\"x\"]", "mode": "managed", "type": "aws_iam_policy", "name": "p", "instances": [{"index_key": "k\u00e9", "status": "tainted", "attributes": {"policy": "{\"S\":[{\"A\":\"s3:*\"}]}", "ud": "#!/bin/sh\n\techo \u003e x \ud83d\ude00", "n": [1, -2.5e3, 0], "t": {"a": true, "b": null}}, "private": "x"}, {"index_key": 3, "deposed": "d", "attributes_flat": {"k": "v"}}]}"##;
        let alphabet = b"{}[]\":,\\ntu0123456789-+.eE \t\nabcdfr/\x01\x7f\xc3\xa9";
        let accepted = mutate_and_compare(base, alphabet, 0x9E37_79B9_7F4A_7C15, 20_000);
        assert!(accepted > 100, "{accepted}");
    }

    /// The same on long strings (the scan reads them 16 bytes at a time):
    /// escapes, control characters, quotes, non-ASCII and invalid UTF-8
    /// bytes land at every offset of a 16-byte block, including its edges.
    #[test]
    fn fast_scan_long_strings_match_serde_json() {
        let base = "{\"type\": \"aws_instance\", \"name\": \"équipe-plateforme-0123456789\", \"instances\": [{\"index_key\": \"a-fairly-long-index-key-0123456789\", \"attributes\": {\"user_data\": \"#!/bin/bash\\nset -euo pipefail\\nexec \\u003e \\u003e(tee /var/log/user-data.log) 2\\u003e\\u00261\\n# généré — ne pas éditer ✓\\n\\tproxy_pass http://127.0.0.1:8080;\\n\\\"quoted\\\" \\\\ back\\/slash\", \"policy\": \"{\\\"Statement\\\":[{\\\"Action\\\":[\\\"s3:GetObject\\\",\\\"s3:PutObject\\\"],\\\"Effect\\\":\\\"Allow\\\",\\\"Resource\\\":\\\"arn:aws:s3:::bucket-with-a-long-name/*\\\"}]}\", \"plain_0123456789_abcdefghijklmnopqrstuvwxyz\": \"0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ\"}}]}";
        // The base itself goes the fast way.
        assert!(fast_resource(base.as_bytes()).is_some());
        let alphabet = b"\"\\nu0123456789abcdef \t/\x00\x01\x1f\x20\x7f\x80\xbf\xc3\xa9\xe2\x9c\x93\xed\xa0\x80\xf0\xff";
        let accepted = mutate_and_compare(base.as_bytes(), alphabet, 0x2545_F491_4F6C_DD1D, 20_000);
        assert!(accepted > 1000, "{accepted}");
    }

    /// Mutate `base` `rounds` times (1 to 3 byte edits from `alphabet`);
    /// whenever the fast scan accepts a mutant, serde_json must read the
    /// same. Returns how many mutants the fast scan accepted.
    fn mutate_and_compare(base: &[u8], alphabet: &[u8], seed: u64, rounds: usize) -> usize {
        let mut seed = seed;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut accepted = 0;
        for _ in 0..rounds {
            let mut doc = base.to_vec();
            for _ in 0..1 + next(3) {
                let at = next(doc.len());
                match next(3) {
                    0 => doc[at] = alphabet[next(alphabet.len())],
                    1 => {
                        doc.remove(at);
                    }
                    _ => doc.insert(at, alphabet[next(alphabet.len())]),
                }
            }
            let (fast, t) = with_path_table(|| fast_resource(&doc));
            let Some(fast) = fast else { continue };
            accepted += 1;
            let (slow, t2) = with_path_table(|| serde_json::from_slice::<RawResource>(&doc));
            let text = String::from_utf8_lossy(&doc);
            let slow = slow.unwrap_or_else(|e| panic!("fast accepted what serde_json refuses ({e}): {text}"));
            let show = |r: &RawResource, t: &PathTable| {
                let i: Vec<String> = r
                    .instances
                    .iter()
                    .flatten()
                    .map(|i| {
                        let d = |a: &Option<AttrDigest>| {
                            a.as_ref().map(|a| {
                                let p: Vec<(String, u32)> =
                                    a.paths.iter().map(|(id, h)| (t.name(*id).to_string(), *h)).collect();
                                (a.whole, p)
                            })
                        };
                        format!("{:?} {:?} {:?} {:?} {:?}", i.index_key, i.status, i.deposed, d(&i.attributes), d(&i.attributes_flat))
                    })
                    .collect();
                format!("{:?} {:?} {} {} {:?}", r.module, r.mode, r.rtype, r.name, i)
            };
            assert_eq!(show(&fast, &t), show(&slow, &t2), "{text}");
        }
        accepted
    }
}
