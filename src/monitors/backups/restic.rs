//! restic: the JSON the backup job wrote with
//!
//! - `restic snapshots --json > snapshots.json` (`path`; also the
//!   `--group-by` form). Every snapshot is a finished backup. Restic 0.17+ adds
//!   a `summary` (`backup_end`, `total_bytes_processed`, `total_files_processed`)
//!   that gives the size and file count of each snapshot.
//! - optional `restic stats --json latest > stats.json` (`stats_file`): size and
//!   file count of the newest snapshot for restic before 0.17 (Debian's 0.14),
//!   whose snapshots have no `summary`.
//!   Plain `restic stats --json` (totals over every snapshot: `snapshots_count`
//!   above 1) and a stats file older than the newest snapshot are not used.
//! - optional `{ restic check 2>&1; echo "exit: $?"; } > check.tmp && mv check.tmp check.txt`
//!   (`check_file`): the text output with stderr and restic's exit status, or,
//!   restic 0.18+, `--json` output (a `summary` message with `num_errors`).
//!   Sets `backup_verification_success` (see [`parse_check`]); a check file
//!   that cannot be read or parsed sets it to 0.
//!
//! Snapshots are grouped by host and path set (as `restic forget` does).

use jiff::Timestamp;
use serde::Deserialize;

use super::config::GroupField;
use super::files::Cache;
use super::{from_json, ts_secs, BackupRecord, ParseError, SourceCtx, SourceRead};

/// One snapshot, reduced to what the monitor needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Start time (`time`), seconds since the epoch.
    pub time: f64,
    /// `summary.backup_end` (restic 0.17+).
    pub end: Option<f64>,
    pub hostname: String,
    /// Sorted.
    pub paths: Vec<String>,
    /// Sorted.
    pub tags: Vec<String>,
    /// `summary.total_bytes_processed`.
    pub size: Option<u64>,
    /// `summary.total_files_processed`.
    pub files: Option<u64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawDoc {
    Flat(Vec<RawSnapshot>),
    Grouped(Vec<RawGroup>),
    Null(()),
}

#[derive(Deserialize)]
struct RawGroup {
    #[allow(dead_code)]
    group_key: serde_json::Value,
    snapshots: Vec<RawSnapshot>,
}

#[derive(Deserialize)]
struct RawSnapshot {
    time: String,
    #[serde(default)]
    hostname: String,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    summary: Option<RawSummary>,
}

#[derive(Deserialize)]
struct RawSummary {
    #[serde(default)]
    backup_end: Option<String>,
    #[serde(default)]
    total_files_processed: Option<u64>,
    #[serde(default)]
    total_bytes_processed: Option<u64>,
}

fn parse_time(s: &str, what: &str, i: usize) -> Result<f64, ParseError> {
    s.trim().parse::<Timestamp>().map(ts_secs).map_err(|_| {
        ParseError::Invalid(format!(
            "snapshot [{i}]: `{what}` is not an RFC 3339 time with an offset"
        ))
    })
}

/// Parse `restic snapshots --json` output (flat or `--group-by`).
pub fn parse_snapshots(bytes: &[u8]) -> Result<Vec<Snapshot>, ParseError> {
    // Check the syntax first so a truncated file is reported as such, not as
    // "matches no variant" of the untagged document.
    let value: serde_json::Value = from_json(bytes)?;
    let doc: RawDoc = serde_json::from_value(value).map_err(|_| {
        ParseError::Invalid(
            "not the output of `restic snapshots --json` (expected a list of snapshots)".into(),
        )
    })?;
    let raw: Vec<RawSnapshot> = match doc {
        RawDoc::Flat(v) => v,
        RawDoc::Grouped(g) => g.into_iter().flat_map(|g| g.snapshots).collect(),
        RawDoc::Null(()) => Vec::new(),
    };
    raw.into_iter()
        .enumerate()
        .map(|(i, r)| {
            let time = parse_time(&r.time, "time", i)?;
            let end = match r.summary.as_ref().and_then(|s| s.backup_end.as_deref()) {
                Some(e) => Some(parse_time(e, "summary.backup_end", i)?),
                None => None,
            };
            let mut paths = r.paths;
            paths.sort();
            let mut tags = r.tags.unwrap_or_default();
            tags.sort();
            Ok(Snapshot {
                time,
                end,
                hostname: r.hostname,
                paths,
                tags,
                size: r.summary.as_ref().and_then(|s| s.total_bytes_processed),
                files: r.summary.as_ref().and_then(|s| s.total_files_processed),
            })
        })
        .collect()
}

