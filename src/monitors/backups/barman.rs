//! barman: the JSON the backup job wrote with
//! `barman -f json list-backups all > list.json` (`path`; or one server
//! name instead of `all`).
//!
//! Each barman server is a backup set (`set` label = server name). Per
//! backup, as barman lists it:
//!
//! - `status` `DONE` is a success; `FAILED` is a failed run (it stays in the
//!   catalog until deleted, and `barman check` fails while it is there);
//!   `STARTED`, `SYNCING` and `WAITING_FOR_WALS` (copied, but the WAL it
//!   needs to be consistent is not archived yet) are not finished: not a
//!   success, not a failure, only a note; `EMPTY` is not a backup.
//! - its time is `end_time_timestamp` (a `FAILED` backup without one counts
//!   as the newest run);
//! - its size is `size_bytes` (the backup with the WAL it needs to be
//!   consistent, as `barman list-backups` shows it).
//!
//! The recovery window of a server starts at its oldest `DONE` backup's end:
//! barman's continuous WAL archive lets a restore reach any later point.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::files::Cache;
use super::{from_json, BackupRecord, ParseError, SourceCtx, SourceRead};

/// One backup of `list-backups`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Backup {
    #[serde(default)]
    pub backup_id: String,
    #[serde(default)]
    pub status: String,
    /// A whole number of seconds, as text (`"1796084341"`) or a number.
    #[serde(default)]
    pub end_time_timestamp: Option<serde_json::Value>,
    #[serde(default)]
    pub size_bytes: Option<u64>,
}

/// `barman -f json list-backups SERVER|all`: backups per server, newest first.
pub type List = BTreeMap<String, Vec<Backup>>;

pub fn parse_list(bytes: &[u8]) -> Result<List, ParseError> {
    let list: List = from_json(bytes)?;
    for (server, backups) in &list {
        for (i, b) in backups.iter().enumerate() {
            if b.status == "DONE" && end_time(b).is_none() {
                return Err(ParseError::Invalid(format!(
                    "server {server}, backup [{i}]: a DONE backup without `end_time_timestamp`"
                )));
            }
        }
    }
    Ok(list)
}

fn end_time(b: &Backup) -> Option<f64> {
    match b.end_time_timestamp.as_ref()? {
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
        serde_json::Value::Number(n) => n.as_f64(),
        _ => None,
    }
    .filter(|t| t.is_finite() && *t > 0.0)
}

/// Records (one group per server), the servers, and notes. Pure.
pub fn records(list: &List) -> (Vec<BackupRecord>, Vec<String>, Vec<String>) {
    let mut out = Vec::new();
    let mut notes = Vec::new();
    for (server, backups) in list {
        // Oldest first: of two with the same second, the later listed is newer.
        for b in backups.iter().rev() {
            match b.status.as_str() {
                "DONE" => out.push(BackupRecord {
                    group: server.clone(),
                    time: end_time(b).unwrap_or(0.0),
                    size: b.size_bytes,
                    files: None,
                    success: true,
                }),
                "FAILED" => out.push(BackupRecord {
                    group: server.clone(),
                    time: end_time(b).unwrap_or(f64::MAX),
                    size: None,
                    files: None,
                    success: false,
                }),
                "EMPTY" => {}
                other => notes.push(format!(
                    "server {server}: backup {} is {}",
                    b.backup_id,
                    other.to_ascii_lowercase()
                )),
            }
        }
    }
    (out, list.keys().cloned().collect(), notes)
}

/// Parse cache of one barman source.
#[derive(Default)]
pub struct State {
    list: Cache<List>,
}

pub(crate) fn read(ctx: &SourceCtx<'_>, st: &mut State) -> SourceRead {
    let list = match ctx.load_main(&mut st.list, parse_list) {
        Ok(l) => l,
        Err(e) => return SourceRead::main_failed(e, None),
    };
    let (records, servers, notes) = records(&list);
    let failed = records.iter().filter(|r| !r.success).count();
    let mut findings = Vec::new();
    if failed > 0 {
        findings.push(format!(
            "{failed} FAILED backup(s) in the catalog (`barman check` fails until they are deleted with `barman delete`)"
        ));
    }
    SourceRead {
        records,
        findings,
        notes,
        declared_sets: servers,
        ..SourceRead::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_times() {
        let list = parse_list(
            br#"{"pg": [
              {"backup_id": "20261201T020000", "status": "STARTED"},
              {"backup_id": "20261201T010000", "status": "FAILED"},
              {"backup_id": "20261201T001858", "status": "DONE", "end_time_timestamp": "1796084341", "size_bytes": 56684398},
              {"backup_id": "20261130T001850", "status": "DONE", "end_time_timestamp": 1796000000, "size_bytes": 39907181}
            ], "other": []}"#,
        )
        .unwrap();
        let (recs, servers, notes) = records(&list);
        assert_eq!(servers, vec!["other".to_string(), "pg".to_string()]);
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[0].time, 1796000000.0);
        assert_eq!(recs[1].size, Some(56684398));
        // A failed backup without an end time is the newest run.
        assert!(!recs[2].success && recs[2].time == f64::MAX);
        assert_eq!(notes, vec!["server pg: backup 20261201T020000 is started"]);
        assert!(parse_list(br#"{"pg": [{"status": "DONE"}]}"#).is_err());
        assert!(parse_list(br#"[]"#).is_err());
    }
}
