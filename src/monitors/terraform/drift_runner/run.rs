//! One drift run of one working directory: `init` (when needed), `plan
//! -refresh-only` to a private plan file, `show -json` of it into a temp
//! file beside the report, a check that it is a plan, then rename. A failed
//! phase leaves the last good report alone; every run writes the status file.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::config::{DriftRunnerConfig, InitMode};
use super::lock::{try_lock, LockError};
use super::status::{self, unix_f64, RunStatus};
use crate::core::command::{SpawnFailure, Waited};

/// One working directory and where its report goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub dir: PathBuf,
    pub report: PathBuf,
}

/// What one run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The report was written: drift (resource instances) and pending changes.
    Written { drift: usize, pending: usize },
    /// A phase failed; the last good report is kept.
    Failed {
        phase: &'static str,
        reason: &'static str,
        exit_code: Option<i32>,
        excerpt: Vec<String>,
    },
    /// Another runner holds the directory's lock.
    Busy,
}

/// Grace between SIGTERM and SIGKILL of a timed-out process group
/// (Terraform releases its state lock on SIGTERM).
const KILL_GRACE: Duration = Duration::from_secs(5);
const MAX_STDERR: u64 = 256 * 1024;

static SEQ: AtomicU64 = AtomicU64::new(0);

// Shutdown (SIGTERM/SIGINT): `stop_all` starts no new child and sends
// SIGTERM to every running child's process group (Terraform then stops and
// releases its state lock); their runs are recorded as failed (`killed`).
// The registry of running groups is the one of every command the program
// starts.
pub use crate::core::command::{stop_all, stopping};

fn unique() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Write `body` to `path` through a temp file in the same folder + rename.
pub fn write_atomic(path: &Path, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = temp_beside(path);
    let res = (|| {
        let mut f = create_private(&tmp)?;
        f.write_all(body)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Whether `name` is a temp file of [`temp_beside`] for the file `of`:
/// `.<of>.tmp-<pid>-<seq>`.
fn is_temp_of(name: &str, of: &str) -> bool {
    let Some(rest) = name
        .strip_prefix('.')
        .and_then(|n| n.strip_prefix(of))
        .and_then(|n| n.strip_prefix(".tmp-"))
    else {
        return false;
    };
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    matches!(rest.split_once('-'), Some((pid, seq)) if digits(pid) && digits(seq))
}

/// Remove the temp files that runs killed before their rename left beside
/// `report` (the report's and its status file's, `.<name>.tmp-<pid>-<seq>`)
/// and that are older than `older_than` (the directory's timeout: no live
/// run of this directory is older). Nothing else is touched. Returns the
/// removed files' names.
pub fn sweep_stale_temps(report: &Path, older_than: Duration, now: SystemTime) -> Vec<String> {
    let (Some(folder), Some(name)) = (report.parent(), report.file_name()) else {
        return Vec::new();
    };
    let name = name.to_string_lossy().to_string();
    let status_name = format!("{name}.status.json");
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().to_string();
        if !is_temp_of(&file, &name) && !is_temp_of(&file, &status_name) {
            continue;
        }
        // Regular files only (not followed: a link is not ours).
        let Ok(meta) = e.metadata() else { continue };
        let old = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age > older_than);
        if meta.is_file() && old && std::fs::remove_file(e.path()).is_ok() {
            removed.push(file);
        }
    }
    removed
}

fn temp_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", unique()))
}

/// A new file readable by the owner and group only (reports hold values).
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(path)
}

/// A private scratch folder (mode 0700) removed on drop: the plan file
/// holds every value of the state and of the variables.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> std::io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let p = std::env::temp_dir().join(format!("homelab-monitor-drift-{}", unique()));
        std::fs::DirBuilder::new().mode(0o700).create(&p)?;
        Ok(Scratch(p))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Values that must never be quoted: the child's extra environment, every
