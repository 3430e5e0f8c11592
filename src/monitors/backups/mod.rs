//! Backup validation monitor.
//!
//! Each configured source is a set of files that a backup job wrote: the JSON
//! output of `restic snapshots --json` / `borg list --json` /
//! `pgbackrest info --output=json`, a PostgreSQL
//! `backup_manifest`, our own JSON manifest, or a folder of backup files. The
//! monitor only reads those files; it runs a backup tool only for an opt-in
//! `command:` source ([`command`]: `restic snapshots --json --no-lock`,
//! `borg list --json --bypass-lock`, read-only commands that take no lock).
//! A glob `path` of a single-document format reads each matched file as its
//! own set ([`glob`]).
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
//! - Several backup sets in one source (restic: one per `group_by` identity,
//!   default host + sorted paths + sorted tags; borg: one per `sets` glob,
//!   `other` for unmatched archives, `all` without `sets`) are all expected to
//!   be fresh. Each gets `backup_set_*{source,set}` series (at most
//!   `max_sets`, by label; `backup_sets_truncated` says when more exist) and a
//!   `Freshness` fact. For compatibility the per-source
//!   `backup_last_success_timestamp_seconds` is the *stalest* set's newest
//!   backup; sizes and file counts are summed over the sets' newest backups.
//! - `backup_last_run_success` comes from the job's `status_file` (see
//!   [`runs`]), else borg checkpoints or manifest `status`; restic without a
//!   status file cannot tell and exports nothing. Locks: see [`runs`].
//! - A readable source without any successful backup exports
//!   `backup_last_success_timestamp_seconds 0` so that age alerts fire.
//! - A backup dated more than [`FUTURE_TOLERANCE`] after the check is not
//!   counted (its time cannot be right, and it would look fresh until then):
//!   a finding names the likely cause (clock, borg `timezone`).
//! - An empty newest backup (0 bytes or 0 files: an unmounted source folder)
//!   is exported as such and is a finding.
//! - Each file of a source is read on its own. When the main file (`path`)
//!   cannot be read or parsed, the source exports `backup_source_up 0`, logs
//!   one warning and keeps exporting its last good values (marked stale). When
//!   another file cannot (`stats_file`, `info_file`, `check_file`), the main
//!   file's values are current, `backup_source_up` is 0 as well, the sizes that
//!   file gives are absent, and a verification that file gives is 0.
//! - `backup_verification_success` is never kept from an earlier read: a
//!   verification that cannot be re-read (an unreadable `check_file`, a
//!   manifest that no longer parses) is 0, so `BackupVerificationFailed` fires.
//!
//! Configuration (paths relative to the config file's folder; see
//! [`crate::core::config::BackupSourceConfig`] for every key):
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
//!     - { name: pg, format: pgbackrest, path: "backups/pgbackrest-info.json",
//!         min_recovery_window: "14d" }
//! ```
//!
//! Metrics labelled `source`: `backup_source_up`,
//! `backup_last_success_timestamp_seconds`, `backup_last_size_bytes`,
//! `backup_last_files`, `backup_snapshots`, `backup_oldest_timestamp_seconds`,
//! `backup_max_age_seconds` (only with `max_age`), `backup_min_snapshots`
//! (`min_snapshots`, default 1), `backup_verification_success`
//! (restic with `check_file`, pg_backup_manifest always, manifest with `verify`;
//! absent while a cost-bounded checksum pass is incomplete),
//! `backup_verification_timestamp_seconds` (restic with `check_file`),
//! `backup_size_change_ratio` and `backup_files_change_ratio` (need two sized
//! or counted backups in one group), `backup_last_run_success`,
//! `backup_last_run_timestamp_seconds` (`status_file`), `backup_locks`,
//! `backup_oldest_lock_age_seconds` (`repository`), `backup_sets`,
//! `backup_sets_truncated`, `backup_min_recovery_window_seconds`
//! (`min_recovery_window`). Labelled `source` and `set` (every format; `all`
//! for formats without sets): `backup_oldest_restorable_timestamp_seconds`.
//! Labelled `source` and `set` (restic, borg, pgbackrest):
//! `backup_set_last_success_timestamp_seconds`, `backup_set_last_size_bytes`,
//! `backup_set_last_files`, `backup_set_snapshots`, `backup_set_oldest_timestamp_seconds`,
//! `backup_set_max_age_seconds`,
//! `backup_set_files_change_ratio`, `backup_set_repository_size_bytes` (pgbackrest),
//! `backup_set_up` (glob `path`).

pub mod barman;
pub mod borg;
pub mod borgmatic;
mod command;
pub mod config;
pub mod directory;
mod files;
mod glob;
pub mod manifest;
pub mod pg_manifest;
pub mod pgbackrest;
pub mod restic;
pub mod runs;
pub mod verify;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::core::clock::unix_seconds;
use crate::monitors::kind::{BuildContext, ConfigIssue, MonitorKind};

pub use self::config::{
    BackupCommand, BackupConfig, BackupFormat, BackupSourceConfig, BorgSet, GroupField, TimeZoneName, VerifyMode,
};
use crate::core::monitor::{Cadence, CollectContext, Monitor, MonitorError};
use crate::core::snapshot::{Fact, Health, MetricDef, Snapshot, SnapshotBuilder, TargetStatus};

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
    "1 if the last verification passed (restic check output; manifest checksum and listed files), 0 if it found a problem or its file cannot be read.",
);
pub const VERIFIED_AT: MetricDef = MetricDef::gauge(
    "backup_verification_timestamp_seconds",
    "restic with check_file: when the check file was written (its modification time), so that a check job that stopped running is seen.",
);
pub const SIZE_RATIO: MetricDef = MetricDef::gauge(
    "backup_size_change_ratio",
    "Size of the newest successful backup divided by the previous one's (0.1 = shrank by 90%).",
);
pub const UP: MetricDef = MetricDef::gauge(
    "backup_source_up",
    "1 if all of the source's files were read and parsed on the last check, 0 if one was not (main file: the other series are from the last good read; verification file: verification is 0).",
);

