//! Backup validation monitor.
//!
//! Each configured source is a set of files that a backup job wrote: the JSON
//! output of `restic snapshots --json` / `borg list --json`, a PostgreSQL
//! `backup_manifest`, our own JSON manifest, or a folder of backup files. The
//! monitor never runs a backup tool and never opens a repository, so it never
//! takes a repository lock; it only reads those files.
//!
//! Every format is parsed by a pure function (bytes in, typed value out) in its
//! own module and normalised into [`BackupRecord`]s; [`summarize`] turns records
//! into the exported values. Parsed files are cached by (size, mtime, inode).
//!
//! Semantics shared by every format:
//! - A backup's time is when it *finished* when the format records that
//!   (restic 0.17+ `summary.backup_end`, borg `end`, manifest `end`), else when
//!   it started.
//! - Failed or partial runs (manifest `status` other than `success`, borg
//!   `.checkpoint` archives) are never a success.
//! - Several groups in one source (restic: one per host and path set) are all
//!   expected to be fresh: `backup_last_success_timestamp_seconds` is the
//!   *stalest* group's newest backup; sizes and file counts are summed over the
//!   groups' newest backups.
//! - A readable source without any successful backup exports
//!   `backup_last_success_timestamp_seconds 0` so that age alerts fire.
//! - A source that cannot be read exports `backup_source_up 0`, logs one
//!   warning and keeps exporting its last good values (marked stale).
//!
//! Configuration (paths relative to the config file's folder; see
//! [`crate::config::BackupSourceConfig`] for every key):
//!
//! ```yaml
//! backup_validation:
//!   check_interval: "1h"
//!   retention_days: 30
//!   sources:
//!     - { name: nas, format: restic, path: "backups/restic-snapshots.json", max_age: "26h",
//!         stats_file: "backups/restic-stats.json", check_file: "backups/restic-check.txt" }
//!     - { name: laptop, format: borg, path: "backups/borg-list.json",
//!         info_file: "backups/borg-info.json", timezone: "Europe/Berlin" }
//!     - { name: db, format: pg_backup_manifest, path: "pg/*/backup_manifest",
//!         verify: checksums, verify_max_bytes: "512MiB" }
//!     - { name: scripts, format: manifest, path: "runs/*.json", verify: sizes }
//!     - { name: dumps, format: directory, path: "dumps", pattern: "*.sql.gz" }
//! ```
//!
//! Metrics, all labelled `source` only: `backup_source_up`,
//! `backup_last_success_timestamp_seconds`, `backup_last_size_bytes`,
//! `backup_last_files`, `backup_snapshots`, `backup_oldest_timestamp_seconds`,
//! `backup_max_age_seconds` (only with `max_age`), `backup_min_snapshots`
//! (`min_snapshots`, default 1), `backup_verification_success`
//! (restic with `check_file`, pg_backup_manifest always, manifest with `verify`;
//! absent while a cost-bounded checksum pass is incomplete) and
//! `backup_size_change_ratio` (needs two sized backups in one group).

pub mod borg;
pub mod directory;
mod files;
pub mod manifest;
pub mod pg_manifest;
pub mod restic;
pub mod verify;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::clock::unix_seconds;
use crate::config::{BackupConfig, BackupFormat, BackupSourceConfig};
use crate::monitor::{CollectContext, Monitor, MonitorError};
use crate::snapshot::{Health, MetricDef, Snapshot, SnapshotBuilder, TargetStatus};

pub use files::Stamp;