/// `TF_VAR_*`, and variables whose name says they hold a credential.
pub fn secret_values(cfg: &DriftRunnerConfig) -> Vec<String> {
    let mut out: Vec<String> = cfg.env.values().cloned().collect();
    for (k, v) in std::env::vars_os() {
        let (Some(k), Some(v)) = (k.to_str(), v.to_str()) else {
            continue;
        };
        let up = k.to_ascii_uppercase();
        if up.starts_with("TF_VAR_")
            || ["TOKEN", "SECRET", "PASSWORD", "KEY", "CREDENTIAL", "AUTH"]
                .iter()
                .any(|w| up.contains(w))
        {
            out.push(v.to_string());
        }
    }
    out.retain(|v| v.len() >= 3);
    out
}

enum ChildError {
    Spawn,
    Exit(Option<i32>),
    Killed,
    Timeout,
}

/// Run one Terraform command in its own process group, stdout to `stdout`,
/// stderr to `stderr_path`; the whole group is killed at `deadline`.
fn run_child(
    cfg: &DriftRunnerConfig,
    dir: &Path,
    args: &[String],
    stdout: Stdio,
    stderr_path: &Path,
    deadline: Instant,
) -> Result<(), ChildError> {
    if stopping() {
        return Err(ChildError::Killed);
    }
    let stderr = std::fs::File::create(stderr_path).map_err(|_| ChildError::Spawn)?;
    let mut cmd = Command::new(&cfg.binary);
    cmd.args(args)
        .current_dir(dir)
        .env("TF_IN_AUTOMATION", "1")
        .env("TF_INPUT", "0")
        .env("CHECKPOINT_DISABLE", "1")
        .envs(&cfg.env)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    let group = crate::core::command::spawn_in_group(&mut cmd).map_err(|e| match e {
        SpawnFailure::Stopping => ChildError::Killed,
        SpawnFailure::Io(_) => ChildError::Spawn,
    })?;
    // Whatever the child left behind in its group (plugins) goes with it.
    let status: Option<ExitStatus> = match group.wait_until(deadline, KILL_GRACE) {
        Waited::Exited(status) => status,
        Waited::TimedOut => return Err(ChildError::Timeout),
    };
    match status {
        Some(s) if s.success() => Ok(()),
        Some(s) => match s.code() {
            Some(c) => Err(ChildError::Exit(Some(c))),
            None => Err(ChildError::Killed),
        },
        None => Err(ChildError::Exit(None)),
    }
}

