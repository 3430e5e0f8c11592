//! `homelab-monitor drift` with a real Terraform and a real provider: the
//! test provider `hmtest` (tests/fixtures/terraform/hmtest-provider, on the
//! PyPI framework `tf`, installed by scripts/install-terraform.sh) manages
//! local files, and its Read reports a file's current content, so editing a
//! file outside Terraform is real drift found by `plan -refresh-only`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::remote::{monitor, scrape, terraform, CANARY};
use common::{repo, series, wait_for, BIN};
use homelab_monitor::monitors::terraform::drift_runner::{self as dr, lock, status};

/// A filesystem mirror holding the test provider, and a CLI config that
/// installs from it only (init never reaches a network).
struct Provider {
    rc: PathBuf,
    _dir: tempfile::TempDir,
}

fn provider() -> Option<Provider> {
    let python = repo().join(".cache/tools/hmtest-venv/bin/python3");
    if !python.is_file() || which_terraform().is_none() {
        eprintln!("SKIP: the drift runner's real-Terraform tests need terraform on PATH and the test provider's venv (.cache/tools/hmtest-venv): run scripts/install-terraform.sh");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir
        .path()
        .join("mirror/example.com/homelab/hmtest/1.0.0/linux_amd64");
    std::fs::create_dir_all(&plugin).unwrap();
    fake_binary(
        &plugin,
        "terraform-provider-hmtest_v1.0.0",
        &format!(
            "#!/bin/sh\nexec {} {} \"$@\"\n",
            python.display(),
            repo()
                .join("tests/fixtures/terraform/hmtest-provider/provider.py")
                .display()
        ),
    );
    let rc = dir.path().join("cli.tfrc");
    std::fs::write(
        &rc,
        format!(
            "provider_installation {{\n  filesystem_mirror {{\n    path    = \"{}\"\n    include = [\"example.com/*/*\"]\n  }}\n}}\n",
            dir.path().join("mirror").display()
        ),
    )
    .unwrap();
    Some(Provider { rc, _dir: dir })
}

fn which_terraform() -> Option<PathBuf> {
    common::remote::which("terraform")
}

/// Two managed files `a.txt` ("one") and `b.txt` ("two"), plus `extra` HCL.
fn project(dir: &Path, extra: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("main.tf"),
        format!(
            r#"terraform {{
  required_providers {{
    hmtest = {{ source = "example.com/homelab/hmtest" }}
  }}
}}
resource "hmtest_file" "a" {{
  path    = "${{path.module}}/a.txt"
  content = "one"
}}
resource "hmtest_file" "b" {{
  path    = "${{path.module}}/b.txt"
  content = "two"
}}
{extra}
"#
        ),
    )
    .unwrap();
}

