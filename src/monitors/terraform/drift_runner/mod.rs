//! `homelab-monitor drift`: runs `terraform plan -refresh-only` in each
//! configured working directory on a schedule and writes the drift reports
//! the Terraform monitor reads, with a status file per report. The exporter
//! never runs Terraform: it only reads those files.

pub mod config;
pub mod lock;
pub mod run;
pub mod status;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

pub use config::DriftRunnerConfig;
use run::{Job, Outcome};

/// `homelab-monitor drift`.
#[derive(Debug, Clone, clap::Args)]
pub struct DriftArgs {
    /// Working directories to plan (instead of the config's
    /// `custom_monitors.terraform_state.drift_runner.working_dirs`).
    #[arg(long = "dir", value_name = "DIR", num_args = 1..)]
    pub dirs: Vec<PathBuf>,
    /// Run every due directory once and exit (CronJob, systemd timer):
    /// 0 no drift, 2 drift found, 1 a run failed. Without it: loop every `every`.
    #[arg(long)]
    pub once: bool,
    /// Also plan directories whose last run is newer than `every`.
    #[arg(long)]
    pub force: bool,
    /// With --once: exit 0 when drift is found (for schedulers that count any
    /// non-zero exit as a failed run, like a Kubernetes Job); 1 still means a run failed.
    #[arg(long = "exit-zero-on-drift")]
    pub exit_zero_on_drift: bool,
}

/// A usage or configuration problem of the `drift` command.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DriftError(pub String);

/// Where the drift reports go: the report's file name template and the
/// exporter's `remote.reports_dir` (joined to the config's folder), if set.
#[derive(Debug, Clone, Default)]
pub struct ReportPlaces {
    pub drift_report: String,
    pub reports_dir: Option<PathBuf>,
}

/// The jobs of a config (or of `--dir`): directories relative to `base`,
/// and the entries that cannot be planned (each a message; the others still run).
pub fn jobs(
    cfg: &DriftRunnerConfig,
    places: &ReportPlaces,
    base: &Path,
    dirs: &[PathBuf],
) -> Result<(Vec<Job>, Vec<String>), DriftError> {
    let entries: Vec<(PathBuf, Option<PathBuf>)> = if dirs.is_empty() {
        cfg.working_dirs
            .iter()
            .map(|w| (base.join(w.dir()), w.report().map(|r| base.join(r))))
            .collect()
    } else {
        dirs.iter().map(|d| (d.clone(), None)).collect()
    };
    if entries.is_empty() {
        return Err(DriftError("no working directory to plan: list them in custom_monitors.terraform_state.drift_runner.working_dirs or pass --dir DIR".into()));
    }
    let (mut out, mut problems) = (Vec::new(), Vec::new());
    for (dir, report) in entries {
        if !dir.is_dir() {
            problems.push(format!(
                "drift runner: {} is not a directory: fix working_dirs (relative to the config file's folder) or --dir",
                dir.display()
            ));
            continue;
        }
        let report = match report {
            Some(r) => r,
            None => match remote_report(&dir, base, places) {
                Ok(Some(r)) => r,
                Ok(None) => super::source::sibling_path(&run::local_state_path(&dir), &places.drift_report),
                Err(p) => {
                    problems.push(p);
                    continue;
                }
            },
        };
        out.push(Job { dir, report });
    }
    Ok((out, problems))
}

/// The report of a working directory with a remote backend: where the
/// exporter reads the remote state's drift report,
/// `<remote.reports_dir>/<folder of the state's label>/<drift_report>`
/// (`None`: the backend is local). An error message (phase `config`) when the
/// backend is remote but `remote.reports_dir` is not set or the state's label
/// cannot be told: a report beside a local state that does not exist would
/// never be read.
fn remote_report(dir: &Path, base: &Path, places: &ReportPlaces) -> Result<Option<PathBuf>, String> {
    let Some(kind) = run::remote_backend(dir) else {
        return Ok(None);
    };
    let Some(reports_dir) = &places.reports_dir else {
        return Err(format!(
            "drift runner: {} uses the {kind} backend and custom_monitors.terraform_state.remote.reports_dir is not set (phase config): set remote.reports_dir (the exporter reads remote states' drift reports there), or give this entry's report path (working_dirs: [{{dir: ..., report: ...}}]); see docs/remote-state.md",
            dir.display()
        ));
    };
    let env = crate::remote::Env::process();
    match crate::remote::working_dir_state_label(dir, base, &run::current_workspace(dir), &env) {
        Ok(Some(label)) => Ok(Some(
            super::remote::sidecar_file(reports_dir, &label, &places.drift_report).1,
        )),
        Ok(None) => Ok(None),
        Err(e) => Err(format!(
            "drift runner: {} uses the {kind} backend, but its state's label cannot be told (phase config): {e}; fix the backend record (terraform init) or give this entry's report path (working_dirs: [{{dir: ..., report: ...}}])",
            dir.display()
        )),
    }
}