/// The selected workspace of `dir`: TF_WORKSPACE, else
/// `.terraform/environment`, else `default`.
pub fn current_workspace(dir: &Path) -> String {
    std::env::var("TF_WORKSPACE")
        .ok()
        .or_else(|| {
            std::fs::read_to_string(dir.join(".terraform/environment"))
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|w| !w.is_empty() && !w.contains('/') && !w.contains(".."))
        .unwrap_or_else(|| "default".into())
}

/// The folder of the local state of `dir`: `terraform.tfstate`, or the
/// workspace's under `terraform.tfstate.d/` (TF_WORKSPACE, else `.terraform/environment`).
pub fn local_state_path(dir: &Path) -> PathBuf {
    match current_workspace(dir) {
        w if w == "default" => dir.join("terraform.tfstate"),
        w => dir
            .join("terraform.tfstate.d")
            .join(w)
            .join("terraform.tfstate"),
    }
}

/// The backend type recorded by `init` in `.terraform/terraform.tfstate`,
/// `None` for the local backend or an uninitialised directory.
pub fn remote_backend(dir: &Path) -> Option<String> {
    let bytes = crate::core::safe_open::read_capped(&dir.join(".terraform/terraform.tfstate"), 1 << 20).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let t = v.get("backend")?.get("type")?.as_str()?.to_string();
    (t != "local").then_some(t)
}

fn failed(
    phase: &'static str,
    e: ChildError,
    stderr_path: &Path,
    secrets: &[String],
) -> Outcome {
    let (reason, exit_code) = match e {
        ChildError::Spawn => ("spawn", None),
        ChildError::Exit(c) => ("exit_status", c),
        ChildError::Killed => ("killed", None),
        ChildError::Timeout => ("timeout", None),
    };
    let mut text = Vec::new();
    if let Ok(f) = std::fs::File::open(stderr_path) {
        let _ = f.take(MAX_STDERR).read_to_end(&mut text);
    }
    Outcome::Failed {
        phase,
        reason,
        exit_code,
        excerpt: status::redact_excerpt(&String::from_utf8_lossy(&text), secrets),
    }
}

fn io_failure(phase: &'static str, reason: &'static str) -> Outcome {
    Outcome::Failed {
        phase,
        reason,
        exit_code: None,
        excerpt: Vec::new(),
    }
}

/// Run one directory and record its status beside the report (not when
/// another runner holds it).
pub fn run_job(job: &Job, cfg: &DriftRunnerConfig, secrets: &[String]) -> Outcome {
    let _lock = match try_lock(&job.dir) {
        Ok(l) => l,
        Err(LockError::Busy(..)) => return Outcome::Busy,
        Err(LockError::Io { .. }) => {
            let o = io_failure("lock", "io");
            record(job, &o, SystemTime::now(), Instant::now());
            return o;
        }
    };
    let (started, t0) = (SystemTime::now(), Instant::now());
    let swept = sweep_stale_temps(&job.report, cfg.timeout.0, started);
    if !swept.is_empty() {
        tracing::info!(dir = %job.dir.display(), removed = ?swept, "removed temp files left by an interrupted drift run");
    }
    let outcome = phases(job, cfg, secrets, t0 + cfg.timeout.0);
    record(job, &outcome, started, t0);
    outcome
}

fn record(job: &Job, o: &Outcome, started: SystemTime, t0: Instant) {
    let elapsed = t0.elapsed().as_secs_f64();
    let st = match o {
        Outcome::Busy => return,
        Outcome::Written { drift, pending } => RunStatus {
            format: 1,
            success: true,
            phase: None,
            reason: None,
            exit_code: Some(0),
            started_at: unix_f64(started),
            finished_at: unix_f64(started) + elapsed,
            duration_seconds: elapsed,
            drift: Some(*drift),
            pending: Some(*pending),
            stderr_excerpt: Vec::new(),
        },
        Outcome::Failed {
            phase,
            reason,
            exit_code,
            excerpt,
        } => RunStatus {
            format: 1,
            success: false,
            phase: Some(phase.to_string()),
            reason: Some(reason.to_string()),
            exit_code: *exit_code,
            started_at: unix_f64(started),
            finished_at: unix_f64(started) + elapsed,
            duration_seconds: elapsed,
            drift: None,
            pending: None,
            stderr_excerpt: excerpt.clone(),
        },
    };
    if let Err(e) = status::write(&job.report, &st) {
        tracing::error!(dir = %job.dir.display(), status_file = %status::status_path(&job.report).display(), error = %e, "cannot write the drift run's status file: the exporter will not see this run; check that the runner may write there");
    }
}

fn phases(job: &Job, cfg: &DriftRunnerConfig, secrets: &[String], deadline: Instant) -> Outcome {
    let Ok(scratch) = Scratch::new() else {
        return io_failure("plan", "io");
    };
    let stderr = scratch.0.join("stderr");
    let plan = scratch.0.join("drift.tfplan");
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let need_init = match cfg.init {
        InitMode::Always => true,
        InitMode::Never => false,
        InitMode::Auto => !job.dir.join(".terraform").is_dir(),
    };
    if need_init {
        // No -migrate-state/-force-copy: a changed backend fails instead of
        // moving state; no -upgrade: the lock file's versions are kept.
        let args = s(&["init", "-input=false", "-no-color"]);
        if let Err(e) = run_child(cfg, &job.dir, &args, Stdio::null(), &stderr, deadline) {
            return failed("init", e, &stderr, secrets);
        }
    }
    let mut args = s(&["plan"]);
    if cfg.refresh_only {
        args.push("-refresh-only".into());
    }
    args.extend(s(&["-input=false", "-no-color"]));
    if !cfg.lock {
        args.push("-lock=false".into());
    }
    args.push(format!("-out={}", plan.display()));
    args.extend(cfg.plan_args.iter().cloned());
    // The plan's human output quotes values: it is not kept.
    if let Err(e) = run_child(cfg, &job.dir, &args, Stdio::null(), &stderr, deadline) {
        return failed("plan", e, &stderr, secrets);
    }
    if let Some(parent) = job.report.parent() {
        if std::fs::create_dir_all(parent).is_err() {
            return io_failure("write", "io");
        }
    }
    let tmp = temp_beside(&job.report);
    let Ok(out) = create_private(&tmp) else {
        return io_failure("write", "io");
    };
    let args = vec!["show".into(), "-json".into(), "-no-color".into(), plan.display().to_string()];
    let cleanup = |o: Outcome| {
        let _ = std::fs::remove_file(&tmp);
        o
    };
    if let Err(e) = run_child(cfg, &job.dir, &args, Stdio::from(out), &stderr, deadline) {
        return cleanup(failed("show", e, &stderr, secrets));
    }
    // Never replace a good report with something that is not a plan.
    let parsed = std::fs::File::open(&tmp)
        .ok()
        .and_then(|f| super::super::plan::parse_plan(std::io::BufReader::new(f)).ok());
    let Some(p) = parsed.filter(|p| !p.errored) else {
        return cleanup(io_failure("show", "invalid_output"));
    };
    let synced = std::fs::File::open(&tmp).and_then(|f| f.sync_all());
    if synced.and_then(|()| std::fs::rename(&tmp, &job.report)).is_err() {
        return cleanup(io_failure("write", "io"));
    }
    Outcome::Written {
        drift: p.drift.len(),
        pending: p.pending.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aged(path: &Path, age: Duration, now: SystemTime) {
        std::fs::write(path, b"partial").unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.set_modified(now - age).unwrap();
    }

    #[test]
    fn stale_temp_reports_of_killed_runs_are_swept_and_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        let report = d.path().join("drift.json");
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        let old = |n: &str| {
            aged(&d.path().join(n), 2 * hour, now);
        };
        // Ours and older than the timeout: swept.
        old(".drift.json.tmp-4242-0");
        old(".drift.json.status.json.tmp-4242-1");
        // Ours but younger than the timeout (a run may still be writing it): kept.
        aged(&d.path().join(".drift.json.tmp-4243-7"), Duration::from_secs(60), now);
        // Not our naming, or another report's: kept however old.
        for n in [
            "drift.json",
            "drift.json.tmp",
            ".drift.json.tmp-abc",
            ".drift.json.tmp-1-2-3",
            ".drift.json.tmp-",
            ".other.json.tmp-1-2",
            "notes.tmp",
        ] {
            old(n);
        }
        let mut swept = sweep_stale_temps(&report, hour, now);
        swept.sort();
        assert_eq!(
            swept,
            vec![".drift.json.status.json.tmp-4242-1", ".drift.json.tmp-4242-0"]
        );
        let mut left: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        left.sort();
        assert_eq!(
            left,
            vec![
                ".drift.json.tmp-",
                ".drift.json.tmp-1-2-3",
                ".drift.json.tmp-4243-7",
                ".drift.json.tmp-abc",
                ".other.json.tmp-1-2",
                "drift.json",
                "drift.json.tmp",
                "notes.tmp",
            ]
        );
        // The names temp_beside makes are the ones swept.
        let t = temp_beside(&report);
        assert!(is_temp_of(&t.file_name().unwrap().to_string_lossy(), "drift.json"), "{t:?}");
        // A missing folder is no error.
        assert!(sweep_stale_temps(&d.path().join("nope/drift.json"), hour, now).is_empty());
    }
}
