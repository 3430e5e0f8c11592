//! `--once --output FILE`: the whole exposition written atomically for
//! node_exporter's textfile collector (`--collector.textfile.directory`).
//!
//! node_exporter reads `*.prom` files whenever it is scraped; a half-written
//! file would be a parse error (`node_textfile_scrape_error 1`) or, worse, a
//! partial set of series. So the body goes to a temporary file in the same
//! folder (same filesystem; its name does not end in `.prom`, so the collector
//! never reads it), is synced, then renamed over the target: a reader sees the
//! old file or the new one, never a mix.

use std::fs::{File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The file's mode: node_exporter usually runs as another user.
pub const MODE: u32 = 0o644;

#[derive(Debug, thiserror::Error)]
pub enum TextfileError {
    /// The OS error is in the message only, so a rendered chain prints it once.
    #[error("cannot write --output {path}: {error}; check that the folder exists and that this user may write to it")]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("--output {path} is a folder or has no file name; give a file such as /var/lib/node_exporter/textfile/homelab.prom")]
    NotAFile { path: PathBuf },
}

/// Write `body` to `path` atomically with mode [`MODE`] (whatever the umask).
/// On error the previous file, if any, is left as it was and the temporary
/// file is removed.
pub fn write_atomic(path: &Path, body: &[u8]) -> Result<(), TextfileError> {
    let not_a_file = || TextfileError::NotAFile {
        path: path.to_path_buf(),
    };
    let name = path.file_name().ok_or_else(not_a_file)?;
    if path.is_dir() {
        return Err(not_a_file());
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        // A leftover of a killed run with the same PID; create_new (O_EXCL)
        // then never follows a symlink planted under that name.
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(MODE)
            .open(&tmp)?;
        f.set_permissions(Permissions::from_mode(MODE))?;
        f.write_all(body)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable; not fatal where a folder cannot be synced.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    };
    write().map_err(|error| {
        let _ = std::fs::remove_file(&tmp);
        TextfileError::Write {
            path: path.to_path_buf(),
            error,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_with_mode_0644_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("homelab.prom");
        std::fs::write(&p, "old 1\n").unwrap();
        std::fs::set_permissions(&p, Permissions::from_mode(0o600)).unwrap();
        write_atomic(&p, b"new 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new 2\n");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("homelab.prom")]);
    }

    #[test]
    fn a_missing_folder_or_a_folder_is_an_error_that_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let e = write_atomic(&dir.path().join("nope/homelab.prom"), b"x 1\n").unwrap_err();
        assert!(matches!(e, TextfileError::Write { .. }), "{e}");
        assert!(e.to_string().contains("nope/homelab.prom"), "{e}");
        let e = write_atomic(dir.path(), b"x 1\n").unwrap_err();
        assert!(matches!(e, TextfileError::NotAFile { .. }), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
