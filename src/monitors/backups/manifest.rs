//! Our own backup manifest: a small JSON document any backup script can write
//! after a run (JSON Schema: `schemas/backup-manifest.schema.json`).
//!
//! ```json
//! {
//!   "version": 1,
//!   "id": "nightly-2026-11-25",
//!   "start": "2026-11-25T01:00:00Z",
//!   "end": "2026-11-25T01:12:30Z",
//!   "status": "success",
//!   "size": 1048576,
//!   "files": [
//!     { "path": "db.sql.gz", "size": 1048576, "sha256": "9f86d0…" }
//!   ]
//! }
//! ```
//!
//! - `status`: `success`, `failed`, `partial` or `running`; only `success` counts
//!   as a successful backup.
//! - `start`, `end`: RFC 3339 with an offset; `end` is required for `success`.
//! - `size` (bytes) and `files` are optional; `files` is a count or a list of
//!   `{path, size, sha256?}` relative to the manifest's folder. Without `size`,
//!   the listed sizes are summed.
//! - A file may hold one run (an object) or a history (an array of runs);
//!   `path` may be a glob matching one manifest per run.
//!
//! The newest successful run's file list is checked with `verify: sizes` or
//! `verify: checksums` (see the `verify` module). A newest run without a file
//! list has nothing to verify: `backup_verification_success` is then absent
//! and the source has a finding. With `verify`, a manifest that cannot be
//! read or parsed sets `backup_verification_success` to 0.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::files::{expand, Cache};
use super::verify::{hex_decode, verify_files, Algorithm, HashCache, ListedFile};
use super::{
    from_json, parse_rfc3339, BackupError, BackupRecord, ParseError, SourceCtx, SourceRead,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Success,
    Failed,
    Partial,
    Running,
}

/// One run.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub id: String,
    pub start: f64,
    pub end: Option<f64>,
    pub status: Status,
    pub size: Option<u64>,
    pub file_count: Option<u64>,
    /// Listed files (empty when only a count is given).
    pub files: Vec<ListedFile>,
}

