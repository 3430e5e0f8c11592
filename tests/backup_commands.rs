//! Backup sources without changing the backup job (issue 20): opt-in
//! `command:` sources that run `restic snapshots --json --no-lock` / `borg
//! list --json --bypass-lock` themselves, and glob paths with one set per
//! file. Real restic and borg repositories made in temp folders (apt
//! packages `restic`, `borgbackup`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

mod common;

use homelab_monitor::core::config::{
    parse, BackupConfig, BackupFormat, BackupSourceConfig, HumanDuration, TimeZoneName,
};
use homelab_monitor::core::monitor::{CollectContext, Monitor};
use homelab_monitor::core::snapshot::{Health, Snapshot};
use homelab_monitor::monitors::backups::{BackupCommand, BackupMonitor};

fn tool(name: &str, package: &str) -> PathBuf {
    common::tool(name, package)
}

fn run(cmd: &mut Command) -> Vec<u8> {
    common::run_ok(&format!("{cmd:?}"), cmd).stdout
}

fn config(sources: Vec<BackupSourceConfig>) -> BackupConfig {
    BackupConfig {
        retention_days: 30,
        sources,
        allow_commands: true,
        // Every collection re-reads (re-runs) every source.
        check_interval: HumanDuration(Duration::ZERO),
        timeout: HumanDuration(Duration::from_secs(60)),
        ..BackupConfig::default()
    }
}

async fn collect(m: &BackupMonitor) -> Snapshot {
    m.collect_complete(CollectContext {
        now: SystemTime::now(),
    })
    .await
    .expect("collection never fails as a whole")
}

fn v(s: &Snapshot, metric: &str, source: &str) -> Option<f64> {
    s.value(metric, &[("source", source)])
}

fn set_v(s: &Snapshot, metric: &str, source: &str, set: &str) -> Option<f64> {
    s.value(metric, &[("source", source), ("set", set)])
}

/// Every `backup_*` sample of `source`, without the source label, sorted.
fn series_of(s: &Snapshot, source: &str) -> Vec<String> {
    let mut out = Vec::new();
    for f in &s.families {
        if !f.def.name.starts_with("backup_") {
            continue;
        }
        for x in &f.samples {
            if !x.labels().any(|(k, v)| k == "source" && v == source) {
                continue;
            }
            let labels: Vec<String> = x
                .labels()
                .filter(|(k, _)| *k != "source")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            out.push(format!(
                "{}{{{}}} {}",
                f.def.name,
                labels.join(","),
                x.value
            ));
        }
    }
    out.sort();
    out
}

fn target<'a>(s: &'a Snapshot, source: &str) -> &'a homelab_monitor::core::snapshot::TargetStatus {
    s.targets
        .iter()
        .find(|t| t.target == source)
        .expect("a target status per source")
}

fn command(argv: &[&str]) -> BackupCommand {
    BackupCommand {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        timeout: None,
        env: Default::default(),
        env_files: Default::default(),
    }
}

fn cmd_source(name: &str, format: BackupFormat, c: BackupCommand) -> BackupSourceConfig {
    let mut s = BackupSourceConfig::new(name, format, "");
    s.command = Some(c);
    s
}

fn write_data(dir: &Path, files: &[(&str, usize)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, size) in files {
        let content: Vec<u8> = (0..*size).map(|i| (i * 7 + name.len()) as u8).collect();
        std::fs::write(dir.join(name), content).unwrap();
    }
}

const RESTIC_PASSWORD: &str = "test-only-restic-password";

fn restic(repo: &Path, cache: &Path) -> Command {
    let mut c = Command::new(tool("restic", "restic"));
    c.arg("--repo")
        .arg(repo)
        .arg("--cache-dir")
        .arg(cache)
        .env("RESTIC_PASSWORD", RESTIC_PASSWORD)
        .env_remove("RESTIC_REPOSITORY");
    c
}