/// `restic stats --json` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Stats {
    #[serde(default)]
    pub total_size: Option<u64>,
    #[serde(default)]
    pub total_file_count: Option<u64>,
    /// How many snapshots the totals cover (1 for `restic stats --json latest`).
    #[serde(default)]
    pub snapshots_count: Option<u64>,
}

pub fn parse_stats(bytes: &[u8]) -> Result<Stats, ParseError> {
    from_json(bytes)
}

/// Can `stats` (written at `written`) stand for the newest snapshot (taken at
/// `newest`)? `Err` says why not, for a finding.
pub fn stats_fit_newest(
    stats: &Stats,
    written: Option<f64>,
    newest: Option<f64>,
) -> Result<(), String> {
    match stats.snapshots_count {
        Some(1) | None => {}
        Some(n) => {
            return Err(format!(
                "stats_file covers {n} snapshots, not the newest one (plain `restic stats --json`): \
                 its totals are not used as the last backup's size; write it with `restic stats --json latest`"
            ))
        }
    }
    if let (Some(w), Some(n)) = (written, newest) {
        if w < n {
            return Err(
                "stats_file was written before the newest snapshot was taken (left from an earlier run?): \
                 its totals are not used as the last backup's size"
                    .into(),
            );
        }
    }
    Ok(())
}

/// What the job's `restic check` output file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub passed: bool,
    /// Why it did not pass (for findings; never text from the file).
    pub problem: Option<String>,
}

impl Check {
    fn pass() -> Self {
        Check {
            passed: true,
            problem: None,
        }
    }

    fn fail(problem: impl Into<String>) -> Self {
        Check {
            passed: false,
            problem: Some(problem.into()),
        }
    }
}

/// Lines restic 0.14+ prints on stdout while checking (not on success only).
const CHECK_PROGRESS: [&str; 5] = [
    "using temporary cache",
    "create exclusive lock for repository",
    "load indexes",
    "check all packs",
    "check snapshots, trees and blobs",
];

const CAPTURE_HINT: &str =
    "capture stderr and the exit status, and rename the finished file into place: \
     `{ restic check 2>&1; echo \"exit: $?\"; } > FILE.tmp && mv FILE.tmp FILE` (see the README)";

