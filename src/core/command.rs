//! Running a configured program safely (health `command` checks, backup
//! `command:` sources): no shell, stdin empty, its own process group (killed
//! whole at the timeout: SIGTERM, then SIGKILL after a short grace, and
//! SIGKILL after a normal exit for anything it left behind), stdout read up
//! to a limit, stderr kept up to a limit and shown only as a short
//! [`excerpt`] with secrets replaced.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Grace between SIGTERM and SIGKILL of a timed-out process group.
pub const KILL_GRACE: Duration = Duration::from_secs(2);
/// Lines and characters per line of an [`excerpt`].
pub const EXCERPT_LINES: usize = 3;
pub const EXCERPT_LINE_CHARS: usize = 160;

/// What to run.
#[derive(Debug, Clone)]
pub struct Spec<'a> {
    /// Program and arguments (no shell).
    pub argv: &'a [String],
    /// Working folder.
    pub dir: &'a Path,
    /// Added to the inherited environment.
    pub env: &'a [(String, String)],
    /// Most stdout bytes read; the pipe is closed after that (`stdout_truncated`).
    pub stdout_limit: usize,
    /// Most stderr bytes kept (the rest is read and discarded).
    pub stderr_limit: usize,
    pub timeout: Duration,
}

/// A finished run.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    /// More than `stdout_limit` bytes were written.
    pub stdout_truncated: bool,
    pub stderr: Vec<u8>,
}

/// Why a run did not finish. Messages name the program, never its arguments or output.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RunError {
    #[error("argv is empty")]
    Empty,
    #[error("cannot start {program}: {reason}")]
    Spawn { program: String, reason: String },
    #[error("{program} did not finish within {timeout:?} and was killed")]
    Timeout {
        program: String,
        timeout: Duration,
        /// What it wrote on stderr before (raw: pass it through [`excerpt`]).
        stderr: Vec<u8>,
    },
}

fn read_capped<R: Read>(mut r: R, limit: usize, close_at_limit: bool) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    let mut over = false;
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => return (kept, over),
            Ok(n) => {
                let room = limit.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                if n > room {
                    over = true;
                    if close_at_limit {
                        return (kept, over);
                    }
                }
            }
        }
    }
}

/// Process groups of the commands running now, for [`stop_all`].
static ACTIVE: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());
/// Set by [`stop_all`]: no new command is started.
static STOPPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Shutdown (of the exporter, or of `drift`): start no new command and
/// send SIGTERM to the process group of every command running now (their
/// runs then end as killed), so that the exit does not wait for them.
pub fn stop_all() {
    STOPPING.store(true, std::sync::atomic::Ordering::SeqCst);
    for pg in ACTIVE.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        if let Some(p) = rustix::process::Pid::from_raw(*pg) {
            let _ = rustix::process::kill_process_group(p, rustix::process::Signal::TERM);
        }
    }
}

/// True once [`stop_all`] was called: no new command starts.
pub fn stopping() -> bool {
    STOPPING.load(std::sync::atomic::Ordering::SeqCst)
}

/// Removes a child's group from [`ACTIVE`] when its run ends.
struct Registered(i32);

impl Drop for Registered {
    fn drop(&mut self) {
        ACTIVE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|p| *p != self.0);
    }
}

/// Why a child was not started.
#[derive(Debug)]
pub enum SpawnFailure {
    /// [`stop_all`] was called.
    Stopping,
    /// The operating system refused.
    Io(std::io::Error),
}

/// A child leading its own process group, registered for [`stop_all`]
/// until it is waited for.
pub struct GroupChild {
    pub child: std::process::Child,
    registered: Registered,
}

/// How a [`GroupChild::wait_until`] ended.
pub enum Waited {
    /// It exited (`None`: waiting for it failed).
    Exited(Option<ExitStatus>),
    /// The deadline passed; the group was killed.
    TimedOut,
}

/// Start `cmd` in its own process group, registered for [`stop_all`]
/// (under the lock, so that a concurrent `stop_all` cannot miss it);
/// refused once stopping. Used by the command sources, health checks and
/// the drift runner alike.
pub fn spawn_in_group(cmd: &mut Command) -> Result<GroupChild, SpawnFailure> {
    let mut active = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
    if stopping() {
        return Err(SpawnFailure::Stopping);
    }
    let child = cmd.process_group(0).spawn().map_err(SpawnFailure::Io)?;
    let id = child.id() as i32;
    active.push(id);
    drop(active);
    Ok(GroupChild {
        child,
        registered: Registered(id),
    })
}