pub const LAST_SUCCESS: MetricDef = MetricDef::gauge(
    "backup_last_success_timestamp_seconds",
    "When the newest successful backup finished (for several host/path groups: the stalest group's newest); 0 if the source holds no successful backup.",
);
pub const LAST_SIZE: MetricDef = MetricDef::gauge(
    "backup_last_size_bytes",
    "Size of the data in the newest successful backup (summed over host/path groups).",
);
pub const LAST_FILES: MetricDef = MetricDef::gauge(
    "backup_last_files",
    "Files in the newest successful backup (summed over host/path groups).",
);
pub const SNAPSHOTS: MetricDef = MetricDef::gauge(
    "backup_snapshots",
    "Successful backups (snapshots, archives, runs, files) younger than retention_days.",
);
pub const OLDEST: MetricDef = MetricDef::gauge(
    "backup_oldest_timestamp_seconds",
    "When the oldest successful backup still present finished.",
);
pub const MAX_AGE: MetricDef = MetricDef::gauge(
    "backup_max_age_seconds",
    "Configured max_age: a newer successful backup is expected within this many seconds.",
);
pub const MIN_SNAPSHOTS: MetricDef = MetricDef::gauge(
    "backup_min_snapshots",
    "Configured min_snapshots (default 1): fewer successful backups inside retention_days than this is too few.",
);
pub const VERIFICATION: MetricDef = MetricDef::gauge(
    "backup_verification_success",
    "1 if the last verification passed (restic check output; manifest checksum and listed files), 0 if it found a problem.",
);
pub const SIZE_RATIO: MetricDef = MetricDef::gauge(
    "backup_size_change_ratio",
    "Size of the newest successful backup divided by the previous one's (0.1 = shrank by 90%).",
);
pub const UP: MetricDef = MetricDef::gauge(
    "backup_source_up",
    "1 if the source's files were read and parsed on the last check, 0 if not (then the other series are from the last good read).",
);

/// Every family this monitor exports, in output order.
pub const METRICS: [&MetricDef; 10] = [
    &UP,
    &LAST_SUCCESS,
    &LAST_SIZE,
    &LAST_FILES,
    &SNAPSHOTS,
    &OLDEST,
    &MAX_AGE,
    &MIN_SNAPSHOTS,
    &VERIFICATION,
    &SIZE_RATIO,
];

/// Why a document could not be parsed. Messages name positions and fields,
/// never values from the input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    #[error("the file is empty")]
    Empty,
    #[error("JSON ends early at line {line}, column {column} (truncated file?)")]
    Truncated { line: usize, column: usize },
    #[error("invalid JSON at line {line}, column {column}")]
    Syntax { line: usize, column: usize },
    #[error("unexpected JSON structure at `{path}` (line {line}, column {column})")]
    Structure {
        path: String,
        line: usize,
        column: usize,
    },
    #[error("{0}")]
    Invalid(String),
}

impl ParseError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            ParseError::Empty => "empty",
            ParseError::Truncated { .. } => "truncated",
            ParseError::Syntax { .. } => "syntax",
            ParseError::Structure { .. } => "structure",
            ParseError::Invalid(_) => "invalid",
        }
    }
}

/// Deserialize JSON, mapping errors to [`ParseError`] without quoting input values.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ParseError> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ParseError::Empty);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let (line, column) = (inner.line(), inner.column());
        match inner.classify() {
            serde_json::error::Category::Eof => ParseError::Truncated { line, column },
            serde_json::error::Category::Syntax | serde_json::error::Category::Io => {
                ParseError::Syntax { line, column }
            }
            serde_json::error::Category::Data => ParseError::Structure { path, line, column },
        }
    })?;
    de.end().map_err(|e| ParseError::Syntax {
        line: e.line(),
        column: e.column(),
    })?;
    Ok(value)
}

/// Seconds since the epoch of a jiff timestamp.
pub(crate) fn ts_secs(t: jiff::Timestamp) -> f64 {
    t.as_second() as f64 + f64::from(t.subsec_nanosecond()) / 1e9
}

/// Parse an RFC 3339 time with an offset (`2026-11-25T01:02:03.5+01:00`).
pub(crate) fn parse_rfc3339(s: &str) -> Option<f64> {
    s.trim().parse::<jiff::Timestamp>().ok().map(ts_secs)
}

/// Why a source could not be read. Messages quote paths and positions, never contents.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} does not exist")]
    NotFound(String),
    #[error("{0}: permission denied; give the exporter's user read access")]
    PermissionDenied(String),
    #[error("{0} is not a regular file")]
    NotAFile(String),
    #[error("{0} is not a directory")]
    NotADirectory(String),
    #[error("{path} is {size} bytes, over the {limit}-byte limit (raise max_file_size if it is genuine)")]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error("cannot read {path}: {kind}")]
    Io { path: String, kind: String },
    #[error("{path}: {source}")]
    Parse {
        path: String,
        #[source]
        source: ParseError,
    },
    #[error("no file matches {0}")]
    NoMatch(String),
}