/// Outcome of `restic check`, from what the backup job saved:
///
/// - the text output (restic 0.14+: progress on stdout, errors and `Fatal:` on
///   stderr, `no errors were found` only when the whole check passed), best
///   with stderr (`2>&1`) and a last line `exit: N` holding restic's exit status;
/// - or restic 0.18+ `--json` output (a `summary` message with `num_errors`).
///
/// A nonzero `exit:` or a `Fatal:` line is a failure. Without an `exit:` line,
/// restic's progress lines without `no errors were found` are a failure too: a
/// failed check's errors went to stderr, which `restic check > FILE` loses.
pub fn parse_check(bytes: &[u8]) -> Result<Check, ParseError> {
    let text = String::from_utf8_lossy(bytes);
    if text.trim().is_empty() {
        return Err(ParseError::Invalid(format!(
            "the file is empty (`restic check -q` prints nothing, even on failure): {CAPTURE_HINT}"
        )));
    }
    let mut exit = None;
    let mut fatal = false;
    let mut error_line = false;
    let mut progress = false;
    let mut passed_line = false;
    // restic 0.18+ `check --json`: one JSON message per line, the last a summary.
    let mut summary = None;
    let mut json_error = false;
    for line in text.lines() {
        let line = line.trim();
        if let Some(code) = super::runs::exit_line(line) {
            exit = Some(code?);
            continue;
        }
        if line.starts_with('{') {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                match v.get("message_type").and_then(|m| m.as_str()) {
                    Some("summary") => {
                        // No count is not "no errors".
                        let errors = v.get("num_errors").and_then(|n| n.as_u64()).unwrap_or(1);
                        let broken = ["broken_packs", "suggest_repair_index", "suggest_prune"]
                            .iter()
                            .any(|k| match v.get(*k) {
                                Some(serde_json::Value::Array(a)) => !a.is_empty(),
                                Some(serde_json::Value::Bool(b)) => *b,
                                _ => false,
                            });
                        summary = Some(errors == 0 && !broken);
                    }
                    Some("error") => json_error = true,
                    _ => {}
                }
                continue;
            }
        }
        fatal |= line.starts_with("Fatal:");
        error_line |=
            line.to_ascii_lowercase().contains("error") && !line.contains("no errors were found");
        passed_line |= line == "no errors were found";
        progress |= CHECK_PROGRESS.iter().any(|p| line.starts_with(p));
    }
    if let Some(code) = exit.filter(|c| *c != 0) {
        return Ok(Check::fail(format!(
            "restic check exited with status {code}"
        )));
    }
    if fatal || json_error {
        return Ok(Check::fail("restic check reported errors"));
    }
    if let Some(ok) = summary {
        return Ok(if ok {
            Check::pass()
        } else {
            Check::fail("restic check reported errors")
        });
    }
    if exit == Some(0) || passed_line {
        // restic's own verdict: exit status 0, or the line it prints only on
        // success (a retried read on a flaky backend also prints "error").
        return Ok(Check::pass());
    }
    if error_line {
        return Ok(Check::fail("restic check reported errors"));
    }
    if progress {
        return Ok(Check::fail(format!(
            "restic check did not print \"no errors were found\": it failed (restic prints its errors on stderr) or was interrupted; {CAPTURE_HINT}"
        )));
    }
    Err(ParseError::Invalid(format!(
        "not the output of `restic check` (no result line, no exit status); {CAPTURE_HINT}"
    )))
}

/// The backup set of a snapshot: the `group_by` fields in restic's order,
/// `host=H paths=/a,/b tags=t1,t2` (paths and tags sorted; empty tags are
/// left out, so untagged snapshots are their own set).
pub fn set_label(s: &Snapshot, group_by: &[GroupField]) -> String {
    let mut fields: Vec<GroupField> = group_by.to_vec();
    fields.sort();
    fields.dedup();
    let mut parts = Vec::new();
    for f in fields {
        match f {
            GroupField::Host => parts.push(format!("host={}", s.hostname)),
            GroupField::Paths => parts.push(format!("paths={}", s.paths.join(","))),
            GroupField::Tags if !s.tags.is_empty() => {
                parts.push(format!("tags={}", s.tags.join(",")))
            }
            GroupField::Tags => {}
        }
    }
    parts.join(" ")
}

/// Normalise snapshots into records, one set per `group_by` identity; `stats`
/// fills the newest snapshot's size and file count when it has no `summary`.
pub fn records(
    snaps: &[Snapshot],
    stats: Option<&Stats>,
    group_by: &[GroupField],
) -> Vec<BackupRecord> {
    let mut out: Vec<BackupRecord> = snaps
        .iter()
        .map(|s| BackupRecord {
            group: set_label(s, group_by),
            time: s.end.unwrap_or(s.time),
            size: s.size,
            files: s.files,
            success: true,
        })
        .collect();
    if let Some(st) = stats {
        if let Some(newest) = out.iter_mut().max_by(|a, b| a.time.total_cmp(&b.time)) {
            if newest.size.is_none() && newest.files.is_none() {
                newest.size = st.total_size;
                newest.files = st.total_file_count;
            }
        }
    }
    out
}

