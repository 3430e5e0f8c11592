//! Glob sources (`path: backups/*/snapshots.json`) of the single-document
//! formats: each matched file is read as its own document and is one set,
//! named by `name_template` (`{1}`..`{9}`: what the n-th `*` matched,
//! `{stem}`, `{dir}`; default `{1}`). The groups inside a file (restic
//! `group_by`, borg `sets`, pgBackRest stanzas...) stay groups of that set:
//! its freshness is the stalest one's, its sizes their sum.
//!
//! A file that cannot be read or parsed errors its own set only: the set
//! keeps its last good values and gets `backup_set_up 0` (the source's
//! `backup_source_up` is 0 too, naming the file); the other sets are
//! current. A file that is no longer matched drops its set.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::config::{parse_template, BackupSourceConfig, TemplatePart};
use super::{files, read_source, BackupError, FileMemory, FormatState, Main, SetExtra};
use super::{SourceCtx, SourceRead, SET_SEP};

/// What each `*` of `pattern` matched in `text` (`*` never matches `/`).
fn star_captures(pattern: &str, text: &str) -> Option<Vec<String>> {
    fn go(p: &[u8], t: &[u8], caps: &mut Vec<(usize, usize)>, ti: usize) -> bool {
        let Some((&c, rest)) = p.split_first() else {
            return ti == t.len();
        };
        if c == b'*' {
            let mut end = ti;
            loop {
                caps.push((ti, end));
                if go(rest, t, caps, end) {
                    return true;
                }
                caps.pop();
                if end == t.len() || t[end] == b'/' {
                    return false;
                }
                end += 1;
            }
        }
        ti < t.len() && t[ti] == c && go(rest, t, caps, ti + 1)
    }
    let mut caps = Vec::new();
    let t = text.as_bytes();
    go(pattern.as_bytes(), t, &mut caps, 0).then(|| {
        caps.iter()
            .map(|(a, b)| String::from_utf8_lossy(&t[*a..*b]).into_owned())
            .collect()
    })
}

/// The set name of `file` matched by `pattern` (both as configured/found):
/// the pattern's components from the first one with a `*` on are matched
/// against as many trailing components of the file's path.
pub(super) fn set_name(pattern: &str, file: &Path, template: &[TemplatePart]) -> Option<String> {
    let pat: Vec<&str> = pattern.split('/').filter(|c| !c.is_empty()).collect();
    let first = pat.iter().position(|c| c.contains('*'))?;
    let tail_p = pat[first..].join("/");
    let comps: Vec<String> = file
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let n = pat.len() - first;
    let tail_t = comps.get(comps.len().checked_sub(n)?..)?.join("/");
    let caps = star_captures(&tail_p, &tail_t)?;
    let mut out = String::new();
    for part in template {
        match part {
            TemplatePart::Text(t) => out.push_str(t),
            TemplatePart::Star(i) => out.push_str(caps.get(i - 1)?),
            TemplatePart::Stem => out.push_str(&file.file_stem()?.to_string_lossy()),
            TemplatePart::Dir => out.push_str(&file.parent()?.file_name()?.to_string_lossy()),
        }
    }
    Some(out)
}