impl BackupError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            BackupError::NotFound(_) => "not_found",
            BackupError::PermissionDenied(_) => "permission_denied",
            BackupError::NotAFile(_) => "not_a_file",
            BackupError::NotADirectory(_) => "not_a_directory",
            BackupError::TooLarge { .. } => "too_large",
            BackupError::Io { .. } => "io",
            BackupError::Parse { source, .. } => source.metric_label(),
            BackupError::NoMatch(_) => "no_match",
        }
    }
}

/// One backup run, normalised from any format.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupRecord {
    /// Runs of one group replace each other (restic: host and paths); `""` for one group.
    pub group: String,
    /// When it finished (or started, when the end is not recorded), seconds since the epoch.
    pub time: f64,
    pub size: Option<u64>,
    pub files: Option<u64>,
    /// False for failed, partial or running runs.
    pub success: bool,
}

/// What one read of a source found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceRead {
    pub records: Vec<BackupRecord>,
    /// `None`: this source has no verification (or it is not complete yet).
    pub verification: Option<bool>,
    /// Findings for `--status` ("2 listed files missing"); never input values.
    pub findings: Vec<String>,
    /// Extra status text ("verified 10 of 12 files").
    pub notes: Vec<String>,
}

/// The exported values of one source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub last_success: Option<f64>,
    pub last_size: Option<u64>,
    pub last_files: Option<u64>,
    pub in_retention: u64,
    pub oldest: Option<f64>,
    pub size_ratio: Option<f64>,
    pub groups: usize,
    /// The newest run (of any group) failed or is partial.
    pub newest_failed: bool,
}

/// Reduce records to exported values. Pure: `now` and `retention` are given.
pub fn summarize(records: &[BackupRecord], now: f64, retention: Duration) -> Summary {
    let mut s = Summary::default();
    let cutoff = now - retention.as_secs_f64();
    // Records are kept with their position: of two with the same time (borg
    // and file mtimes can have whole seconds), the later listed is the newer.
    let mut groups: BTreeMap<&str, Vec<(usize, &BackupRecord)>> = BTreeMap::new();
    for (i, r) in records.iter().enumerate().filter(|(_, r)| r.success) {
        groups.entry(r.group.as_str()).or_default().push((i, r));
        if r.time >= cutoff {
            s.in_retention += 1;
        }
        s.oldest = Some(s.oldest.map_or(r.time, |o: f64| o.min(r.time)));
    }
    s.groups = groups.len();
    s.newest_failed = records
        .iter()
        .enumerate()
        .max_by(|(ia, a), (ib, b)| a.time.total_cmp(&b.time).then(ia.cmp(ib)))
        .is_some_and(|(_, r)| !r.success);
    let (mut size, mut files) = (Some(0u64), Some(0u64));
    let (mut ratio_last, mut ratio_prev, mut ratio_n) = (0u64, 0u64, 0usize);
    for runs in groups.values_mut() {
        runs.sort_by(|(ia, a), (ib, b)| b.time.total_cmp(&a.time).then(ib.cmp(ia)));
        let Some((_, latest)) = runs.first() else {
            continue;
        };
        s.last_success = Some(
            s.last_success
                .map_or(latest.time, |t: f64| t.min(latest.time)),
        );
        size = size.zip(latest.size).map(|(a, b)| a.saturating_add(b));
        files = files.zip(latest.files).map(|(a, b)| a.saturating_add(b));
        if let Some((l, p)) = runs.get(1).and_then(|(_, prev)| latest.size.zip(prev.size)) {
            ratio_last = ratio_last.saturating_add(l);
            ratio_prev = ratio_prev.saturating_add(p);
            ratio_n += 1;
        }
    }
    if s.groups > 0 {
        s.last_size = size;
        s.last_files = files;
    }
    if ratio_n > 0 && ratio_prev > 0 {
        s.size_ratio = Some(ratio_last as f64 / ratio_prev as f64);
    }
    s
}

/// What a source needs to be read.
pub(crate) struct SourceCtx<'a> {
    pub cfg: &'a BackupSourceConfig,
    pub base: &'a std::path::Path,
    pub max_file_size: u64,
}