/// A restic repository with backups of two hosts (two of `web`, one of `db`).
fn restic_repo(dir: &Path) -> (PathBuf, PathBuf) {
    let (repo, cache, data) = (dir.join("repo"), dir.join("cache"), dir.join("data"));
    run(restic(&repo, &cache).arg("init"));
    write_data(&data, &[("a.bin", 1000), ("b.bin", 2000)]);
    run(restic(&repo, &cache)
        .args(["backup", "--host", "web"])
        .arg(&data));
    write_data(&data, &[("c.bin", 3000)]);
    run(restic(&repo, &cache)
        .args(["backup", "--host", "db"])
        .arg(&data));
    run(restic(&repo, &cache)
        .args(["backup", "--host", "web"])
        .arg(&data));
    (repo, cache)
}

/// The command source gives exactly the series the file source gives when
/// fed the same `restic snapshots --json --no-lock` output; the password
/// comes from `env_files`, the repository from `env`.
#[tokio::test]
async fn restic_command_source_matches_the_file_source() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, cache) = restic_repo(dir.path());
    std::fs::write(
        dir.path().join("snapshots.json"),
        run(restic(&repo, &cache).args(["snapshots", "--json", "--no-lock"])),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("restic-password"),
        format!("{RESTIC_PASSWORD}\n"),
    )
    .unwrap();
    let restic_bin = tool("restic", "restic");
    let mut c = command(&[
        restic_bin.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
        "snapshots",
        "--json",
        "--no-lock",
    ]);
    c.env
        .insert("RESTIC_REPOSITORY".into(), repo.display().to_string());
    c.env_files
        .insert("RESTIC_PASSWORD".into(), "restic-password".into());
    let mut file = BackupSourceConfig::new("file", BackupFormat::Restic, "snapshots.json");
    let mut cmd = cmd_source("cmd", BackupFormat::Restic, c);
    for s in [&mut file, &mut cmd] {
        s.max_age = Some(HumanDuration(Duration::from_secs(26 * 3600)));
    }
    let m = BackupMonitor::new(config(vec![file, cmd]), dir.path().to_path_buf());
    let s = collect(&m).await;
    assert_eq!(
        v(&s, "backup_source_up", "cmd"),
        Some(1.0),
        "{:?}",
        target(&s, "cmd")
    );
    assert_eq!(v(&s, "backup_snapshots", "cmd"), Some(3.0));
    assert_eq!(v(&s, "backup_sets", "cmd"), Some(2.0));
    let want = series_of(&s, "file");
    assert!(want.len() > 10, "{want:?}");
    assert_eq!(series_of(&s, "cmd"), want);
    assert_eq!(target(&s, "cmd").health, target(&s, "file").health);
    assert!(
        m.describe().contains("cmd (restic command ") && !m.describe().contains("--cache-dir"),
        "only the program is shown: {}",
        m.describe()
    );
}

fn borg(base: &Path, repo: &Path) -> Command {
    let mut c = Command::new(tool("borg", "borgbackup"));
    c.env("BORG_PASSPHRASE", "test-only-passphrase")
        .env("BORG_REPO", repo)
        .env("BORG_BASE_DIR", base)
        .env("TZ", "UTC");
    c
}