pub const FILES_RATIO: MetricDef = MetricDef::gauge(
    "backup_files_change_ratio",
    "File count of the newest successful backup divided by the previous one's, per group, summed (0.1 = 90% of the files are gone).",
);
pub const SET_FILES_RATIO: MetricDef = MetricDef::gauge(
    "backup_set_files_change_ratio",
    "The set's file count of its newest successful backup divided by its previous one's.",
);
pub const SETS: MetricDef = MetricDef::gauge(
    "backup_sets",
    "restic, borg, pgbackrest: backup sets (restic group_by identity, borg sets, pgBackRest stanzas) found in the source, before max_sets.",
);
pub const SETS_TRUNCATED: MetricDef = MetricDef::gauge(
    "backup_sets_truncated",
    "1 if the source holds more sets than max_sets and only the first max_sets (by label) are exported per set.",
);
pub const SET_LAST_SUCCESS: MetricDef = MetricDef::gauge(
    "backup_set_last_success_timestamp_seconds",
    "When the set's newest successful backup finished; 0 if the set holds none (only partial archives).",
);
pub const SET_LAST_SIZE: MetricDef = MetricDef::gauge(
    "backup_set_last_size_bytes",
    "Size of the data in the set's newest successful backup.",
);
pub const SET_LAST_FILES: MetricDef = MetricDef::gauge(
    "backup_set_last_files",
    "Files in the set's newest successful backup.",
);
pub const SET_SNAPSHOTS: MetricDef = MetricDef::gauge(
    "backup_set_snapshots",
    "The set's successful backups younger than retention_days.",
);
pub const SET_OLDEST: MetricDef = MetricDef::gauge(
    "backup_set_oldest_timestamp_seconds",
    "When the set's oldest successful backup still present finished: the start of its recovery window.",
);
pub const SET_MAX_AGE: MetricDef = MetricDef::gauge(
    "backup_set_max_age_seconds",
    "The set's max_age (set_max_age, else the source's max_age): a newer successful backup is expected within it.",
);
pub const LAST_RUN: MetricDef = MetricDef::gauge(
    "backup_last_run_success",
    "1 if the last backup run succeeded, 0 if it failed or is partial (status_file; borg checkpoint archives; manifest status; pgBackRest error flag); absent when unknown.",
);
pub const LAST_RUN_AT: MetricDef = MetricDef::gauge(
    "backup_last_run_timestamp_seconds",
    "With status_file: when the job wrote it (its modification time).",
);
pub const LOCKS: MetricDef = MetricDef::gauge(
    "backup_locks",
    "With repository: lock files in the repository (restic locks/, borg lock.exclusive), read without taking a lock.",
);
pub const LOCK_AGE: MetricDef = MetricDef::gauge(
    "backup_oldest_lock_age_seconds",
    "With repository: age of the oldest lock file (restic: since its last refresh; borg: since it was taken); absent without locks.",
);

pub const OLDEST_RESTORABLE: MetricDef = MetricDef::gauge(
    "backup_oldest_restorable_timestamp_seconds",
    "When the oldest backup that can still be restored finished: the start of the recovery window (set `all` for formats without sets; pgbackrest: the oldest backup without error whose WAL is still archived).",
);
pub const MIN_RECOVERY_WINDOW: MetricDef = MetricDef::gauge(
    "backup_min_recovery_window_seconds",
    "Configured min_recovery_window: the oldest restorable backup is expected to be at least this old.",
);
pub const SET_UP: MetricDef = MetricDef::gauge(
    "backup_set_up",
    "Glob path: 1 if the set's file was read and parsed on the last check, 0 if not (its other series are then from its last good read, or absent).",
);
pub const SET_REPO_SIZE: MetricDef = MetricDef::gauge(
    "backup_set_repository_size_bytes",
    "pgbackrest: info.repository.size of the set's newest backup (bytes in the repository, with the files it references in earlier backups).",
);

/// Every family this monitor exports, in output order.
pub const METRICS: [&MetricDef; 29] = [
    &UP,
    &LAST_SUCCESS,
    &LAST_SIZE,
    &LAST_FILES,
    &SNAPSHOTS,
    &OLDEST,
    &MAX_AGE,
    &MIN_SNAPSHOTS,
    &VERIFICATION,
    &VERIFIED_AT,
    &SIZE_RATIO,
    &FILES_RATIO,
    &SETS,
    &SETS_TRUNCATED,
    &SET_LAST_SUCCESS,
    &SET_LAST_SIZE,
    &SET_LAST_FILES,
    &SET_SNAPSHOTS,
    &SET_OLDEST,
    &SET_MAX_AGE,
    &SET_FILES_RATIO,
    &LAST_RUN,
    &LAST_RUN_AT,
    &LOCKS,
    &LOCK_AGE,
    &OLDEST_RESTORABLE,
    &MIN_RECOVERY_WINDOW,
    &SET_REPO_SIZE,
    &SET_UP,
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
#[derive(Debug, Clone, thiserror::Error)]
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
    #[error("{target}: reading the source did not finish within {waited} (a hung mount or a blocked file?)")]
    Timeout { target: String, waited: String },
    /// `excerpt`: the end of its stderr, secrets replaced (see [`crate::core::command::excerpt`]).
    #[error("command {program} exited with {status}{}", stderr_note(excerpt))]
    CommandExit {
        program: String,
        status: String,
        excerpt: String,
    },
    #[error("command {program} did not finish within {timeout} and was killed (raise command.timeout, and backup_validation.timeout with it){}", stderr_note(excerpt))]
    CommandTimeout {
        program: String,
        timeout: String,
        excerpt: String,
    },
    #[error("command {program} cannot be run: {reason}")]
    CommandStart { program: String, reason: String },
    #[error("{0}")]
    SetName(String),
}

