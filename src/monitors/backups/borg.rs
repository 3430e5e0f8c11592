//! borg: the JSON the backup job wrote with
//!
//! - `borg list --json REPO > list.json` (`path`): every archive, its `start`
//!   and `time`. Gives the count, the oldest and the newest archive.
//! - optional `borg info --json --last 2 REPO > info.json` (`info_file`): `end`
//!   time, `stats.original_size` and `stats.nfiles` of the archives it lists
//!   (matched by id, else by name). Two archives give `backup_size_change_ratio`.
//!   Repository-level `borg info --json REPO` (no `archives`) is refused with
//!   the command to use: it holds no archive sizes.
//!
//! **Time zones.** Borg 1.x writes dates as local time of the machine that ran
//! borg, without a zone (`2026-11-25T01:33:08.000000`). They are read in the
//! source's `timezone` (an IANA name such as `Europe/Berlin`) or, without
//! one, in the exporter's own local zone (`TZ`, else `/etc/localtime`, else UTC).
//! Set `timezone` when the exporter runs in a container whose zone differs from
//! the backup host's. Dates that carry an offset (`...+01:00`) are taken as written.
//!
//! Checkpoint archives (`NAME.checkpoint`, `NAME.checkpoint.N`), which borg
//! leaves behind after an interrupted `borg create`, are partial: never a success.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Deserialize;

use super::files::Cache;
use super::{from_json, ts_secs, BackupError, BackupRecord, ParseError, SourceCtx, SourceRead};
use super::config::{BorgSet, TimeZoneName};