#[tokio::test]
async fn borg_command_source_matches_the_file_source() {
    let dir = tempfile::tempdir().unwrap();
    let (base, repo, data) = (
        dir.path().join("borg-base"),
        dir.path().join("repo"),
        dir.path().join("data"),
    );
    run(borg(&base, &repo).args(["init", "--encryption=repokey"]));
    write_data(&data, &[("a.bin", 1000)]);
    run(borg(&base, &repo)
        .current_dir(&data)
        .args(["create", "::web-1", "."]));
    run(borg(&base, &repo)
        .current_dir(&data)
        .args(["create", "::web-2", "."]));
    std::fs::write(
        dir.path().join("list.json"),
        run(borg(&base, &repo).args(["list", "--json", "--bypass-lock"])),
    )
    .unwrap();
    std::fs::write(dir.path().join("passphrase"), "test-only-passphrase").unwrap();
    let borg_bin = tool("borg", "borgbackup");
    let mut c = command(&[
        borg_bin.to_str().unwrap(),
        "list",
        "--json",
        "--bypass-lock",
    ]);
    for (k, v) in [
        ("BORG_REPO", repo.display().to_string()),
        ("BORG_BASE_DIR", base.display().to_string()),
        ("TZ", "UTC".to_string()),
    ] {
        c.env.insert(k.into(), v);
    }
    c.env_files
        .insert("BORG_PASSPHRASE".into(), "passphrase".into());
    let mut file = BackupSourceConfig::new("file", BackupFormat::Borg, "list.json");
    let mut cmd = cmd_source("cmd", BackupFormat::Borg, c);
    for s in [&mut file, &mut cmd] {
        s.timezone = Some(TimeZoneName("UTC".into()));
    }
    let m = BackupMonitor::new(config(vec![file, cmd]), dir.path().to_path_buf());
    let s = collect(&m).await;
    assert_eq!(
        v(&s, "backup_source_up", "cmd"),
        Some(1.0),
        "{:?}",
        target(&s, "cmd")
    );
    assert_eq!(v(&s, "backup_snapshots", "cmd"), Some(2.0));
    let want = series_of(&s, "file");
    assert!(want.len() > 5, "{want:?}");
    assert_eq!(series_of(&s, "cmd"), want);
}

/// A failing command (exit != 0, bad JSON) makes the source `up 0` with a
/// reason and serves the last good values marked stale, never fresh ones.
#[tokio::test]
async fn failing_commands_are_up_0_with_a_reason_and_stale_values() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, cache) = restic_repo(dir.path());
    std::fs::write(
        dir.path().join("snapshots.json"),
        run(restic(&repo, &cache).args(["snapshots", "--json", "--no-lock"])),
    )
    .unwrap();
    // The "tool": prints the file, or fails as `mode` says.
    let script = "case $(cat mode) in ok) cat snapshots.json;; fail) echo 'Fatal: unable to open repository' >&2; exit 1;; bad) echo '[{\"time\":';; esac";
    let src = cmd_source("cmd", BackupFormat::Restic, command(&["sh", "-c", script]));
    let m = BackupMonitor::new(config(vec![src]), dir.path().to_path_buf());
    std::fs::write(dir.path().join("mode"), "ok").unwrap();
    let s = collect(&m).await;
    assert_eq!(v(&s, "backup_source_up", "cmd"), Some(1.0));
    let last = v(&s, "backup_last_success_timestamp_seconds", "cmd").unwrap();
    assert!(last > 0.0);
    assert!(!target(&s, "cmd").stale);

    std::fs::write(dir.path().join("mode"), "fail").unwrap();
    let s = collect(&m).await;
    assert_eq!(v(&s, "backup_source_up", "cmd"), Some(0.0));
    let t = target(&s, "cmd");
    assert_eq!(t.health, Health::Error);
    assert!(t.stale, "{t:?}");
    let e = t.error.as_deref().unwrap_or_default();
    assert!(
        e.contains("command sh exited with exit code 1")
            && e.contains("stderr: Fatal: unable to open repository"),
        "{e}"
    );
    assert_eq!(
        v(&s, "backup_last_success_timestamp_seconds", "cmd"),
        Some(last)
    );
    assert_eq!(
        s.value(
            "homelab_monitor_target_stale",
            &[("monitor", "backup_validation"), ("target", "cmd")]
        ),
        Some(1.0)
    );

    std::fs::write(dir.path().join("mode"), "bad").unwrap();
    let s = collect(&m).await;
    assert_eq!(v(&s, "backup_source_up", "cmd"), Some(0.0));
    let t = target(&s, "cmd");
    assert!(t.stale);
    let e = t.error.as_deref().unwrap_or_default();
    assert!(
        e.contains("output of `sh`") && e.contains("truncated"),
        "{e}"
    );

    // Without any good run: up 0 and no value that could look fresh.
    let src = cmd_source("never", BackupFormat::Restic, command(&["false"]));
    let m = BackupMonitor::new(config(vec![src]), dir.path().to_path_buf());
    let s = collect(&m).await;
    assert_eq!(v(&s, "backup_source_up", "never"), Some(0.0));
    assert_eq!(
        v(&s, "backup_last_success_timestamp_seconds", "never"),
        None
    );
    assert_eq!(target(&s, "never").health, Health::Error);

    // A program that is not there: the message says what to do.
    let src = cmd_source(
        "missing",
        BackupFormat::Borg,
        command(&["/nonexistent/borg"]),
    );
    let m = BackupMonitor::new(config(vec![src]), dir.path().to_path_buf());
    let s = collect(&m).await;
    assert_eq!(v(&s, "backup_source_up", "missing"), Some(0.0));
    let e = target(&s, "missing").error.clone().unwrap_or_default();
    assert!(
        e.contains("command /nonexistent/borg cannot be run: not found (install it"),
        "{e}"
    );
}