fn stderr_note(excerpt: &str) -> String {
    if excerpt.is_empty() {
        String::new()
    } else {
        format!("; stderr: {excerpt}")
    }
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
            BackupError::Timeout { .. } => "timeout",
            BackupError::CommandExit { .. } => "command_exit",
            BackupError::CommandTimeout { .. } => "command_timeout",
            BackupError::CommandStart { .. } => "command_start",
            BackupError::SetName(_) => "set_name",
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
#[derive(Debug, Default)]
pub struct SourceRead {
    /// Not used when `main_failed`.
    pub records: Vec<BackupRecord>,
    /// `None`: this source has no verification (or it is not complete yet).
    pub verification: Option<bool>,
    /// When the verification result was written (restic: the check file's mtime).
    pub verified_at: Option<f64>,
    /// Findings for `--status` ("2 listed files missing"); never input values.
    pub findings: Vec<String>,
    /// Extra status text ("verified 10 of 12 files").
    pub notes: Vec<String>,
    /// Files of the source that could not be read or parsed.
    pub errors: Vec<BackupError>,
    /// The main file (`path`) is among `errors`: `records` say nothing.
    pub main_failed: bool,
    /// `status_file`: the last run's outcome and when the file was written.
    pub last_run: Option<(runs::RunStatus, Option<f64>)>,
    /// `repository`: its lock files.
    pub locks: Option<runs::Locks>,
    /// Sets the format knows of even without a backup (pgbackrest stanzas).
    pub declared_sets: Vec<String>,
    /// Per-set values the format works out itself (pgbackrest).
    pub set_views: BTreeMap<String, SetExtra>,
    /// Glob path: whether each set's file was read and parsed this time.
    pub set_up: BTreeMap<String, bool>,
}

/// Per-set values a format works out itself.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SetExtra {
    /// Overrides the set's oldest successful backup as its oldest restorable one.
    pub oldest_restorable: Option<f64>,
    pub repository_size: Option<u64>,
}

impl SourceRead {
    /// The main file could not be read; `verification` is what that means for
    /// the source's verification (`Some(false)` when the file is what is verified).
    pub(crate) fn main_failed(e: BackupError, verification: Option<bool>) -> Self {
        SourceRead {
            verification,
            errors: vec![e],
            main_failed: true,
            ..SourceRead::default()
        }
    }
}

/// How far in the future a backup may be dated (clock skew between hosts)
/// and still count.
pub const FUTURE_TOLERANCE: Duration = Duration::from_secs(600);

/// The exported values of one source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub last_success: Option<f64>,
    pub last_size: Option<u64>,
    pub last_files: Option<u64>,
    pub in_retention: u64,
    pub oldest: Option<f64>,
    pub size_ratio: Option<f64>,
    /// Files of the newest successful backup divided by the previous one's.
    pub files_ratio: Option<f64>,
    pub groups: usize,
    /// The newest run (of any group) failed or is partial.
    pub newest_failed: bool,
    /// Successful runs dated more than [`FUTURE_TOLERANCE`] after `now`: not counted.
    pub future: usize,
    /// The newest successful backup of a group holds 0 bytes or 0 files.
    pub newest_empty: bool,
}

/// Reduce records to exported values. Pure: `now` and `retention` are given.
pub fn summarize(records: &[BackupRecord], now: f64, retention: Duration) -> Summary {
    let mut s = Summary::default();
    let cutoff = now - retention.as_secs_f64();
    // Records are kept with their position: of two with the same time (borg
    // and file mtimes can have whole seconds), the later listed is the newer.
    let latest_possible = now + FUTURE_TOLERANCE.as_secs_f64();
    let mut groups: BTreeMap<&str, Vec<(usize, &BackupRecord)>> = BTreeMap::new();
    for (i, r) in records.iter().enumerate().filter(|(_, r)| r.success) {
        if r.time > latest_possible || !r.time.is_finite() {
            s.future += 1;
            continue;
        }
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
    let (mut files_last, mut files_prev, mut files_n) = (0u64, 0u64, 0usize);
    for runs in groups.values_mut() {
        runs.sort_by(|(ia, a), (ib, b)| b.time.total_cmp(&a.time).then(ib.cmp(ia)));
        let Some((_, latest)) = runs.first() else {
            continue;
        };
        s.last_success = Some(
            s.last_success
                .map_or(latest.time, |t: f64| t.min(latest.time)),
        );
        if latest.size == Some(0) || latest.files == Some(0) {
            s.newest_empty = true;
        }
        size = size.zip(latest.size).map(|(a, b)| a.saturating_add(b));
        files = files.zip(latest.files).map(|(a, b)| a.saturating_add(b));
        if let Some((l, p)) = runs.get(1).and_then(|(_, prev)| latest.size.zip(prev.size)) {
            ratio_last = ratio_last.saturating_add(l);
            ratio_prev = ratio_prev.saturating_add(p);
            ratio_n += 1;
        }
        if let Some((l, p)) = runs.get(1).and_then(|(_, prev)| latest.files.zip(prev.files)) {
            files_last = files_last.saturating_add(l);
            files_prev = files_prev.saturating_add(p);
            files_n += 1;
        }
    }
    if s.groups > 0 {
        s.last_size = size;
        s.last_files = files;
    }
    if ratio_n > 0 && ratio_prev > 0 {
        s.size_ratio = Some(ratio_last as f64 / ratio_prev as f64);
    }
    if files_n > 0 && files_prev > 0 {
        s.files_ratio = Some(files_last as f64 / files_prev as f64);
    }
    s
}

/// The per-source summary. With sets, its newest success is the stalest
/// set's newest among the sets judged by the source's `max_age`: a set with a
/// `set_max_age` of its own (a weekly set, a one-off backup) is judged by
/// `BackupSetTooOld` only, so that `BackupTooOld` does not fire for it against
/// the shorter source `max_age`. When every set has its own, all count.
fn source_summary(
    cfg: &BackupSourceConfig,
    records: &[BackupRecord],
    now: f64,
    retention: Duration,
) -> Summary {
    let mut s = summarize(records, now, retention);
    if cfg.format.has_sets() && !cfg.set_max_age.is_empty() {
        let judged: Vec<BackupRecord> = records
            .iter()
            .filter(|r| !cfg.set_max_age.contains_key(set_of(&r.group)))
            .cloned()
            .collect();
        if let Some(t) = summarize(&judged, now, retention).last_success {
            s.last_success = Some(t);
        }
    }
    s
}

/// Separates a glob source's set (the file's name) from the group inside
/// its file in [`BackupRecord::group`]: a set's summary then sees the file's
/// own groups (its freshness is the stalest one's, sizes are summed).
const SET_SEP: char = '\u{1f}';

/// The set label of a record group.
fn set_of(group: &str) -> &str {
    group.split(SET_SEP).next().unwrap_or(group)
}

/// One summary per backup set (record group; glob sources: the file's set), by label.
pub fn summarize_sets(
    records: &[BackupRecord],
    now: f64,
    retention: Duration,
) -> BTreeMap<String, Summary> {
    let mut by_set: BTreeMap<&str, Vec<BackupRecord>> = BTreeMap::new();
    for r in records {
        by_set.entry(set_of(&r.group)).or_default().push(r.clone());
    }
    by_set
        .into_iter()
        .map(|(k, v)| (k.to_string(), summarize(&v, now, retention)))
        .collect()
}

/// What a source needs to be read.
pub(crate) struct SourceCtx<'a> {
    pub cfg: &'a BackupSourceConfig,
    pub base: &'a std::path::Path,
    pub max_file_size: u64,
    /// Where the main document of a single-document format comes from.
    pub main: Main,
}

