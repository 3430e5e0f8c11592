//! pgBackRest: the JSON the backup job wrote with
//! `pgbackrest info --output=json > info.json` (`path`; every stanza, or one
//! with `--stanza`).
//!
//! Each stanza is a backup set (`set` label = stanza name). Per backup
//! (`backup[]`, full, diff and incr alike):
//!
//! - its time is `timestamp.stop` (when the backup finished: the earliest
//!   point a restore of it reaches consistency);
//! - its size is `info.size` (the database size it restores); the set's
//!   `info.repository.size` of the newest backup is exported as
//!   `backup_set_repository_size_bytes` (bytes in the repository, with the
//!   files it references in earlier backups);
//! - `error: true` (pgBackRest found page checksum errors while copying) makes
//!   the backup not a success: it is not counted as fresh, and when it is the
//!   newest, `backup_last_run_success` is 0.
//!
//! Recovery window: the oldest *restorable* backup's `timestamp.stop`, where a
//! backup is restorable when it has no `error` and the stanza's WAL archive
//! for its database (`archive[]`, same `database.id`) still holds its
//! `archive.start`..`archive.stop` segments (between `min` and `max`). A
//! backup whose WAL is gone from the archive cannot be restored: a finding.
//!
//! Stanzas pgBackRest reports with a `status.code` other than 0 (no valid
//! backups, missing stanza data, ...) or 6 (a backup or expire is running)
//! are findings; a stanza without backups is a set with no successful backup
//! (`backup_set_last_success_timestamp_seconds 0`), never a missing series.
//!
//! pgBackRest lists only completed backups: a run that failed leaves no entry.
//! Use `status_file` (an `exit: N` line) to see failed runs.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::files::Cache;
use super::{from_json, BackupRecord, ParseError, SourceCtx, SourceRead};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Times {
    pub start: i64,
    pub stop: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WalRange {
    #[serde(default)]
    pub start: Option<String>,
    #[serde(default)]
    pub stop: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DbRef {
    pub id: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RepoInfo {
    #[serde(default)]
    pub size: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Info {
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub repository: Option<RepoInfo>,
}

/// One backup of `backup[]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Backup {
    #[serde(default)]
    pub label: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    pub timestamp: Times,
    /// pgBackRest 2.36+: page checksum errors found; absent before.
    #[serde(default)]
    pub error: Option<bool>,
    #[serde(default)]
    pub info: Option<Info>,
    #[serde(default)]
    pub archive: Option<WalRange>,
    #[serde(default)]
    pub database: Option<DbRef>,
}

/// One entry of `archive[]`: the WAL kept for one database (cluster version).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Archive {
    #[serde(default)]
    pub database: Option<DbRef>,
    #[serde(default)]
    pub min: Option<String>,
    #[serde(default)]
    pub max: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Status {
    pub code: i64,
}

/// One stanza of `pgbackrest info --output=json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Stanza {
    pub name: String,
    #[serde(default)]
    pub backup: Vec<Backup>,
    #[serde(default)]
    pub archive: Vec<Archive>,
    #[serde(default)]
    pub status: Option<Status>,
}

/// Parse `pgbackrest info --output=json` (an array of stanzas).
pub fn parse_info(bytes: &[u8]) -> Result<Vec<Stanza>, ParseError> {
    let stanzas: Vec<Stanza> = from_json(bytes)?;
    let mut seen = std::collections::HashSet::new();
    for (i, s) in stanzas.iter().enumerate() {
        if s.name.trim().is_empty() {
            return Err(ParseError::Invalid(format!("stanza [{i}] has no name")));
        }
        if !seen.insert(s.name.as_str()) {
            return Err(ParseError::Invalid(format!(
                "stanza [{i}] repeats an earlier stanza's name (two info outputs concatenated?)"
            )));
        }
    }
    Ok(stanzas)
}

/// What one stanza adds to the set series besides its records.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StanzaView {
    /// `timestamp.stop` of the oldest restorable backup.
    pub oldest_restorable: Option<f64>,
    /// `info.repository.size` of the newest backup without error.
    pub repository_size: Option<u64>,
}

/// Is `[start, stop]` inside the stanza's archive for database `db`?
fn wal_kept(st: &Stanza, b: &Backup) -> bool {
    let (Some(start), Some(stop)) = (
        b.archive.as_ref().and_then(|a| a.start.as_deref()),
        b.archive.as_ref().and_then(|a| a.stop.as_deref()),
    ) else {
        return false;
    };
    let db = b.database.as_ref().map(|d| d.id);
    st.archive
        .iter()
        .filter(|a| db.is_none() || a.database.as_ref().map(|d| d.id) == db)
        .any(|a| match (a.min.as_deref(), a.max.as_deref()) {
            // WAL segment names (timeline, log, segment in fixed-width hex)
            // sort as text, as pgBackRest compares them.
            (Some(min), Some(max)) => min <= start && stop <= max,
            _ => false,
        })
}

/// Records (one group per stanza), per-stanza extras and findings. Pure.
pub fn records(
    stanzas: &[Stanza],
) -> (Vec<BackupRecord>, BTreeMap<String, StanzaView>, Vec<String>) {
    let mut out = Vec::new();
    let mut views = BTreeMap::new();
    let mut findings = Vec::new();
    for st in stanzas {
        let mut view = StanzaView::default();
        let mut unrestorable = 0usize;
        let mut newest: Option<&Backup> = None;
        for b in &st.backup {
            let success = b.error != Some(true);
            out.push(BackupRecord {
                group: st.name.clone(),
                time: b.timestamp.stop as f64,
                size: b.info.as_ref().and_then(|i| i.size),
                files: None,
                success,
            });
            if !success {
                continue;
            }
            if newest.is_none_or(|n| b.timestamp.stop >= n.timestamp.stop) {
                newest = Some(b);
            }
            if wal_kept(st, b) {
                let t = b.timestamp.stop as f64;
                view.oldest_restorable = Some(view.oldest_restorable.map_or(t, |o: f64| o.min(t)));
            } else {
                unrestorable += 1;
            }
        }
        view.repository_size = newest
            .and_then(|b| b.info.as_ref())
            .and_then(|i| i.repository.as_ref())
            .and_then(|r| r.size);
        let errors = st.backup.iter().filter(|b| b.error == Some(true)).count();
        if errors > 0 {
            findings.push(format!(
                "stanza {}: {errors} backup(s) with page checksum errors (`error: true`; see `pgbackrest info --stanza={} --set=LABEL`)",
                st.name, st.name
            ));
        }
        if unrestorable > 0 {
            findings.push(format!(
                "stanza {}: {unrestorable} backup(s) whose WAL (archive start..stop) is not in the archive's min..max: they cannot be restored",
                st.name
            ));
        }
        match st.status.as_ref().map(|s| s.code) {
            Some(0) | Some(6) => {}
            Some(code) => findings.push(format!(
                "stanza {}: pgBackRest status code {code} (run `pgbackrest info --stanza={}` for its message)",
                st.name, st.name
            )),
            None => {}
        }
        views.insert(st.name.clone(), view);
    }
    (out, views, findings)
}

/// Parse cache of one pgbackrest source.
#[derive(Default)]
pub struct State {
    info: Cache<Vec<Stanza>>,
}

pub(crate) fn read(ctx: &SourceCtx<'_>, st: &mut State) -> SourceRead {
    let stanzas = match ctx.load_main(&mut st.info, parse_info) {
        Ok(s) => s,
        Err(e) => return SourceRead::main_failed(e, None),
    };
    let (records, views, findings) = records(&stanzas);
    SourceRead {
        records,
        findings,
        declared_sets: views.keys().cloned().collect(),
        set_views: views
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    super::SetExtra {
                        oldest_restorable: v.oldest_restorable,
                        repository_size: v.repository_size,
                    },
                )
            })
            .collect(),
        ..SourceRead::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup(stop: i64, error: Option<bool>, wal: (&str, &str)) -> String {
        format!(
            r#"{{"label":"L{stop}","type":"full","timestamp":{{"start":{},"stop":{stop}}},
            "error":{},"info":{{"size":100,"repository":{{"size":40}}}},
            "archive":{{"start":"{}","stop":"{}"}},"database":{{"id":1}}}}"#,
            stop - 5,
            error.map_or("null".to_string(), |e| e.to_string()),
            wal.0,
            wal.1
        )
    }

    #[test]
    fn recovery_window_needs_the_backups_wal() {
        let json = format!(
            r#"[{{"name":"main","status":{{"code":0}},
            "archive":[{{"database":{{"id":1}},"min":"000000010000000000000003","max":"000000010000000000000009"}}],
            "backup":[{},{},{}]}}]"#,
            // WAL expired from the archive: not restorable.
            backup(100, Some(false), ("000000010000000000000001", "000000010000000000000001")),
            backup(200, Some(false), ("000000010000000000000003", "000000010000000000000004")),
            backup(300, Some(true), ("000000010000000000000005", "000000010000000000000005")),
        );
        let st = parse_info(json.as_bytes()).unwrap();
        let (recs, views, findings) = records(&st);
        assert_eq!(recs.len(), 3);
        assert_eq!(recs.iter().filter(|r| r.success).count(), 2);
        assert_eq!(views["main"].oldest_restorable, Some(200.0));
        assert_eq!(views["main"].repository_size, Some(40));
        assert_eq!(findings.len(), 2, "{findings:?}");
        assert!(findings[0].contains("checksum errors"), "{findings:?}");
        assert!(findings[1].contains("cannot be restored"), "{findings:?}");
    }

    #[test]
    fn a_stanza_without_backups_is_a_set_with_a_finding() {
        let st = parse_info(br#"[{"name":"db2","status":{"code":2,"message":"no valid backups"},"backup":[],"archive":[]}]"#)
            .unwrap();
        let (recs, views, findings) = records(&st);
        assert!(recs.is_empty());
        assert_eq!(views["db2"], StanzaView::default());
        assert!(findings[0].contains("status code 2"), "{findings:?}");
        // Two stanzas with one name: refused, not merged.
        assert!(parse_info(br#"[{"name":"a"},{"name":"a"}]"#).is_err());
        assert!(parse_info(br#"{"name":"a"}"#).is_err());
    }
}