/// The process `pid` was killed: it is gone, or a zombie, once the kernel
/// has torn it down (polled; a process still sleeping fails).
fn assert_killed(pid: &str) {
    let stat = || std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let alive = |st: &str| {
        st.rsplit(')')
            .next()
            .and_then(|s| s.split_whitespace().next())
            .is_some_and(|s| s != "Z" && s != "X")
    };
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while alive(&stat()) && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !alive(&stat()),
        "the command's child {pid} survived: {}",
        stat()
    );
}

/// A command past its timeout is killed with its whole process group and
/// reported as a timeout.
#[tokio::test]
async fn command_timeout_kills_the_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = command(&["sh", "-c", "sleep 300 & echo $! > child.pid; wait"]);
    c.timeout = Some(HumanDuration(Duration::from_secs(1)));
    let m = BackupMonitor::new(
        config(vec![cmd_source("slow", BackupFormat::Borg, c)]),
        dir.path().to_path_buf(),
    );
    let s = collect(&m).await;
    assert_eq!(v(&s, "backup_source_up", "slow"), Some(0.0));
    let e = target(&s, "slow").error.clone().unwrap_or_default();
    assert!(e.contains("did not finish within 1s and was killed"), "{e}");
    let pid = std::fs::read_to_string(dir.path().join("child.pid")).unwrap();
    assert_killed(pid.trim());
}