/// The main document: `path` (or one file of a glob `path`), or a command's output.
pub(crate) enum Main {
    File(PathBuf),
    /// (what it is, for messages: "output of `restic`"; the bytes), or why there are none.
    Output(Result<(String, Vec<u8>), BackupError>),
}

impl SourceCtx<'_> {
    pub fn resolve(&self, p: &str) -> PathBuf {
        files::resolve(self.base, p)
    }

    /// The main document's name for messages.
    pub fn main_name(&self) -> String {
        match &self.main {
            Main::File(p) => p.display().to_string(),
            Main::Output(Ok((what, _))) => what.clone(),
            Main::Output(Err(_)) => "command output".into(),
        }
    }

    /// Parse the main document (a file through `cache`).
    pub fn load_main<T>(
        &self,
        cache: &mut files::Cache<T>,
        parse: impl FnOnce(&[u8]) -> Result<T, ParseError>,
    ) -> Result<Arc<T>, BackupError> {
        match &self.main {
            Main::File(p) => cache.load(p, self.max_file_size, parse).map(|(v, _)| v),
            Main::Output(Ok((what, bytes))) => {
                parse(bytes)
                    .map(Arc::new)
                    .map_err(|source| BackupError::Parse {
                        path: what.clone(),
                        source,
                    })
            }
            Main::Output(Err(e)) => Err(e.clone()),
        }
    }
}

/// Per-source parse caches, one kind per format.
enum FormatState {
    Restic(restic::State),
    Borg(borg::State),
    Pg(pg_manifest::State),
    Manifest(manifest::State),
    Pgbackrest(pgbackrest::State),
    Borgmatic(borgmatic::State),
    Barman(barman::State),
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
            BackupFormat::Pgbackrest => FormatState::Pgbackrest(pgbackrest::State::default()),
            BackupFormat::Barman => FormatState::Barman(barman::State::default()),
            BackupFormat::Borgmatic => {
                FormatState::Borgmatic(borgmatic::State::new(cfg.timezone.as_ref()))
            }
        }
    }
}

/// What a source keeps between reads: its parse caches and the last read
/// whose main file was good.
#[derive(Default)]
struct SourceMemory {
    state: Option<FormatState>,
    status: files::Cache<runs::RunStatus>,
    last_good: Option<Arc<SourceRead>>,
    /// Glob path: each matched file's parse cache and last good read.
    files: BTreeMap<PathBuf, FileMemory>,
}

struct FileMemory {
    state: FormatState,
    last_good: Option<Arc<SourceRead>>,
}

/// One read of one source, as kept until the source is due again. Ages,
/// retention and status are worked out from it at every collection.
#[derive(Debug, Clone)]
struct SourceReport {
    /// This read: its errors and verification (never kept from an earlier read).
    this: Arc<SourceRead>,
    /// The records to export: this read's, or the last good ones (stale).
    records: Option<Arc<SourceRead>>,
}

impl crate::core::targets::TargetValue for SourceReport {
    fn healthy(&self) -> bool {
        self.this.errors.is_empty()
    }

    fn timed_out(last: Option<&Self>, label: &str, waited: Duration) -> Self {
        let e = BackupError::Timeout {
            target: label.to_string(),
            waited: format!("{waited:.1?}"),
        };
        SourceReport {
            this: Arc::new(SourceRead::main_failed(e, None)),
            records: last.and_then(|l| l.records.clone()),
        }
    }

    fn pending(_label: &str) -> Self {
        SourceReport {
            this: Arc::new(SourceRead::default()),
            records: None,
        }
    }
}

struct Inner {
    cfg: BackupConfig,
    base: PathBuf,
    sources: crate::core::targets::Targets<SourceMemory, SourceReport>,
}

/// The backup validation monitor.
pub struct BackupMonitor {
    inner: Arc<Inner>,
}

/// Registration of the backup monitor (`custom_monitors.backup_validation`).
pub struct BackupKind;

impl MonitorKind for BackupKind {
    const KEY: &'static str = "backup_validation";
    type Config = BackupConfig;

    fn validate(cfg: &BackupConfig) -> Result<(), ConfigIssue> {
        config::validate(cfg)
    }

    fn build(cfg: BackupConfig, ctx: &BuildContext<'_>) -> Arc<dyn Monitor> {
        Arc::new(BackupMonitor::new(cfg, ctx.base_dir.to_path_buf()))
    }
}

impl BackupMonitor {
    /// `base`: the folder relative paths are resolved against (the config file's folder).
    pub fn new(cfg: BackupConfig, base: PathBuf) -> Self {
        BackupMonitor {
            inner: Arc::new(Inner {
                cfg,
                base,
                sources: crate::core::targets::Targets::new(),
            }),
        }
    }
}

impl BackupMonitor {
    /// Apply `--interval` (it overrides every monitor's check_interval).
    pub fn with_interval(self, interval: Option<Duration>) -> Self {
        let Some(i) = interval else { return self };
        let mut cfg = self.inner.cfg.clone();
        crate::core::config::values::MonitorSchedule::set_check_interval(&mut cfg, i);
        BackupMonitor::new(cfg, self.inner.base.clone())
    }
}