impl SourceCtx<'_> {
    pub fn resolve(&self, p: &str) -> PathBuf {
        files::resolve(self.base, p)
    }
}

/// Per-source parse caches, one kind per format.
enum FormatState {
    Restic(restic::State),
    Borg(borg::State),
    Pg(pg_manifest::State),
    Manifest(manifest::State),
    Directory,
}

impl FormatState {
    fn new(cfg: &BackupSourceConfig) -> Self {
        match cfg.format {
            BackupFormat::Restic => FormatState::Restic(restic::State::default()),
            BackupFormat::Borg => FormatState::Borg(borg::State::new(cfg.timezone.as_ref())),
            BackupFormat::PgBackupManifest => FormatState::Pg(pg_manifest::State::default()),
            BackupFormat::Manifest => FormatState::Manifest(manifest::State::default()),
            BackupFormat::Directory => FormatState::Directory,
        }
    }
}

struct Slot {
    cfg: BackupSourceConfig,
    state: FormatState,
    last_good: Option<(Summary, Option<bool>)>,
}

struct Inner {
    cfg: BackupConfig,
    base: PathBuf,
    slots: Mutex<Vec<Slot>>,
}

/// The backup validation monitor.
pub struct BackupMonitor {
    inner: Arc<Inner>,
}

impl BackupMonitor {
    /// `base`: the folder relative paths are resolved against (the config file's folder).
    pub fn new(cfg: BackupConfig, base: PathBuf) -> Self {
        let slots = cfg
            .sources
            .iter()
            .map(|s| Slot {
                cfg: s.clone(),
                state: FormatState::new(s),
                last_good: None,
            })
            .collect();
        BackupMonitor {
            inner: Arc::new(Inner {
                cfg,
                base,
                slots: Mutex::new(slots),
            }),
        }
    }
}

impl BackupMonitor {
    /// Apply `--interval` (it overrides every monitor's check_interval).
    pub fn with_interval(self, interval: Option<Duration>) -> Self {
        let Some(i) = interval else { return self };
        let mut cfg = self.inner.cfg.clone();
        cfg.check_interval = crate::config::HumanDuration(i);
        BackupMonitor::new(cfg, self.inner.base.clone())
    }
}

fn read_source(ctx: &SourceCtx<'_>, state: &mut FormatState) -> Result<SourceRead, BackupError> {
    match state {
        FormatState::Restic(st) => restic::read(ctx, st),
        FormatState::Borg(st) => borg::read(ctx, st),
        FormatState::Pg(st) => pg_manifest::read(ctx, st),
        FormatState::Manifest(st) => manifest::read(ctx, st),
        FormatState::Directory => directory::read(ctx),
    }
}

impl Inner {
    fn collect(&self, now: f64) -> Snapshot {
        let mut b = SnapshotBuilder::new();
        for def in METRICS {
            b.declare(def);
        }
        let retention = Duration::from_secs(u64::from(self.cfg.retention_days) * 86400);
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        for slot in slots.iter_mut() {
            let ctx = SourceCtx {
                cfg: &slot.cfg,
                base: &self.base,
                max_file_size: self.cfg.max_file_size.0,
            };
            let name = slot.cfg.name.as_str();
            let label = [("source", name)];
            let result = read_source(&ctx, &mut slot.state);
            let status = match result {
                Ok(read) => {
                    let summary = summarize(&read.records, now, retention);
                    let status = ok_status(&slot.cfg, &summary, &read, now);
                    slot.last_good = Some((summary, read.verification));
                    b.gauge(&UP, &label, 1.0);
                    status
                }
                Err(e) => {
                    tracing::warn!(
                        monitor = "backup_validation",
                        source = name,
                        format = slot.cfg.format.as_str(),
                        reason = e.metric_label(),
                        "{e}"
                    );
                    b.gauge(&UP, &label, 0.0);
                    TargetStatus {
                        target: name.to_string(),
                        health: Health::Error,
                        summary: format!("{} source cannot be read", slot.cfg.format),
                        error: Some(e.to_string()),
                        stale: slot.last_good.is_some(),
                    }
                }
            };
            if let Some(max) = slot.cfg.max_age {
                b.gauge(&MAX_AGE, &label, max.0.as_secs_f64());
            }
            b.gauge(&MIN_SNAPSHOTS, &label, f64::from(slot.cfg.min_snapshots));
            if let Some((s, verification)) = &slot.last_good {
                emit(&mut b, name, s, *verification);
            }
            b.target(status);
        }
        b.build()
    }
}

