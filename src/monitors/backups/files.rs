//! File I/O for the backup monitor: bounded reads, stamps, globs and a parse
//! cache keyed by (size, mtime, inode). Parsing itself lives in the format modules.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use super::{BackupError, ParseError};

pub use crate::core::stamp::Stamp;

pub(crate) fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

pub(crate) fn io_error(path: &Path, e: &std::io::Error) -> BackupError {
    let p = path.display().to_string();
    match e.kind() {
        std::io::ErrorKind::NotFound => BackupError::NotFound(p),
        std::io::ErrorKind::PermissionDenied => BackupError::PermissionDenied(p),
        _ => BackupError::Io {
            path: p,
            kind: e.kind().to_string(),
        },
    }
}

/// Stamp of a regular file (directories, FIFOs and devices are refused: a FIFO would block).
pub(crate) fn file_stamp(path: &Path) -> Result<Stamp, BackupError> {
    let md = std::fs::metadata(path).map_err(|e| io_error(path, &e))?;
    if !md.is_file() {
        return Err(BackupError::NotAFile(path.display().to_string()));
    }
    Ok(Stamp::of(&md))
}

/// Read a whole regular file of at most `max` bytes.
pub(crate) fn read_limited(path: &Path, max: u64) -> Result<(Vec<u8>, Stamp), BackupError> {
    let stamp = file_stamp(path)?;
    let too_large = |size| BackupError::TooLarge {
        path: path.display().to_string(),
        size,
        limit: max,
    };
    if stamp.size > max {
        return Err(too_large(stamp.size));
    }
    let f = crate::core::safe_open::open(path).map_err(|e| io_error(path, &e))?;
    let mut buf = Vec::with_capacity(usize::try_from(stamp.size).unwrap_or(0));
    f.take(max.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| io_error(path, &e))?;
    if buf.len() as u64 > max {
        return Err(too_large(buf.len() as u64));
    }
    Ok((buf, stamp))
}

/// Expand a configured path: a glob pattern (sorted matches, regular files only)
/// or a plain path (returned as is, even if missing, so the error names it).
pub(crate) fn expand(base: &Path, pattern: &str) -> Result<Vec<PathBuf>, BackupError> {
    let full = resolve(base, pattern);
    if !pattern.contains(['*', '?', '[']) {
        return Ok(vec![full]);
    }
    let text = full.to_string_lossy().to_string();
    let paths = glob::glob(&text).map_err(|_| BackupError::NoMatch(text.clone()))?;
    // An unreadable folder on the way is an error, never silently "fewer files".
    let mut out: Vec<PathBuf> = Vec::new();
    for p in paths {
        let p = p.map_err(|e| io_error(e.path(), e.error()))?;
        if p.is_file() {
            out.push(p);
        }
    }
    unreadable_on_the_way(&text)?;
    out.sort();
    if out.is_empty() {
        return Err(BackupError::NoMatch(text));
    }
    Ok(out)
}

/// `glob` skips a folder it cannot enter when the rest of the pattern is a
/// literal name (`pg/*/backup_manifest`): check those folders too.
fn unreadable_on_the_way(pattern: &str) -> Result<(), BackupError> {
    let parts: Vec<&str> = pattern.split('/').collect();
    let Some(last_wild) = parts.iter().rposition(|c| c.contains(['*', '?', '['])) else {
        return Ok(());
    };
    if last_wild + 1 == parts.len() {
        return Ok(());
    }
    let tail = parts[last_wild + 1..].join("/");
    let Ok(dirs) = glob::glob(&parts[..=last_wild].join("/")) else {
        return Ok(());
    };
    for d in dirs.flatten().filter(|d| d.is_dir()) {
        if let Err(e) = std::fs::metadata(d.join(&tail)) {
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                return Err(io_error(&d, &e));
            }
        }
    }
    Ok(())
}

/// Parsed files by path, re-parsed only when the stamp changes (or when the
/// file had not settled when it was read: see [`crate::core::stamp::RACY_WINDOW`]).
pub(crate) struct Cache<T> {
    map: HashMap<PathBuf, (Stamp, bool, Arc<T>)>,
}

impl<T> Default for Cache<T> {
    fn default() -> Self {
        Cache {
            map: HashMap::new(),
        }
    }
}

impl<T> Cache<T> {
    /// The parsed file and its stamp; parse errors are not cached.
    pub fn load(
        &mut self,
        path: &Path,
        max: u64,
        parse: impl FnOnce(&[u8]) -> Result<T, ParseError>,
    ) -> Result<(Arc<T>, Stamp), BackupError> {
        let stamp = file_stamp(path)?;
        if let Some((s, racy, v)) = self.map.get(path) {
            if *s == stamp && !racy {
                return Ok((v.clone(), stamp));
            }
        }
        self.map.remove(path);
        let read_at = SystemTime::now();
        let (bytes, stamp) = read_limited(path, max)?;
        let racy = !stamp.settled(read_at);
        let parsed = parse(&bytes).map_err(|source| BackupError::Parse {
            path: path.display().to_string(),
            source,
        })?;
        let v = Arc::new(parsed);
        self.map
            .insert(path.to_path_buf(), (stamp, racy, v.clone()));
        Ok((v, stamp))
    }

    /// Forget files that are no longer matched.
    pub fn retain(&mut self, keep: &[PathBuf]) {
        self.map.retain(|k, _| keep.contains(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::stamp::RACY_WINDOW;

    #[test]
    fn cache_reparses_only_on_change_and_limits_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        std::fs::write(&p, "1").unwrap();
        let mut c: Cache<usize> = Cache::default();
        let mut calls = 0;
        let (v, _) = c
            .load(&p, 10, |b| {
                calls += 1;
                Ok(b.len())
            })
            .unwrap();
        assert_eq!(*v, 1);
        // Read when just written: not vouched for by its stamp (racy), read again.
        let (v, _) = c
            .load(&p, 10, |_| {
                calls += 1;
                Ok(7)
            })
            .unwrap();
        assert_eq!((*v, calls), (7, 2));
        // Read once settled (mtime older than the racy window): cached from then on.
        let old = SystemTime::now() - RACY_WINDOW * 2;
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let (v, _) = c
            .load(&p, 10, |b| {
                calls += 1;
                Ok(b.len())
            })
            .unwrap();
        assert_eq!((*v, calls), (1, 3));
        let (v, _) = c
            .load(&p, 10, |_| {
                calls += 1;
                Ok(99)
            })
            .unwrap();
        assert_eq!(*v, 1);
        assert_eq!(calls, 3);
        std::fs::write(&p, "12345678901").unwrap();
        assert!(matches!(
            c.load(&p, 10, |b| Ok(b.len())),
            Err(BackupError::TooLarge { .. })
        ));
        assert!(matches!(
            c.load(&dir.path().join("missing"), 10, |b| Ok(b.len())),
            Err(BackupError::NotFound(_))
        ));
        assert!(matches!(
            c.load(dir.path(), 10, |b| Ok(b.len())),
            Err(BackupError::NotAFile(_))
        ));
    }

    #[test]
    fn expand_globs_and_plain_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.json"), "").unwrap();
        std::fs::write(dir.path().join("a.json"), "").unwrap();
        let m = expand(dir.path(), "*.json").unwrap();
        assert_eq!(m.len(), 2);
        assert!(m[0].ends_with("a.json"));
        assert!(matches!(
            expand(dir.path(), "*.txt"),
            Err(BackupError::NoMatch(_))
        ));
        assert_eq!(
            expand(dir.path(), "x.txt").unwrap(),
            vec![dir.path().join("x.txt")]
        );
    }
}
