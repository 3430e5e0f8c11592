//! The last backup run's outcome (`status_file`) and the repository's lock
//! files (`repository`), for restic and borg.
//!
//! **Status file.** The backup job writes its tool's output and exit status,
//! renaming the finished file into place:
//!
//! ```sh
//! { restic backup --json /data 2>&1; echo "exit: $?"; } > status.tmp && mv status.tmp restic-status.txt
//! { borg create --json REPO::'{hostname}-{now}' /data 2>&1; echo "exit: $?"; } > status.tmp && mv status.tmp borg-status.txt
//! ```
//!
//! The last `exit: N` line decides: 0 is a success; borg's 1 (warnings, the
//! archive was written) is a success with a finding; anything else is a
//! failed run (restic 3: the snapshot is incomplete, some files could not be
//! read). Without an `exit:` line, restic's `--json` `summary` message is a
//! success and an `error` message a failure; borg's `create --json` document
//! (with `archive`) is a success. Anything else is not understood: the source
//! is `backup_source_up 0` and `backup_last_run_success` is absent.
//!
//! **Locks, without taking one.** restic keeps one file per lock in the
//! repository's `locks/` folder; the files are encrypted, so their age is the
//! file's modification time (restic rewrites a lock file with a new `time`
//! every 5 minutes while it holds the lock, so a lock not refreshed for long
//! belongs to a process that died). borg keeps an exclusive lock as the
//! folder `lock.exclusive` holding one file per holder (`host@pid-thread`),
//! never refreshed: its age is how long the lock has been held. Only folder
//! listings and `stat` calls are made: nothing is opened, created or removed.

use std::path::Path;

use super::config::BackupFormat;
use super::{BackupError, ParseError};

/// What the status file says about the last run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStatus {
    pub success: bool,
    /// A finding (failed run, borg warnings); never text from the file.
    pub problem: Option<String>,
}

const STATUS_HINT: &str = "write the tool's output and exit status: \
     `{ restic backup --json ... 2>&1; echo \"exit: $?\"; } > FILE.tmp && mv FILE.tmp FILE` (see the README)";

/// The exit status of an `exit: N` line that a job appends with
/// `echo "exit: $?"` (status files, restic check files); `None` for other lines.
pub(super) fn exit_line(line: &str) -> Option<Result<i64, ParseError>> {
    let code = line.strip_prefix("exit:")?;
    Some(code.trim().parse::<i64>().map_err(|_| {
        ParseError::Invalid(
            "the `exit:` line does not hold a number (write it with `echo \"exit: $?\"`)".into(),
        )
    }))
}

/// Parse a status file (see the module documentation).
pub fn parse_status(bytes: &[u8], format: BackupFormat) -> Result<RunStatus, ParseError> {
    let text = String::from_utf8_lossy(bytes);
    if text.trim().is_empty() {
        return Err(ParseError::Invalid(format!(
            "the status file is empty; {STATUS_HINT}"
        )));
    }
    let mut exit = None;
    let mut summary = false;
    let mut json_error = false;
    for line in text.lines() {
        let line = line.trim();
        if let Some(code) = exit_line(line) {
            exit = Some(code?);
            continue;
        }
        if line.starts_with('{') {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                match v.get("message_type").and_then(|m| m.as_str()) {
                    Some("summary") => summary = true,
                    Some("error") => json_error = true,
                    _ => {}
                }
            }
        }
    }
    let fail = |p: String| RunStatus {
        success: false,
        problem: Some(p),
    };
    let pass = RunStatus {
        success: true,
        problem: None,
    };
    match (exit, format) {
        (Some(0), _) => return Ok(pass),
        (Some(1), BackupFormat::Borg) => {
            return Ok(RunStatus {
                success: true,
                problem: Some(
                    "the last borg run ended with warnings (exit status 1; see its log)".into(),
                ),
            })
        }
        (Some(3), BackupFormat::Restic) => {
            return Ok(fail(
                "the last restic backup is incomplete (exit status 3: some files could not be read)"
                    .into(),
            ))
        }
        (Some(n), _) => {
            return Ok(fail(format!(
                "the last {format} backup run failed (exit status {n})"
            )))
        }
        (None, _) => {}
    }
    if format == BackupFormat::Restic {
        if json_error {
            return Ok(fail("the last restic backup reported errors".into()));
        }
        if summary {
            return Ok(pass);
        }
    }
    if format == BackupFormat::Borg {
        let doc: Option<serde_json::Value> = serde_json::from_str(text.trim()).ok();
        if doc.as_ref().is_some_and(|d| d.get("archive").is_some()) {
            return Ok(pass);
        }
    }
    // `borgmatic create --json`: one `borg create --json` document per repository.
    if format == BackupFormat::Borgmatic {
        let doc: Option<Vec<serde_json::Value>> = serde_json::from_str(text.trim()).ok();
        if doc.is_some_and(|d| !d.is_empty() && d.iter().all(|r| r.get("archive").is_some())) {
            return Ok(pass);
        }
    }
    Err(ParseError::Invalid(format!(
        "no exit status and no result the tool writes on success; {STATUS_HINT}"
    )))
}

/// Lock files found in a repository.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Locks {
    pub count: u64,
    /// Modification time of the oldest lock file, seconds since the epoch.
    pub oldest: Option<f64>,
}

