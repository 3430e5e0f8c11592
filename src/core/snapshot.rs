//! The plain-value result of one collection.
//!
//! A [`Snapshot`] holds metric families (names, label values, numbers) and a
//! per-target status for `--status`. Monitors build it; the encoder turns it
//! into the exposition format. It never holds a value read from a secret field.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Kind of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Gauge,
    /// A counter; `name` is the base name, the encoder appends `_total`.
    Counter,
}

/// Static description of one metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDef {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricKind,
}

impl MetricDef {
    pub const fn gauge(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            kind: MetricKind::Gauge,
        }
    }

    pub const fn counter(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            kind: MetricKind::Counter,
        }
    }
}

/// A label value, shared by every series that carries it (the `state_file`
/// of a target repeats on each of its series).
pub type LabelValue = Arc<str>;

/// One series of a family, as read: its labels and its value.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    names: &'a [&'static str],
    values: &'a [LabelValue],
    pub value: f64,
}

impl<'a> Sample<'a> {
    /// Label pairs in the order they were given.
    pub fn labels(&self) -> impl Iterator<Item = (&'static str, &'a str)> + 'a {
        let (names, values) = (self.names, self.values);
        names.iter().zip(values).map(|(k, v)| (*k, &**v))
    }

    /// Value of the label `name`, if the series has it.
    pub fn label(&self, name: &str) -> Option<&'a str> {
        let (names, values) = (self.names, self.values);
        names.iter().position(|k| *k == name).map(|i| &*values[i])
    }

    /// Label pairs as owned strings (tests, reports).
    pub fn owned_labels(&self) -> Vec<(&'static str, String)> {
        self.labels().map(|(k, v)| (k, v.to_owned())).collect()
    }

    /// The label names and values, as a key that is equal for equal label sets.
    pub(crate) fn key(&self) -> (&'a [&'static str], &'a [LabelValue]) {
        (self.names, self.values)
    }
}

/// The series of one family, stored compactly: one value per series, the
/// label values of all series in one vector (shared strings, 16 bytes per
/// label), and the label names once per distinct set of names ("shape";
/// most families have one). A series costs 8 + 16 bytes per label, against
/// about 130 bytes when each series held its own vector of owned strings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples {
    shapes: Vec<Box<[&'static str]>>,
    /// Shape of each series; empty while every series has shape 0.
    shape_of: Vec<u32>,
    values: Vec<f64>,
    labels: Vec<LabelValue>,
}

impl Samples {
    /// Number of series.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The series in insertion order.
    pub fn iter(&self) -> SamplesIter<'_> {
        SamplesIter {
            samples: self,
            next: 0,
            offset: 0,
        }
    }

    /// The index of the shape with these label names (added if new).
    fn shape<I>(&mut self, names: I) -> u32
    where
        I: Iterator<Item = &'static str> + Clone,
    {
        let same = |s: &[&'static str]| s.iter().copied().eq(names.clone());
        match self.shapes.iter().position(|s| same(s)) {
            Some(i) => i as u32,
            None => {
                self.shapes.push(names.collect());
                (self.shapes.len() - 1) as u32
            }
        }
    }

    /// Add one series of shape `shape`: its label values in the shape's order.
    fn push(&mut self, shape: u32, values: impl IntoIterator<Item = LabelValue>, value: f64) {
        if shape != 0 && self.shape_of.is_empty() {
            self.shape_of = vec![0; self.values.len()];
        }
        if !self.shape_of.is_empty() {
            self.shape_of.push(shape);
        }
        self.labels.extend(values);
        self.values.push(value);
    }

    /// Append every series of `other`.
    fn append(&mut self, other: Samples) {
        let map: Vec<u32> = other
            .shapes
            .iter()
            .map(|s| self.shape(s.iter().copied()))
            .collect();
        let mut labels = other.labels.into_iter();
        for (i, value) in other.values.iter().enumerate() {
            let shape = other.shape_of.get(i).copied().unwrap_or(0) as usize;
            let n = other.shapes[shape].len();
            self.push(map[shape], labels.by_ref().take(n), *value);
        }
    }

    fn shrink_to_fit(&mut self) {
        self.shapes.shrink_to_fit();
        self.shape_of.shrink_to_fit();
        self.values.shrink_to_fit();
        self.labels.shrink_to_fit();
    }

    /// Estimated heap bytes: the vectors, and each label string divided by
    /// the number of series sharing it (so that a snapshot's total counts
    /// each string once).
    pub fn heap_bytes(&self) -> usize {
        let strings: f64 = self
            .labels
            .iter()
            .map(|v| {
                (v.len() + 2 * std::mem::size_of::<usize>()) as f64 / Arc::strong_count(v) as f64
            })
            .sum();
        self.shapes.capacity() * std::mem::size_of::<Box<[&'static str]>>()
            + self
                .shapes
                .iter()
                .map(|s| s.len() * std::mem::size_of::<&'static str>())
                .sum::<usize>()
            + self.shape_of.capacity() * std::mem::size_of::<u32>()
            + self.values.capacity() * std::mem::size_of::<f64>()
            + self.labels.capacity() * std::mem::size_of::<LabelValue>()
            + strings as usize
    }
}

impl<'a> IntoIterator for &'a Samples {
    type Item = Sample<'a>;
    type IntoIter = SamplesIter<'a>;
    fn into_iter(self) -> SamplesIter<'a> {
        self.iter()
    }
}

/// Iterator over the series of a [`Samples`].
#[derive(Debug, Clone)]
pub struct SamplesIter<'a> {
    samples: &'a Samples,
    next: usize,
    offset: usize,
}