/// A slow command is never started twice: collections while it runs serve
/// what they have (pending; later the last good values) without waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_command_is_not_started_twice() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("snapshots.json"), "[]").unwrap();
    let script =
        "echo run >> runs.txt; while [ ! -e release ]; do sleep 0.05; done; cat snapshots.json";
    let m = BackupMonitor::new(
        config(vec![cmd_source(
            "slow",
            BackupFormat::Restic,
            command(&["sh", "-c", script]),
        )]),
        dir.path().to_path_buf(),
    );
    let runs = || {
        std::fs::read_to_string(dir.path().join("runs.txt"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    let now = || CollectContext {
        now: SystemTime::now(),
    };
    let s = m.collect(now()).await.unwrap();
    assert_eq!(s.pending, 1);
    assert_eq!(target(&s, "slow").health, Health::Unchecked);
    let s = m.collect(now()).await.unwrap();
    assert_eq!(s.pending, 1);
    assert_eq!(
        runs(),
        1,
        "a second collection must not start the command again"
    );
    std::fs::write(dir.path().join("release"), "").unwrap();
    let s = collect(&m).await;
    assert_eq!(v(&s, "backup_source_up", "slow"), Some(1.0));
    assert_eq!(runs(), 1);
    // Due again: one new run, while which the last values are served.
    std::fs::remove_file(dir.path().join("release")).unwrap();
    let s = m.collect(now()).await.unwrap();
    assert_eq!(s.pending, 1);
    assert_eq!(v(&s, "backup_source_up", "slow"), Some(1.0));
    let s = m.collect(now()).await.unwrap();
    assert_eq!(s.pending, 1);
    assert_eq!(runs(), 2);
    std::fs::write(dir.path().join("release"), "").unwrap();
    let s = collect(&m).await;
    assert_eq!(s.pending, 0);
    assert_eq!(runs(), 2);
}

/// Two sources whose commands read the same repository never run at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_of_one_repository_run_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("snapshots.json"), "[]").unwrap();
    // A stand-in named like the tool (the repository is found as for
    // restic: RESTIC_REPOSITORY), slow enough for runs to overlap: `sh`
    // under the name `restic` (a symlink: no freshly written executable).
    std::os::unix::fs::symlink(tool("sh", "dash"), dir.path().join("restic")).unwrap();
    let script = "echo start >> order.txt; sleep 1; echo end >> order.txt; cat snapshots.json";
    let sources: Vec<BackupSourceConfig> = ["web", "db"]
        .iter()
        .map(|name| {
            let mut c = command(&["./restic", "-c", script, name]);
            c.env
                .insert("RESTIC_REPOSITORY".into(), "/srv/one-repo".into());
            cmd_source(name, BackupFormat::Restic, c)
        })
        .collect();
    let m = BackupMonitor::new(config(sources), dir.path().to_path_buf());
    let s = collect(&m).await;
    assert_eq!(v(&s, "backup_source_up", "web"), Some(1.0));
    assert_eq!(v(&s, "backup_source_up", "db"), Some(1.0));
    let order = std::fs::read_to_string(dir.path().join("order.txt")).unwrap();
    // (A source that finished is run again while the collection waits for
    // the other: check_interval 0.) Every start is followed by its end.
    let lines: Vec<&str> = order.lines().collect();
    assert!(lines.len() >= 4, "{order}");
    for pair in lines.chunks(2) {
        assert_eq!(pair, ["start", "end"], "two runs overlapped: {order}");
    }
}

/// The password, passed by env (the exporter's own environment and
/// `env_files`) and echoed by the failing command to stderr, appears in no
/// log line, metric or status page; the reason does.
#[test]
fn secrets_echoed_to_stderr_are_never_shown() {
    const CANARY_ENV: &str = "canary-from-the-environment-4711";
    const CANARY_FILE: &str = "canary-from-env-files-0815";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), format!("{CANARY_FILE}\n")).unwrap();
    let yaml = r#"custom_monitors:
  backup_validation:
    allow_commands: true
    check_interval: 1h
    sources:
      - name: nas
        format: restic
        command:
          argv: [sh, -c, 'echo "Fatal: wrong password $RESTIC_PASSWORD or $HM_TEST_PASSWORD" >&2; echo "open rest:https://u:$RESTIC_PASSWORD@nas/x" >&2; exit 1']
          env_files: { RESTIC_PASSWORD: pw }
"#;
    std::fs::write(dir.path().join("c.yaml"), yaml).unwrap();
    let env = format!("HM_TEST_PASSWORD={CANARY_ENV}");
    let e = common::Exporter::start_with(dir.path(), &["--config", "c.yaml"], Some(&["env", &env]));
    e.wait_ready();
    let metrics = e.refreshed_metrics();
    assert_eq!(
        common::series(&metrics, "backup_source_up{source=\"nas\"}"),
        Some(0.0),
        "{metrics}"
    );
    let status = common::get(e.port, "/api/v1/status").body;
    let page = common::get(e.port, "/").body;
    let logs = e.logs();
    assert!(
        status.contains("exited with exit code 1") && status.contains("Fatal: wrong password ***"),
        "{status}"
    );
    assert!(logs.contains("exited with exit code 1"), "{logs}");
    for (what, text) in [
        ("metrics", &metrics),
        ("status", &status),
        ("page", &page),
        ("logs", &logs),
    ] {
        for canary in [CANARY_ENV, CANARY_FILE] {
            assert!(!text.contains(canary), "{canary} in {what}: {text}");
        }
    }
}

