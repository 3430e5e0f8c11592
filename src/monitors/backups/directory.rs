//! A folder of backup files (`pg_dump` dumps, tarballs, VM images): `path` is
//! the folder, `pattern` a glob of file names in it (default `*`, not
//! recursive, hidden files only when the pattern starts with a dot). Each
//! matching regular file is one backup, finished at its modification time; its
//! size is the file's size. A folder with no matching file is readable but
//! holds no successful backup. An empty (0-byte) file is a failed run, not a
//! backup (`pg_dump > db.sql` leaves one when the dump fails).

use std::path::Path;

use super::files::{io_error, Stamp};
use super::{BackupError, BackupRecord, SourceCtx, SourceRead};
use crate::core::clock::unix_seconds;

/// One matching file.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub name: String,
    pub size: u64,
    pub modified: f64,
}

/// Pure: keep the entries whose file name matches `pattern`.
pub fn select(entries: Vec<Entry>, pattern: &glob::Pattern) -> Vec<Entry> {
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    entries
        .into_iter()
        .filter(|e| pattern.matches_with(&e.name, opts))
        .collect()
}

pub fn records(entries: &[Entry]) -> Vec<BackupRecord> {
    entries
        .iter()
        .map(|e| BackupRecord {
            group: String::new(),
            time: e.modified,
            size: Some(e.size),
            files: None,
            success: e.size > 0,
        })
        .collect()
}

fn list(dir: &Path) -> Result<Vec<Entry>, BackupError> {
    let md = std::fs::metadata(dir).map_err(|e| io_error(dir, &e))?;
    if !md.is_dir() {
        return Err(BackupError::NotADirectory(dir.display().to_string()));
    }
    let rd = std::fs::read_dir(dir).map_err(|e| io_error(dir, &e))?;
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| io_error(dir, &e))?;
        // Follows symbolic links; entries that vanish meanwhile are skipped.
        let Ok(md) = std::fs::metadata(ent.path()) else {
            continue;
        };
        if !md.is_file() {
            continue;
        }
        let stamp = Stamp::of(&md);
        out.push(Entry {
            name: ent.file_name().to_string_lossy().into_owned(),
            size: stamp.size,
            modified: stamp.modified.map(unix_seconds).unwrap_or(0.0),
        });
    }
    Ok(out)
}

pub(crate) fn read(ctx: &SourceCtx<'_>) -> SourceRead {
    let dir = ctx.resolve(&ctx.cfg.path);
    let text = ctx
        .cfg
        .pattern
        .as_ref()
        .map(|p| p.0.as_str())
        .unwrap_or("*");
    // The pattern was checked at load; an invalid one matches nothing.
    let pattern = glob::Pattern::new(text).unwrap_or_default();
    let selected = match list(&dir) {
        Ok(l) => select(l, &pattern),
        Err(e) => return SourceRead::main_failed(e, None),
    };
    let mut read = SourceRead {
        records: records(&selected),
        ..SourceRead::default()
    };
    if selected.is_empty() {
        read.findings
            .push(format!("no file in {} matches {text}", dir.display()));
    } else {
        read.notes.push(format!("{} files", selected.len()));
    }
    let empty = selected.iter().filter(|e| e.size == 0).count();
    if empty > 0 {
        read.findings.push(format!(
            "{empty} matching files are empty (0 bytes) and do not count as backups"
        ));
    }
    read
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(name: &str, size: u64, modified: f64) -> Entry {
        Entry {
            name: name.into(),
            size,
            modified,
        }
    }

    #[test]
    fn selects_by_pattern() {
        let p = glob::Pattern::new("*.sql.gz").unwrap();
        let s = select(
            vec![
                e("a.sql.gz", 1, 1.0),
                e("b.sql", 2, 2.0),
                e(".c.sql.gz", 3, 3.0),
            ],
            &p,
        );
        assert_eq!(s, vec![e("a.sql.gz", 1, 1.0)]);
        let r = records(&s);
        assert_eq!((r[0].time, r[0].size, r[0].success), (1.0, Some(1), true));
        // An empty file is what a failed `pg_dump > x.sql` leaves: not a backup.
        assert!(!records(&[e("x.sql", 0, 5.0)])[0].success);
    }

    #[test]
    fn lists_regular_files_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.tar"), "123").unwrap();
        std::fs::create_dir(dir.path().join("sub.tar")).unwrap();
        let l = list(dir.path()).unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].size, 3);
        assert!(matches!(
            list(&dir.path().join("x.tar")),
            Err(BackupError::NotADirectory(_))
        ));
        assert!(matches!(
            list(&dir.path().join("nope")),
            Err(BackupError::NotFound(_))
        ));
    }
}