impl<'a> Iterator for SamplesIter<'a> {
    type Item = Sample<'a>;

    fn next(&mut self) -> Option<Sample<'a>> {
        let s = self.samples;
        let value = *s.values.get(self.next)?;
        let shape = s.shape_of.get(self.next).copied().unwrap_or(0) as usize;
        let names: &'a [&'static str] = &s.shapes[shape];
        let values = &s.labels[self.offset..self.offset + names.len()];
        self.next += 1;
        self.offset += names.len();
        Some(Sample {
            names,
            values,
            value,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.samples.len() - self.next;
        (n, Some(n))
    }
}

impl ExactSizeIterator for SamplesIter<'_> {}

/// Shares equal label values within one builder.
#[derive(Debug, Default)]
struct Interner {
    set: HashSet<LabelValue>,
    /// The last few values (a target's `state_file` comes again and again).
    recent: [Option<LabelValue>; 4],
    next: usize,
}

impl Interner {
    fn intern(&mut self, s: &str) -> LabelValue {
        if let Some(v) = self.recent.iter().flatten().find(|v| ***v == *s) {
            return v.clone();
        }
        let v = match self.set.get(s) {
            Some(v) => v.clone(),
            None => {
                let v: LabelValue = Arc::from(s);
                self.set.insert(v.clone());
                v
            }
        };
        self.recent[self.next] = Some(v.clone());
        self.next = (self.next + 1) % self.recent.len();
        v
    }

    /// Give values equal to `v` this very string from now on (unless an
    /// equal one is interned already).
    fn share(&mut self, v: &LabelValue) {
        if !self.set.contains(&**v) {
            self.set.insert(v.clone());
        }
    }
}

/// A metric family with its samples, in insertion order.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricFamily {
    pub def: MetricDef,
    pub samples: Samples,
}

/// Health of one target (a state file, a certificate source, a backup source).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Read and nothing to report.
    Ok,
    /// Read, and there are findings (drift, unapproved changes, expiring...).
    Findings,
    /// Read, but its contents could not be checked (an encrypted state):
    /// neither clean nor a read error.
    Unchecked,
    /// This read failed; older values may still be served (stale).
    Error,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Findings => "findings",
            Health::Unchecked => "unchecked",
            Health::Error => "error",
        }
    }
}

/// Status of one target, for `--status` and the landing page.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TargetStatus {
    pub target: String,
    pub health: Health,
    /// Short human summary ("42 instances, 0 drifted"). Never contains values from inputs.
    pub summary: String,
    /// What went wrong, quoting paths and positions only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// True when the values served for this target come from an earlier read.
    pub stale: bool,
    /// What the CLI and the status page show about this target, typed so that
    /// they render any monitor without knowing it (plain values only).
    #[serde(skip_serializing_if = "Facts::is_empty")]
    pub facts: Facts,
}