fn load(yaml: &str) -> Result<(), String> {
    parse(yaml, Path::new("c.yaml"))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn command_and_glob_keys_are_validated_at_load() {
    let head = "custom_monitors:\n  backup_validation:\n";
    let src = |allow: bool, s: &str| {
        format!("{head}    allow_commands: {allow}\n    sources:\n      - {s}\n")
    };
    let ok = "{ name: r, format: restic, command: { argv: [restic, snapshots, --json, --no-lock], timeout: 20s, env: { RESTIC_REPOSITORY: /srv/r }, env_files: { RESTIC_PASSWORD: pw } } }";
    assert_eq!(load(&src(true, ok)), Ok(()));
    let e = load(&src(false, ok)).unwrap_err();
    assert!(e.contains("allow_commands: true"), "{e}");
    let e = load(&src(
        true,
        "{ name: r, format: restic, path: x.json, command: { argv: [restic] } }",
    ))
    .unwrap_err();
    assert!(e.contains("either path") && e.contains("not both"), "{e}");
    let e = load(&src(
        true,
        "{ name: d, format: directory, command: { argv: [ls] } }",
    ))
    .unwrap_err();
    assert!(e.contains("`command` applies to format"), "{e}");
    let e = load(&src(
        true,
        "{ name: r, format: restic, command: { argv: [] } }",
    ))
    .unwrap_err();
    assert!(e.contains("argv needs at least the program"), "{e}");
    // Default timeout 30s: a command may take at most 24s.
    let e = load(&src(
        true,
        "{ name: r, format: restic, command: { argv: [restic], timeout: 25s } }",
    ))
    .unwrap_err();
    assert!(
        e.contains("at most 80% of backup_validation.timeout"),
        "{e}"
    );
    let e = load(&src(
        true,
        "{ name: r, format: restic, command: { argv: [restic], env: { \"A=B\": x } } }",
    ))
    .unwrap_err();
    assert!(e.contains("not an environment variable name"), "{e}");
    let e = load(&src(
        true,
        "{ name: r, format: restic, command: { argv: [restic], shell: true } }",
    ))
    .unwrap_err();
    assert!(e.contains("shell"), "{e}");

    assert_eq!(
        load(&src(
            false,
            "{ name: g, format: restic, path: \"b/*/snapshots.json\" }"
        )),
        Ok(())
    );
    assert_eq!(
        load(&src(
            false,
            "{ name: g, format: borg, path: \"b/*-*.json\", name_template: \"{2}-{1}\" }"
        )),
        Ok(())
    );
    let e = load(&src(
        false,
        "{ name: g, format: restic, path: \"b/*/s.json\", name_template: \"{2}\" }",
    ))
    .unwrap_err();
    assert!(e.contains("needs a 2th `*`"), "{e}");
    let e = load(&src(
        false,
        "{ name: g, format: restic, path: \"b/?/s.json\" }",
    ))
    .unwrap_err();
    assert!(e.contains("may use `*` only"), "{e}");
    let e = load(&src(
        false,
        "{ name: g, format: restic, path: b/s.json, name_template: \"{1}\" }",
    ))
    .unwrap_err();
    assert!(e.contains("name_template applies to a glob path"), "{e}");
    let e = load(&src(
        false,
        "{ name: g, format: restic, path: \"b/*/s.json\", stats_file: st.json }",
    ))
    .unwrap_err();
    assert!(e.contains("cannot be used with a glob path"), "{e}");
}

/// One set per matched file, named from the path; a bad file errors only
/// its own set; a file that disappears drops its set; `max_sets` caps them.
#[tokio::test]
async fn glob_of_per_host_files_gives_one_set_per_file() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, cache) = restic_repo(dir.path());
    let mut newest = std::collections::BTreeMap::new();
    for host in ["web", "db"] {
        let out =
            run(restic(&repo, &cache).args(["snapshots", "--json", "--no-lock", "--host", host]));
        let folder = dir.path().join("backups").join(host);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("snapshots.json"), &out).unwrap();
        // The same output on its own, as a plain file source: the reference.
        std::fs::write(dir.path().join(format!("{host}.json")), &out).unwrap();
        let snaps: serde_json::Value = serde_json::from_slice(&out).unwrap();
        newest.insert(host, snaps.as_array().unwrap().len());
    }
    assert_eq!((newest["web"], newest["db"]), (2, 1));
    let mut glob =
        BackupSourceConfig::new("hosts", BackupFormat::Restic, "backups/*/snapshots.json");
    glob.max_age = Some(HumanDuration(Duration::from_secs(3600)));
    let web = BackupSourceConfig::new("web", BackupFormat::Restic, "web.json");
    let db = BackupSourceConfig::new("db", BackupFormat::Restic, "db.json");
    let m = BackupMonitor::new(
        config(vec![glob.clone(), web, db]),
        dir.path().to_path_buf(),
    );
    let s = collect(&m).await;
    assert_eq!(
        v(&s, "backup_source_up", "hosts"),
        Some(1.0),
        "{:?}",
        target(&s, "hosts")
    );
    assert_eq!(v(&s, "backup_sets", "hosts"), Some(2.0));
    assert_eq!(v(&s, "backup_snapshots", "hosts"), Some(3.0));
    for host in ["web", "db"] {
        assert_eq!(set_v(&s, "backup_set_up", "hosts", host), Some(1.0));
        // Each set's numbers are those of its file read alone.
        for (set_metric, source_metric) in [
            (
                "backup_set_last_success_timestamp_seconds",
                "backup_last_success_timestamp_seconds",
            ),
            ("backup_set_snapshots", "backup_snapshots"),
            (
                "backup_set_oldest_timestamp_seconds",
                "backup_oldest_timestamp_seconds",
            ),
        ] {
            let got = set_v(&s, set_metric, "hosts", host);
            assert!(got.is_some(), "{set_metric} {host}");
            assert_eq!(got, v(&s, source_metric, host), "{set_metric} {host}");
        }
    }
    let web_last = set_v(
        &s,
        "backup_set_last_success_timestamp_seconds",
        "hosts",
        "web",
    );

    // A truncated db file: only db's set is down (and keeps its last values);
    // web's stays current.
    let db_file = dir.path().join("backups/db/snapshots.json");
    let full = std::fs::read(&db_file).unwrap();
    std::fs::write(&db_file, &full[..full.len() / 2]).unwrap();
    let s = collect(&m).await;
    assert_eq!(v(&s, "backup_source_up", "hosts"), Some(0.0));
    assert_eq!(set_v(&s, "backup_set_up", "hosts", "db"), Some(0.0));
    assert_eq!(set_v(&s, "backup_set_up", "hosts", "web"), Some(1.0));
    assert_eq!(set_v(&s, "backup_set_snapshots", "hosts", "db"), Some(1.0));
    assert_eq!(
        set_v(
            &s,
            "backup_set_last_success_timestamp_seconds",
            "hosts",
            "web"
        ),
        web_last
    );
    let e = target(&s, "hosts").error.clone().unwrap_or_default();
    assert!(
        e.contains("backups/db/snapshots.json") && e.contains("truncated"),
        "{e}"
    );

    // The db folder goes: its set goes with it.
    std::fs::remove_dir_all(dir.path().join("backups/db")).unwrap();
    let s = collect(&m).await;
    assert_eq!(v(&s, "backup_source_up", "hosts"), Some(1.0));
    assert_eq!(v(&s, "backup_sets", "hosts"), Some(1.0));
    assert_eq!(set_v(&s, "backup_set_up", "hosts", "db"), None);
    assert_eq!(set_v(&s, "backup_set_snapshots", "hosts", "db"), None);

    // max_sets caps the sets (by label), with the cap metric.
    std::fs::create_dir_all(dir.path().join("backups/db")).unwrap();
    std::fs::write(&db_file, &full).unwrap();
    glob.max_sets = 1;
    let m = BackupMonitor::new(config(vec![glob.clone()]), dir.path().to_path_buf());
    let s = collect(&m).await;
    assert_eq!(v(&s, "backup_sets", "hosts"), Some(2.0));
    assert_eq!(v(&s, "backup_sets_truncated", "hosts"), Some(1.0));
    assert!(set_v(&s, "backup_set_snapshots", "hosts", "db").is_some());
    assert_eq!(set_v(&s, "backup_set_snapshots", "hosts", "web"), None);

    // A template that gives two files the same name: the second is an
    // error, never merged into the first's set.
    glob.max_sets = 50;
    glob.name_template = Some("{stem}".into());
    let m = BackupMonitor::new(config(vec![glob]), dir.path().to_path_buf());
    let s = collect(&m).await;
    assert_eq!(v(&s, "backup_source_up", "hosts"), Some(0.0));
    assert_eq!(v(&s, "backup_sets", "hosts"), Some(1.0));
    assert_eq!(
        set_v(&s, "backup_set_snapshots", "hosts", "snapshots"),
        Some(1.0)
    );
    let e = target(&s, "hosts").error.clone().unwrap_or_default();
    assert!(e.contains("gives set `snapshots`, as for"), "{e}");
}