impl GroupChild {
    /// Send `sig` to the child's process group. The child leads its own
    /// group (`process_group(0)`): the group id stays reserved while any
    /// member lives, so this never reaches another program, even after the
    /// child was reaped.
    fn kill(group: i32, sig: rustix::process::Signal) {
        if let Some(p) = rustix::process::Pid::from_raw(group) {
            let _ = rustix::process::kill_process_group(p, sig);
        }
    }

    /// Wait for the child until `deadline`; past it, SIGTERM its group and
    /// SIGKILL it `grace` later. Either way the group is SIGKILLed at the
    /// end: whatever the child left behind goes with it (and the pipes it
    /// held close). Take the child's pipes before calling this.
    pub fn wait_until(self, deadline: Instant, grace: Duration) -> Waited {
        let GroupChild {
            mut child,
            registered,
        } = self;
        let group = registered.0;
        // A waiter thread, so that the exit is seen at once (no polling).
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let r = child.wait();
            let _ = tx.send(());
            r
        });
        if rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_err()
        {
            Self::kill(group, rustix::process::Signal::TERM);
            if rx.recv_timeout(grace).is_err() {
                Self::kill(group, rustix::process::Signal::KILL);
            }
            let _ = waiter.join();
            Self::kill(group, rustix::process::Signal::KILL);
            return Waited::TimedOut;
        }
        let status = waiter.join().ok().and_then(|r| r.ok());
        Self::kill(group, rustix::process::Signal::KILL);
        drop(registered);
        Waited::Exited(status)
    }
}

/// Run `spec` to completion or its timeout (blocking).
pub fn run(spec: &Spec<'_>) -> Result<Output, RunError> {
    let (program, args) = spec.argv.split_first().ok_or(RunError::Empty)?;
    let started = Instant::now();
    let stopping = || RunError::Spawn {
        program: program.clone(),
        reason: "the exporter is stopping".into(),
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(spec.dir)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut group = spawn_in_group(&mut cmd).map_err(|e| match e {
        SpawnFailure::Stopping => stopping(),
        SpawnFailure::Io(e) => RunError::Spawn {
            program: program.clone(),
            reason: match e.kind() {
                std::io::ErrorKind::NotFound => {
                    "not found (install it, or give its full path in argv)".into()
                }
                std::io::ErrorKind::PermissionDenied => {
                    "permission denied (is it executable by the exporter's user?)".into()
                }
                k => k.to_string(),
            },
        },
    })?;
    let (out_limit, err_limit) = (spec.stdout_limit, spec.stderr_limit);
    let stdout = group.child.stdout.take();
    let stderr = group.child.stderr.take();
    let (otx, orx) = std::sync::mpsc::channel();
    let (etx, erx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = stdout.map(|s| read_capped(s, out_limit, true));
        let _ = otx.send(r.unwrap_or_default());
    });
    std::thread::spawn(move || {
        let r = stderr.map(|s| read_capped(s, err_limit, false).0);
        let _ = etx.send(r.unwrap_or_default());
    });
    let deadline = started + spec.timeout;
    let status = match group.wait_until(deadline, KILL_GRACE) {
        Waited::Exited(status) => status,
        Waited::TimedOut => {
            let stderr = erx.recv_timeout(KILL_GRACE).unwrap_or_default();
            return Err(RunError::Timeout {
                program: program.clone(),
                timeout: spec.timeout,
                stderr,
            });
        }
    };
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(KILL_GRACE);
    let (stdout, stdout_truncated) = orx.recv_timeout(left).unwrap_or_default();
    let stderr = erx.recv_timeout(KILL_GRACE).unwrap_or_default();
    let status = status.ok_or_else(|| RunError::Spawn {
        program: program.clone(),
        reason: "waiting for it failed".into(),
    })?;
    Ok(Output {
        status,
        stdout,
        stdout_truncated,
        stderr,
    })
}

/// Values that must never be shown: `extra` (the configured environment of a
/// command) and the exporter's own environment variables whose names look
/// like credentials (`*PASSWORD*`, `*TOKEN*`, `*SECRET*`, `*KEY*`,
/// `*CREDENTIAL*`, `*AUTH*`, `*PASSPHRASE*`). Values shorter than 3 characters are left out.
pub fn secret_values<'a>(extra: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = extra.into_iter().map(str::to_string).collect();
    for (k, v) in std::env::vars_os() {
        let (Some(k), Some(v)) = (k.to_str(), v.to_str()) else {
            continue;
        };
        let up = k.to_ascii_uppercase();
        if ["TOKEN", "SECRET", "PASS", "KEY", "CREDENTIAL", "AUTH"]
            .iter()
            .any(|w| up.contains(w))
        {
            out.push(v.to_string());
        }
    }
    out.retain(|v| v.len() >= 3);
    // Longest first, so that a secret containing another is replaced whole.
    out.sort_by_key(|v| std::cmp::Reverse(v.len()));
    out.dedup();
    out
}