/// Builds a target's facts when an edge asks for them (`--status`, the
/// status page): a monitor that keeps what they are made of anyway (the
/// Terraform monitor's last analysis) need not keep them built for every
/// target between collections (about 1.3 KB per target).
pub trait FactSource: Send + Sync {
    /// The facts, in the order the edges show them (always the same for
    /// one source: it is immutable).
    fn facts(&self) -> Vec<Fact>;
}

/// The facts of a [`TargetStatus`]: a list, or built on first use from a
/// [`FactSource`] (then kept with this copy of the status; edges that serve
/// a long-lived snapshot read a [`TargetStatus::detached`] copy instead, so
/// the served snapshot never keeps them).
#[derive(Clone, Default)]
pub struct Facts {
    /// The facts themselves (when there is no `source`).
    list: Vec<Fact>,
    /// Where lazy facts come from.
    source: Option<Arc<dyn FactSource>>,
    /// The facts built from `source` by this copy.
    built: std::sync::OnceLock<Vec<Fact>>,
}

impl Facts {
    /// Facts built from `source` when first read.
    pub fn lazy(source: Arc<dyn FactSource>) -> Self {
        Facts {
            list: Vec::new(),
            source: Some(source),
            built: std::sync::OnceLock::new(),
        }
    }

    /// Whether there are no facts (builds lazy ones).
    pub fn is_empty(&self) -> bool {
        (**self).is_empty()
    }

    /// Whether these facts come from a source (built on first use).
    pub fn is_lazy(&self) -> bool {
        self.source.is_some()
    }

    /// Whether this copy holds its facts built (always, unless lazy and
    /// not read yet).
    pub fn is_built(&self) -> bool {
        self.source.is_none() || self.built.get().is_some()
    }

    /// Whether both come from one source (a monitor that served a target
    /// from memory shares its last values instead of copying them).
    pub fn shares_source(&self, other: &Facts) -> bool {
        match (&self.source, &other.source) {
            (Some(a), Some(b)) => std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b)),
            _ => false,
        }
    }

    /// A copy holding the list itself (built now if lazy; `self` is left
    /// as it is).
    pub fn detached(&self) -> Facts {
        match &self.source {
            Some(source) => {
                Facts::from(self.built.get().cloned().unwrap_or_else(|| source.facts()))
            }
            None => Facts::from(self.list.clone()),
        }
    }

    /// Estimated heap bytes held here: the list, or the facts built from a
    /// lazy source (the source itself is counted by its monitor).
    pub fn heap_bytes(&self) -> usize {
        let list = |v: &Vec<Fact>| {
            v.capacity() * std::mem::size_of::<Fact>()
                + v.iter().map(Fact::heap_bytes).sum::<usize>()
        };
        list(&self.list) + self.built.get().map_or(0, list)
    }
}

impl From<Vec<Fact>> for Facts {
    fn from(list: Vec<Fact>) -> Self {
        Facts {
            list,
            source: None,
            built: std::sync::OnceLock::new(),
        }
    }
}

impl std::ops::Deref for Facts {
    type Target = Vec<Fact>;

    fn deref(&self) -> &Vec<Fact> {
        match &self.source {
            Some(source) => self.built.get_or_init(|| source.facts()),
            None => &self.list,
        }
    }
}

impl<'a> IntoIterator for &'a Facts {
    type Item = &'a Fact;
    type IntoIter = std::slice::Iter<'a, Fact>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl std::ops::DerefMut for Facts {
    /// Changing lazy facts builds them and keeps them (no source any more).
    fn deref_mut(&mut self) -> &mut Vec<Fact> {
        if let Some(source) = self.source.take() {
            self.list = self.built.take().unwrap_or_else(|| source.facts());
        }
        &mut self.list
    }
}

impl std::fmt::Debug for Facts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

impl PartialEq for Facts {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl PartialEq<Vec<Fact>> for Facts {
    fn eq(&self, other: &Vec<Fact>) -> bool {
        **self == *other
    }
}

impl serde::Serialize for Facts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

impl TargetStatus {
    /// A status without facts (add them with [`TargetStatus::with_facts`]).
    pub fn new(target: impl Into<String>, health: Health, summary: impl Into<String>) -> Self {
        TargetStatus {
            target: target.into(),
            health,
            summary: summary.into(),
            error: None,
            stale: false,
            facts: Facts::default(),
        }
    }