#[derive(Default)]
pub(crate) struct State {
    snapshots: Cache<Vec<Snapshot>>,
    stats: Cache<Stats>,
    check: Cache<Check>,
}

pub(crate) fn read(ctx: &SourceCtx<'_>, st: &mut State) -> SourceRead {
    let mut read = SourceRead::default();
    // The check file is read on its own: its verdict stands whatever the other
    // files hold, and a check file that cannot be read is never a pass.
    if let Some(p) = &ctx.cfg.check_file {
        match st
            .check
            .load(&ctx.resolve(p), ctx.max_file_size, parse_check)
        {
            Ok((check, stamp)) => {
                read.verification = Some(check.passed);
                read.verified_at = stamp.modified.map(crate::core::clock::unix_seconds);
                read.findings.extend(check.problem.clone());
            }
            Err(e) => {
                read.verification = Some(false);
                read.errors.push(e);
            }
        }
    }
    let snaps = match ctx.load_main(&mut st.snapshots, parse_snapshots) {
        Ok(s) => s,
        Err(e) => {
            read.errors.insert(0, e);
            read.main_failed = true;
            return read;
        }
    };
    let stats = match &ctx.cfg.stats_file {
        Some(p) => match st
            .stats
            .load(&ctx.resolve(p), ctx.max_file_size, parse_stats)
        {
            Ok((stats, stamp)) => {
                let written = stamp.modified.map(crate::core::clock::unix_seconds);
                let newest = snaps
                    .iter()
                    .map(|s| s.end.unwrap_or(s.time))
                    .max_by(f64::total_cmp);
                match stats_fit_newest(&stats, written, newest) {
                    Ok(()) => Some(stats),
                    Err(finding) => {
                        read.findings.push(finding);
                        None
                    }
                }
            }
            Err(e) => {
                read.errors.push(e);
                None
            }
        },
        None => None,
    };
    let group_by = ctx.cfg.group_by.as_deref().unwrap_or(&GroupField::DEFAULT);
    read.records = records(&snaps, stats.as_deref(), group_by);
    read
}

#[cfg(test)]
mod tests {
    use super::*;

    const V014: &str = r#"[{"time":"2026-11-25T01:32:31.822921797Z","tree":"4b26","paths":["/data"],"hostname":"vm","username":"root","id":"5ea8","short_id":"5ea8b230"},
{"time":"2026-11-24T03:00:00+01:00","paths":["/data"],"hostname":"vm","id":"aa"}]"#;

    const V017: &str = r#"[{"time":"2026-11-24T01:00:00Z","paths":["/b","/a"],"hostname":"h1","id":"1",