/// The README's examples load as written, and the README warns about the
/// cost of reading a repository on every run.
#[test]
fn readme_command_and_glob_examples_load() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let blocks: Vec<&str> = readme
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("\n```").next())
        .collect();
    let commands = blocks
        .iter()
        .find(|b| b.contains("allow_commands: true") && b.contains("--no-lock"))
        .expect("the README shows a command: source block");
    let cfg = parse(
        &format!("custom_monitors:\n{commands}\n"),
        Path::new("c.yaml"),
    )
    .unwrap_or_else(|e| panic!("the README's command block does not load: {e}"));
    let b = cfg.custom_monitors.backup_validation.unwrap();
    assert_eq!(b.sources.len(), 4);
    assert!(b.sources.iter().all(|s| s.command.is_some()));
    let globs = blocks
        .iter()
        .find(|b| b.contains("name_template"))
        .expect("the README shows a glob source");
    let cfg = parse(
        &format!("custom_monitors:\n  backup_validation:\n    sources:\n{globs}\n"),
        Path::new("c.yaml"),
    )
    .unwrap_or_else(|e| panic!("the README's glob block does not load: {e}"));
    assert_eq!(
        cfg.custom_monitors.backup_validation.unwrap().sources.len(),
        1
    );
    assert!(readme.contains("**Cost of reading the repository.**"));
    assert!(readme.contains("egress"));
}

/// Stopping the exporter stops a command that is still running (its whole
/// process group), instead of waiting for it.
#[test]
fn exporter_shutdown_stops_running_commands() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = r#"custom_monitors:
  backup_validation:
    allow_commands: true
    timeout: 10m
    sources:
      - { name: slow, format: restic, command: { argv: [sh, -c, 'sleep 3000 & echo $! > child.pid; wait'] } }
"#;
    let mut e = common::Exporter::with_config(dir.path(), yaml);
    let pid_file = dir.path().join("child.pid");
    let pid = common::wait_for("the command to start", 60, || {
        std::fs::read_to_string(&pid_file)
            .ok()
            .filter(|s| s.ends_with('\n'))
    });
    assert!(
        e.terminate().is_some(),
        "the exporter did not exit: {}",
        e.logs()
    );
    assert_killed(pid.trim());
}
