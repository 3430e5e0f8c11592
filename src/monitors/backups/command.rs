//! `command:` sources: run the configured program (with
//! [`crate::core::command`]) and hand its stdout to the source's format as
//! its main document. Called from the source's read, so it runs on the
//! source's schedule and never twice at once (the per-target scheduler does
//! not start a read of a source whose previous read is still running).
//!
//! Credentials come from the exporter's environment (inherited), `env` or
//! `env_files`; their values, and those of the exporter's environment
//! variables whose names look like credentials, are replaced by `***` in the
//! stderr excerpt that failure messages carry. Messages name the program,
//! never its arguments.

use std::path::Path;
use std::time::Duration;

use super::config::{BackupCommand, BackupSourceConfig};
use super::BackupError;
use crate::core::command::{excerpt, run, secret_values, RunError, Spec};

/// Stderr kept for the excerpt.
const STDERR_LIMIT: usize = 64 * 1024;
/// Largest `env_files` file.
const ENV_FILE_LIMIT: u64 = 64 * 1024;

/// The command's timeout: its own, else 80% of the monitor's `timeout`
/// (the read's deadline is 90% of it).
pub fn timeout(c: &BackupCommand, monitor_timeout: Duration) -> Duration {
    c.timeout
        .map(|t| t.0)
        .unwrap_or_else(|| monitor_timeout.mul_f64(0.8))
}

/// What a command reads: the repository named by a `--repo`/`-r`/
/// `--repository` argument, else by `RESTIC_REPOSITORY` (restic) or
/// `BORG_REPO` (borg, borgmatic) in `env` or the exporter's environment,
/// plus the program; else
/// (pgBackRest, barman) the program with its arguments and `env`.
pub fn repository_key(c: &BackupCommand) -> String {
    let program = c.argv.first().map(String::as_str).unwrap_or_default();
    let mut args = c.argv.iter().skip(1);
    let mut repo = None;
    while let Some(a) = args.next() {
        if let Some(v) = a
            .strip_prefix("--repo=")
            .or_else(|| a.strip_prefix("--repository="))
        {
            repo = Some(v.to_string());
        } else if matches!(a.as_str(), "--repo" | "-r" | "--repository") {
            repo = args.next().cloned();
        }
    }
    let repo = repo.or_else(|| {
        let name = std::path::Path::new(program)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let vars: &[&str] = if name.contains("restic") {
            &["RESTIC_REPOSITORY"]
        } else if name.contains("borg") {
            &["BORG_REPO"]
        } else {
            &[]
        };
        vars.iter().find_map(|k| {
            c.env
                .get(*k)
                .cloned()
                .or_else(|| std::env::var(k).ok().filter(|_| !c.env_files.contains_key(*k)))
        })
    });
    match repo {
        Some(r) => format!("{program}\0{r}"),
        None => format!("{:?}\0{:?}", c.argv, c.env),
    }
}

/// One lock per [`repository_key`]: commands that read the same
/// repository run one at a time, across sources.
fn repository_lock(key: String) -> std::sync::Arc<std::sync::Mutex<()>> {
    static LOCKS: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<std::sync::Mutex<()>>>>,
    > = std::sync::OnceLock::new();
    let mut map = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    // Forget locks nobody holds or waits for (sources removed by a reload).
    map.retain(|_, l| std::sync::Arc::strong_count(l) > 1);
    map.entry(key).or_default().clone()
}

/// Run the source's command: `Ok((what, stdout))` after exit 0. Waits
/// while another source's command reads the same repository.
pub(crate) fn run_source_command(
    cfg: &BackupSourceConfig,
    c: &BackupCommand,
    base: &Path,
    max_file_size: u64,
    monitor_timeout: Duration,
) -> Result<(String, Vec<u8>), BackupError> {
    let program = c.argv.first().cloned().unwrap_or_default();
    let mut env: Vec<(String, String)> = c
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, p) in &c.env_files {
        let path = super::files::resolve(base, p);
        let bytes = crate::core::safe_open::read_capped(&path, ENV_FILE_LIMIT).map_err(|e| {
            BackupError::CommandStart {
                program: program.clone(),
                reason: format!(
                    "env_files {k}: cannot read {}: {}",
                    path.display(),
                    e.kind()
                ),
            }
        })?;
        let text = String::from_utf8_lossy(&bytes);
        let value = text.strip_suffix('\n').unwrap_or(&text);
        let value = value.strip_suffix('\r').unwrap_or(value);
        env.push((k.clone(), value.to_string()));
    }
    let secrets = secret_values(env.iter().map(|(_, v)| v.as_str()));
    let timeout = timeout(c, monitor_timeout);
    let lock = repository_lock(repository_key(c));
    let _one_at_a_time = lock.lock().unwrap_or_else(|e| e.into_inner());
    let out = run(&Spec {
        argv: &c.argv,
        dir: base,
        env: &env,
        stdout_limit: usize::try_from(max_file_size).unwrap_or(usize::MAX),
        stderr_limit: STDERR_LIMIT,
        timeout,
    });
    let out = match out {
        Ok(o) => o,
        Err(RunError::Timeout { stderr, .. }) => {
            return Err(BackupError::CommandTimeout {
                program,
                timeout: humantime::format_duration(timeout).to_string(),
                excerpt: excerpt(&stderr, &secrets),
            })
        }
        Err(e) => {
            return Err(BackupError::CommandStart {
                program,
                reason: match e {
                    RunError::Spawn { reason, .. } => reason,
                    other => other.to_string(),
                },
            })
        }
    };
    let what = format!("output of `{program}`");
    if out.stdout_truncated {
        return Err(BackupError::TooLarge {
            path: what,
            size: out.stdout.len() as u64 + 1,
            limit: max_file_size,
        });
    }
    if !out.status.success() {
        let status = match out.status.code() {
            Some(c) => format!("exit code {c}"),
            None => "a signal (killed)".into(),
        };
        return Err(BackupError::CommandExit {
            program,
            status,
            excerpt: excerpt(&out.stderr, &secrets),
        });
    }
    tracing::debug!(
        monitor = "backup_validation",
        source = cfg.name.as_str(),
        bytes = out.stdout.len(),
        "backup source command finished"
    );
    Ok((what, out.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(argv: &[&str], env: &[(&str, &str)]) -> BackupCommand {
        BackupCommand {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            timeout: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            env_files: Default::default(),
        }
    }

    #[test]
    fn one_repository_one_key() {
        let a = repository_key(&cmd(&["restic", "-r", "/srv/a", "snapshots", "--json"], &[]));
        assert_eq!(
            a,
            repository_key(&cmd(&["restic", "snapshots", "--host", "web", "--repo=/srv/a"], &[]))
        );
        assert_eq!(
            a,
            repository_key(&cmd(&["restic", "snapshots"], &[("RESTIC_REPOSITORY", "/srv/a")]))
        );
        assert_ne!(a, repository_key(&cmd(&["restic", "-r", "/srv/b", "snapshots"], &[])));
        // No repository named: the same command (and env) only.
        let p = repository_key(&cmd(&["pgbackrest", "info", "--output=json"], &[]));
        assert_eq!(p, repository_key(&cmd(&["pgbackrest", "info", "--output=json"], &[])));
        assert_ne!(
            p,
            repository_key(&cmd(&["pgbackrest", "--stanza=x", "info", "--output=json"], &[]))
        );
    }
}