fn emit(b: &mut SnapshotBuilder, name: &str, s: &Summary, verification: Option<bool>) {
    let label = [("source", name)];
    b.gauge(&LAST_SUCCESS, &label, s.last_success.unwrap_or(0.0));
    if let Some(v) = s.last_size {
        b.gauge(&LAST_SIZE, &label, v as f64);
    }
    if let Some(v) = s.last_files {
        b.gauge(&LAST_FILES, &label, v as f64);
    }
    b.gauge(&SNAPSHOTS, &label, s.in_retention as f64);
    if let Some(v) = s.oldest {
        b.gauge(&OLDEST, &label, v);
    }
    if let Some(v) = verification {
        b.gauge(&VERIFICATION, &label, if v { 1.0 } else { 0.0 });
    }
    if let Some(v) = s.size_ratio {
        b.gauge(&SIZE_RATIO, &label, v);
    }
}

fn ok_status(cfg: &BackupSourceConfig, s: &Summary, read: &SourceRead, now: f64) -> TargetStatus {
    let mut findings = read.findings.clone();
    match s.last_success {
        None => findings.push("no successful backup".into()),
        Some(t) => {
            if let Some(max) = cfg.max_age {
                let age = now - t;
                if age > max.0.as_secs_f64() {
                    findings.push(format!(
                        "newest successful backup is {} old, over max_age {}",
                        humantime::format_duration(Duration::from_secs(age.max(0.0) as u64)),
                        max
                    ));
                }
            }
        }
    }
    // As BackupTooFewSnapshots: fewer backups inside retention_days than min_snapshots.
    if s.last_success.is_some() && s.in_retention < u64::from(cfg.min_snapshots) {
        findings.push(format!(
            "{} backup(s) inside retention_days, fewer than min_snapshots {}",
            s.in_retention, cfg.min_snapshots
        ));
    }
    if s.newest_failed {
        findings.push("the newest run failed or is partial".into());
    }
    if read.verification == Some(false) && read.findings.is_empty() {
        findings.push("verification failed".into());
    }
    let mut parts = vec![format!("{} backups in retention", s.in_retention)];
    if s.groups > 1 {
        parts.push(format!("{} groups", s.groups));
    }
    if let Some(r) = s.size_ratio {
        parts.push(format!("size ratio {r:.2}"));
    }
    parts.extend(read.notes.iter().cloned());
    parts.extend(findings.iter().cloned());
    TargetStatus {
        target: cfg.name.clone(),
        health: if findings.is_empty() {
            Health::Ok
        } else {
            Health::Findings
        },
        summary: parts.join(", "),
        error: None,
        stale: false,
    }
}