/// When the job last ran (its status file), else when its report was written.
fn last_run(job: &Job) -> Option<SystemTime> {
    match status::read_beside(&job.report) {
        Some(status::RunInfo::Read(s)) => Some(s.finished()),
        _ => std::fs::metadata(&job.report)
            .and_then(|m| m.modified())
            .ok(),
    }
}

/// The jobs due at `now` (last run older than `every`, or never), oldest first.
pub fn due(jobs: &[Job], every: Duration, now: SystemTime, force: bool) -> Vec<Job> {
    let mut d: Vec<(Option<SystemTime>, Job)> = jobs
        .iter()
        .map(|j| (last_run(j), j.clone()))
        .filter(|(last, _)| {
            force
                || last.is_none_or(|t| now.duration_since(t).map(|a| a >= every).unwrap_or(false))
        })
        .collect();
    d.sort_by_key(|(last, _)| *last);
    d.into_iter().map(|(_, j)| j).collect()
}

/// Run `jobs` with at most `concurrency` at once, in order.
pub fn run_all(jobs: Vec<Job>, cfg: &DriftRunnerConfig) -> Vec<(Job, Outcome)> {
    let secrets = run::secret_values(cfg);
    // Terraform wants the plugin cache folder to exist already.
    if let Some(d) = std::env::var_os("TF_PLUGIN_CACHE_DIR").filter(|d| !d.is_empty()) {
        let _ = std::fs::create_dir_all(d);
    }
    let queue = Mutex::new(jobs.into_iter().collect::<VecDeque<_>>());
    let results = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..cfg.concurrency.max(1) {
            s.spawn(|| loop {
                if run::stopping() {
                    break;
                }
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                let Some(job) = next else { break };
                let o = run::run_job(&job, cfg, &secrets);
                log_outcome(&job, &o);
                results
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((job, o));
            });
        }
    });
    results.into_inner().unwrap_or_else(|e| e.into_inner())
}

fn log_outcome(job: &Job, o: &Outcome) {
    let dir = job.dir.display();
    match o {
        Outcome::Written { drift, pending } => tracing::info!(dir = %dir, report = %job.report.display(), drift, pending, "drift report written"),
        Outcome::Busy => tracing::info!(dir = %dir, "another drift runner is working on this directory; skipped"),
        Outcome::Failed { phase, reason, exit_code, excerpt } => tracing::warn!(
            dir = %dir,
            phase,
            reason,
            exit_code = exit_code.unwrap_or(-1),
            excerpt = %excerpt.join(" | "),
            "drift run failed; the last good report is kept (see the status file beside it)"
        ),
    }
}

/// The exit code of a `--once` round over `jobs`: directories this round
/// planned answer with their outcome; the others (skipped because their last
/// run is newer than `every`, or busy under another runner) with their last
/// recorded run, and with 1 when there is none to vouch for them: a skipped
/// directory is never "no drift" on its own say.
pub fn exit_code_of_round(jobs: &[Job], results: &[(Job, Outcome)]) -> i32 {
    let codes = jobs.iter().map(|job| {
        match results.iter().find(|(j, _)| j.report == job.report) {
            Some((_, Outcome::Failed { .. })) => 1,
            Some((_, Outcome::Written { drift, pending })) => i32::from(drift + pending > 0) * 2,
            Some((_, Outcome::Busy)) | None => match status::read_beside(&job.report) {
                Some(status::RunInfo::Read(s)) if s.success => {
                    i32::from(s.drift.unwrap_or(0) + s.pending.unwrap_or(0) > 0) * 2
                }
                _ => 1,
            },
        }
    });
    // 1 (could not tell) outranks 2 (drift), which outranks 0.
    codes.fold(0, |acc, c| match (acc, c) {
        (1, _) | (_, 1) => 1,
        (2, _) | (_, 2) => 2,
        _ => 0,
    })
}

/// How long the loop sleeps before the next job is due (1 s .. `every`).
fn next_wake(jobs: &[Job], every: Duration, now: SystemTime) -> Duration {
    jobs.iter()
        .map(|j| match last_run(j) {
            Some(t) => (t + every).duration_since(now).unwrap_or(Duration::ZERO),
            None => Duration::ZERO,
        })
        .min()
        .unwrap_or(every)
        .clamp(Duration::from_secs(1), every)
}

