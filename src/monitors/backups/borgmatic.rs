//! borgmatic: the JSON the backup job wrote with
//!
//! - `borgmatic list --json > list.json` (`path`): one `borg list --json`
//!   document per repository of the borgmatic configuration, in an array;
//! - optional `borgmatic info --json --last 2 > info.json` (`info_file`): one
//!   `borg info --json --last 2` document per repository (matched by
//!   `repository.id`), for end times, sizes and file counts.
//!
//! Each repository is read exactly as a `borg` source (zone-less dates in
//! `timezone`, `.checkpoint` archives are partial runs, `sets` globs). The set
//! label names the repository: `repo=LOCATION` (the repository's `location`,
//! any `user@` removed), plus ` set=NAME` with `sets`, so the offsite copy that
//! stopped is not hidden by the local one that is fresh.

use jiff::tz::TimeZone;
use serde::Deserialize;

use super::borg::{self, InfoArchive, ListArchive};
use super::config::TimeZoneName;
use super::files::Cache;
use super::{from_json, BackupError, ParseError, SourceCtx, SourceRead};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Repository {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub location: String,
}

/// One repository's `borg list --json` document.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ListDoc {
    pub archives: Vec<ListArchive>,
    pub repository: Repository,
}

/// One repository's `borg info --json --last N` document.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InfoDoc {
    #[serde(default)]
    pub archives: Option<Vec<InfoArchive>>,
    pub repository: Repository,
}

pub fn parse_list(bytes: &[u8]) -> Result<Vec<ListDoc>, ParseError> {
    from_json(bytes)
}

/// `borgmatic info --json --last N`; repository-level output (no `archives`,
/// what `borgmatic info --json` and `rinfo --json` write) is refused.
pub fn parse_info(bytes: &[u8]) -> Result<Vec<InfoDoc>, ParseError> {
    let docs: Vec<InfoDoc> = from_json(bytes)?;
    if docs.iter().any(|d| d.archives.is_none()) {
        return Err(ParseError::Invalid(
            "a repository without `archives`: this is repository-level `borgmatic info --json` / `rinfo --json` output, \
             which holds no archive sizes; write `borgmatic info --json --last 2` to info_file"
                .into(),
        ));
    }
    Ok(docs)
}

/// A repository location without credentials or user names (`user@`).
pub fn location_label(loc: &str) -> String {
    let loc = loc.trim();
    if let Some((scheme, rest)) = loc.split_once("://") {
        let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        if path.is_empty() && !rest.contains('/') {
            return format!("{scheme}://{host}");
        }
        return format!("{scheme}://{host}/{path}");
    }
    // scp-like `user@host:path`; a local path has no `@` before a `:`.
    match (loc.find('@'), loc.find(':')) {
        (Some(at), Some(colon)) if at < colon && !loc.starts_with('/') => loc[at + 1..].to_string(),
        _ => loc.to_string(),
    }
}

pub(crate) struct State {
    tz: TimeZone,
    list: Cache<Vec<ListDoc>>,
    info: Cache<Vec<InfoDoc>>,
}

impl State {
    pub fn new(tz: Option<&TimeZoneName>) -> Self {
        State {
            tz: borg::zone(tz),
            list: Cache::default(),
            info: Cache::default(),
        }
    }
}

pub(crate) fn read(ctx: &SourceCtx<'_>, st: &mut State) -> SourceRead {
    let docs = match ctx.load_main(&mut st.list, parse_list) {
        Ok(d) => d,
        Err(e) => return SourceRead::main_failed(e, None),
    };
    let mut read = SourceRead::default();
    let info = match &ctx.cfg.info_file {
        Some(p) => match st.info.load(&ctx.resolve(p), ctx.max_file_size, parse_info) {
            Ok((i, _)) => Some(i),
            // The list is still read: counts and times stay current, sizes are unknown.
            Err(e) => {
                read.errors.push(e);
                None
            }
        },
        None => None,
    };
    for (i, doc) in docs.iter().enumerate() {
        let repo = location_label(&doc.repository.location);
        let repo = if repo.is_empty() {
            format!("[{i}]")
        } else {
            repo
        };
        let detail = info.as_ref().and_then(|docs| {
            docs.iter()
                .find(|d| !d.repository.id.is_empty() && d.repository.id == doc.repository.id)
                .map(|d| borg::Info {
                    archives: d.archives.clone().unwrap_or_default(),
                })
        });
        let list = borg::List {
            archives: doc.archives.clone(),
        };
        match borg::records(&list, detail.as_ref(), &st.tz, &ctx.cfg.sets) {
            Ok(recs) => {
                read.declared_sets.push(format!("repo={repo}"));
                for mut r in recs {
                    r.group = if ctx.cfg.sets.is_empty() {
                        format!("repo={repo}")
                    } else {
                        format!("repo={repo} set={}", r.group)
                    };
                    read.records.push(r);
                }
            }
            Err(source) => {
                let e = BackupError::Parse {
                    path: format!("{} (repository [{i}])", ctx.main_name()),
                    source,
                };
                let mut failed = SourceRead::main_failed(e, None);
                failed.errors.append(&mut read.errors);
                return failed;
            }
        }
    }
    if ctx.cfg.sets.is_empty() {
        read.declared_sets.sort();
        read.declared_sets.dedup();
    } else {
        // With sets, a repository is declared through its sets' archives only.
        read.declared_sets.clear();
    }
    read
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_lose_their_user() {
        assert_eq!(location_label("/srv/borg"), "/srv/borg");
        assert_eq!(
            location_label("ssh://backup:s3cret@nas.lan:22/./repo"),
            "ssh://nas.lan:22/./repo"
        );
        assert_eq!(location_label("user@host.lan:repo"), "host.lan:repo");
        assert!(parse_info(br#"[{"repository":{"id":"a","location":"/r"}}]"#)
            .unwrap_err()
            .to_string()
            .contains("--last 2"));
    }
}
