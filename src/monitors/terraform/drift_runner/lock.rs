//! One runner per working directory: an advisory lock (`flock`) on
//! `<dir>/.homelab-monitor-drift.lock`, held for the whole run and released
//! when the process ends, however it ends (no stale lock files to clean up).

use std::fs::File;
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

pub const LOCK_FILE: &str = ".homelab-monitor-drift.lock";

/// A held lock; released on drop.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another drift runner is working on {0} (it holds {1}); skipped")]
    Busy(String, String),
    #[error("cannot create the lock file {path}: {error}; check that the runner may write into the working directory")]
    Io { path: String, error: std::io::Error },
}

/// Take the lock of `dir` without waiting.
pub fn try_lock(dir: &Path) -> Result<DirLock, LockError> {
    let path = dir.join(LOCK_FILE);
    let io = |error| LockError::Io {
        path: path.display().to_string(),
        error,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(DirLock { _file: file, path }),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(LockError::Busy(
            dir.display().to_string(),
            path.display().to_string(),
        )),
        Err(e) => Err(io(e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_lock_excludes_a_second_holder_until_released() {
        let t = tempfile::tempdir().unwrap();
        let first = try_lock(t.path()).unwrap();
        assert!(matches!(try_lock(t.path()), Err(LockError::Busy(..))));
        drop(first);
        assert!(try_lock(t.path()).is_ok());
    }
}