#[async_trait]
impl Monitor for BackupMonitor {
    fn name(&self) -> &'static str {
        "backup_validation"
    }

    fn check_interval(&self) -> Duration {
        self.inner.cfg.check_interval.0
    }

    fn retry_interval(&self) -> Duration {
        self.inner.cfg.retry_interval.0
    }

    fn timeout(&self) -> Duration {
        self.inner.cfg.timeout.0
    }

    fn describe(&self) -> String {
        let parts: Vec<String> = self
            .inner
            .cfg
            .sources
            .iter()
            .map(|s| format!("{} ({} {})", s.name, s.format, s.path))
            .collect();
        format!(
            "backups: {} (under {})",
            parts.join(", "),
            self.inner.base.display()
        )
    }

    async fn collect(&self, ctx: CollectContext) -> Result<Snapshot, MonitorError> {
        let inner = self.inner.clone();
        let now = unix_seconds(ctx.now);
        tokio::task::spawn_blocking(move || inner.collect(now))
            .await
            .map_err(|e| MonitorError::Panicked(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(group: &str, time: f64, size: Option<u64>, success: bool) -> BackupRecord {
        BackupRecord {
            group: group.into(),
            time,
            size,
            files: size.map(|s| s / 10),
            success,
        }
    }

    #[test]
    fn summary_of_one_group() {
        let r = vec![
            rec("", 100.0, Some(1000), true),
            rec("", 300.0, Some(100), true),
            rec("", 200.0, Some(1000), true),
            rec("", 400.0, Some(5), false),
        ];
        let s = summarize(&r, 400.0, Duration::from_secs(250));
        assert_eq!(s.last_success, Some(300.0));
        assert_eq!(s.last_size, Some(100));
        assert_eq!(s.last_files, Some(10));
        assert_eq!(s.in_retention, 2);
        assert_eq!(s.oldest, Some(100.0));
        assert_eq!(s.size_ratio, Some(0.1));
        assert!(s.newest_failed);
    }

    #[test]
    fn equal_times_are_ordered_by_position() {
        let r = vec![
            rec("", 100.0, Some(1000), true),
            rec("", 100.0, Some(10), true),
        ];
        let s = summarize(&r, 100.0, Duration::from_secs(10));
        assert_eq!(s.last_size, Some(10));
        assert_eq!(s.size_ratio, Some(0.01));
    }

    #[test]
    fn stalest_group_wins_and_sizes_add_up() {
        let r = vec![
            rec("a", 100.0, Some(10), true),
            rec("a", 500.0, Some(20), true),
            rec("b", 200.0, Some(30), true),
        ];
        let s = summarize(&r, 600.0, Duration::from_secs(1000));
        assert_eq!(s.last_success, Some(200.0));
        assert_eq!(s.last_size, Some(50));
        assert_eq!(s.groups, 2);
        assert_eq!(s.size_ratio, Some(2.0));
        assert!(!s.newest_failed);
    }

    #[test]
    fn no_success_and_unknown_sizes() {
        let s = summarize(&[rec("", 1.0, None, false)], 2.0, Duration::from_secs(10));
        assert_eq!(s.last_success, None);
        assert_eq!(s.last_size, None);
        assert_eq!(s.in_retention, 0);
        let s = summarize(
            &[rec("", 1.0, None, true), rec("", 2.0, None, true)],
            2.0,
            Duration::from_secs(10),
        );
        assert_eq!(s.last_size, None);
        assert_eq!(s.size_ratio, None);
    }

    // issue 13: --status agrees with BackupTooFewSnapshots (min_snapshots).
    #[test]
    fn fewer_than_min_snapshots_is_a_finding() {
        let read = SourceRead {
            records: Vec::new(),
            verification: None,
            findings: Vec::new(),
            notes: Vec::new(),
        };
        let mut cfg = BackupSourceConfig::new("db", BackupFormat::PgBackupManifest, "m");
        let one = summarize(
            &[rec("", 100.0, Some(1), true)],
            100.0,
            Duration::from_secs(10),
        );
        // One pg copy, default min_snapshots 1: fine.
        assert_eq!(ok_status(&cfg, &one, &read, 100.0).health, Health::Ok);
        cfg.min_snapshots = 3;
        let st = ok_status(&cfg, &one, &read, 100.0);
        assert_eq!(st.health, Health::Findings);
        assert!(
            st.summary
                .contains("1 backup(s) inside retention_days, fewer than min_snapshots 3"),
            "{}",
            st.summary
        );
        // Out of retention with the default: a finding too.
        cfg.min_snapshots = 1;
        let gone = summarize(
            &[rec("", 100.0, Some(1), true)],
            1000.0,
            Duration::from_secs(10),
        );
        assert_eq!(
            ok_status(&cfg, &gone, &read, 1000.0).health,
            Health::Findings
        );
    }

    #[test]
    fn json_errors_name_positions_not_values() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct T {
            a: u64,
        }
        let e = from_json::<T>(br#"{"a": "s3cr3t"}"#).unwrap_err();
        assert!(matches!(e, ParseError::Structure { .. }), "{e}");
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
        assert!(e.to_string().contains("`a`"), "{e}");
        assert!(matches!(
            from_json::<T>(br#"{"a": 1"#).unwrap_err(),
            ParseError::Truncated { .. }
        ));
        assert_eq!(from_json::<T>(b"  \n").unwrap_err(), ParseError::Empty);
        assert!(matches!(
            from_json::<T>(br#"{"a": 1} x"#).unwrap_err(),
            ParseError::Syntax { .. }
        ));
    }
}