    pub fn with_facts(mut self, facts: Vec<Fact>) -> Self {
        self.facts = facts.into();
        self
    }

    /// A copy with its facts built (for an edge that shows a long-lived
    /// snapshot: the snapshot itself never keeps them built).
    pub fn detached(&self) -> TargetStatus {
        TargetStatus {
            target: self.target.clone(),
            health: self.health,
            summary: self.summary.clone(),
            error: self.error.clone(),
            stale: self.stale,
            facts: self.facts.detached(),
        }
    }

    /// Findings for the one-shot exit code: the facts that are findings, and
    /// at least one when the monitor says the target has findings.
    pub fn finding_count(&self, now: i64) -> usize {
        let n = self.facts.iter().filter(|f| f.is_finding(now)).count();
        if self.health == Health::Findings {
            n.max(1)
        } else {
            n
        }
    }
}

/// A value of a [`Fact::Detail`]: shown as is in tables, typed in JSON.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Value {
    Text(String),
    Int(i64),
    Bool(bool),
    /// Seconds since the Unix epoch (RFC 3339 in tables, a number in JSON).
    Timestamp(i64),
    /// No value (`-` in tables, `null` in JSON).
    None,
}

impl Value {
    pub fn text(s: impl Into<String>) -> Self {
        Value::Text(s.into())
    }

    pub fn opt_text(s: Option<&str>) -> Self {
        s.map(Value::text).unwrap_or(Value::None)
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Text(s) => f.write_str(s),
            Value::Int(n) => write!(f, "{n}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Timestamp(t) => f.write_str(&rfc3339(*t)),
            Value::None => f.write_str("-"),
        }
    }
}

/// Seconds since the epoch as RFC 3339 (the number itself before 1970).
pub fn rfc3339(t: i64) -> String {
    match u64::try_from(t) {
        Ok(s) => humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(s),
        )
        .to_string(),
        Err(_) => t.to_string(),
    }
}

/// What a monitor knows about one item of a target, in a form every edge
/// (`--status`, `--state-file`, the status page, `/api/v1/status`) renders
/// without knowing the monitor. Plain values only: names, times, counts,
/// attribute paths; never a secret or a value read from a state.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "fact", rename_all = "snake_case")]
pub enum Fact {
    /// Something that stops being valid at `not_after` (a certificate).
    Expiry {
        item: String,
        /// Unix seconds.
        not_after: i64,
        /// Time left under which it is a warning / critical (a finding).
        #[serde(skip_serializing_if = "Option::is_none")]
        warning_seconds: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        critical_seconds: Option<i64>,
    },
    /// Something expected to happen again and again (a backup, a scrub).
    Freshness {
        item: String,
        /// Unix seconds of the last success; `None`: never.
        last_success: Option<i64>,
        /// Older than this is late (a finding).
        #[serde(skip_serializing_if = "Option::is_none")]
        max_age_seconds: Option<i64>,
    },
    /// The outcome of a probe (a health check).
    Check {
        item: String,
        kind: String,
        success: bool,
        duration_seconds: f64,
    },
    /// One thing wrong (drift, an unapproved change, a failed check...).
    Finding {
        kind: String,
        subject: String,
        detail: String,
        /// False: shown, but not a finding for the exit code (a policy `warn` rule).
        counted: bool,
    },
    /// A part of the target that could not be read or checked (a drift
    /// report that is not a plan, a policy that failed): an error of the
    /// one-shot report, with what to do in `message`.
    Problem { component: String, message: String },
    /// One line of a target's summary (`serial: 7`).
    Detail { field: String, value: Value },
    /// How many of something there are (`resources`: `managed aws_instance` 3).
    Count {
        group: String,
        item: String,
        count: u64,
    },
}

/// How an [`Fact::Expiry`] stands against its thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    Ok,
    Warning,
    Critical,
    Expired,
}

impl Urgency {
    pub fn as_str(self) -> &'static str {
        match self {
            Urgency::Ok => "ok",
            Urgency::Warning => "warning",
            Urgency::Critical => "critical",
            Urgency::Expired => "expired",
        }
    }
}

