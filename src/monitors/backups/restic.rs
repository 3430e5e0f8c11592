//! restic: the JSON the backup job wrote with
//!
//! - `restic snapshots --json > snapshots.json` (`path`; also the
//!   `--group-by` form). Every snapshot is a finished backup. Restic 0.17+ adds
//!   a `summary` (`backup_end`, `total_bytes_processed`, `total_files_processed`)
//!   that gives the size and file count of each snapshot.
//! - optional `restic stats --json latest > stats.json` (`stats_file`): size and
//!   file count of the newest snapshot for restic before 0.17 (Debian's 0.14),
//!   whose snapshots have no `summary`.
//! - optional `restic check > check.txt` (`check_file`): the text output
//!   ("no errors were found") or, restic 0.18+, `--json` output (a `summary`
//!   message with `num_errors`). Sets `backup_verification_success`.
//!
//! Snapshots are grouped by host and path set (as `restic forget` does).

use jiff::Timestamp;
use serde::Deserialize;

use super::files::Cache;
use super::{from_json, ts_secs, BackupError, BackupRecord, ParseError, SourceCtx, SourceRead};

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
            Ok(Snapshot {
                time,
                end,
                hostname: r.hostname,
                paths,
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
}

pub fn parse_stats(bytes: &[u8]) -> Result<Stats, ParseError> {
    from_json(bytes)
}

/// Outcome of `restic check`.
pub fn parse_check(bytes: &[u8]) -> Result<bool, ParseError> {
    let text = String::from_utf8_lossy(bytes);
    if text.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    // restic 0.18+ `check --json`: one JSON message per line, the last a summary.
    let mut summary = None;
    let mut json_error = false;
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line.trim()) else {
            continue;
        };
        match v.get("message_type").and_then(|m| m.as_str()) {
            Some("summary") => {
                let errors = v.get("num_errors").and_then(|n| n.as_u64()).unwrap_or(0);
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
    }
    if let Some(ok) = summary {
        return Ok(ok && !json_error);
    }
    // Text output: restic prints this line only when the whole check passed.
    if text.contains("no errors were found") {
        return Ok(true);
    }
    if text.contains("Fatal") || text.contains("error") {
        return Ok(false);
    }
    Err(ParseError::Invalid(
        "not the output of `restic check` (no summary and no result line; was the check interrupted?)".into(),
    ))
}

/// Normalise snapshots into records; `stats` fills the newest snapshot's size
/// and file count when it has no `summary`.
pub fn records(snaps: &[Snapshot], stats: Option<&Stats>) -> Vec<BackupRecord> {
    let mut out: Vec<BackupRecord> = snaps
        .iter()
        .map(|s| BackupRecord {
            group: format!("{}\u{0}{}", s.hostname, s.paths.join("\u{0}")),
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
    check: Cache<bool>,
}

pub(crate) fn read(ctx: &SourceCtx<'_>, st: &mut State) -> Result<SourceRead, BackupError> {
    let (snaps, _) = st.snapshots.load(
        &ctx.resolve(&ctx.cfg.path),
        ctx.max_file_size,
        parse_snapshots,
    )?;
    let stats = match &ctx.cfg.stats_file {
        Some(p) => Some(
            st.stats
                .load(&ctx.resolve(p), ctx.max_file_size, parse_stats)?
                .0,
        ),
        None => None,
    };
    let verification = match &ctx.cfg.check_file {
        Some(p) => Some(
            *st.check
                .load(&ctx.resolve(p), ctx.max_file_size, parse_check)?
                .0,
        ),
        None => None,
    };
    let mut read = SourceRead {
        records: records(&snaps, stats.as_deref()),
        verification,
        ..SourceRead::default()
    };
    if verification == Some(false) {
        read.findings.push("restic check reported errors".into());
    }
    Ok(read)
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
        let r = records(&n, None);
        assert_eq!(r[0].group, r[1].group, "path order must not split groups");
        assert_eq!(r[1].time, n[1].time + 300.0);
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
        let r = records(&s, Some(&st));
        assert_eq!((r[0].size, r[0].files), (Some(6), Some(2)));
        assert_eq!(r[1].size, None);
    }

    #[test]
    fn check_output() {
        assert_eq!(
            parse_check(
                b"using temporary cache\nload indexes\ncheck all packs\nno errors were found\n"
            ),
            Ok(true)
        );
        assert_eq!(parse_check(b"check all packs\nerror: pack 1234 contained 1 damaged blobs\nFatal: repository contains errors\n"), Ok(false));
        assert_eq!(
            parse_check(br#"{"message_type":"summary","num_errors":0,"broken_packs":null}"#),
            Ok(true)
        );
        assert_eq!(
            parse_check(br#"{"message_type":"summary","num_errors":2}"#),
            Ok(false)
        );
        assert_eq!(
            parse_check(br#"{"message_type":"summary","num_errors":0,"broken_packs":["ab"]}"#),
            Ok(false)
        );
        assert!(parse_check(b"check all packs\n").is_err());
        assert_eq!(parse_check(b""), Err(ParseError::Empty));
    }
}