/// The last [`EXCERPT_LINES`] non-empty lines of `stderr`, each at most
/// [`EXCERPT_LINE_CHARS`] characters, with every `secrets` value, URL user
/// info (`://user:pass@`) and whatever follows `=` replaced by `***`, and
/// control characters removed; joined with ` | `.
pub fn excerpt(stderr: &[u8], secrets: &[String]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let start = lines.len().saturating_sub(EXCERPT_LINES);
    lines[start..]
        .iter()
        .map(|l| {
            let mut l = l.to_string();
            for s in secrets {
                l = l.replace(s.as_str(), "***");
            }
            let mut l = redact_line(&l);
            if l.chars().count() > EXCERPT_LINE_CHARS {
                l = l.chars().take(EXCERPT_LINE_CHARS).collect::<String>() + "…";
            }
            l
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

/// URL user info and what follows `=` become `***`; control characters go.
fn redact_line(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    // `scheme://user:pass@host` -> `scheme://***@host`
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '/')
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str("***");
                rest = &tail[at..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    let mut clean = String::with_capacity(out.len());
    for c in out.chars() {
        match c {
            '=' => {
                clean.push_str("=***");
                break;
            }
            c if c.is_control() => {}
            c => clean.push(c),
        }
    }
    clean
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec<'a>(argv: &'a [String], env: &'a [(String, String)], t: Duration) -> Spec<'a> {
        Spec {
            argv,
            dir: Path::new("."),
            env,
            stdout_limit: 100,
            stderr_limit: 1000,
            timeout: t,
        }
    }

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn output_exit_status_env_and_limits() {
        let a = argv(&["sh", "-c", "printf '%s' \"$X\"; echo oops >&2; exit 3"]);
        let env = [("X".to_string(), "hello".to_string())];
        let o = run(&spec(&a, &env, Duration::from_secs(30))).unwrap();
        assert_eq!(o.status.code(), Some(3));
        assert_eq!(o.stdout, b"hello");
        assert!(!o.stdout_truncated);
        assert_eq!(o.stderr, b"oops\n");
        let a = argv(&["sh", "-c", "yes | head -c 100000"]);
        let o = run(&spec(&a, &[], Duration::from_secs(30))).unwrap();
        assert!(o.stdout_truncated);
        assert_eq!(o.stdout.len(), 100);
        assert!(matches!(
            run(&spec(
                &argv(&["/nonexistent/prog"]),
                &[],
                Duration::from_secs(5)
            )),
            Err(RunError::Spawn { .. })
        ));
        assert_eq!(
            run(&spec(&[], &[], Duration::from_secs(5))).unwrap_err(),
            RunError::Empty
        );
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let a = argv(&[
            "sh",
            "-c",
            &format!(
                "sleep 300 & echo $! > {}; echo started >&2; wait",
                pidfile.display()
            ),
        ]);
        let e = run(&spec(&a, &[], Duration::from_millis(500))).unwrap_err();
        let RunError::Timeout { stderr, .. } = e else {
            panic!("{e:?}")
        };
        assert_eq!(stderr, b"started\n");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The grandchild (the background sleep) was killed too: it is gone
        // (or a zombie until init reaps it) once the kernel has torn it down.
        let stat = || std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let alive = |st: &str| {
            st.rsplit(')')
                .next()
                .and_then(|s| s.split_whitespace().next())
                .is_some_and(|s| s != "Z" && s != "X")
        };
        let until = Instant::now() + Duration::from_secs(30);
        while alive(&stat()) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!alive(&stat()), "grandchild {pid} survived: {}", stat());
    }

    #[test]
    fn excerpts_hide_secrets() {
        let secrets = vec!["hunter2-canary".to_string()];
        let e = excerpt(
            b"line1\nFatal: wrong password hunter2-canary\nopen rest:https://bob:pw123@nas/repo failed\n\n key=value here\n",
            &secrets,
        );
        assert!(!e.contains("hunter2"), "{e}");
        assert!(!e.contains("pw123") && !e.contains("bob"), "{e}");
        assert!(!e.contains("value"), "{e}");
        assert!(!e.contains("line1"), "only the last lines: {e}");
        assert!(e.contains("Fatal: wrong password ***"), "{e}");
        assert!(e.contains("rest:https://***@nas/repo failed"), "{e}");
    }
}