/// Default thresholds when a monitor gives none (the certificate defaults).
pub const DEFAULT_WARNING_SECONDS: i64 = 30 * 86_400;
pub const DEFAULT_CRITICAL_SECONDS: i64 = 7 * 86_400;

impl Fact {
    /// Short name of the kind, for panels and JSON keys.
    pub fn kind(&self) -> FactKind {
        match self {
            Fact::Expiry { .. } => FactKind::Expiry,
            Fact::Freshness { .. } => FactKind::Freshness,
            Fact::Check { .. } => FactKind::Check,
            Fact::Finding { .. } => FactKind::Finding,
            Fact::Problem { .. } => FactKind::Problem,
            Fact::Detail { .. } => FactKind::Detail,
            Fact::Count { .. } => FactKind::Count,
        }
    }

    /// Urgency of an expiry at `now` (`Ok` for other facts): critical or
    /// warning when the time left is at most the threshold, as the monitors say.
    pub fn urgency(&self, now: i64) -> Urgency {
        match self {
            Fact::Expiry {
                not_after,
                warning_seconds,
                critical_seconds,
                ..
            } => {
                let left = not_after - now;
                if left < 0 {
                    Urgency::Expired
                } else if left <= critical_seconds.unwrap_or(DEFAULT_CRITICAL_SECONDS) {
                    Urgency::Critical
                } else if left <= warning_seconds.unwrap_or(DEFAULT_WARNING_SECONDS) {
                    Urgency::Warning
                } else {
                    Urgency::Ok
                }
            }
            _ => Urgency::Ok,
        }
    }

    /// Age of a freshness fact at `now` (`None`: never succeeded, or another fact).
    pub fn age(&self, now: i64) -> Option<i64> {
        match self {
            Fact::Freshness {
                last_success: Some(t),
                ..
            } => Some((now - t).max(0)),
            _ => None,
        }
    }

    /// A freshness fact older than its max age (never succeeded is late too).
    pub fn is_late(&self, now: i64) -> bool {
        match self {
            Fact::Freshness {
                max_age_seconds: Some(max),
                ..
            } => self.age(now).is_none_or(|a| a > *max),
            _ => false,
        }
    }

    /// Whether this fact is a finding at `now`.
    pub fn is_finding(&self, now: i64) -> bool {
        match self {
            Fact::Expiry { .. } => self.urgency(now) != Urgency::Ok,
            Fact::Freshness { .. } => self.is_late(now),
            Fact::Check { success, .. } => !success,
            Fact::Finding { counted, .. } => *counted,
            Fact::Problem { .. } | Fact::Detail { .. } | Fact::Count { .. } => false,
        }
    }
}

/// The kinds of [`Fact`], in the order panels are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FactKind {
    Expiry,
    Freshness,
    Check,
    Finding,
    Problem,
    Detail,
    Count,
}

/// Everything one collection of one monitor produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub families: Vec<MetricFamily>,
    pub targets: Vec<TargetStatus>,
    /// Targets whose read was still running when this collection served
    /// what it had: the registry re-collects soon to pick them up.
    pub pending: usize,
}

impl Snapshot {
    /// Number of targets whose last read failed.
    pub fn failed_targets(&self) -> usize {
        self.targets
            .iter()
            .filter(|t| t.health == Health::Error)
            .count()
    }

    /// Look up a family by name (tests, reports).
    pub fn family(&self, name: &str) -> Option<&MetricFamily> {
        self.families.iter().find(|f| f.def.name == name)
    }

    /// Value of the first sample of `name` whose labels include all of `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.family(name)?
            .samples
            .iter()
            .find(|s| labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
            .map(|s| s.value)
    }
}

impl Value {
    fn heap_bytes(&self) -> usize {
        match self {
            Value::Text(s) => s.capacity(),
            _ => 0,
        }
    }
}

impl Fact {
    /// Estimated heap bytes of this fact's text.
    pub fn heap_bytes(&self) -> usize {
        match self {
            Fact::Expiry { item, .. } | Fact::Freshness { item, .. } => item.capacity(),
            Fact::Check { item, kind, .. } => item.capacity() + kind.capacity(),
            Fact::Finding {
                kind,
                subject,
                detail,
                ..
            } => kind.capacity() + subject.capacity() + detail.capacity(),
            Fact::Problem { component, message } => component.capacity() + message.capacity(),
            Fact::Detail { field, value } => field.capacity() + value.heap_bytes(),
            Fact::Count { group, item, .. } => group.capacity() + item.capacity(),
        }
    }
}