/// Read every file matched by the source's glob `path`.
pub(super) fn read(
    cfg: &BackupSourceConfig,
    base: &Path,
    max_file_size: u64,
    mem: &mut BTreeMap<PathBuf, FileMemory>,
) -> SourceRead {
    let matched = match files::expand(base, &cfg.path) {
        Ok(m) => m,
        Err(e) => return SourceRead::main_failed(e, None),
    };
    let stars = cfg.path.matches('*').count();
    let template = match parse_template(cfg.name_template.as_deref().unwrap_or("{1}"), stars) {
        Ok(t) => t,
        // Checked at load.
        Err(m) => return SourceRead::main_failed(BackupError::SetName(m), None),
    };
    let mut out = SourceRead::default();
    let mut named: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in matched {
        let Some(name) = set_name(&cfg.path, &file, &template).filter(|n| !n.trim().is_empty())
        else {
            out.errors.push(BackupError::SetName(format!(
                "{}: name_template gives no set name for it",
                file.display()
            )));
            continue;
        };
        if let Some(first) = named.get(&name) {
            out.errors.push(BackupError::SetName(format!(
                "{}: name_template gives set `{name}`, as for {}; use a template that tells them apart",
                file.display(),
                first.display()
            )));
            continue;
        }
        named.insert(name.clone(), file.clone());
        let fm = mem.entry(file.clone()).or_insert_with(|| FileMemory {
            state: FormatState::new(cfg),
            last_good: None,
        });
        let ctx = SourceCtx {
            cfg,
            base,
            max_file_size,
            main: Main::File(file.clone()),
        };
        let this = Arc::new(read_source(&ctx, &mut fm.state));
        out.errors.extend(this.errors.iter().cloned());
        out.set_up
            .insert(name.clone(), !this.main_failed && this.errors.is_empty());
        if !this.main_failed {
            fm.last_good = Some(this.clone());
        }
        out.declared_sets.push(name.clone());
        let Some(good) = &fm.last_good else {
            continue;
        };
        for r in &good.records {
            let mut r = r.clone();
            r.group = format!("{name}{SET_SEP}{}", r.group);
            out.records.push(r);
        }
        out.findings
            .extend(good.findings.iter().map(|f| format!("set {name}: {f}")));
        out.notes
            .extend(good.notes.iter().map(|f| format!("set {name}: {f}")));
        if !good.set_views.is_empty() {
            let views: Vec<&SetExtra> = good.set_views.values().collect();
            let oldest = views
                .iter()
                .map(|v| v.oldest_restorable)
                .collect::<Option<Vec<f64>>>()
                .and_then(|v| v.into_iter().min_by(f64::total_cmp));
            let size = views
                .iter()
                .map(|v| v.repository_size)
                .collect::<Option<Vec<u64>>>()
                .map(|v| v.into_iter().sum());
            out.set_views.insert(
                name,
                SetExtra {
                    oldest_restorable: oldest,
                    repository_size: size,
                },
            );
        }
    }
    // Files no longer matched are forgotten (their sets go).
    mem.retain(|p, _| named.values().any(|q| q == p));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(pattern: &str, file: &str, template: &str) -> Option<String> {
        let t = parse_template(template, pattern.matches('*').count()).unwrap();
        set_name(pattern, Path::new(file), &t)
    }

    #[test]
    fn set_names_from_the_path() {
        let p = "backups/*/snapshots.json";
        assert_eq!(name(p, "/etc/hm/backups/web/snapshots.json", "{1}").as_deref(), Some("web"));
        assert_eq!(name(p, "/x/backups/web/snapshots.json", "{dir}").as_deref(), Some("web"));
        assert_eq!(name(p, "/x/backups/web/snapshots.json", "{stem}").as_deref(), Some("snapshots"));
        let p = "b/*-*.json";
        assert_eq!(name(p, "/r/b/web-daily.json", "{2}@{1}").as_deref(), Some("daily@web"));
        assert_eq!(name(p, "/r/b/x.json", "{1}"), None);
        assert!(parse_template("{2}", 1).unwrap_err().contains("needs a 2th `*`"));
        assert!(parse_template("{host}", 1).unwrap_err().contains("unknown placeholder"));
        assert!(parse_template("fixed", 1).unwrap_err().contains("no placeholder"));
        assert_eq!(star_captures("a*b*c", "aXbYYc"), Some(vec!["X".into(), "YY".into()]));
        assert_eq!(star_captures("*/s", "a/b/s"), None);
    }

    fn stanza(name: &str, stop: i64) -> String {
        format!(
            r#"{{"name":"{name}","status":{{"code":0}},
            "archive":[{{"database":{{"id":1}},"min":"000000010000000000000001","max":"000000010000000000000009"}}],
            "backup":[{{"label":"L{stop}","type":"full","timestamp":{{"start":{},"stop":{stop}}},
            "error":false,"info":{{"size":100,"repository":{{"size":40}}}},
            "archive":{{"start":"000000010000000000000002","stop":"000000010000000000000002"}},"database":{{"id":1}}}}]}}"#,
            stop - 5
        )
    }

    /// Several groups in one file stay inside that file's set: the set is as
    /// fresh as its stalest group, and the format's own per-set values are
    /// combined (oldest restorable: the oldest; repository size: the sum).
    #[test]
    fn groups_of_one_file_stay_in_its_set() {
        let dir = tempfile::tempdir().unwrap();
        for (host, doc) in [
            ("a", format!("[{}]", stanza("main", 1000))),
            ("b", format!("[{},{}]", stanza("x", 300), stanza("y", 400))),
        ] {
            std::fs::create_dir_all(dir.path().join(host)).unwrap();
            std::fs::write(dir.path().join(host).join("info.json"), doc).unwrap();
        }
        let cfg = BackupSourceConfig::new(
            "pg",
            super::super::BackupFormat::Pgbackrest,
            "*/info.json",
        );
        let mut mem = BTreeMap::new();
        let r = read(&cfg, dir.path(), 1 << 20, &mut mem);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.declared_sets, ["a", "b"]);
        assert_eq!(r.set_up.values().filter(|u| **u).count(), 2);
        let sets = super::super::summarize_sets(&r.records, 2000.0, std::time::Duration::from_secs(10_000));
        assert_eq!(sets.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(sets["a"].last_success, Some(1000.0));
        assert_eq!(sets["b"].last_success, Some(300.0), "the stalest stanza of b");
        assert_eq!(sets["b"].in_retention, 2);
        assert_eq!(r.set_views["b"].repository_size, Some(80));
        assert_eq!(r.set_views["b"].oldest_restorable, Some(300.0));
        assert_eq!(r.set_views["a"].oldest_restorable, Some(1000.0));
    }
}