#[derive(Deserialize)]
struct RawRun {
    version: u64,
    id: String,
    start: String,
    #[serde(default)]
    end: Option<String>,
    status: Status,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    files: Option<RawFiles>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawFiles {
    Count(u64),
    List(Vec<RawFile>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    path: String,
    size: u64,
    #[serde(default)]
    sha256: Option<String>,
}

fn safe_relative(p: &str) -> bool {
    !p.is_empty()
        && Path::new(p).components().all(|c| {
            matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        })
}

/// Parse a manifest file (one run or an array of runs).
pub fn parse(bytes: &[u8]) -> Result<Vec<Run>, ParseError> {
    let value: serde_json::Value = from_json(bytes)?;
    let runs = match value {
        serde_json::Value::Array(_) => from_json::<Vec<RawRun>>(bytes)?,
        _ => vec![from_json::<RawRun>(bytes)?],
    };
    runs.into_iter()
        .enumerate()
        .map(|(i, r)| {
            if r.version != 1 {
                return Err(ParseError::Invalid(format!(
                    "run [{i}]: unsupported manifest version {} (1 is known)",
                    r.version
                )));
            }
            let start = parse_rfc3339(&r.start).ok_or_else(|| {
                ParseError::Invalid(format!(
                    "run [{i}]: `start` is not an RFC 3339 time with an offset"
                ))
            })?;
            let end = match r.end.as_deref() {
                Some(e) => Some(parse_rfc3339(e).ok_or_else(|| {
                    ParseError::Invalid(format!(
                        "run [{i}]: `end` is not an RFC 3339 time with an offset"
                    ))
                })?),
                None => None,
            };
            if r.status == Status::Success && end.is_none() {
                return Err(ParseError::Invalid(format!(
                    "run [{i}]: a successful run needs `end`"
                )));
            }
            let (file_count, files) = match r.files {
                None => (None, Vec::new()),
                Some(RawFiles::Count(n)) => (Some(n), Vec::new()),
                Some(RawFiles::List(list)) => {
                    let mut files = Vec::with_capacity(list.len());
                    for (j, f) in list.into_iter().enumerate() {
                        if !safe_relative(&f.path) {
                            return Err(ParseError::Invalid(format!(
                                "run [{i}] files[{j}]: path leaves the manifest's folder"
                            )));
                        }
                        let checksum = match f.sha256 {
                            Some(h) => Some((
                                Algorithm::Sha256,
                                hex_decode(&h).filter(|d| d.len() == 32).ok_or_else(|| {
                                    ParseError::Invalid(format!(
                                        "run [{i}] files[{j}]: sha256 is not 64 hex digits"
                                    ))
                                })?,
                            )),
                            None => None,
                        };
                        files.push(ListedFile {
                            path: f.path,
                            size: f.size,
                            checksum,
                        });
                    }
                    (Some(files.len() as u64), files)
                }
            };
            let size = r.size.or_else(|| {
                (!files.is_empty())
                    .then(|| files.iter().fold(0u64, |a, f| a.saturating_add(f.size)))
            });
            Ok(Run {
                id: r.id,
                start,
                end,
                status: r.status,
                size,
                file_count,
                files,
            })
        })
        .collect()
}

impl Run {
    pub fn record(&self) -> BackupRecord {
        BackupRecord {
            group: String::new(),
            time: self.end.unwrap_or(self.start),
            size: self.size,
            files: self.file_count,
            success: self.status == Status::Success,
        }
    }
}

#[derive(Default)]
pub(crate) struct State {
    manifests: Cache<Vec<Run>>,
    hashes: HashCache,
}

pub(crate) fn read(ctx: &SourceCtx<'_>, st: &mut State) -> SourceRead {
    match read_runs(ctx, st) {
        Ok(read) => read,
        // With `verify`, a manifest that cannot be read is a backup that does not verify.
        Err(e) => SourceRead::main_failed(
            e,
            (ctx.cfg.verify != super::config::VerifyMode::None).then_some(false),
        ),
    }
}

fn read_runs(ctx: &SourceCtx<'_>, st: &mut State) -> Result<SourceRead, BackupError> {
    let paths: Vec<PathBuf> = expand(ctx.base, &ctx.cfg.path)?;
    st.manifests.retain(&paths);
    let mut read = SourceRead::default();
    let mut newest: Option<(&Path, std::sync::Arc<Vec<Run>>, usize)> = None;
    let mut newest_time = f64::NEG_INFINITY;
    for p in &paths {
        let (runs, _) = st.manifests.load(p, ctx.max_file_size, parse)?;
        for (i, r) in runs.iter().enumerate() {
            let rec = r.record();
            if rec.success && rec.time > newest_time {
                newest_time = rec.time;
                newest = Some((p.as_path(), runs.clone(), i));
            }
            read.records.push(rec);
        }
    }
    let Some((path, runs, i)) = newest else {
        return Ok(read);
    };
    let Some(run) = runs.get(i) else {
        return Ok(read);
    };
    if ctx.cfg.verify != super::config::VerifyMode::None {
        if run.files.is_empty() {
            // Nothing to check is not a pass.
            read.findings.push(format!(
                "verify is set, but the newest successful run in {} lists no files: nothing was verified \
                 (write `files` as a list of {{path, size, sha256}})",
                path.display()
            ));
            return Ok(read);
        }
        let root = path.parent().unwrap_or(Path::new("."));
        let outcome = verify_files(
            root,
            &run.files,
            ctx.cfg.verify,
            ctx.cfg.verify_max_bytes.0,
            &mut st.hashes,
        );
        read.findings.extend(outcome.findings());
        read.verification = outcome.verdict();
        read.notes.extend(outcome.progress_note());
        read.notes.extend(outcome.no_checksum_note());
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: &str = r#"{"version":1,"id":"n1","start":"2026-11-25T01:00:00Z","end":"2026-11-25T01:10:00Z",
"status":"success","files":[{"path":"db.sql.gz","size":10},{"path":"etc.tar","size":5,"sha256":"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"}]}"#;

    #[test]
    fn one_run_with_files() {
        let r = parse(RUN.as_bytes()).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].size, Some(15));
        assert_eq!(r[0].file_count, Some(2));
        assert_eq!(r[0].end, Some(r[0].start + 600.0));
        assert!(r[0].record().success);
        assert_eq!(
            r[0].files[1].checksum.as_ref().unwrap().0,
            Algorithm::Sha256
        );
    }

    #[test]
    fn history_and_failed_runs() {
        let doc = r#"[{"version":1,"id":"a","start":"2026-11-24T01:00:00Z","end":"2026-11-24T01:10:00Z","status":"success","size":100,"files":7},
 {"version":1,"id":"b","start":"2026-11-25T01:00:00Z","end":"2026-11-25T01:01:00Z","status":"failed","size":3},
 {"version":1,"id":"c","start":"2026-11-25T02:00:00Z","status":"running"}]"#;
        let r = parse(doc.as_bytes()).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!((r[0].size, r[0].file_count), (Some(100), Some(7)));
        assert!(!r[1].record().success);
        assert!(!r[2].record().success);
        assert_eq!(r[2].record().time, r[2].start);
    }

    #[test]
    fn bad_input() {
        assert!(matches!(
            parse(&RUN.as_bytes()[..40]),
            Err(ParseError::Truncated { .. })
        ));
        let no_end = r#"{"version":1,"id":"a","start":"2026-11-24T01:00:00Z","status":"success"}"#;
        assert!(parse(no_end.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("needs `end`"));
        let bad_status =
            r#"{"version":1,"id":"a","start":"2026-11-24T01:00:00Z","status":"great"}"#;
        assert!(matches!(
            parse(bad_status.as_bytes()),
            Err(ParseError::Structure { .. })
        ));
        let escape = RUN.replace("db.sql.gz", "../../x");
        assert!(parse(escape.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("leaves"));
        let zoneless = RUN.replace("01:10:00Z", "01:10:00");
        assert!(parse(zoneless.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("`end`"));
        let v2 = RUN.replace("\"version\":1", "\"version\":2");
        assert!(parse(v2.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("unsupported"));
    }
}