fn read_source(ctx: &SourceCtx<'_>, state: &mut FormatState) -> SourceRead {
    match state {
        FormatState::Restic(st) => restic::read(ctx, st),
        FormatState::Borg(st) => borg::read(ctx, st),
        FormatState::Pg(st) => pg_manifest::read(ctx, st),
        FormatState::Manifest(st) => manifest::read(ctx, st),
        FormatState::Directory => directory::read(ctx),
        FormatState::Pgbackrest(st) => pgbackrest::read(ctx, st),
        FormatState::Borgmatic(st) => borgmatic::read(ctx, st),
        FormatState::Barman(st) => barman::read(ctx, st),
    }
}

/// Read one source (blocking), updating its memory. `monitor_timeout`: the
/// monitor's `timeout` (a command's default timeout derives from it).
fn read_one(
    cfg: &BackupSourceConfig,
    base: &std::path::Path,
    max_file_size: u64,
    monitor_timeout: Duration,
    mem: &mut SourceMemory,
) -> SourceReport {
    let main = match &cfg.command {
        Some(c) => Main::Output(command::run_source_command(
            cfg,
            c,
            base,
            max_file_size,
            monitor_timeout,
        )),
        None => Main::File(files::resolve(base, &cfg.path)),
    };
    let ctx = SourceCtx {
        cfg,
        base,
        max_file_size,
        main,
    };
    let mut read = if cfg.command.is_none()
        && config::single_document(cfg.format)
        && config::is_glob(&cfg.path)
    {
        glob::read(cfg, base, max_file_size, &mut mem.files)
    } else {
        let state = mem.state.get_or_insert_with(|| FormatState::new(cfg));
        read_source(&ctx, state)
    };
    // Read on their own: an unreadable status file or lock folder makes the
    // source `up 0` and its values absent, never "succeeded" or "no locks".
    if let Some(p) = &cfg.status_file {
        let format = cfg.format;
        match mem
            .status
            .load(&ctx.resolve(p), max_file_size, |b| runs::parse_status(b, format))
        {
            Ok((st, stamp)) => {
                let at = stamp.modified.map(unix_seconds);
                read.last_run = Some(((*st).clone(), at));
            }
            Err(e) => read.errors.push(e),
        }
    }
    if let Some(repo) = &cfg.repository {
        match runs::read_locks(&ctx.resolve(repo), cfg.format) {
            Ok(l) => read.locks = Some(l),
            Err(e) => read.errors.push(e),
        }
    }
    let read = Arc::new(read);
    for e in &read.errors {
        tracing::warn!(
            monitor = "backup_validation",
            source = cfg.name.as_str(),
            format = cfg.format.as_str(),
            reason = e.metric_label(),
            "{e}"
        );
    }
    if !read.main_failed {
        mem.last_good = Some(read.clone());
    }
    SourceReport {
        this: read,
        records: mem.last_good.clone(),
    }
}

/// The sources `shard` reads and exports: sharded by the `source` name.
pub fn owned_sources(
    sources: &[BackupSourceConfig],
    shard: crate::core::shard::Shard,
) -> Vec<&BackupSourceConfig> {
    crate::core::shard::owned(shard, sources, |s| s.name.as_str())
}