fn io_error(path: &Path, e: &std::io::Error) -> BackupError {
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

/// Count the lock files of a local (or mounted) repository without taking a
/// lock. A folder that is not a repository of `format` is an error, never
/// "no locks".
pub fn read_locks(repo: &Path, format: BackupFormat) -> Result<Locks, BackupError> {
    // Both tools keep a `config` file at the repository's top.
    let config = repo.join("config");
    match std::fs::symlink_metadata(&config) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(BackupError::NotAFile(config.display().to_string())),
        Err(e) => return Err(io_error(&config, &e)),
    }
    let dir = match format {
        BackupFormat::Borg => repo.join("lock.exclusive"),
        _ => repo.join("locks"),
    };
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        // borg: no lock.exclusive folder is no lock.
        Err(e) if format == BackupFormat::Borg && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Locks::default())
        }
        Err(e) => return Err(io_error(&dir, &e)),
    };
    let mut locks = Locks::default();
    for entry in entries {
        let entry = entry.map_err(|e| io_error(&dir, &e))?;
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).map_err(|e| io_error(&path, &e))?;
        if !meta.is_file() {
            continue;
        }
        // restic's local backend writes a file as `<id>-tmp-XXXX` and renames
        // it; a writer killed in between leaves the temp file, which restic
        // itself (and `restic unlock`) does not treat as a lock.
        if format == BackupFormat::Restic && entry.file_name().to_string_lossy().contains("-tmp-") {
            continue;
        }
        locks.count += 1;
        if let Ok(t) = meta.modified() {
            let t = crate::core::clock::unix_seconds(t);
            locks.oldest = Some(locks.oldest.map_or(t, |o: f64| o.min(t)));
        }
    }
    // borg: a lock folder left empty by a crash is still a lock.
    if format == BackupFormat::Borg && locks.count == 0 {
        let meta = std::fs::symlink_metadata(&dir).map_err(|e| io_error(&dir, &e))?;
        locks.count = 1;
        locks.oldest = meta.modified().ok().map(crate::core::clock::unix_seconds);
    }
    Ok(locks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(text: &str, f: BackupFormat) -> Result<RunStatus, ParseError> {
        parse_status(text.as_bytes(), f)
    }

    #[test]
    fn a_restic_temp_file_in_locks_is_not_a_lock() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config"), b"x").unwrap();
        std::fs::create_dir(dir.path().join("locks")).unwrap();
        let id = "ab".repeat(32);
        std::fs::write(dir.path().join("locks").join(format!("{id}-tmp-123")), b"").unwrap();
        let l = read_locks(dir.path(), BackupFormat::Restic).unwrap();
        assert_eq!(l.count, 0);
        std::fs::write(dir.path().join("locks").join(&id), b"{}").unwrap();
        let l = read_locks(dir.path(), BackupFormat::Restic).unwrap();
        assert_eq!(l.count, 1);
        // Only restic writes temp files: the lock of a borg host whose name
        // holds `-tmp-` is counted.
        std::fs::create_dir(dir.path().join("lock.exclusive")).unwrap();
        std::fs::write(dir.path().join("lock.exclusive/build-tmp-01.4242-0"), b"").unwrap();
        std::fs::write(dir.path().join("lock.exclusive/web.77-0"), b"").unwrap();
        let l = read_locks(dir.path(), BackupFormat::Borg).unwrap();
        assert_eq!(l.count, 2);
    }

    #[test]
    fn exit_status_decides() {
        let r = BackupFormat::Restic;
        assert!(st("exit: 0\n", r).unwrap().success);
        let e = st("{\"message_type\":\"summary\"}\nexit: 3\n", r).unwrap();
        assert!(!e.success);
        assert!(e.problem.unwrap().contains("incomplete"));
        assert!(!st("Fatal: all target directories/files do not exist\nexit: 1\n", r)
            .unwrap()
            .success);
        let w = st("exit: 1\n", BackupFormat::Borg).unwrap();
        assert!(w.success && w.problem.unwrap().contains("warnings"));
        assert!(!st("exit: 2\n", BackupFormat::Borg).unwrap().success);
        assert!(st("exit: zero\n", r).is_err());
    }

    #[test]
    fn tool_output_without_exit_line() {
        let r = BackupFormat::Restic;
        assert!(
            st("{\"message_type\":\"status\"}\n{\"message_type\":\"summary\",\"snapshot_id\":\"ab\"}\n", r)
                .unwrap()
                .success
        );
        assert!(!st("{\"message_type\":\"error\"}\n{\"message_type\":\"summary\"}\n", r)
            .unwrap()
            .success);
        // Progress only (killed mid-run): not understood, never a pass.
        assert!(st("{\"message_type\":\"status\"}\n", r).is_err());
        assert!(st("", r).is_err());
        assert!(st("{\"archive\":{\"name\":\"a\"}}", BackupFormat::Borg)
            .unwrap()
            .success);
        assert!(st("{\"repository\":{}}", BackupFormat::Borg).is_err());
    }

    #[test]
    fn locks_need_a_repository() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(
            read_locks(d.path(), BackupFormat::Restic),
            Err(BackupError::NotFound(_))
        ));
        std::fs::write(d.path().join("config"), b"x").unwrap();
        // restic without locks/: an error (not a repository, or unreadable).
        assert!(read_locks(d.path(), BackupFormat::Restic).is_err());
        // borg without lock.exclusive: unlocked.
        assert_eq!(
            read_locks(d.path(), BackupFormat::Borg).unwrap(),
            Locks::default()
        );
        std::fs::create_dir(d.path().join("locks")).unwrap();
        assert_eq!(read_locks(d.path(), BackupFormat::Restic).unwrap().count, 0);
        std::fs::write(d.path().join("locks/a"), b"x").unwrap();
        std::fs::write(d.path().join("locks/b"), b"x").unwrap();
        let l = read_locks(d.path(), BackupFormat::Restic).unwrap();
        assert_eq!(l.count, 2);
        assert!(l.oldest.is_some());
    }
}