impl TargetStatus {
    /// Estimated heap bytes of this status (texts and facts).
    pub fn heap_bytes(&self) -> usize {
        self.target.capacity()
            + self.summary.capacity()
            + self.error.as_ref().map_or(0, String::capacity)
            + self.facts.heap_bytes()
    }
}

impl Snapshot {
    /// Estimated bytes this snapshot holds: series with their label values,
    /// target statuses with their facts (for `homelab_monitor_retained_bytes`).
    pub fn estimated_bytes(&self) -> usize {
        let series: usize = self.families.iter().map(|f| f.samples.heap_bytes()).sum();
        std::mem::size_of::<Snapshot>()
            + self.families.capacity() * std::mem::size_of::<MetricFamily>()
            + series
            + self.targets.capacity() * std::mem::size_of::<TargetStatus>()
            + self
                .targets
                .iter()
                .map(TargetStatus::heap_bytes)
                .sum::<usize>()
    }
}

/// Builds a [`Snapshot`], grouping samples by family in first-use order.
#[derive(Debug, Default)]
pub struct SnapshotBuilder {
    families: Vec<MetricFamily>,
    index: HashMap<&'static str, usize>,
    targets: Vec<TargetStatus>,
    strings: Interner,
}

impl SnapshotBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Declare a family so it is exported (with HELP/TYPE) even without samples.
    pub fn declare(&mut self, def: &MetricDef) -> &mut Self {
        self.family_mut(def);
        self
    }

    /// Add one gauge sample.
    pub fn gauge(&mut self, def: &MetricDef, labels: &[(&'static str, &str)], value: f64) {
        let i = self.family_index(def);
        let samples = &mut self.families[i].samples;
        let shape = samples.shape(labels.iter().map(|(k, _)| *k));
        let strings = &mut self.strings;
        samples.push(shape, labels.iter().map(|(_, v)| strings.intern(v)), value);
    }

    /// Add one gauge sample with owned label values.
    pub fn gauge_owned(
        &mut self,
        def: &MetricDef,
        labels: Vec<(&'static str, String)>,
        value: f64,
    ) {
        let labels: Vec<(&'static str, &str)> =
            labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.gauge(def, &labels, value);
    }

    /// Label values equal to `v` added from now on are `v` itself, not a
    /// copy: a monitor that keeps a target's label anyway shares it with
    /// that target's series (issue 21: one string per target, and none
    /// allocated anew by each collection).
    pub fn share_label(&mut self, v: &LabelValue) {
        self.strings.share(v);
    }

    pub fn target(&mut self, status: TargetStatus) {
        self.targets.push(status);
    }

    /// Append every family and target of `other` (used to merge per-target parts).
    pub fn extend(&mut self, other: Snapshot) {
        for fam in other.families {
            let def = fam.def;
            self.family_mut(&def).samples.append(fam.samples);
        }
        self.targets.extend(other.targets);
    }

    pub fn build(mut self) -> Snapshot {
        // Kept until the next collection: no spare capacity (a family of
        // 100,000 series grown by doubling holds up to twice its size).
        for f in &mut self.families {
            f.samples.shrink_to_fit();
        }
        self.targets.shrink_to_fit();
        Snapshot {
            families: self.families,
            targets: self.targets,
            pending: 0,
        }
    }

    fn family_mut(&mut self, def: &MetricDef) -> &mut MetricFamily {
        let i = self.family_index(def);
        &mut self.families[i]
    }

    fn family_index(&mut self, def: &MetricDef) -> usize {
        match self.index.get(def.name) {
            Some(&i) => i,
            None => {
                self.families.push(MetricFamily {
                    def: *def,
                    samples: Samples::default(),
                });
                let i = self.families.len() - 1;
                self.index.insert(def.name, i);
                i
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 21: a label the monitor keeps (a target's) is the very string
    /// its series carry; other values are interned as before.
    #[test]
    fn a_shared_label_is_the_very_string_the_series_carry() {
        const A: MetricDef = MetricDef::gauge("a", "a");
        const B: MetricDef = MetricDef::gauge("b", "b");
        let label: LabelValue = Arc::from("ws1/terraform.tfstate");
        let mut b = SnapshotBuilder::new();
        b.gauge(&A, &[("state_file", "other")], 0.0);
        b.share_label(&label);
        b.gauge(&A, &[("state_file", "ws1/terraform.tfstate")], 1.0);
        b.gauge(
            &B,
            &[("state_file", "ws1/terraform.tfstate"), ("mode", "managed")],
            2.0,
        );
        b.gauge(&B, &[("state_file", "other"), ("mode", "managed")], 3.0);
        // An equal value already interned stays the one used.
        let other: LabelValue = Arc::from("other");
        b.share_label(&other);
        b.gauge(&A, &[("state_file", "other")], 4.0);
        let snap = b.build();
        let mut shared = 0;
        let mut others = Vec::new();
        for f in &snap.families {
            for s in f.samples.iter() {
                let v = &s.values[0];
                if **v == *label {
                    assert!(Arc::ptr_eq(v, &label), "a copy of the shared label");
                    shared += 1;
                } else {
                    assert_eq!(&**v, "other");
                    assert!(!Arc::ptr_eq(v, &other));
                    others.push(v.clone());
                }
            }
        }
        assert_eq!(shared, 2);
        assert_eq!(others.len(), 3);
        assert!(others.iter().all(|o| Arc::ptr_eq(o, &others[0])));
    }

    fn expiry(not_after: i64, thresholds: Option<(i64, i64)>) -> Fact {
        Fact::Expiry {
            item: "c".into(),
            not_after,
            warning_seconds: thresholds.map(|t| t.0),
            critical_seconds: thresholds.map(|t| t.1),
        }
    }

    #[test]
    fn expiry_urgency_follows_thresholds_or_the_defaults() {
        let day = 86_400;
        let t = Some((10 * day, 3 * day));
        assert_eq!(expiry(20 * day, t).urgency(0), Urgency::Ok);
        assert_eq!(expiry(5 * day, t).urgency(0), Urgency::Warning);
        assert_eq!(expiry(2 * day, t).urgency(0), Urgency::Critical);
        assert_eq!(expiry(-1, t).urgency(0), Urgency::Expired);
        // Defaults: 30 / 7 days.
        assert_eq!(expiry(20 * day, None).urgency(0), Urgency::Warning);
        assert!(expiry(20 * day, None).is_finding(0));
        assert!(!expiry(20 * day, t).is_finding(0));
    }

    #[test]
    fn freshness_never_succeeded_is_late_and_findings_count_per_target() {
        let never = Fact::Freshness {
            item: "b".into(),
            last_success: None,
            max_age_seconds: Some(60),
        };
        assert!(never.is_late(1000) && never.is_finding(1000));
        let fresh = Fact::Freshness {
            item: "b".into(),
            last_success: Some(990),
            max_age_seconds: Some(60),
        };
        assert_eq!(fresh.age(1000), Some(10));
        assert!(!fresh.is_finding(1000));
        let warn = Fact::Finding {
            kind: "policy".into(),
            subject: "x".into(),
            detail: "warn".into(),
            counted: false,
        };
        let t = TargetStatus::new("t", Health::Ok, "").with_facts(vec![fresh, warn.clone()]);
        assert_eq!(t.finding_count(1000), 0);
        // A target with findings counts at least one, even without a finding fact.
        let t = TargetStatus::new("t", Health::Findings, "").with_facts(vec![warn]);
        assert_eq!(t.finding_count(1000), 1);
        let t = TargetStatus::new("t", Health::Findings, "").with_facts(vec![never.clone(), never]);
        assert_eq!(t.finding_count(1000), 2);
    }

    #[test]
    fn facts_serialize_as_plain_tagged_values() {
        let f = Fact::Detail {
            field: "serial".into(),
            value: Value::Int(7),
        };
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"fact": "detail", "field": "serial", "value": 7})
        );
        assert_eq!(Value::Timestamp(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(Value::None.to_string(), "-");
    }

    const C: MetricDef = MetricDef::gauge("c_metric", "C.");

    #[test]
    fn a_label_value_is_stored_once_and_shared_by_every_series_that_carries_it() {
        let mut b = SnapshotBuilder::new();
        let l = String::from("envs/prod/terraform.tfstate");
        b.gauge(&A, &[("state_file", &l)], 1.0);
        b.gauge(&B, &[("state_file", &l)], 2.0);
        for status in ["pass", "fail"] {
            b.gauge(&C, &[("state_file", &l), ("status", status)], 3.0);
        }
        b.gauge_owned(
            &C,
            vec![("state_file", l.clone()), ("status", "x".into())],
            4.0,
        );
        let s = b.build();
        let values: Vec<&LabelValue> = s
            .families
            .iter()
            .flat_map(|f| f.samples.iter())
            .map(|x| &x.key().1[0])
            .collect();
        assert_eq!(values.len(), 5);
        assert!(values.iter().all(|v| Arc::ptr_eq(v, values[0])));
        // One allocation for the five uses: the builder's table is gone.
        assert_eq!(Arc::strong_count(values[0]), 5);
        let c = s.family("c_metric").unwrap();
        let got: Vec<_> = c
            .samples
            .iter()
            .map(|x| (x.owned_labels(), x.value))
            .collect();
        assert_eq!(
            got,
            [
                (
                    vec![("state_file", l.clone()), ("status", "pass".into())],
                    3.0
                ),
                (
                    vec![("state_file", l.clone()), ("status", "fail".into())],
                    3.0
                ),
                (vec![("state_file", l.clone()), ("status", "x".into())], 4.0),
            ]
        );
        // A shared string counts once in the snapshot's estimate: 100 series
        // of one 200-byte value cost their slots (24 bytes each), not 100
        // copies of the string.
        let long = "p".repeat(200);
        let sized = |n: usize| {
            let mut b = SnapshotBuilder::new();
            for _ in 0..n {
                b.gauge(&A, &[("state_file", &long)], 1.0);
            }
            b.build().estimated_bytes()
        };
        let (one, many) = (sized(1), sized(100));
        assert!(one > 200, "{one}");
        assert!((many - one).abs_diff(99 * 24) <= 1, "{one} {many}");
    }

    #[test]
    fn series_with_other_label_names_keep_their_own_names_and_order() {
        let mut b = SnapshotBuilder::new();
        b.gauge(&A, &[("x", "1")], 1.0);
        b.gauge(&A, &[("y", "2"), ("x", "3")], 2.0);
        b.gauge(&A, &[], 3.0);
        b.gauge(&A, &[("x", "4")], 4.0);
        let mut other = SnapshotBuilder::new();
        other.gauge(&A, &[("y", "5"), ("x", "6")], 5.0);
        other.gauge(&B, &[("z", "7")], 6.0);
        b.extend(other.build());
        let s = b.build();
        let a: Vec<_> = s.families[0]
            .samples
            .iter()
            .map(|x| (x.labels().collect::<Vec<_>>(), x.value))
            .collect();
        assert_eq!(
            a,
            [
                (vec![("x", "1")], 1.0),
                (vec![("y", "2"), ("x", "3")], 2.0),
                (vec![], 3.0),
                (vec![("x", "4")], 4.0),
                (vec![("y", "5"), ("x", "6")], 5.0),
            ]
        );
        assert_eq!(s.families[0].samples.len(), 5);
        assert_eq!(s.value("a_metric", &[("x", "6")]), Some(5.0));
        assert_eq!(s.value("b_metric", &[("z", "7")]), Some(6.0));
        assert_eq!(
            s.families[1].samples.iter().next().unwrap().label("y"),
            None
        );
    }

    const A: MetricDef = MetricDef::gauge("a_metric", "A.");
    const B: MetricDef = MetricDef::gauge("b_metric", "B.");

    #[test]
    fn builder_groups_samples_by_family_in_first_use_order() {
        let mut b = SnapshotBuilder::new();
        b.gauge(&B, &[("x", "1")], 1.0);
        b.gauge(&A, &[("x", "1")], 2.0);
        b.gauge(&B, &[("x", "2")], 3.0);
        let s = b.build();
        assert_eq!(s.families.len(), 2);
        assert_eq!(s.families[0].def.name, "b_metric");
        assert_eq!(s.families[0].samples.len(), 2);
        assert_eq!(s.value("b_metric", &[("x", "2")]), Some(3.0));
        assert_eq!(s.value("a_metric", &[("x", "2")]), None);
    }
}