impl Inner {
    async fn collect(self: Arc<Self>, now: std::time::SystemTime) -> Snapshot {
        let schedule = crate::core::targets::Schedule::for_monitor(
            self.cfg.check_interval.0,
            self.cfg.retry_interval.0,
            self.cfg.timeout.0,
        );
        let retention = Duration::from_secs(u64::from(self.cfg.retention_days) * 86400);
        // Issue 19: this replica's sources (by name); the others are another's.
        let sources = owned_sources(&self.cfg.sources, crate::core::shard::current());
        let items: Vec<(String, BackupSourceConfig)> = sources
            .iter()
            .map(|s| (s.name.clone(), (*s).clone()))
            .collect();
        let reader = self.clone();
        let reads = self
            .sources
            .collect(schedule, now, items, move |cfg, mem| {
                read_one(
                    &cfg,
                    &reader.base,
                    reader.cfg.max_file_size.0,
                    reader.cfg.timeout.0,
                    mem,
                )
            })
            .await;
        let now_s = unix_seconds(now);
        let mut b = SnapshotBuilder::new();
        for def in METRICS {
            b.declare(def);
        }
        let mut fresh = SnapshotBuilder::new();
        let mut pending = 0;
        for (cfg, r) in sources.iter().copied().zip(reads) {
            let name = cfg.name.as_str();
            let label = [("source", name)];
            pending += usize::from(r.pending);
            if r.placeholder {
                b.target(TargetStatus {
                    target: name.to_string(),
                    health: Health::Unchecked,
                    summary: "first read still running".into(),
                    error: None,
                    stale: false,
                    facts: Vec::new().into(),
                });
                continue;
            }
            let this = &r.value.this;
            b.gauge(&UP, &label, if this.errors.is_empty() { 1.0 } else { 0.0 });
            let errors = (!this.errors.is_empty()).then(|| {
                this.errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            });
            let summary = r
                .value
                .records
                .as_ref()
                .map(|g| source_summary(cfg, &g.records, now_s, retention));
            let stale = this.main_failed && summary.is_some();
            let sets = sets_view(cfg, r.value.records.as_deref(), now_s, retention);
            let mut extra = Vec::new();
            if let Some(v) = &sets {
                extra.extend(v.findings.iter().cloned());
            }
            let status = match (&summary, this.main_failed) {
                (Some(s), false) => {
                    let mut status = ok_status(cfg, s, this, now_s, &extra);
                    if errors.is_some() {
                        status.health = Health::Error;
                        status.error = errors;
                    }
                    status
                }
                _ => TargetStatus {
                    target: name.to_string(),
                    health: Health::Error,
                    summary: format!("{} source cannot be read", cfg.format),
                    error: errors,
                    stale,
                    facts: Vec::new().into(),
                },
            };
            let mut status = status;
            if let Some(s) = &summary {
                status.facts.insert(
                    0,
                    Fact::Freshness {
                        item: name.to_string(),
                        last_success: s.last_success.map(|t| t.floor() as i64),
                        max_age_seconds: cfg.max_age.map(|m| m.0.as_secs() as i64),
                    },
                );
            }
            if let Some(max) = cfg.max_age {
                b.gauge(&MAX_AGE, &label, max.0.as_secs_f64());
            }
            if let Some(w) = cfg.min_recovery_window {
                b.gauge(&MIN_RECOVERY_WINDOW, &label, w.0.as_secs_f64());
            }
            // Formats without sets: one recovery window, set `all`.
            if sets.is_none() {
                if let Some(x) = summary.as_ref().and_then(|s| s.oldest) {
                    b.gauge(&OLDEST_RESTORABLE, &[("source", name), ("set", "all")], x);
                }
            }
            b.gauge(&MIN_SNAPSHOTS, &label, f64::from(cfg.min_snapshots));
            if let Some(s) = &summary {
                emit(&mut b, name, s);
            }
            if let Some(v) = &sets {
                b.gauge(&SETS, &label, v.total as f64);
                b.gauge(&SETS_TRUNCATED, &label, if v.truncated { 1.0 } else { 0.0 });
                for (i, (set, s)) in v.sets.iter().enumerate() {
                    let l = [("source", name), ("set", set.as_str())];
                    b.gauge(&SET_LAST_SUCCESS, &l, s.last_success.unwrap_or(0.0));
                    if let Some(x) = s.last_size {
                        b.gauge(&SET_LAST_SIZE, &l, x as f64);
                    }
                    if let Some(x) = s.last_files {
                        b.gauge(&SET_LAST_FILES, &l, x as f64);
                    }
                    b.gauge(&SET_SNAPSHOTS, &l, s.in_retention as f64);
                    if let Some(x) = s.oldest {
                        b.gauge(&SET_OLDEST, &l, x);
                    }
                    let extra = v.extra.get(set);
                    let restorable = extra.map_or(s.oldest, |e| e.oldest_restorable);
                    if let Some(x) = restorable {
                        b.gauge(&OLDEST_RESTORABLE, &l, x);
                    }
                    if let Some(x) = extra.and_then(|e| e.repository_size) {
                        b.gauge(&SET_REPO_SIZE, &l, x as f64);
                    }
                    if let Some(x) = s.files_ratio {
                        b.gauge(&SET_FILES_RATIO, &l, x);
                    }
                    if let Some(up) = this.set_up.get(set) {
                        b.gauge(&SET_UP, &l, if *up { 1.0 } else { 0.0 });
                    }
                    let max = set_max_age(cfg, set);
                    if let Some(m) = max {
                        b.gauge(&SET_MAX_AGE, &l, m.as_secs_f64());
                    }
                    status.facts.insert(
                        1 + i,
                        Fact::Freshness {
                            item: format!("{name} set {set}"),
                            last_success: s.last_success.map(|t| t.floor() as i64),
                            max_age_seconds: max.map(|m| m.as_secs() as i64),
                        },
                    );
                }
            }
            // The last run: the job's status file, else what the records say
            // where a failed run leaves a trace (borg checkpoints, manifest status).
            let last_run = match (&this.last_run, cfg.status_file.is_some()) {
                (Some((st, _)), _) => Some(st.success),
                (None, true) => None,
                (None, false) => match cfg.format {
                    BackupFormat::Borg
                    | BackupFormat::Borgmatic
                    | BackupFormat::Manifest
                    | BackupFormat::Pgbackrest
                    | BackupFormat::Barman => summary
                        .as_ref()
                        .filter(|_| r.value.records.as_ref().is_some_and(|g| !g.records.is_empty()))
                        .map(|s| !s.newest_failed),
                    _ => None,
                },
            };
            if let Some(ok) = last_run {
                b.gauge(&LAST_RUN, &label, if ok { 1.0 } else { 0.0 });
            }
            if let Some((_, Some(at))) = &this.last_run {
                b.gauge(&LAST_RUN_AT, &label, *at);
            }
            if let Some(l) = &this.locks {
                b.gauge(&LOCKS, &label, l.count as f64);
                if let Some(t) = l.oldest {
                    b.gauge(&LOCK_AGE, &label, (now_s - t).max(0.0));
                }
            }
            // Always from this read: a pass is never kept from an earlier one.
            if let Some(v) = this.verification {
                b.gauge(&VERIFICATION, &label, if v { 1.0 } else { 0.0 });
            }
            if let Some(t) = this.verified_at {
                b.gauge(&VERIFIED_AT, &label, t);
            }
            crate::core::targets::emit_freshness(&mut fresh, "backup_validation", name, r.read_at, stale);
            b.target(status);
        }
        let mut snap = b.build();
        snap.families.extend(fresh.build().families);
        snap.pending = pending;
        snap
    }
}

fn emit(b: &mut SnapshotBuilder, name: &str, s: &Summary) {
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
    if let Some(v) = s.size_ratio {
        b.gauge(&SIZE_RATIO, &label, v);
    }
    if let Some(v) = s.files_ratio {
        b.gauge(&FILES_RATIO, &label, v);
    }
}

/// The sets of a restic or borg source, as exported.
#[derive(Debug)]
struct SetsView {
    /// Sets found (before `max_sets`).
    total: usize,
    truncated: bool,
    /// The first `max_sets` by label.
    sets: Vec<(String, Summary)>,
    /// Sets that stopped (over their max_age), truncation.
    findings: Vec<String>,
    /// Per-set values the format worked out itself.
    extra: BTreeMap<String, SetExtra>,
}

/// A lock older than this is a finding (as `BackupLockStale`).
const STALE_LOCK: f64 = 86400.0;

fn set_max_age(cfg: &BackupSourceConfig, set: &str) -> Option<Duration> {
    cfg.set_max_age
        .get(set)
        .or(cfg.max_age.as_ref())
        .map(|d| d.0)
}