fn tf(p: &Provider, dir: &Path, args: &[&str]) {
    let out = Command::new(terraform())
        .current_dir(dir)
        .args(args)
        .env("TF_CLI_CONFIG_FILE", &p.rc)
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_IN_AUTOMATION", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "terraform {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `homelab-monitor drift ...` in `cwd`: (exit code, stdout + stderr).
fn drift(p: &Provider, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(BIN)
        .current_dir(cwd)
        .arg("drift")
        .args(args)
        .env("TF_CLI_CONFIG_FILE", &p.rc)
        .env("CHECKPOINT_DISABLE", "1")
        .env("RUST_LOG", "trace")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

const CONFIG: &str = r#"custom_monitors:
  terraform_state:
    state_files: ["work/terraform.tfstate"]
    drift_runner:
      working_dirs: ["work"]
      every: 1h
      timeout: 2m
"#;

/// A stand-in for `terraform` (a shell script) for the scheduling tests.
fn fake_binary(root: &Path, name: &str, script: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = root.join(name);
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// `monitoring-config.yaml` with a drift_runner block running `binary` in
/// `working_dirs`, plus `extra` lines of the block.
fn runner_config(root: &Path, working_dirs: &str, binary: &Path, extra: &str) {
    std::fs::write(
        root.join("monitoring-config.yaml"),
        format!(
            "custom_monitors:\n  terraform_state:\n    drift_runner:\n      working_dirs: {working_dirs}\n      binary: {}\n{extra}",
            binary.display()
        ),
    )
    .unwrap();
}

fn metric(m: &str, name: &str) -> Option<f64> {
    series(
        m,
        &format!("{name}{{state_file=\"work/terraform.tfstate\"}}"),
    )
}

async fn scrape_root(root: &Path) -> String {
    scrape(&monitor(root, CONFIG)).await
}

fn run_status(root: &Path) -> status::RunStatus {
    match status::read_beside(&root.join("work/drift.json")) {
        Some(status::RunInfo::Read(s)) => s,
        other => panic!("no readable status file: {other:?}"),
    }
}

#[tokio::test]
async fn drift_runner_finds_real_drift_and_clears_it() {
    let Some(p) = provider() else { return };
    let root = tempfile::tempdir().unwrap();
    let work = root.path().join("work");
    project(&work, "");
    tf(&p, &work, &["init", "-input=false"]);
    tf(&p, &work, &["apply", "-auto-approve", "-input=false"]);
    std::fs::write(root.path().join("monitoring-config.yaml"), CONFIG).unwrap();

    // Clean: report written, status success, exit 0, monitor shows drift 0.
    let (code, out) = drift(
        &p,
        root.path(),
        &["--config", "monitoring-config.yaml", "--once"],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    let s = run_status(root.path());
    assert!(s.success && s.drift == Some(0), "{s:?}");
    let m = scrape_root(root.path()).await;
    assert_eq!(metric(&m, "terraform_state_drift"), Some(0.0), "{m}");
    assert_eq!(metric(&m, "terraform_drift_run_success"), Some(1.0), "{m}");
    assert!(metric(&m, "terraform_drift_run_last_run_timestamp_seconds").is_some_and(|t| t > 1.7e9));
    assert!(
        metric(&m, "terraform_drift_run_duration_seconds").is_some(),
        "{m}"
    );
    assert!(!m.contains("terraform_drift_run_error_info"), "{m}");

    // The report is newer than `every`: a second round skips the directory.
    let before = std::fs::read(work.join("drift.json.status.json")).unwrap();
    let (code, out) = drift(
        &p,
        root.path(),
        &["--config", "monitoring-config.yaml", "--once"],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        std::fs::read(work.join("drift.json.status.json")).unwrap(),
        before,
        "a fresh directory was planned again: {out}"
    );
    assert!(out.contains("skipped"), "{out}");

    // Edited outside Terraform: drift 1 (exit 2), on a.txt only.
    std::fs::write(work.join("a.txt"), "edited by hand").unwrap();
    let (code, out) = drift(
        &p,
        root.path(),
        &["--config", "monitoring-config.yaml", "--once", "--force"],
        &[],
    );
    assert_eq!(code, 2, "{out}");
    assert_eq!(run_status(root.path()).drift, Some(1));
    let (code, out) = drift(
        &p,
        root.path(),
        &[
            "--config",
            "monitoring-config.yaml",
            "--once",
            "--force",
            "--exit-zero-on-drift",
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(run_status(root.path()).drift, Some(1));
    let m = scrape_root(root.path()).await;
    assert_eq!(metric(&m, "terraform_state_drift"), Some(1.0), "{m}");
    let report = std::fs::read_to_string(work.join("drift.json")).unwrap();
    assert!(report.contains("hmtest_file.a") && report.contains("resource_drift"));

    // Reverted: back to 0.
    std::fs::write(work.join("a.txt"), "one").unwrap();
    let (code, out) = drift(
        &p,
        root.path(),
        &["--dir", "work", "--once", "--force"],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    let m = scrape_root(root.path()).await;
    assert_eq!(metric(&m, "terraform_state_drift"), Some(0.0), "{m}");
}

#[tokio::test]
async fn drift_runner_failed_plan_keeps_the_report_and_never_leaks() {
    let Some(p) = provider() else { return };
    let root = tempfile::tempdir().unwrap();
    let work = root.path().join("work");
    let var = "variable \"secret\" {\n  type = string\n}\nprovider \"hmtest\" {\n  fail = var.secret == \"\" ? null : var.secret\n}\n";
    project(&work, var);
    tf(&p, &work, &["init", "-input=false"]);
    std::fs::write(root.path().join("monitoring-config.yaml"), CONFIG).unwrap();
    // Applied while the provider accepts its config (secret empty)...
    let ok = [("TF_VAR_secret", "")];
    let out = Command::new(terraform())
        .current_dir(&work)
        .args(["apply", "-auto-approve", "-input=false"])
        .env("TF_CLI_CONFIG_FILE", &p.rc)
        .envs(ok)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(work.join("a.txt"), "edited").unwrap();
    let (code, out) = drift(
        &p,
        root.path(),
        &["--config", "monitoring-config.yaml", "--once"],
        &ok,
    );
    assert_eq!(code, 2, "{out}");
    let good = std::fs::read(work.join("drift.json")).unwrap();

    // ...then refused, quoting the canary (a variable's value) in its error.
    let bad = [("TF_VAR_secret", CANARY)];
    let (code, out) = drift(
        &p,
        root.path(),
        &["--config", "monitoring-config.yaml", "--once", "--force"],
        &bad,
    );
    assert_eq!(code, 1, "{out}");
    assert!(!out.contains(CANARY), "canary in the runner's logs:\n{out}");
    assert_eq!(
        std::fs::read(work.join("drift.json")).unwrap(),
        good,
        "a failed plan replaced the last good report"
    );
    let raw = std::fs::read_to_string(work.join("drift.json.status.json")).unwrap();
    assert!(!raw.contains(CANARY), "canary in the status file:\n{raw}");
    let s = run_status(root.path());
    assert!(!s.success, "{s:?}");
    assert_eq!(
        (s.phase.as_deref(), s.reason.as_deref()),
        (Some("plan"), Some("exit_status"))
    );
    assert!(s.exit_code.is_some_and(|c| c != 0));
    assert!(
        s.stderr_excerpt
            .iter()
            .any(|l| l.contains("provider configuration refused")),
        "the excerpt lost the error's headline: {s:?}"
    );
    // `scrape` asserts that the canary is not in the metrics.
    let m = scrape_root(root.path()).await;
    assert_eq!(metric(&m, "terraform_drift_run_success"), Some(0.0), "{m}");
    assert_eq!(
        series(&m, "terraform_drift_run_error_info{state_file=\"work/terraform.tfstate\",phase=\"plan\",reason=\"exit_status\"}"),
        Some(1.0),
        "{m}"
    );
    // The last good report is still served (drift 1), never a fresh "0".
    assert_eq!(metric(&m, "terraform_state_drift"), Some(1.0), "{m}");
    if common::remote::which("promtool").is_some() {
        common::promtool_check(&m);
    }
    // --status names the failed run and is not clean.
    let out = Command::new(BIN)
        .current_dir(root.path())
        .args(["--config", "monitoring-config.yaml", "--status"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("the last drift run failed in plan"), "{text}");
    assert!(!text.contains(CANARY), "{text}");
    assert_ne!(out.status.code(), Some(0), "{text}");
    // So does the one-shot report of that state: an error, exit 1, never "clean".
    let out = Command::new(BIN)
        .current_dir(root.path())
        .args([
            "--config",
            "monitoring-config.yaml",
            "--state-file",
            "work/terraform.tfstate",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("drift_run") && text.contains("the last drift run failed in plan"),
        "{text}"
    );
    assert!(!text.contains(CANARY), "{text}");
    assert_eq!(out.status.code(), Some(1), "{text}");

    // A state whose first run fails: no report, so no drift series at all.
    std::fs::remove_file(work.join("drift.json")).unwrap();
    let (code, _) = drift(
        &p,
        root.path(),
        &["--config", "monitoring-config.yaml", "--once", "--force"],
        &bad,
    );
    assert_eq!(code, 1);
    assert!(!work.join("drift.json").exists());
    let m = scrape_root(root.path()).await;
    assert_eq!(metric(&m, "terraform_state_drift"), None, "{m}");
    assert_eq!(metric(&m, "terraform_drift_run_success"), Some(0.0), "{m}");
}

/// A fake `binary:` that starts a grandchild and hangs: the timeout kills
/// the whole process group, grandchild included.
#[test]
fn drift_runner_timeout_kills_the_process_group() {
    let root = tempfile::tempdir().unwrap();
    let work = root.path().join("work");
    std::fs::create_dir_all(work.join(".terraform")).unwrap();
    let pidfile = root.path().join("grandchild.pid");
    let script = fake_binary(
        root.path(),
        "slow-terraform",
        &format!(
            "#!/bin/sh\nsleep 300 &\necho $! > {}\nsleep 300\n",
            pidfile.display()
        ),
    );
    runner_config(root.path(), "[work]", &script, "      timeout: 1s\n");
    let out = Command::new(BIN)
        .current_dir(root.path())
        .args(["drift", "--config", "monitoring-config.yaml", "--once"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = match status::read_beside(&work.join("drift.json")) {
        Some(status::RunInfo::Read(s)) => s,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (s.phase.as_deref(), s.reason.as_deref()),
        (Some("plan"), Some("timeout"))
    );
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_for("the grandchild to be gone", 30, || {
        let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Gone, or a zombie waiting for its new parent to reap it.
        (st.is_empty() || st.contains(") Z ")).then_some(())
    });
    assert!(!work.join("drift.json").exists());
}

/// A directory whose lock another runner holds is skipped: nothing run,
/// nothing written.
#[test]
fn drift_runner_skips_a_locked_directory() {
    let root = tempfile::tempdir().unwrap();
    let work = root.path().join("work");
    std::fs::create_dir_all(work.join(".terraform")).unwrap();
    let marker = root.path().join("ran");
    let script = fake_binary(
        root.path(),
        "fake-terraform",
        &format!("#!/bin/sh\ntouch {}\nexit 1\n", marker.display()),
    );
    runner_config(root.path(), "[work]", &script, "");
    let run = || {
        Command::new(BIN)
            .current_dir(root.path())
            .args([
                "drift",
                "--config",
                "monitoring-config.yaml",
                "--once",
                "--force",
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let held = lock::try_lock(&work).unwrap();
    let out = run();
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    // Skipped, and nothing recorded vouches for it: not "no drift" (exit 1).
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("another drift runner"), "{text}");
    assert!(!marker.exists(), "the binary ran on a locked directory");
    assert!(status::read_beside(&work.join("drift.json")).is_none());
    // Released: the next runner works (and fails: exit 1, status written).
    drop(held);
    let out = run();
    assert_eq!(out.status.code(), Some(1));
    assert!(marker.exists());
    assert!(status::read_beside(&work.join("drift.json")).is_some());
}

/// At most `concurrency` directories at once, oldest report first.
#[test]
fn drift_runner_bounds_concurrency_and_runs_the_oldest_first() {
    let root = tempfile::tempdir().unwrap();
    let log = root.path().join("log");
    // Each plan records "start" and "end" under flock; the test reads the
    // largest number of overlapping runs from the log.
    let script = fake_binary(root.path(), "fake-terraform", &format!(
            "#!/bin/sh\ncase \"$1\" in plan) ;; *) exit 1;; esac\nflock {log} sh -c 'echo start $PWD >> {log}'\nsleep 0.3\nflock {log} sh -c 'echo end $PWD >> {log}'\nexit 1\n",
            log = log.display()
        ));
    let mut jobs = Vec::new();
    for (i, age) in [(0, 7200u64), (1, 0), (2, 36000), (3, 3700), (4, 20000)] {
        let dir = root.path().join(format!("d{i}"));
        std::fs::create_dir_all(dir.join(".terraform")).unwrap();
        let report = dir.join("drift.json");
        if age > 0 {
            let t = std::time::SystemTime::now() - Duration::from_secs(age);
            let s = status::RunStatus {
                format: 1,
                success: true,
                phase: None,
                reason: None,
                exit_code: Some(0),
                started_at: status::unix_f64(t),
                finished_at: status::unix_f64(t),
                duration_seconds: 0.0,
                drift: Some(0),
                pending: Some(0),
                stderr_excerpt: vec![],
            };
            status::write(&report, &s).unwrap();
        }
        jobs.push(dr::run::Job { dir, report });
    }
    let cfg = dr::DriftRunnerConfig {
        binary: script.display().to_string(),
        concurrency: 1,
        ..Default::default()
    };
    // d1 never ran: first; then the oldest; d3 (1h 1m) is due, nothing is fresh here.
    let order: Vec<String> = dr::due(
        &jobs,
        Duration::from_secs(3600),
        std::time::SystemTime::now(),
        false,
    )
    .iter()
    .map(|j| j.dir.file_name().unwrap().to_string_lossy().to_string())
    .collect();
    assert_eq!(order, ["d1", "d2", "d4", "d0", "d3"]);
    let fresh = dr::due(
        &jobs,
        Duration::from_secs(4000),
        std::time::SystemTime::now(),
        false,
    );
    assert!(
        !fresh.iter().any(|j| j.dir.ends_with("d3")),
        "d3 ran 3700 s ago: fresh for every=4000s"
    );

    // Concurrency 1: strictly in that order, never overlapping.
    let todo = dr::due(
        &jobs,
        Duration::from_secs(3600),
        std::time::SystemTime::now(),
        false,
    );
    let results = dr::run_all(todo, &cfg);
    assert_eq!(results.len(), 5);
    let text = std::fs::read_to_string(&log).unwrap();
    let starts: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("start "))
        .map(|d| d.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(starts, ["d1", "d2", "d4", "d0", "d3"], "{text}");
    assert_eq!(max_overlap(&text), 1, "{text}");

    // Concurrency 2: never more than two at once.
    std::fs::remove_file(&log).unwrap();
    let cfg = dr::DriftRunnerConfig {
        concurrency: 2,
        ..cfg
    };
    let results = dr::run_all(jobs.clone(), &cfg);
    assert_eq!(results.len(), 5);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(max_overlap(&text) <= 2, "{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with("start")).count(), 5);
}

fn max_overlap(log: &str) -> usize {
    let (mut now, mut max) = (0usize, 0usize);
    for l in log.lines() {
        if l.starts_with("start") {
            now += 1;
            max = max.max(now);
        } else if l.starts_with("end") {
            now = now.saturating_sub(1);
        }
    }
    max
}

/// Without `--once` the runner loops every `every` until SIGTERM (exit 0).
#[test]
fn drift_runner_loops_until_sigterm() {
    let root = tempfile::tempdir().unwrap();
    let work = root.path().join("work");
    std::fs::create_dir_all(work.join(".terraform")).unwrap();
    let log = root.path().join("log");
    let script = fake_binary(
        root.path(),
        "fake-terraform",
        &format!("#!/bin/sh\necho \"$1\" >> {}\nexit 1\n", log.display()),
    );
    runner_config(root.path(), "[work]", &script, "      every: 1s\n");
    let mut child = Command::new(BIN)
        .current_dir(root.path())
        .args(["drift", "--config", "monitoring-config.yaml"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("two rounds of the loop", 60, || {
        let n = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count();
        (n >= 2).then_some(())
    });
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let code = wait_for("the loop to stop on SIGTERM", 60, || {
        child.try_wait().ok().flatten()
    });
    assert_eq!(code.code(), Some(0));
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .all(|l| l == "plan"));
}

/// The shipped systemd unit and timer pass `systemd-analyze verify` (with
/// ExecStart pointed at the built binary) without a word of complaint.
#[test]
fn drift_runner_systemd_units_verify() {
    let Some(analyze) = common::remote::which("systemd-analyze") else {
        eprintln!("SKIP: systemd-analyze is not installed (apt-get install -y systemd)");
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let src = repo().join("deploy/systemd");
    let unit = std::fs::read_to_string(src.join("homelab-monitor-drift.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/homelab-monitor drift --config /etc/homelab-monitor/monitoring-config.yaml --once"));
    assert!(unit.contains("SuccessExitStatus=2"));
    std::fs::write(
        t.path().join("homelab-monitor-drift.service"),
        unit.replace("/usr/local/bin/homelab-monitor", BIN),
    )
    .unwrap();
    std::fs::copy(
        src.join("homelab-monitor-drift.timer"),
        t.path().join("homelab-monitor-drift.timer"),
    )
    .unwrap();
    let out = Command::new(analyze)
        .arg("verify")
        .arg(t.path().join("homelab-monitor-drift.service"))
        .arg(t.path().join("homelab-monitor-drift.timer"))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.trim().is_empty(), "{text}");
}

/// The issue's proof end to end: real drift written by `drift --once`, read
/// by the running exporter, scraped by a real Prometheus whose copy of the
/// seed's TerraformStateDrift rule (`for` shortened to 1s) fires; reverting
/// the edit and re-running the runner resolves it.
#[test]
fn drift_runner_report_fires_the_seed_rule_in_a_real_prometheus() {
    let Some(p) = provider() else { return };
    let Some(prometheus) = common::remote::which("prometheus") else {
        eprintln!("SKIP: prometheus is not installed (apt-get install -y prometheus)");
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let work = root.path().join("work");
    project(&work, "");
    tf(&p, &work, &["init", "-input=false"]);
    tf(&p, &work, &["apply", "-auto-approve", "-input=false"]);
    std::fs::write(
        root.path().join("monitoring-config.yaml"),
        CONFIG.replace(
            "    state_files:",
            "    check_interval: 1s\n    state_files:",
        ),
    )
    .unwrap();
    std::fs::write(work.join("a.txt"), "edited by hand").unwrap();
    let (code, out) = drift(
        &p,
        root.path(),
        &["--config", "monitoring-config.yaml", "--once"],
        &[],
    );
    assert_eq!(code, 2, "{out}");

    let exporter = common::Exporter::start(root.path(), &["--config", "monitoring-config.yaml"]);
    // A test copy of the seed's rule, verbatim but for `for`.
    let rules_text =
        std::fs::read_to_string(repo().join("alerts/homelab-monitor.rules.yml")).unwrap();
    let seed = "  - alert: TerraformStateDrift\n    expr: terraform_state_drift > 0\n    for: 5m\n";
    assert!(rules_text.contains(seed));
    let prom = tempfile::tempdir().unwrap();
    let rules = prom.path().join("rules.yml");
    std::fs::write(
        &rules,
        format!(
            "groups:\n- name: homelab.rules\n  rules:\n{}",
            seed.replace("for: 5m", "for: 1s")
        ),
    )
    .unwrap();
    std::fs::write(
        prom.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: homelab-monitor\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            rules.display(),
            exporter.port
        ),
    )
    .unwrap();
    let port = common::free_port();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _prom = Kill(
        Command::new(prometheus)
            .arg(format!(
                "--config.file={}",
                prom.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                prom.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let firing = |want: bool| {
        let r = common::get(port, "/api/v1/alerts");
        let start = r.body.find('{').unwrap_or(0);
        let end = r.body.rfind('}').map(|i| i + 1).unwrap_or(r.body.len());
        let v: serde_json::Value = serde_json::from_str(&r.body[start..end]).ok()?;
        let on = v["data"]["alerts"].as_array()?.iter().any(|a| {
            a["labels"]["alertname"] == "TerraformStateDrift"
                && a["labels"]["state_file"] == "work/terraform.tfstate"
                && a["state"] == "firing"
        });
        (on == want).then_some(())
    };
    wait_for("prometheus ready", 90, || {
        common::http(port, "GET", "/-/ready", "")
            .ok()
            .filter(|r| r.status == 200)
    });
    wait_for(
        "TerraformStateDrift firing for the drifted state",
        120,
        || firing(true),
    );

    // Reverted and re-planned: the exporter reads drift 0, the alert resolves.
    std::fs::write(work.join("a.txt"), "one").unwrap();
    let (code, out) = drift(
        &p,
        root.path(),
        &["--config", "monitoring-config.yaml", "--once", "--force"],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    wait_for("TerraformStateDrift resolved", 120, || firing(false));
    let m = exporter.refreshed_metrics();
    assert_eq!(metric(&m, "terraform_state_drift"), Some(0.0), "{m}");
    assert_eq!(metric(&m, "terraform_drift_run_success"), Some(1.0), "{m}");
}

/// The exact command lines and environment the runner gives Terraform: init
/// only when `.terraform/` is missing, never a state migration; the plan's
/// flags from the config; the config's `env` and the automation variables.
#[test]
fn drift_runner_command_lines_follow_the_config() {
    let root = tempfile::tempdir().unwrap();
    let work = root.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let log = root.path().join("log");
    let script = fake_binary(root.path(), "fake-terraform", &format!(
            "#!/bin/sh\necho \"$* | $TF_IN_AUTOMATION $TF_INPUT $EXTRA_SETTING\" >> {log}\ncase \"$1\" in init) mkdir -p .terraform;; esac\nexit 1\n",
            log = log.display()
        ));
    let cfg = |init_ok: bool| {
        format!(
            "custom_monitors:\n  terraform_state:\n    drift_runner:\n      working_dirs: [work]\n      binary: {}\n      lock: false\n      refresh_only: {}\n      plan_args: [-var-file=prod.tfvars]\n      env: {{EXTRA_SETTING: on}}\n",
            script.display(),
            init_ok
        )
    };
    let run = |yaml: String| {
        std::fs::write(root.path().join("monitoring-config.yaml"), yaml).unwrap();
        Command::new(BIN)
            .current_dir(root.path())
            .args([
                "drift",
                "--config",
                "monitoring-config.yaml",
                "--once",
                "--force",
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    // No .terraform/: init runs first (and "fails": exit 1, phase init).
    let out = run(cfg(true));
    assert_eq!(out.status.code(), Some(1));
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text, "init -input=false -no-color | 1 0 on\n");
    // Initialised now: the plan, with the config's flags, as a normal plan.
    std::fs::remove_file(&log).unwrap();
    let out = run(cfg(false));
    assert_eq!(out.status.code(), Some(1));
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text.lines().next().unwrap();
    assert!(
        line.starts_with("plan -input=false -no-color -lock=false -out="),
        "{line}"
    );
    assert!(
        line.ends_with(".tfplan -var-file=prod.tfvars | 1 0 on"),
        "{line}"
    );
    assert_eq!(text.lines().count(), 1, "{text}");
    let s = match status::read_beside(&work.join("drift.json")) {
        Some(status::RunInfo::Read(s)) => s,
        other => panic!("{other:?}"),
    };
    assert_eq!(s.phase.as_deref(), Some("plan"));
    // The private plan file is gone after the run.
    let plan = line
        .split("-out=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    assert!(!Path::new(plan).exists() && !Path::new(plan).parent().unwrap().exists());
}

/// `refresh_only: false`: a normal plan, whose pending changes the monitor exports.
#[tokio::test]
async fn drift_runner_normal_plan_reports_pending_changes() {
    let Some(p) = provider() else { return };
    let root = tempfile::tempdir().unwrap();
    let work = root.path().join("work");
    project(&work, "");
    tf(&p, &work, &["init", "-input=false"]);
    tf(&p, &work, &["apply", "-auto-approve", "-input=false"]);
    let main = std::fs::read_to_string(work.join("main.tf")).unwrap();
    std::fs::write(work.join("main.tf"), main.replace("\"two\"", "\"three\"")).unwrap();
    let yaml = CONFIG.replace(
        "      every: 1h",
        "      every: 1h\n      refresh_only: false",
    );
    std::fs::write(root.path().join("monitoring-config.yaml"), &yaml).unwrap();
    let (code, out) = drift(
        &p,
        root.path(),
        &["--config", "monitoring-config.yaml", "--once"],
        &[],
    );
    assert_eq!(code, 2, "{out}");
    let s = run_status(root.path());
    assert_eq!((s.drift, s.pending), (Some(0), Some(1)), "{s:?}");
    let m = scrape(&monitor(root.path(), &yaml)).await;
    assert_eq!(
        series(&m, "terraform_state_pending_changes{state_file=\"work/terraform.tfstate\",action=\"update\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(metric(&m, "terraform_state_drift"), Some(0.0), "{m}");
}

/// A remote state's run status is read from beside its report under
/// `remote.reports_dir`, exported with the remote state's label.
#[tokio::test]
async fn drift_runner_status_of_a_remote_state_is_exported() {
    let state = br#"{"version":4,"terraform_version":"1.11.4","serial":3,"lineage":"l-1","outputs":{},"resources":[]}"#.to_vec();
    let (srv, _) = common::remote::etag_fleet_server(state, Duration::ZERO);
    let root = tempfile::tempdir().unwrap();
    let yaml = format!(
        "custom_monitors:\n  terraform_state:\n    remote:\n      reports_dir: reports\n    backends:\n      - {{type: http, address: \"{}\", auth: none}}\n",
        srv.url("/state/prod")
    );
    std::fs::create_dir_all(root.path().join("reports")).unwrap();
    let m = scrape(&monitor(root.path(), &yaml)).await;
    let label = m
        .lines()
        .find_map(|l| l.strip_prefix("terraform_state_up{state_file=\""))
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("{m}"))
        .to_string();
    assert!(
        !m.contains("terraform_drift_run_success"),
        "no runner yet: {m}"
    );
    let folder = homelab_monitor::monitors::terraform::remote::reports_folder(&label);
    let report = root.path().join("reports").join(folder).join("drift.json");
    std::fs::create_dir_all(report.parent().unwrap()).unwrap();
    let s = status::RunStatus {
        format: 1,
        success: false,
        phase: Some("init".into()),
        reason: Some("timeout".into()),
        exit_code: None,
        started_at: 1.0e9,
        finished_at: 1.0e9 + 5.0,
        duration_seconds: 5.0,
        drift: None,
        pending: None,
        stderr_excerpt: vec![],
    };
    status::write(&report, &s).unwrap();
    let m = scrape(&monitor(root.path(), &yaml)).await;
    assert_eq!(
        series(
            &m,
            &format!("terraform_drift_run_success{{state_file=\"{label}\"}}")
        ),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        series(&m, &format!("terraform_drift_run_error_info{{state_file=\"{label}\",phase=\"init\",reason=\"timeout\"}}")),
        Some(1.0),
        "{m}"
    );
}

/// One entry that cannot be planned (missing folder, remote backend without
/// `report:`) is an error (exit 1) but does not stop the others.
#[test]
fn drift_runner_bad_entries_do_not_stop_the_others() {
    let root = tempfile::tempdir().unwrap();
    for d in ["work", "remote"] {
        std::fs::create_dir_all(root.path().join(d).join(".terraform")).unwrap();
    }
    std::fs::write(
        root.path().join("remote/.terraform/terraform.tfstate"),
        r#"{"version":3,"backend":{"type":"s3","config":{"bucket":"b","key":"k"}}}"#,
    )
    .unwrap();
    let marker = root.path().join("ran");
    let script = fake_binary(
        root.path(),
        "fake-terraform",
        &format!("#!/bin/sh\necho \"$PWD\" >> {}\nexit 1\n", marker.display()),
    );
    runner_config(root.path(), "[missing, remote, work]", &script, "");
    let out = Command::new(BIN)
        .current_dir(root.path())
        .args(["drift", "--config", "monitoring-config.yaml", "--once"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("missing is not a directory"), "{err}");
    assert!(
        err.contains(
            "uses the s3 backend and custom_monitors.terraform_state.remote.reports_dir is not set"
        ),
        "{err}"
    );
    let ran = std::fs::read_to_string(&marker).unwrap();
    assert_eq!(ran.lines().count(), 1, "{ran}");
    assert!(ran.trim_end().ends_with("/work"), "{ran}");
}

/// SIGTERM while a plan runs: the runner stops its children's process groups
/// (Terraform releases its state lock on SIGTERM), records the run as failed
/// and exits (0 for the loop).
#[test]
fn drift_runner_sigterm_stops_running_plans() {
    let root = tempfile::tempdir().unwrap();
    let work = root.path().join("work");
    std::fs::create_dir_all(work.join(".terraform")).unwrap();
    let pidfile = root.path().join("grandchild.pid");
    let script = fake_binary(
        root.path(),
        "slow-terraform",
        &format!(
            "#!/bin/sh\nsleep 300 &\necho $! > {}\nsleep 300\n",
            pidfile.display()
        ),
    );
    runner_config(root.path(), "[work]", &script, "      timeout: 1h\n");
    let mut child = Command::new(BIN)
        .current_dir(root.path())
        .args(["drift", "--config", "monitoring-config.yaml"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid: i32 = wait_for("the plan to start", 60, || {
        std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    });
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let code = wait_for("the runner to stop", 60, || child.try_wait().ok().flatten());
    assert_eq!(code.code(), Some(0));
    wait_for("the plan's whole group to be gone", 30, || {
        let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        (st.is_empty() || st.contains(") Z ")).then_some(())
    });
    let s = match status::read_beside(&work.join("drift.json")) {
        Some(status::RunInfo::Read(s)) => s,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (s.phase.as_deref(), s.reason.as_deref(), s.success),
        (Some("plan"), Some("killed"), false)
    );
}

/// A working directory whose `.terraform/terraform.tfstate` names a remote
/// (http) backend, listed without `report:`: the runner writes its report
/// under `remote.reports_dir`, in the folder of the state's label, and the
/// exporter reading that backend from the same working directory finds it
/// (same label, same folder). Without `remote.reports_dir` the directory
/// fails (exit 1, what to set) and nothing is written beside a local state
/// that does not exist.
#[tokio::test]
async fn drift_runner_writes_a_remote_states_report_where_the_exporter_reads_it() {
    let state = br#"{"version":4,"terraform_version":"1.11.4","serial":3,"lineage":"l-1","outputs":{},"resources":[]}"#.to_vec();
    let (srv, _) = common::remote::etag_fleet_server(state, Duration::ZERO);
    let root = tempfile::tempdir().unwrap();
    let work = root.path().join("work");
    std::fs::create_dir_all(work.join(".terraform")).unwrap();
    std::fs::write(
        work.join(".terraform/terraform.tfstate"),
        format!(
            r#"{{"version":3,"backend":{{"type":"http","config":{{"address":"{}"}},"hash":1}}}}"#,
            srv.url("/state/prod")
        ),
    )
    .unwrap();
    let plan = root.path().join("plan.json");
    std::fs::write(
        &plan,
        r#"{"format_version":"1.2","terraform_version":"1.11.4","resource_drift":[{"address":"hmtest_file.a","mode":"managed","type":"hmtest_file","name":"a","change":{"actions":["update"],"before":{},"after":{}}}],"resource_changes":[]}"#,
    )
    .unwrap();
    let fake = fake_binary(
        root.path(),
        "fake-terraform",
        &format!(
            "#!/bin/sh\ncase \"$1\" in show) cat {};; esac\nexit 0\n",
            plan.display()
        ),
    );
    let run = |yaml: &str| {
        std::fs::write(root.path().join("monitoring-config.yaml"), yaml).unwrap();
        let out = Command::new(BIN)
            .current_dir(root.path())
            .args(["drift", "--config", "monitoring-config.yaml", "--once"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    // No remote.reports_dir: an error that says what to set, never a clean exit.
    let runner = format!(
        "    drift_runner:\n      working_dirs: [work]\n      binary: {}\n",
        fake.display()
    );
    let (code, err) = run(&format!(
        "custom_monitors:\n  terraform_state:\n    working_dirs: [work]\n{runner}"
    ));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("uses the http backend"), "{err}");
    assert!(err.contains("remote.reports_dir is not set"), "{err}");
    assert!(err.contains("phase config"), "{err}");
    assert!(!work.join("drift.json").exists());
    assert!(!work.join("drift.json.status.json").exists());
    // With it: the report lands where the exporter reads it.
    let yaml = format!(
        "custom_monitors:\n  terraform_state:\n    working_dirs: [work]\n    remote:\n      reports_dir: reports\n{runner}"
    );
    let (code, err) = run(&yaml);
    assert_eq!(code, Some(2), "drift found: {err}");
    assert!(!work.join("drift.json").exists());
    let m = scrape(&monitor(root.path(), &yaml)).await;
    let label = homelab_monitor::remote::working_dir_state_label(
        &work,
        root.path(),
        "default",
        &homelab_monitor::remote::Env::default(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(label, srv.url("/state/prod"));
    let folder = homelab_monitor::monitors::terraform::remote::reports_folder(&label);
    assert!(
        root.path()
            .join("reports")
            .join(&folder)
            .join("drift.json")
            .is_file(),
        "report under reports/{folder}"
    );
    let one = |name: &str| series(&m, &format!("{name}{{state_file=\"{label}\"}}"));
    assert_eq!(one("terraform_state_up"), Some(1.0), "{m}");
    assert_eq!(one("terraform_state_drift"), Some(1.0), "{m}");
    assert_eq!(one("terraform_drift_run_success"), Some(1.0), "{m}");
}