/// `homelab-monitor drift` with a loaded config (or the defaults): the exit code.
pub async fn run_command(config: &crate::core::config::Config, args: &DriftArgs) -> Result<i32, DriftError> {
    let tf = config
        .file
        .custom_monitors
        .terraform_state
        .clone()
        .unwrap_or_default();
    let runner = tf.drift_runner.clone().unwrap_or_default();
    let places = ReportPlaces {
        drift_report: tf.drift_report.clone(),
        reports_dir: tf.remote.reports_dir.as_ref().map(|d| config.base_dir.join(d)),
    };
    let jobs = jobs(&runner, &places, &config.base_dir, &args.dirs)?;
    let code = command(runner, jobs, args.once, args.force).await;
    Ok(if code == 2 && args.exit_zero_on_drift { 0 } else { code })
}

/// The `drift` command: one round (`--once`) or a loop until SIGTERM/SIGINT.
pub async fn command(
    cfg: DriftRunnerConfig,
    (jobs, problems): (Vec<Job>, Vec<String>),
    once: bool,
    force: bool,
) -> i32 {
    // Entries that cannot run are errors (exit 1), the others still run.
    for p in &problems {
        tracing::error!("{p}");
    }
    let broken = !problems.is_empty();
    let cfg = std::sync::Arc::new(cfg);
    let jobs = std::sync::Arc::new(jobs);
    let round = |force: bool| {
        let (cfg, jobs) = (cfg.clone(), jobs.clone());
        tokio::task::spawn_blocking(move || {
            let todo = due(&jobs, cfg.every.0, SystemTime::now(), force);
            if todo.len() < jobs.len() {
                tracing::info!(
                    skipped = jobs.len() - todo.len(),
                    every = %humantime::format_duration(cfg.every.0),
                    "directories whose last run is newer than `every` are skipped (--force plans them anyway)"
                );
            }
            run_all(todo, &cfg)
        })
    };
    let mut shutdown = std::pin::pin!(crate::server::shutdown_signal());
    let mut force = force;
    loop {
        let mut running = round(force);
        let done = tokio::select! {
            r = &mut running => r,
            _ = &mut shutdown => {
                tracing::info!("stopping: the running plans are interrupted (SIGTERM to their process groups) and recorded as failed");
                run::stop_all();
                let _ = running.await;
                return if once { 1 } else { 0 };
            }
        };
        if once {
            return match done {
                Ok(_) if broken => 1,
                Ok(r) => exit_code_of_round(&jobs, &r),
                Err(_) => 1,
            };
        }
        force = false;
        let wait = next_wake(&jobs, cfg.every.0, SystemTime::now());
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = &mut shutdown => return 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(dir: &std::path::Path, name: &str) -> Job {
        Job {
            dir: dir.to_path_buf(),
            report: dir.join(name),
        }
    }

    fn recorded(j: &Job, success: bool, drift: usize) {
        let st = status::RunStatus {
            format: 1,
            success,
            phase: None,
            reason: None,
            exit_code: Some(0),
            started_at: 1.0,
            finished_at: 2.0,
            duration_seconds: 1.0,
            drift: Some(drift),
            pending: Some(0),
            stderr_excerpt: Vec::new(),
        };
        status::write(&j.report, &st).unwrap();
    }

    #[test]
    fn directories_not_planned_answer_with_their_last_run_or_not_clean() {
        let d = tempfile::tempdir().unwrap();
        let (clean, drifted, failed, unknown) = (
            job(d.path(), "clean.json"),
            job(d.path(), "drifted.json"),
            job(d.path(), "failed.json"),
            job(d.path(), "unknown.json"),
        );
        recorded(&clean, true, 0);
        recorded(&drifted, true, 3);
        recorded(&failed, false, 0);
        let planned = |o: Outcome| vec![(clean.clone(), o)];
        // Skipped with a clean last run: 0; with drift: 2; failed or never
        // recorded: 1 (nothing vouches for "no drift").
        assert_eq!(exit_code_of_round(std::slice::from_ref(&clean), &[]), 0);
        assert_eq!(exit_code_of_round(&[clean.clone(), drifted.clone()], &[]), 2);
        assert_eq!(exit_code_of_round(&[clean.clone(), failed.clone()], &[]), 1);
        assert_eq!(exit_code_of_round(&[clean.clone(), unknown.clone()], &[]), 1);
        // A busy directory answers like a skipped one.
        assert_eq!(exit_code_of_round(std::slice::from_ref(&unknown), &[(unknown.clone(), Outcome::Busy)]), 1);
        // This round's outcome wins over the record.
        assert_eq!(
            exit_code_of_round(std::slice::from_ref(&clean), &planned(Outcome::Written { drift: 1, pending: 0 })),
            2
        );
        assert_eq!(
            exit_code_of_round(
                std::slice::from_ref(&clean),
                &planned(Outcome::Failed { phase: "plan", reason: "exit_status", exit_code: Some(1), excerpt: Vec::new() })
            ),
            1
        );
    }
}