fn sets_view(
    cfg: &BackupSourceConfig,
    read: Option<&SourceRead>,
    now: f64,
    retention: Duration,
) -> Option<SetsView> {
    if !cfg.format.has_sets() {
        return None;
    }
    let read = read?;
    let mut all = summarize_sets(&read.records, now, retention);
    // A set the format names without any backup (a new pgBackRest stanza):
    // exported with no successful backup, never left out.
    for set in &read.declared_sets {
        all.entry(set.clone()).or_default();
    }
    let total = all.len();
    let truncated = total > cfg.max_sets;
    let sets: Vec<(String, Summary)> = all.into_iter().take(cfg.max_sets).collect();
    let mut findings = Vec::new();
    if truncated {
        findings.push(format!(
            "{total} backup sets, over max_sets {}: only the first {} (by label) have set series",
            cfg.max_sets, cfg.max_sets
        ));
    }
    for (set, s) in &sets {
        if let (Some(w), Some(t)) = (
            cfg.min_recovery_window,
            read.set_views
                .get(set)
                .map_or(s.oldest, |e| e.oldest_restorable),
        ) {
            if now - t < w.0.as_secs_f64() {
                findings.push(format!(
                    "set {set}: recovery window {}, shorter than min_recovery_window {w}",
                    crate::cli::report::human_duration(Duration::from_secs((now - t).max(0.0) as u64)),
                ));
            }
        }
        let Some(max) = set_max_age(cfg, set) else {
            continue;
        };
        match s.last_success {
            Some(t) if now - t > max.as_secs_f64() => findings.push(format!(
                "set {set} stopped: newest successful backup is {} old, over max_age {}",
                crate::cli::report::human_duration(Duration::from_secs((now - t).max(0.0) as u64)),
                humantime::format_duration(max)
            )),
            None => findings.push(format!("set {set} holds no successful backup")),
            _ => {}
        }
    }
    Some(SetsView {
        total,
        truncated,
        sets,
        findings,
        extra: read.set_views.clone(),
    })
}