"summary":{"backup_start":"2026-11-24T01:00:00Z","backup_end":"2026-11-24T01:10:00Z","total_files_processed":10,"total_bytes_processed":1000}},
{"time":"2026-11-25T01:00:00Z","paths":["/a","/b"],"hostname":"h1","id":"2",
"summary":{"backup_end":"2026-11-25T01:05:00Z","total_files_processed":12,"total_bytes_processed":100}}]"#;

    #[test]
    fn parses_old_and_new_formats() {
        let s = parse_snapshots(V014.as_bytes()).unwrap();
        assert_eq!(s.len(), 2);
        let expected: Timestamp = "2026-11-24T02:00:00Z".parse().unwrap();
        assert_eq!(s[1].time, expected.as_second() as f64);
        assert_eq!(s[0].size, None);
        let n = parse_snapshots(V017.as_bytes()).unwrap();
        assert_eq!(n[0].paths, vec!["/a".to_string(), "/b".to_string()]);
        assert_eq!(n[1].size, Some(100));
        assert_eq!(n[1].end, Some(n[1].time + 300.0));
        let r = records(&n, None, &GroupField::DEFAULT);
        assert_eq!(r[0].group, r[1].group, "path order must not split groups");
        assert_eq!(r[1].time, n[1].time + 300.0);
    }

    #[test]
    fn sets_by_group_by_identity() {
        let snaps = parse_snapshots(br#"[
 {"time":"2026-11-24T01:00:00Z","hostname":"a","paths":["/y","/x"],"tags":["t2","t1"]},
 {"time":"2026-11-24T01:00:00Z","hostname":"a","paths":["/x","/y"],"tags":["t1","t2"]},
 {"time":"2026-11-24T01:00:00Z","hostname":"a","paths":["/x"]},
 {"time":"2026-11-24T01:00:00Z","hostname":"b","paths":["/x"],"tags":null}]"#)
        .unwrap();
        let sets = |g: &[GroupField]| -> Vec<String> {
            records(&snaps, None, g).into_iter().map(|r| r.group).collect()
        };
        // Paths and tags are sorted: the same identity in any order.
        assert_eq!(
            sets(&GroupField::DEFAULT),
            [
                "host=a paths=/x,/y tags=t1,t2",
                "host=a paths=/x,/y tags=t1,t2",
                "host=a paths=/x",
                "host=b paths=/x"
            ]
        );
        // A changed path set is a new set; group_by host merges them.
        assert_eq!(
            sets(&[GroupField::Host]),
            ["host=a", "host=a", "host=a", "host=b"]
        );
        assert_eq!(
            sets(&[GroupField::Paths, GroupField::Host, GroupField::Host])[3],
            "host=b paths=/x"
        );
    }

    #[test]
    fn offsets_are_honoured() {
        let a = parse_snapshots(br#"[{"time":"2026-11-24T03:00:00+01:00"}]"#).unwrap();
        let b = parse_snapshots(br#"[{"time":"2026-11-24T02:00:00Z"}]"#).unwrap();
        assert_eq!(a[0].time, b[0].time);
    }

    #[test]
    fn grouped_empty_and_null() {
        let g = br#"[{"group_key":{"hostname":"h"},"snapshots":[{"time":"2026-11-24T02:00:00Z","hostname":"h"}]}]"#;
        assert_eq!(parse_snapshots(g).unwrap().len(), 1);
        assert!(parse_snapshots(b"[]").unwrap().is_empty());
        assert!(parse_snapshots(b"null").unwrap().is_empty());
    }

    #[test]
    fn bad_input() {
        assert!(matches!(
            parse_snapshots(&V017.as_bytes()[..120]),
            Err(ParseError::Truncated { .. })
        ));
        assert!(matches!(parse_snapshots(b""), Err(ParseError::Empty)));
        assert!(matches!(
            parse_snapshots(br#"{"a":1}"#),
            Err(ParseError::Invalid(_))
        ));
        let e = parse_snapshots(br#"[{"time":"yesterday-s3cr3t"}]"#).unwrap_err();
        assert!(e.to_string().contains("snapshot [0]"), "{e}");
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
    }

    #[test]
    fn stats_fill_the_newest_snapshot_only() {
        let s = parse_snapshots(V014.as_bytes()).unwrap();
        let st =
            parse_stats(br#"{"total_size":6,"total_file_count":2,"snapshots_count":1}"#).unwrap();
        let r = records(&s, Some(&st), &GroupField::DEFAULT);
        assert_eq!((r[0].size, r[0].files), (Some(6), Some(2)));
        assert_eq!(r[1].size, None);
    }

    fn passed(text: &[u8]) -> bool {
        parse_check(text).unwrap().passed
    }

    #[test]
    fn check_output() {
        assert!(passed(
            b"using temporary cache\nload indexes\ncheck all packs\nno errors were found\n"
        ));
        assert!(!passed(b"check all packs\nerror: pack 1234 contained 1 damaged blobs\nFatal: repository contains errors\n"));
        assert!(passed(
            br#"{"message_type":"summary","num_errors":0,"broken_packs":null}"#
        ));
        assert!(!passed(br#"{"message_type":"summary","num_errors":2}"#));
        assert!(!passed(br#"{"message_type":"summary"}"#));
        assert!(!passed(
            br#"{"message_type":"summary","num_errors":0,"broken_packs":["ab"]}"#
        ));
        assert!(parse_check(b"hello\n").is_err());
        let e = parse_check(b"").unwrap_err();
        assert!(e.to_string().contains("exit: $?"), "{e}");
    }

    /// What `restic check > FILE` (stdout only) keeps of a failed check:
    /// the progress lines, not the errors (they went to stderr).
    const STDOUT_OF_FAILED_CHECK: &[u8] = b"using temporary cache in /tmp/restic-check-cache-1\ncreate exclusive lock for repository\nload indexes\ncheck all packs\ncheck snapshots, trees and blobs\n[0:00] 100.00%  1 / 1 snapshots\n\n";

    #[test]
    fn stdout_of_a_failed_check_is_a_failure() {
        let c = parse_check(STDOUT_OF_FAILED_CHECK).unwrap();
        assert!(!c.passed);
        let p = c.problem.unwrap();
        assert!(p.contains("2>&1"), "{p}");
        // `--read-data` output ends with "read all data" and the same missing line.
        let mut read_data = STDOUT_OF_FAILED_CHECK.to_vec();
        read_data.extend_from_slice(b"read all data\n[0:00] 100.00%  2 / 2 packs\n\n");
        assert!(!passed(&read_data));
    }

    #[test]
    fn exit_status_line_decides() {
        // `restic check -q` prints nothing: the exit status is all there is.
        assert!(passed(b"exit: 0\n"));
        assert_eq!(
            parse_check(b"exit: 1\n").unwrap().problem.as_deref(),
            Some("restic check exited with status 1")
        );
        let mut ok = b"using temporary cache\nno errors were found\n".to_vec();
        ok.extend_from_slice(b"exit: 3\n");
        assert!(!passed(&ok), "a nonzero exit wins over the result line");
        assert!(!passed(
            b"load indexes\nFatal: unable to open config file\nexit: 0\n"
        ));
        // A retried read on a flaky backend prints "error" even when the check passes.
        assert!(passed(
            b"Load(<data/ab>, 0, 0) returned error, retrying after 1s: EOF\nexit: 0\n"
        ));
        assert!(passed(
            b"Load(<data/ab>, 0, 0) returned error, retrying after 1s: EOF\nno errors were found\n"
        ));
        assert!(parse_check(b"no errors were found\nexit: zero\n").is_err());
        // JSON summary and a nonzero exit.
        assert!(!passed(
            b"{\"message_type\":\"summary\",\"num_errors\":0}\nexit: 1\n"
        ));
    }

    #[test]
    fn stats_must_be_about_the_newest_snapshot() {
        let latest =
            parse_stats(br#"{"total_size":6,"total_file_count":2,"snapshots_count":1}"#).unwrap();
        assert_eq!(stats_fit_newest(&latest, Some(200.0), Some(100.0)), Ok(()));
        let all = parse_stats(br#"{"total_size":406000,"total_file_count":6,"snapshots_count":2}"#)
            .unwrap();
        let e = stats_fit_newest(&all, Some(200.0), Some(100.0)).unwrap_err();
        assert!(
            e.contains("2 snapshots") && e.contains("restic stats --json latest"),
            "{e}"
        );
        let e = stats_fit_newest(&latest, Some(50.0), Some(100.0)).unwrap_err();
        assert!(e.contains("before the newest snapshot"), "{e}");
        // Older restic without snapshots_count, unknown times: used.
        let bare = parse_stats(br#"{"total_size":6}"#).unwrap();
        assert_eq!(stats_fit_newest(&bare, None, Some(100.0)), Ok(()));
    }
}