/// An archive, from `borg list --json` (times are still unzoned text).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ListArchive {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub start: Option<String>,
    #[serde(default)]
    pub time: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct List {
    pub archives: Vec<ListArchive>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InfoStats {
    #[serde(default)]
    pub original_size: Option<u64>,
    #[serde(default)]
    pub nfiles: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InfoArchive {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub end: Option<String>,
    #[serde(default)]
    pub stats: Option<InfoStats>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub archives: Vec<InfoArchive>,
}

#[derive(Deserialize)]
struct RawInfo {
    #[serde(default)]
    archives: Option<Vec<InfoArchive>>,
}

pub fn parse_list(bytes: &[u8]) -> Result<List, ParseError> {
    from_json(bytes)
}

/// Parse `borg info --json` output about archives. Repository-level output
/// (`borg info --json REPO`: no `archives`) and `borg list --json` output (no
/// `stats`) hold no archive sizes: both are refused, naming the command to use.
pub fn parse_info(bytes: &[u8]) -> Result<Info, ParseError> {
    let raw: RawInfo = from_json(bytes)?;
    let Some(archives) = raw.archives else {
        return Err(ParseError::Invalid(
            "no `archives`: this is repository-level `borg info --json REPO` output, which holds no archive sizes; \
             write `borg info --json --last 2 REPO` (or `borg info --json REPO::ARCHIVE`) to info_file"
                .into(),
        ));
    };
    if !archives.is_empty() && archives.iter().all(|a| a.stats.is_none()) {
        return Err(ParseError::Invalid(
            "no archive has `stats` (is this `borg list --json` output?); \
             write `borg info --json --last 2 REPO` to info_file"
                .into(),
        ));
    }
    Ok(Info { archives })
}

/// A borg date: with an offset as written, else local time in `tz`.
pub fn parse_time(s: &str, tz: &TimeZone) -> Option<f64> {
    let s = s.trim();
    if let Ok(t) = s.parse::<Timestamp>() {
        return Some(ts_secs(t));
    }
    let dt: DateTime = s.parse().ok()?;
    tz.to_timestamp(dt).ok().map(ts_secs)
}

/// True for `NAME.checkpoint` and `NAME.checkpoint.N`.
pub fn is_checkpoint(name: &str) -> bool {
    if name.ends_with(".checkpoint") {
        return true;
    }
    match name.rsplit_once(".checkpoint.") {
        Some((_, n)) => !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

/// The set label of an archive: the first of `sets` whose glob matches its
/// name (a checkpoint `NAME.checkpoint[.N]` is matched by `NAME`), else
/// `other`; without `sets`, every archive is in the set `all`.
pub fn set_of(name: &str, sets: &[BorgSet]) -> String {
    if sets.is_empty() {
        return "all".into();
    }
    let base = match name.rsplit_once(".checkpoint") {
        Some((b, _)) if is_checkpoint(name) => b,
        _ => name,
    };
    sets.iter()
        .find(|s| glob::Pattern::new(&s.glob.0).is_ok_and(|p| p.matches(base)))
        .map_or_else(|| "other".into(), |s| s.name.clone())
}

/// Normalise list + info into records, each in its set (see [`set_of`]).
pub fn records(
    list: &List,
    info: Option<&Info>,
    tz: &TimeZone,
    sets: &[BorgSet],
) -> Result<Vec<BackupRecord>, ParseError> {
    list.archives
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let detail = info.and_then(|inf| {
                inf.archives.iter().find(|x| {
                    (!a.id.is_empty() && x.id == a.id) || (a.id.is_empty() && x.name == a.name)
                })
            });
            let listed = a.time.as_deref().or(a.start.as_deref()).ok_or_else(|| {
                ParseError::Invalid(format!("archive [{i}] has neither `time` nor `start`"))
            })?;
            let listed = parse_time(listed, tz).ok_or_else(|| {
                ParseError::Invalid(format!("archive [{i}]: `time` is not a date borg writes"))
            })?;
            let end = match detail.and_then(|d| d.end.as_deref()) {
                Some(e) => Some(parse_time(e, tz).ok_or_else(|| {
                    ParseError::Invalid(format!(
                        "info for archive [{i}]: `end` is not a date borg writes"
                    ))
                })?),
                None => None,
            };
            let stats = detail.and_then(|d| d.stats.as_ref());
            Ok(BackupRecord {
                group: set_of(&a.name, sets),
                time: end.unwrap_or(listed),
                size: stats.and_then(|s| s.original_size),
                files: stats.and_then(|s| s.nfiles),
                success: !is_checkpoint(&a.name),
            })
        })
        .collect()
}

pub(crate) struct State {
    tz: TimeZone,
    list: Cache<List>,
    info: Cache<Info>,
}

/// The zone borg's zone-less local dates are read in: the configured one
/// (checked at load; the local zone all the same if it no longer resolves).
pub(crate) fn zone(tz: Option<&TimeZoneName>) -> TimeZone {
    tz.and_then(|n| TimeZone::get(&n.0).ok())
        .unwrap_or_else(TimeZone::system)
}

impl State {
    pub fn new(tz: Option<&TimeZoneName>) -> Self {
        State {
            tz: zone(tz),
            list: Cache::default(),
            info: Cache::default(),
        }
    }
}

pub(crate) fn read(ctx: &SourceCtx<'_>, st: &mut State) -> SourceRead {
    let list_path = ctx.main_name();
    let list = match ctx.load_main(&mut st.list, parse_list) {
        Ok(list) => list,
        Err(e) => return SourceRead::main_failed(e, None),
    };
    let mut read = SourceRead::default();
    let (info, info_path) = match &ctx.cfg.info_file {
        Some(p) => {
            let path = ctx.resolve(p);
            match st.info.load(&path, ctx.max_file_size, parse_info) {
                Ok((info, _)) => (Some(info), Some(path)),
                // The list is still read: counts and times stay current, sizes are unknown.
                Err(e) => {
                    read.errors.push(e);
                    (None, None)
                }
            }
        }
        None => (None, None),
    };
    match records(&list, info.as_deref(), &st.tz, &ctx.cfg.sets) {
        Ok(records) => read.records = records,
        Err(source) => {
            let e = BackupError::Parse {
                path: match &info_path {
                    Some(p) => format!("{list_path} / {}", p.display()),
                    None => list_path,
                },
                source,
            };
            let mut failed = SourceRead::main_failed(e, None);
            failed.errors.append(&mut read.errors);
            return failed;
        }
    }
    if info.is_some() {
        let newest = read
            .records
            .iter()
            .enumerate()
            .filter(|(_, r)| r.success)
            .max_by(|(ia, a), (ib, b)| a.time.total_cmp(&b.time).then(ia.cmp(ib)));
        if newest.is_some_and(|(_, r)| r.size.is_none()) {
            read.findings.push(
                "info_file has no sizes for the newest archive (written before `borg create` finished?): \
                 the last backup's size is unknown"
                    .into(),
            );
        }
    }
    read
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = r#"{"archives":[
 {"archive":"a1","barchive":"a1","id":"c8","name":"a1","start":"2026-11-24T01:33:08.000000","time":"2026-11-24T01:33:08.000000"},
 {"archive":"a2","barchive":"a2","id":"20","name":"a2","start":"2026-11-25T01:33:09.000000","time":"2026-11-25T01:33:09.000000"},
 {"archive":"a3.checkpoint","id":"30","name":"a3.checkpoint","start":"2026-11-25T02:00:00.000000","time":"2026-11-25T02:00:00.000000"}],
 "encryption":{"mode":"repokey"},"repository":{"id":"42","last_modified":"2026-11-25T01:33:09.000000","location":"/r"}}"#;

    const INFO: &str = r#"{"archives":[
 {"name":"a1","id":"c8","start":"2026-11-24T01:33:08.000000","end":"2026-11-24T01:40:00.000000","hostname":"vm","stats":{"compressed_size":46,"deduplicated_size":483,"nfiles":10,"original_size":1000}},
 {"name":"a2","id":"20","start":"2026-11-25T01:33:09.000000","end":"2026-11-25T01:34:00.000000","stats":{"nfiles":2,"original_size":100}}]}"#;

    fn utc_secs(s: &str) -> f64 {
        ts_secs(format!("{s}Z").parse::<Timestamp>().unwrap())
    }

    #[test]
    fn zoneless_dates_use_the_configured_zone() {
        let list = parse_list(LIST.as_bytes()).unwrap();
        let utc = records(&list, None, &TimeZone::UTC, &[]).unwrap();
        let berlin = records(&list, None, &TimeZone::get("Europe/Berlin").unwrap(), &[]).unwrap();
        assert_eq!(utc[0].time, utc_secs("2026-11-24T01:33:08"));
        // Berlin is UTC+1 in November: the same wall clock is an hour earlier.
        assert_eq!(berlin[0].time, utc[0].time - 3600.0);
        assert_eq!(
            parse_time("2026-11-24T01:33:08+02:00", &TimeZone::UTC),
            Some(utc_secs("2026-11-23T23:33:08"))
        );
        assert_eq!(parse_time("not a date", &TimeZone::UTC), None);
    }

    #[test]
    fn info_gives_end_sizes_and_checkpoints_are_partial() {
        let list = parse_list(LIST.as_bytes()).unwrap();
        let info = parse_info(INFO.as_bytes()).unwrap();
        let r = records(&list, Some(&info), &TimeZone::UTC, &[]).unwrap();
        assert_eq!(r[0].time, utc_secs("2026-11-24T01:40:00"));
        assert_eq!((r[0].size, r[0].files), (Some(1000), Some(10)));
        assert_eq!((r[1].size, r[1].files), (Some(100), Some(2)));
        assert!(r[0].success && r[1].success);
        assert!(!r[2].success);
        assert_eq!(r[2].size, None);
        assert!(is_checkpoint("x.checkpoint.3"));
        assert!(!is_checkpoint("x.checkpointy"));
        assert!(!is_checkpoint("checkpoints-2026"));
    }

    #[test]
    fn archives_go_to_the_first_matching_set() {
        let sets = vec![
            BorgSet {
                name: "web".into(),
                glob: crate::core::config::values::GlobPattern("web-*".into()),
            },
            BorgSet {
                name: "any-w".into(),
                glob: crate::core::config::values::GlobPattern("w*".into()),
            },
        ];
        assert_eq!(set_of("web-2026-11-24", &sets), "web");
        assert_eq!(set_of("web-2026-11-24.checkpoint.2", &sets), "web");
        assert_eq!(set_of("wiki-1", &sets), "any-w");
        assert_eq!(set_of("db-1", &sets), "other");
        assert_eq!(set_of("db-1", &[]), "all");
    }

    #[test]
    fn info_without_archive_data_is_refused() {
        // borg 1.2 `borg info --json REPO`: repository and cache totals only.
        let repo = br#"{"cache":{"path":"/c","stats":{"total_chunks":6,"total_csize":10086,"total_size":10000,"total_unique_chunks":4,"unique_csize":6238,"unique_size":6169}},
"encryption":{"mode":"repokey"},"repository":{"id":"14","last_modified":"2026-11-30T15:57:18.000000","location":"/r"},"security_dir":"/s"}"#;
        let e = parse_info(repo).unwrap_err().to_string();
        assert!(e.contains("borg info --json --last 2"), "{e}");
        // `borg list --json` written to info_file: archives without stats.
        let e = parse_info(LIST.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("borg list --json"), "{e}");
        // An empty repository's `--last 2`: no archives, nothing wrong.
        assert!(parse_info(br#"{"archives":[]}"#)
            .unwrap()
            .archives
            .is_empty());
    }

    #[test]
    fn bad_input() {
        assert!(matches!(
            parse_list(&LIST.as_bytes()[..50]),
            Err(ParseError::Truncated { .. })
        ));
        assert!(matches!(
            parse_list(b"[]"),
            Err(ParseError::Structure { .. })
        ));
        let list = parse_list(br#"{"archives":[{"name":"a","time":"25/11/2026"}]}"#).unwrap();
        let e = records(&list, None, &TimeZone::UTC, &[]).unwrap_err();
        assert!(e.to_string().contains("archive [0]"), "{e}");
        assert!(parse_list(br#"{"archives":[]}"#)
            .unwrap()
            .archives
            .is_empty());
    }
}