fn ok_status(
    cfg: &BackupSourceConfig,
    s: &Summary,
    read: &SourceRead,
    now: f64,
    extra: &[String],
) -> TargetStatus {
    let mut findings = read.findings.clone();
    if let Some((run, _)) = &read.last_run {
        findings.extend(run.problem.clone());
    }
    if let Some(t) = read.locks.and_then(|l| l.oldest) {
        if now - t > STALE_LOCK {
            findings.push(format!(
                "a repository lock is {} old (a backup, prune or check that died?)",
                crate::cli::report::human_duration(Duration::from_secs((now - t) as u64))
            ));
        }
    }
    // Findings the freshness fact does not already carry (its age against max_age).
    let mut facts: Vec<Fact> = Vec::new();
    match s.last_success {
        None => findings.push("no successful backup".into()),
        Some(t) => {
            if let Some(max) = cfg.max_age {
                let age = now - t;
                if age > max.0.as_secs_f64() {
                    findings.push(format!(
                        "newest successful backup is {} old, over max_age {}",
                        crate::cli::report::human_duration(Duration::from_secs(age.max(0.0) as u64)),
                        max
                    ));
                }
            }
        }
    }
    // As BackupRecoveryWindowShort (formats with sets: per set, in sets_view).
    if let (Some(w), Some(t), false) = (cfg.min_recovery_window, s.oldest, cfg.format.has_sets()) {
        if now - t < w.0.as_secs_f64() {
            findings.push(format!(
                "recovery window {}, shorter than min_recovery_window {w}",
                crate::cli::report::human_duration(Duration::from_secs((now - t).max(0.0) as u64)),
            ));
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
    if s.future > 0 {
        findings.push(format!(
            "{} backups are dated more than {} after now and are not counted (a clock is wrong{})",
            s.future,
            humantime::format_duration(FUTURE_TOLERANCE),
            if matches!(cfg.format, BackupFormat::Borg | BackupFormat::Borgmatic) {
                ", or borg's zone-less dates need `timezone`"
            } else {
                ""
            }
        ));
    }
    if s.newest_empty {
        findings.push(
            "the newest backup is empty (0 bytes or 0 files): was the backed-up folder mounted?"
                .into(),
        );
    }
    if read.verification == Some(false) && read.findings.is_empty() {
        findings.push("verification failed".into());
    }
    findings.extend(extra.iter().cloned());
    let mut parts = vec![format!("{} backups in retention", s.in_retention)];
    if s.groups > 1 {
        parts.push(format!("{} groups", s.groups));
    }
    if let Some(r) = s.size_ratio {
        parts.push(format!("size ratio {r:.2}"));
    }
    if let Some(r) = s.files_ratio.filter(|r| *r < 1.0) {
        parts.push(format!("files ratio {r:.2}"));
    }
    if let Some(l) = read.locks {
        parts.push(format!("{} lock(s)", l.count));
    }
    parts.extend(read.notes.iter().cloned());
    parts.extend(findings.iter().cloned());
    let never_is_late = s.last_success.is_none() && cfg.max_age.is_some();
    for f in &findings {
        if f.contains("over max_age")
            || (never_is_late && f == "no successful backup")
            || (f.starts_with("set ") && f.ends_with("holds no successful backup"))
        {
            continue;
        }
        facts.push(Fact::Finding {
            kind: "backup".into(),
            subject: cfg.name.clone(),
            detail: f.clone(),
            counted: true,
        });
    }
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
        facts: facts.into(),
    }
}

#[async_trait]
impl Monitor for BackupMonitor {
    fn name(&self) -> &'static str {
        "backup_validation"
    }

    fn cadence(&self) -> Cadence {
        self.inner.cfg.cadence()
    }

    fn describe(&self) -> String {
        let parts: Vec<String> = self
            .inner
            .cfg
            .sources
            .iter()
            .map(|s| match &s.command {
                // The program only: arguments may hold a repository URL.
                Some(c) => format!(
                    "{} ({} command {})",
                    s.name,
                    s.format,
                    c.argv.first().map(String::as_str).unwrap_or_default()
                ),
                None => format!("{} ({} {})", s.name, s.format, s.path),
            })
            .collect();
        format!(
            "backups: {} (under {})",
            parts.join(", "),
            self.inner.base.display()
        )
    }

    async fn collect(&self, ctx: CollectContext) -> Result<Snapshot, MonitorError> {
        Ok(self.inner.clone().collect(ctx.now).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 19: two shards of one config read disjoint sets of sources whose
    /// union is every source, each in configuration order.
    #[test]
    fn shards_partition_the_backup_sources() {
        use crate::core::shard::Shard;
        let sources: String = (0..24)
            .map(|i| format!("      - {{ name: src-{i:02}, format: directory, path: b/{i} }}\n"))
            .collect();
        let cfg = crate::core::config::parse(
            &format!("custom_monitors:\n  backup_validation:\n    sources:\n{sources}"),
            std::path::Path::new("c.yaml"),
        )
        .unwrap()
        .custom_monitors
        .backup_validation
        .unwrap();
        let names = |s: Shard| -> Vec<String> {
            owned_sources(&cfg.sources, s).iter().map(|c| c.name.clone()).collect()
        };
        let all: Vec<String> = cfg.sources.iter().map(|c| c.name.clone()).collect();
        assert_eq!(names(Shard::default()), all);
        let (a, b) = (names(Shard::new(0, 2).unwrap()), names(Shard::new(1, 2).unwrap()));
        assert!(!a.is_empty() && !b.is_empty(), "{a:?} {b:?}");
        assert!(a.iter().all(|n| !b.contains(n)), "{a:?} {b:?}");
        let mut union = [a, b].concat();
        union.sort();
        assert_eq!(union, all);
    }

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
        assert_eq!(s.files_ratio, Some(0.1));
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
    fn each_set_has_its_own_freshness() {
        let r = vec![
            rec("a", 100.0, Some(10), true),
            rec("a", 500.0, Some(20), true),
            rec("b", 200.0, Some(30), true),
            rec("c", 300.0, None, false),
        ];
        let sets = summarize_sets(&r, 600.0, Duration::from_secs(1000));
        assert_eq!(sets.len(), 3);
        assert_eq!(sets["a"].last_success, Some(500.0));
        assert_eq!(sets["a"].in_retention, 2);
        assert_eq!(sets["b"].last_success, Some(200.0));
        assert_eq!(sets["b"].last_size, Some(30));
        // Only a partial run: no success, never fresh.
        assert_eq!(sets["c"].last_success, None);
        let mut cfg = BackupSourceConfig::new("r", BackupFormat::Restic, "x");
        cfg.max_age = Some(crate::core::config::values::HumanDuration(Duration::from_secs(350)));
        cfg.max_sets = 2;
        let read = SourceRead {
            records: r,
            ..SourceRead::default()
        };
        let v = sets_view(&cfg, Some(&read), 600.0, Duration::from_secs(1000)).unwrap();
        assert_eq!((v.total, v.truncated, v.sets.len()), (3, true, 2));
        assert!(v.findings[0].contains("over max_sets 2"), "{:?}", v.findings);
        assert!(v.findings[1].starts_with("set b stopped"), "{:?}", v.findings);
        assert_eq!(v.findings.len(), 2, "{:?}", v.findings);
        cfg.set_max_age.insert(
            "b".into(),
            crate::core::config::values::HumanDuration(Duration::from_secs(500)),
        );
        let v = sets_view(&cfg, Some(&read), 600.0, Duration::from_secs(1000)).unwrap();
        assert_eq!(v.findings.len(), 1, "{:?}", v.findings);
        // Other formats have no sets.
        cfg.format = BackupFormat::Manifest;
        assert!(sets_view(&cfg, Some(&read), 600.0, Duration::from_secs(1000)).is_none());
    }

    #[test]
    fn sets_with_their_own_max_age_do_not_age_the_source() {
        let r = vec![
            rec("daily", 900.0, Some(10), true),
            rec("weekly", 100.0, Some(10), true),
        ];
        let mut cfg = BackupSourceConfig::new("r", BackupFormat::Restic, "x");
        let d = Duration::from_secs(10_000);
        assert_eq!(source_summary(&cfg, &r, 1000.0, d).last_success, Some(100.0));
        cfg.set_max_age.insert(
            "weekly".into(),
            crate::core::config::values::HumanDuration(Duration::from_secs(7000)),
        );
        assert_eq!(source_summary(&cfg, &r, 1000.0, d).last_success, Some(900.0));
        // Every set with its own: all count, as before.
        cfg.set_max_age.insert(
            "daily".into(),
            crate::core::config::values::HumanDuration(Duration::from_secs(200)),
        );
        assert_eq!(source_summary(&cfg, &r, 1000.0, d).last_success, Some(100.0));
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
        let read = SourceRead::default();
        let mut cfg = BackupSourceConfig::new("db", BackupFormat::PgBackupManifest, "m");
        let one = summarize(
            &[rec("", 100.0, Some(1000), true)],
            100.0,
            Duration::from_secs(10),
        );
        // One pg copy, default min_snapshots 1: fine.
        assert_eq!(ok_status(&cfg, &one, &read, 100.0, &[]).health, Health::Ok);
        cfg.min_snapshots = 3;
        let st = ok_status(&cfg, &one, &read, 100.0, &[]);
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
            &[rec("", 100.0, Some(1000), true)],
            1000.0,
            Duration::from_secs(10),
        );
        assert_eq!(
            ok_status(&cfg, &gone, &read, 1000.0, &[]).health,
            Health::Findings
        );
    }

    #[test]
    fn future_backups_do_not_count_and_empty_ones_are_flagged() {
        let tol = FUTURE_TOLERANCE.as_secs_f64();
        let r = vec![
            rec("", 100.0, Some(10), true),
            // A year ahead: would look fresh for a year.
            rec("", 1000.0 + 365.0 * 86400.0, Some(10), true),
            // Within the clock-skew tolerance: counts.
            rec("b", 1000.0 + tol - 1.0, Some(0), true),
        ];
        let s = summarize(&r, 1000.0, Duration::from_secs(10_000));
        assert_eq!(s.future, 1);
        assert_eq!(s.last_success, Some(100.0));
        assert_eq!(s.in_retention, 2);
        assert!(s.newest_empty);
        let s = summarize(&r[..2], 1000.0, Duration::from_secs(10_000));
        assert!(!s.newest_empty);
        // Only future backups: none counts, the age alert sees 0.
        let s = summarize(&r[1..2], 1000.0, Duration::from_secs(10_000));
        assert_eq!((s.last_success, s.in_retention, s.oldest), (None, 0, None));
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
