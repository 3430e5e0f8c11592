//! Backup validation monitor, through the library API, with real restic, borg
//! and PostgreSQL (`pg_basebackup`) output made in temp folders.
//!
//! Needs the apt packages `restic`, `borgbackup` and `postgresql` (PostgreSQL 15
//! binaries under /usr/lib/postgresql/15/bin); a missing tool fails the test
//! with the package to install. Network: PostgreSQL listens on 127.0.0.1 only.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

mod common;

use common::backups::assert_command_matches_file;
use common::{free_port, walk};

use homelab_monitor::core::config::{
    parse, BackupConfig, BackupFormat, BackupSourceConfig, ByteSize, GlobPattern, HumanDuration,
    TimeZoneName, VerifyMode,
};
use homelab_monitor::core::monitor::{CollectContext, Monitor};
use homelab_monitor::core::snapshot::Fact;
use homelab_monitor::core::snapshot::{Health, Snapshot};
use homelab_monitor::monitors::backups::{BackupCommand, BackupMonitor, GroupField};

const DAY: u64 = 86400;

fn config(sources: Vec<BackupSourceConfig>) -> BackupConfig {
    BackupConfig {
        retention_days: 30,
        sources,
        // Every collection re-reads every source (per-target freshness is
        // tested in src/targets.rs and tests/freshness.rs).
        check_interval: HumanDuration(Duration::ZERO),
        ..BackupConfig::default()
    }
}

async fn collect_at(m: &BackupMonitor, now: SystemTime) -> Snapshot {
    m.collect_complete(CollectContext { now })
        .await
        .expect("collection never fails as a whole")
}

fn v(s: &Snapshot, metric: &str, source: &str) -> Option<f64> {
    s.value(metric, &[("source", source)])
}

fn target<'a>(s: &'a Snapshot, source: &str) -> &'a homelab_monitor::core::snapshot::TargetStatus {
    s.targets
        .iter()
        .find(|t| t.target == source)
        .expect("a target status per source")
}

fn secs(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The tool (searched in PATH and PostgreSQL 15's bin folder), or a failure
/// naming the apt package that provides it.
fn require(tool: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain([PathBuf::from("/usr/lib/postgresql/15/bin")]);
    for d in dirs {
        let c = d.join(tool);
        let executable = std::fs::metadata(&c).is_ok_and(|m| {
            m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
        });
        if executable {
            return c;
        }
    }
    panic!("`{tool}` is not installed; these tests need it: apt-get install -y {package}");
}

fn run(cmd: &mut Command) -> Vec<u8> {
    common::run_ok(&format!("{cmd:?}"), cmd).stdout
}

fn write_data(dir: &Path, files: &[(&str, usize)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, size) in files {
        // Incompressible (pseudo-random) content, so backup tools store it at full size.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ (*size as u64) ^ (name.len() as u64);
        let content: Vec<u8> = (0..*size)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        std::fs::write(dir.join(name), content).unwrap();
    }
}

fn set_mtime(path: &Path, t: SystemTime) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_modified(t).unwrap();
}

// ---------------------------------------------------------------- restic

fn restic(repo: &Path, cache: &Path) -> Command {
    let mut c = Command::new(require("restic", "restic"));
    c.arg("--repo")
        .arg(repo)
        .arg("--cache-dir")
        .arg(cache)
        .env("RESTIC_PASSWORD", "test-only-password")
        .env_remove("RESTIC_REPOSITORY");
    c
}

#[tokio::test]
async fn real_restic_repository() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, cache, data) = (
        dir.path().join("repo"),
        dir.path().join("cache"),
        dir.path().join("data"),
    );
    run(restic(&repo, &cache).arg("init"));
    write_data(&data, &[("a.bin", 1000), ("b.bin", 2000)]);
    run(restic(&repo, &cache).arg("backup").arg(&data));
    write_data(&data, &[("c.bin", 3000)]);
    run(restic(&repo, &cache).arg("backup").arg(&data));
    std::fs::remove_file(data.join("a.bin")).unwrap();
    run(restic(&repo, &cache).arg("backup").arg(&data));
    let after = SystemTime::now();
    std::fs::write(
        dir.path().join("snapshots.json"),
        run(restic(&repo, &cache).args(["snapshots", "--json"])),
    )
    .unwrap();
    let stats = run(restic(&repo, &cache).args(["stats", "--json", "latest"]));
    std::fs::write(dir.path().join("stats.json"), &stats).unwrap();
    std::fs::write(
        dir.path().join("check.txt"),
        run(restic(&repo, &cache).arg("check")),
    )
    .unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&stats).unwrap();

    let mut src = BackupSourceConfig::new("nas", BackupFormat::Restic, "snapshots.json");
    src.stats_file = Some("stats.json".into());
    src.check_file = Some("check.txt".into());
    src.max_age = Some(HumanDuration(Duration::from_secs(26 * 3600)));
    let m = BackupMonitor::new(config(vec![src]), dir.path().to_path_buf());
    let now = after + Duration::from_secs(60);
    let s = collect_at(&m, now).await;
    assert_eq!(v(&s, "backup_source_up", "nas"), Some(1.0));
    assert_eq!(v(&s, "backup_snapshots", "nas"), Some(3.0));
    let last = v(&s, "backup_last_success_timestamp_seconds", "nas").unwrap();
    assert!(
        last <= secs(after) + 1.0 && last > secs(after) - 600.0,
        "last success {last} vs {}",
        secs(after)
    );
    assert!(v(&s, "backup_oldest_timestamp_seconds", "nas").unwrap() <= last);
    // restic 0.14 has no snapshot summary: size and files come from `restic stats`.
    assert_eq!(
        v(&s, "backup_last_size_bytes", "nas"),
        stats["total_size"].as_f64()
    );
    assert_eq!(
        v(&s, "backup_last_files", "nas"),
        stats["total_file_count"].as_f64()
    );
    assert_eq!(v(&s, "backup_verification_success", "nas"), Some(1.0));
    assert_eq!(v(&s, "backup_max_age_seconds", "nas"), Some(26.0 * 3600.0));
    assert_eq!(target(&s, "nas").health, Health::Ok);

    // The newest backup gets old: out of retention, and the source has findings.
    let later = now + Duration::from_secs(31 * DAY);
    let s = collect_at(&m, later).await;
    assert_eq!(v(&s, "backup_snapshots", "nas"), Some(0.0));
    assert_eq!(
        v(&s, "backup_last_success_timestamp_seconds", "nas"),
        Some(last)
    );
    assert_eq!(target(&s, "nas").health, Health::Findings);
    assert!(
        target(&s, "nas").summary.contains("over max_age"),
        "{}",
        target(&s, "nas").summary
    );

    // Delete the repository's largest pack file (file contents, not trees: a
    // missing tree pack makes restic retry for a minute); the job's `restic check` fails.
    let pack = walk(&repo.join("data"))
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("a pack file");
    std::fs::remove_file(pack).unwrap();
    let out = restic(&repo, &cache).arg("check").output().unwrap();
    assert!(
        !out.status.success(),
        "restic check should fail after deleting a pack"
    );
    let mut text = out.stdout;
    text.extend_from_slice(&out.stderr);
    std::fs::write(dir.path().join("check.txt"), text).unwrap();
    let s = collect_at(&m, now).await;
    assert_eq!(v(&s, "backup_verification_success", "nas"), Some(0.0));
    assert_eq!(v(&s, "backup_source_up", "nas"), Some(1.0));

    // Truncated snapshot list: the source is down, its last values stay (stale).
    let full = std::fs::read(dir.path().join("snapshots.json")).unwrap();
    std::fs::write(dir.path().join("snapshots.json"), &full[..full.len() / 2]).unwrap();
    let s = collect_at(&m, now).await;
    assert_eq!(v(&s, "backup_source_up", "nas"), Some(0.0));
    assert_eq!(v(&s, "backup_snapshots", "nas"), Some(3.0));
    let t = target(&s, "nas");
    assert_eq!(t.health, Health::Error);
    assert!(t.stale);
    assert!(
        t.error.as_deref().unwrap_or("").contains("truncated"),
        "{t:?}"
    );

    // An empty snapshot list is readable, but holds no successful backup.
    std::fs::write(dir.path().join("snapshots.json"), "[]\n").unwrap();
    let s = collect_at(&m, now).await;
    assert_eq!(v(&s, "backup_source_up", "nas"), Some(1.0));
    assert_eq!(v(&s, "backup_snapshots", "nas"), Some(0.0));
    assert_eq!(
        v(&s, "backup_last_success_timestamp_seconds", "nas"),
        Some(0.0)
    );
    assert_eq!(target(&s, "nas").health, Health::Findings);
}

/// The job's commands as the README shows them (the test checks they are there).
const README_RESTIC_JOB: [&str; 3] = [
    "restic snapshots --json > restic-snapshots.json",
    "restic stats --json latest > restic-stats.json",
    "{ restic check 2>&1; echo \"exit: $?\"; } > restic-check.tmp && mv restic-check.tmp restic-check.txt",
];

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

/// Run a shell line in `dir` against a restic repository (as a backup job
/// would); its exit status.
fn restic_sh(dir: &Path, repo: &Path, line: &str) -> bool {
    require("restic", "restic");
    let status = Command::new("sh")
        .arg("-c")
        .arg(line)
        .current_dir(dir)
        .env("RESTIC_REPOSITORY", repo)
        .env("RESTIC_PASSWORD", "test-only-password")
        .env("RESTIC_CACHE_DIR", dir.join("cache"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    status.success()
}

/// A restic repository with two backups, and the files the README's job writes.
fn restic_job_folder() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (repo, data) = (dir.path().join("repo"), dir.path().join("data"));
    run(restic(&repo, &dir.path().join("cache")).arg("init"));
    write_data(&data, &[("a.bin", 100_000), ("b.bin", 2000)]);
    run(restic(&repo, &dir.path().join("cache"))
        .arg("backup")
        .arg(&data));
    write_data(&data, &[("c.bin", 3000)]);
    run(restic(&repo, &dir.path().join("cache"))
        .arg("backup")
        .arg(&data));
    for line in README_RESTIC_JOB {
        assert!(restic_sh(dir.path(), &repo, line), "{line}");
    }
    (dir, repo, data)
}

#[tokio::test]
async fn restic_stats_count_only_when_about_the_newest_snapshot() {
    let (dir, repo, _) = restic_job_folder();
    // What users wrote before: totals over every snapshot.
    assert!(restic_sh(
        dir.path(),
        &repo,
        "restic stats --json > restic-stats-all.json"
    ));
    let mut latest_src =
        BackupSourceConfig::new("latest", BackupFormat::Restic, "restic-snapshots.json");
    latest_src.stats_file = Some("restic-stats.json".into());
    let mut all = BackupSourceConfig::new("all", BackupFormat::Restic, "restic-snapshots.json");
    all.stats_file = Some("restic-stats-all.json".into());
    let m = BackupMonitor::new(config(vec![latest_src, all]), dir.path().to_path_buf());
    let s = collect_at(&m, SystemTime::now() + Duration::from_secs(60)).await;
    // `restic stats --json latest` is about the newest snapshot only.
    let latest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("restic-stats.json")).unwrap())
            .unwrap();
    assert_eq!(latest["snapshots_count"], 1);
    assert_eq!(
        v(&s, "backup_last_size_bytes", "latest"),
        latest["total_size"].as_f64()
    );
    assert_eq!(target(&s, "latest").health, Health::Ok);
    // Plain `restic stats --json` covers both snapshots: not the last backup's size.
    let totals: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("restic-stats-all.json")).unwrap())
            .unwrap();
    assert_eq!(totals["snapshots_count"], 2);
    assert_eq!(v(&s, "backup_last_size_bytes", "all"), None);
    assert_eq!(v(&s, "backup_snapshots", "all"), Some(2.0));
    let t = target(&s, "all");
    assert_eq!(t.health, Health::Findings);
    assert!(
        t.summary.contains("restic stats --json latest"),
        "{}",
        t.summary
    );
}

#[tokio::test]
async fn restic_check_captured_as_the_readme_says_and_never_a_stale_pass() {
    let readme = readme();
    for line in README_RESTIC_JOB {
        assert!(readme.contains(line), "README lacks `{line}`");
    }
    let (dir, repo, data) = restic_job_folder();
    let mut src = BackupSourceConfig::new("nas", BackupFormat::Restic, "restic-snapshots.json");
    src.stats_file = Some("restic-stats.json".into());
    src.check_file = Some("restic-check.txt".into());
    let m = BackupMonitor::new(config(vec![src]), dir.path().to_path_buf());
    let now = SystemTime::now() + Duration::from_secs(60);
    let s = collect_at(&m, now).await;
    assert_eq!(
        v(&s, "backup_source_up", "nas"),
        Some(1.0),
        "{:?}",
        target(&s, "nas")
    );
    assert_eq!(v(&s, "backup_verification_success", "nas"), Some(1.0));
    assert_eq!(
        target(&s, "nas").health,
        Health::Ok,
        "{:?}",
        target(&s, "nas")
    );
    // When the check ran (the file's mtime): a check job that stops is seen.
    let written = std::fs::metadata(dir.path().join("restic-check.txt"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        v(&s, "backup_verification_timestamp_seconds", "nas"),
        Some(secs(written))
    );

    // Corrupt the largest pack (file contents): `restic check --read-data` fails.
    let pack = walk(&repo.join("data"))
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("a pack file");
    let mut bytes = std::fs::read(&pack).unwrap();
    for b in bytes.iter_mut().skip(100).take(64) {
        *b ^= 0x5a;
    }
    let mut perms = std::fs::metadata(&pack).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&pack, perms).unwrap();
    std::fs::write(&pack, &bytes).unwrap();
    let read_data = README_RESTIC_JOB[2].replace("restic check", "restic check --read-data");
    // The line ends with `echo`: it succeeds whatever restic's status.
    assert!(restic_sh(dir.path(), &repo, &read_data));
    let text = std::fs::read_to_string(dir.path().join("restic-check.txt")).unwrap();
    assert!(text.contains("exit: 1"), "{text}");
    let s = collect_at(&m, now).await;
    assert_eq!(v(&s, "backup_verification_success", "nas"), Some(0.0));
    assert!(
        target(&s, "nas").summary.contains("exited with status 1"),
        "{}",
        target(&s, "nas").summary
    );

    // The same failed check saved without stderr (`restic check > file`, as the
    // old README had it): the errors are lost, and it is still a failure.
    assert!(!restic_sh(
        dir.path(),
        &repo,
        "restic check --read-data > restic-check.txt",
    ));
    let text = std::fs::read_to_string(dir.path().join("restic-check.txt")).unwrap();
    assert!(
        !text.contains("no errors were found") && !text.contains("Fatal"),
        "{text}"
    );
    let s = collect_at(&m, now).await;
    assert_eq!(v(&s, "backup_verification_success", "nas"), Some(0.0));
    assert_eq!(v(&s, "backup_source_up", "nas"), Some(1.0));
    // Deleting the pack also fails the plain check (the README command verbatim).
    std::fs::remove_file(&pack).unwrap();
    assert!(restic_sh(dir.path(), &repo, README_RESTIC_JOB[2]));
    let s = collect_at(&m, now).await;
    assert_eq!(v(&s, "backup_verification_success", "nas"), Some(0.0));

    // A passing check file, then one that cannot be parsed (`restic check -q`
    // prints nothing on stdout): never the stale pass, and the snapshot list
    // (now empty) is still read.
    std::fs::write(
        dir.path().join("restic-check.txt"),
        "no errors were found\n",
    )
    .unwrap();
    let s = collect_at(&m, now).await;
    assert_eq!(v(&s, "backup_verification_success", "nas"), Some(1.0));
    assert!(!restic_sh(
        dir.path(),
        &repo,
        "restic check -q > restic-check.txt"
    ));
    assert_eq!(
        std::fs::read(dir.path().join("restic-check.txt"))
            .unwrap()
            .len(),
        0
    );
    std::fs::write(dir.path().join("restic-snapshots.json"), "[]\n").unwrap();
    let s = collect_at(&m, now).await;
    assert_eq!(v(&s, "backup_verification_success", "nas"), Some(0.0));
    assert_eq!(v(&s, "backup_source_up", "nas"), Some(0.0));
    assert_eq!(v(&s, "backup_snapshots", "nas"), Some(0.0));
    assert_eq!(
        v(&s, "backup_last_success_timestamp_seconds", "nas"),
        Some(0.0)
    );
    let t = target(&s, "nas");
    assert_eq!(t.health, Health::Error);
    assert!(!t.stale, "the snapshot list was read: {t:?}");
    let e = t.error.as_deref().unwrap_or("");
    assert!(
        e.contains("restic-check.txt") && e.contains("exit: $?"),
        "{e}"
    );
    // With the exit status, `-q` works: nothing printed, exit 0... on a good repository.
    let good = dir.path().join("good");
    run(restic(&good, &dir.path().join("cache")).arg("init"));
    run(restic(&good, &dir.path().join("cache"))
        .arg("backup")
        .arg(&data));
    assert!(restic_sh(
        dir.path(),
        &good,
        &README_RESTIC_JOB[2].replace("restic check", "restic check -q"),
    ));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("restic-check.txt")).unwrap(),
        "exit: 0\n"
    );
    let s = collect_at(&m, now).await;
    assert_eq!(v(&s, "backup_verification_success", "nas"), Some(1.0));
}

#[tokio::test]
async fn future_dated_backups_do_not_look_fresh() {
    // Real restic with a wrong clock (`--time` a year ahead).
    let dir = tempfile::tempdir().unwrap();
    let (repo, cache, data) = (
        dir.path().join("repo"),
        dir.path().join("cache"),
        dir.path().join("data"),
    );
    run(restic(&repo, &cache).arg("init"));
    write_data(&data, &[("a.bin", 1000)]);
    let now = SystemTime::now();
    let ahead = jiff::Timestamp::try_from(now + Duration::from_secs(365 * DAY))
        .unwrap()
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string();
    run(restic(&repo, &cache)
        .env("TZ", "UTC")
        .args(["backup", "--time", &ahead])
        .arg(&data));
    std::fs::write(
        dir.path().join("s.json"),
        run(restic(&repo, &cache).args(["snapshots", "--json"])),
    )
    .unwrap();
    let m = BackupMonitor::new(
        config(vec![BackupSourceConfig::new(
            "r",
            BackupFormat::Restic,
            "s.json",
        )]),
        dir.path().to_path_buf(),
    );
    let s = collect_at(&m, now).await;
    assert_eq!(
        v(&s, "backup_last_success_timestamp_seconds", "r"),
        Some(0.0)
    );
    assert_eq!(v(&s, "backup_snapshots", "r"), Some(0.0));
    let t = target(&s, "r");
    assert_eq!(t.health, Health::Findings);
    assert!(
        t.summary.contains("in the future") || t.summary.contains("after now"),
        "{}",
        t.summary
    );
}

#[tokio::test]
async fn empty_backups_are_not_clean() {
    let dir = tempfile::tempdir().unwrap();
    let dumps = dir.path().join("dumps");
    write_data(&dumps, &[("a.sql", 100)]);
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_564_800);
    set_mtime(&dumps.join("a.sql"), now - Duration::from_secs(3 * DAY));
    // What `pg_dump > b.sql` leaves when the dump fails.
    std::fs::write(dumps.join("b.sql"), "").unwrap();
    set_mtime(&dumps.join("b.sql"), now - Duration::from_secs(600));
    // Our manifest: a run that backed up nothing (unmounted folder).
    std::fs::write(
        dir.path().join("run.json"),
        r#"{"version":1,"id":"n","start":"2026-11-24T23:00:00Z","end":"2026-11-24T23:01:00Z","status":"success","size":0,"files":0}"#,
    )
    .unwrap();
    let mut counted = BackupSourceConfig::new("counted", BackupFormat::Manifest, "run.json");
    counted.verify = VerifyMode::Sizes;
    let m = BackupMonitor::new(
        config(vec![
            BackupSourceConfig::new("dumps", BackupFormat::Directory, "dumps"),
            BackupSourceConfig::new("run", BackupFormat::Manifest, "run.json"),
            counted,
        ]),
        dir.path().to_path_buf(),
    );
    let s = collect_at(&m, now).await;
    assert_eq!(
        v(&s, "backup_last_success_timestamp_seconds", "dumps"),
        Some(secs(now) - 3.0 * DAY as f64),
        "the empty dump is not the last success"
    );
    assert_eq!(v(&s, "backup_snapshots", "dumps"), Some(1.0));
    assert!(
        target(&s, "dumps").summary.contains("empty"),
        "{}",
        target(&s, "dumps").summary
    );
    assert_eq!(v(&s, "backup_last_size_bytes", "run"), Some(0.0));
    assert_eq!(target(&s, "run").health, Health::Findings);
    assert!(target(&s, "run").summary.contains("empty"));
    // `verify` with a run that lists no files: nothing verified, no pass.
    assert_eq!(v(&s, "backup_verification_success", "counted"), None);
    assert!(
        target(&s, "counted").summary.contains("lists no files"),
        "{}",
        target(&s, "counted").summary
    );
    // A manifest that no longer parses: with verify, verification is 0, not the old value.
    std::fs::write(dir.path().join("run.json"), "{\"version\":1,").unwrap();
    let s = collect_at(&m, now).await;
    assert_eq!(v(&s, "backup_source_up", "counted"), Some(0.0));
    assert_eq!(v(&s, "backup_verification_success", "counted"), Some(0.0));
    assert_eq!(v(&s, "backup_verification_success", "run"), None);
}

#[tokio::test]
async fn restic_017_summaries_give_sizes_and_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let snaps = r#"[
 {"time":"2026-11-20T01:00:00Z","hostname":"h","paths":["/srv"],"id":"1","summary":{"backup_end":"2026-11-20T01:30:00Z","total_files_processed":100,"total_bytes_processed":10000}},
 {"time":"2026-11-21T01:00:00Z","hostname":"h","paths":["/srv"],"id":"2","summary":{"backup_end":"2026-11-21T01:30:00Z","total_files_processed":10,"total_bytes_processed":1000}},
 {"time":"2026-11-21T02:00:00Z","hostname":"other","paths":["/home"],"id":"3","summary":{"backup_end":"2026-11-21T02:10:00Z","total_files_processed":5,"total_bytes_processed":500}}
]"#;
    std::fs::write(dir.path().join("s.json"), snaps).unwrap();
    let m = BackupMonitor::new(
        config(vec![BackupSourceConfig::new(
            "r",
            BackupFormat::Restic,
            "s.json",
        )]),
        dir.path().to_path_buf(),
    );
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_564_800); // 2026-11-25T00:00:00Z
    let s = collect_at(&m, now).await;
    // Two groups (host h /srv, host other /home): the stalest group's newest backup.
    assert_eq!(
        v(&s, "backup_last_success_timestamp_seconds", "r"),
        Some(1_795_564_800.0 - 4.0 * 86400.0 + 5400.0)
    );
    assert_eq!(v(&s, "backup_last_size_bytes", "r"), Some(1500.0));
    assert_eq!(v(&s, "backup_last_files", "r"), Some(15.0));
    assert_eq!(v(&s, "backup_size_change_ratio", "r"), Some(0.1));
    assert_eq!(v(&s, "backup_snapshots", "r"), Some(3.0));
}

// ---------------------------------------------------------------- borg

fn borg(base: &Path, repo: &Path) -> Command {
    let mut c = Command::new(require("borg", "borgbackup"));
    c.env("BORG_PASSPHRASE", "test-only-passphrase")
        .env("BORG_REPO", repo)
        .env("BORG_BASE_DIR", base)
        .env("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "yes")
        .env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
        // Borg writes local time without a zone: fix the zone of this run.
        .env("TZ", "UTC");
    c
}

#[tokio::test]
async fn real_borg_repository_and_time_zones() {
    let dir = tempfile::tempdir().unwrap();
    let (base, repo, data) = (
        dir.path().join("home"),
        dir.path().join("repo"),
        dir.path().join("data"),
    );
    run(borg(&base, &repo).args(["init", "-e", "repokey"]));
    write_data(&data, &[("a.bin", 50_000), ("b.bin", 50_000)]);
    run(borg(&base, &repo).arg("create").arg("::first").arg(&data));
    std::fs::remove_file(data.join("b.bin")).unwrap();
    run(borg(&base, &repo).arg("create").arg("::second").arg(&data));
    let after = SystemTime::now();
    std::fs::write(
        dir.path().join("list.json"),
        run(borg(&base, &repo).args(["list", "--json"])),
    )
    .unwrap();
    let info = run(borg(&base, &repo).args(["info", "--json", "--last", "2"]));
    std::fs::write(dir.path().join("info.json"), &info).unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info).unwrap();
    let size = |i: usize| {
        info["archives"][i]["stats"]["original_size"]
            .as_f64()
            .unwrap()
    };

    let source = |name: &str, tz: &str| {
        let mut s = BackupSourceConfig::new(name, BackupFormat::Borg, "list.json");
        s.info_file = Some("info.json".into());
        s.timezone = Some(TimeZoneName(tz.into()));
        s
    };
    let m = BackupMonitor::new(
        config(vec![source("utc", "UTC"), source("tokyo", "Asia/Tokyo")]),
        dir.path().to_path_buf(),
    );
    let now = after + Duration::from_secs(60);
    let s = collect_at(&m, now).await;
    assert_eq!(v(&s, "backup_source_up", "utc"), Some(1.0));
    assert_eq!(v(&s, "backup_snapshots", "utc"), Some(2.0));
    let last = v(&s, "backup_last_success_timestamp_seconds", "utc").unwrap();
    // Borg writes whole seconds.
    assert!(
        last <= secs(after) + 1.0 && last > secs(after) - 600.0,
        "{last} vs {}",
        secs(after)
    );
    // The same zone-less dates read as Tokyo time are 9 hours earlier.
    assert_eq!(
        v(&s, "backup_last_success_timestamp_seconds", "tokyo"),
        Some(last - 9.0 * 3600.0)
    );
    assert_eq!(v(&s, "backup_last_size_bytes", "utc"), Some(size(1)));
    assert_eq!(v(&s, "backup_last_files", "utc"), Some(1.0));
    assert_eq!(
        v(&s, "backup_size_change_ratio", "utc"),
        Some(size(1) / size(0))
    );
    assert!(size(1) < size(0));
    // One of two files deleted: the file count halves, as borg counts them.
    let nfiles = |i: usize| info["archives"][i]["stats"]["nfiles"].as_f64().unwrap();
    assert_eq!(
        v(&s, "backup_files_change_ratio", "utc"),
        Some(nfiles(1) / nfiles(0))
    );
    assert_eq!(nfiles(1) / nfiles(0), 0.5);
    // The whole repository is one set, with the same ratio.
    assert_eq!(
        s.value(
            "backup_set_files_change_ratio",
            &[("source", "utc"), ("set", "all")]
        ),
        Some(0.5)
    );
    assert_eq!(v(&s, "backup_verification_success", "utc"), None);

    // Pruned to one archive: the count and the oldest time move.
    run(borg(&base, &repo).args(["delete", "::first"]));
    std::fs::write(
        dir.path().join("list.json"),
        run(borg(&base, &repo).args(["list", "--json"])),
    )
    .unwrap();
    let s = collect_at(&m, now).await;
    assert_eq!(v(&s, "backup_snapshots", "utc"), Some(1.0));
    assert_eq!(v(&s, "backup_oldest_timestamp_seconds", "utc"), Some(last));
    assert_eq!(v(&s, "backup_size_change_ratio", "utc"), None);
    assert_eq!(v(&s, "backup_files_change_ratio", "utc"), None);

    // Old: 31 days later nothing is inside retention.
    let s = collect_at(&m, now + Duration::from_secs(31 * DAY)).await;
    assert_eq!(v(&s, "backup_snapshots", "utc"), Some(0.0));

    // Repository-level `borg info --json` (no --last): no archive data. It is
    // an error naming the command to use; the list is still read.
    run(borg(&base, &repo).arg("create").arg("::third").arg(&data));
    std::fs::write(
        dir.path().join("list.json"),
        run(borg(&base, &repo).args(["list", "--json"])),
    )
    .unwrap();
    let repo_info = run(borg(&base, &repo).args(["info", "--json"]));
    let parsed: serde_json::Value = serde_json::from_slice(&repo_info).unwrap();
    assert!(parsed.get("archives").is_none(), "repository-level output");
    assert!(parsed["cache"]["stats"]["total_size"].as_u64().unwrap() > 0);
    std::fs::write(dir.path().join("info.json"), &repo_info).unwrap();
    let now = SystemTime::now() + Duration::from_secs(60);
    let s = collect_at(&m, now).await;
    assert_eq!(v(&s, "backup_source_up", "utc"), Some(0.0));
    assert_eq!(
        v(&s, "backup_snapshots", "utc"),
        Some(2.0),
        "the list is current"
    );
    assert_eq!(v(&s, "backup_last_size_bytes", "utc"), None);
    let t = target(&s, "utc");
    assert_eq!(t.health, Health::Error);
    assert!(!t.stale);
    let e = t.error.as_deref().unwrap_or("");
    assert!(
        e.contains("info.json") && e.contains("borg info --json --last"),
        "{e}"
    );

    // `borg info --json --last 1` gives the newest archive's size again.
    let info = run(borg(&base, &repo).args(["info", "--json", "--last", "1"]));
    std::fs::write(dir.path().join("info.json"), &info).unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info).unwrap();
    let s = collect_at(&m, now).await;
    assert_eq!(v(&s, "backup_source_up", "utc"), Some(1.0));
    assert_eq!(
        v(&s, "backup_last_size_bytes", "utc"),
        info["archives"][0]["stats"]["original_size"].as_f64()
    );

    // A newer archive the info file does not know yet (info written before it):
    // its size is unknown, not the previous archive's, and it is a finding.
    run(borg(&base, &repo).arg("create").arg("::fourth").arg(&data));
    std::fs::write(
        dir.path().join("list.json"),
        run(borg(&base, &repo).args(["list", "--json"])),
    )
    .unwrap();
    let s = collect_at(&m, SystemTime::now() + Duration::from_secs(60)).await;
    assert_eq!(v(&s, "backup_source_up", "utc"), Some(1.0));
    assert_eq!(v(&s, "backup_last_size_bytes", "utc"), None);
    let t = target(&s, "utc");
    assert_eq!(t.health, Health::Findings);
    assert!(
        t.summary.contains("no sizes for the newest archive"),
        "{}",
        t.summary
    );
}

#[tokio::test]
async fn borg_zoneless_dates_default_to_the_local_zone_and_checkpoints_do_not_count() {
    let dir = tempfile::tempdir().unwrap();
    let list = r#"{"archives":[
 {"archive":"n1","name":"n1","id":"1","start":"2026-11-24T01:00:00.000000","time":"2026-11-24T01:00:00.000000"},
 {"archive":"n2.checkpoint","name":"n2.checkpoint","id":"2","start":"2026-11-25T01:00:00.000000","time":"2026-11-25T01:00:00.000000"}]}"#;
    std::fs::write(dir.path().join("list.json"), list).unwrap();
    let m = BackupMonitor::new(
        config(vec![BackupSourceConfig::new(
            "b",
            BackupFormat::Borg,
            "list.json",
        )]),
        dir.path().to_path_buf(),
    );
    let s = collect_at(
        &m,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_564_800),
    )
    .await;
    let local = jiff::tz::TimeZone::system();
    let expected = local
        .to_timestamp("2026-11-24T01:00:00".parse().unwrap())
        .unwrap()
        .as_second() as f64;
    assert_eq!(
        v(&s, "backup_last_success_timestamp_seconds", "b"),
        Some(expected)
    );
    assert_eq!(v(&s, "backup_snapshots", "b"), Some(1.0));
    assert_eq!(
        target(&s, "b").health,
        Health::Findings,
        "the newest run is a checkpoint (partial)"
    );
    assert_eq!(v(&s, "backup_last_run_success", "b"), Some(0.0));

    // A date borg never writes is a parse error naming the archive, not a panic.
    std::fs::write(
        dir.path().join("list.json"),
        r#"{"archives":[{"name":"x","time":"24.11.2026 01:00"}]}"#,
    )
    .unwrap();
    let s = collect_at(&m, SystemTime::now()).await;
    assert_eq!(v(&s, "backup_source_up", "b"), Some(0.0));
    assert!(target(&s, "b")
        .error
        .as_deref()
        .unwrap_or("")
        .contains("archive [0]"));
}

// ---------------------------------------------------------------- PostgreSQL

struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    as_postgres: bool,
}

impl Postgres {
    fn cmd(&self, tool: &str, args: &[String]) -> Command {
        let exe = self.bin.join(tool);
        if self.as_postgres {
            let mut line = shell_quote(&exe.to_string_lossy());
            for a in args {
                line.push(' ');
                line.push_str(&shell_quote(a));
            }
            let mut c = Command::new("su");
            c.args(["postgres", "-s", "/bin/sh", "-c", &line]);
            c
        } else {
            let mut c = Command::new(exe);
            c.args(args);
            c
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let args = vec![
            "-D".to_string(),
            self.data.display().to_string(),
            "-m".into(),
            "immediate".into(),
            "stop".into(),
        ];
        let _ = self
            .cmd("pg_ctl", &args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A real `pg_basebackup -Fp` of a fresh cluster; returns the backup folder.
fn real_basebackup(root: &Path) -> PathBuf {
    // /usr/local/bin may hold a symbolic link: the other tools sit beside the real one.
    let initdb = std::fs::canonicalize(require("initdb", "postgresql")).unwrap();
    let bin = initdb.parent().map(Path::to_path_buf).unwrap_or_default();
    let is_root = String::from_utf8_lossy(&run(Command::new("id").arg("-u"))).trim() == "0";
    if is_root {
        // PostgreSQL refuses to run as root: hand the folder to the postgres user.
        let uid: u32 = String::from_utf8_lossy(&run(Command::new("id").args(["-u", "postgres"])))
            .trim()
            .parse()
            .unwrap();
        std::os::unix::fs::chown(root, Some(uid), None).unwrap();
    }
    let data = root.join("cluster");
    let backup = root.join("basebackup");
    let pg = Postgres {
        bin,
        data: data.clone(),
        as_postgres: is_root,
    };
    let port = free_port().to_string();
    let d = data.display().to_string();
    run(&mut pg.cmd(
        "initdb",
        &["-D".into(), d.clone(), "-A".into(), "trust".into()],
    ));
    let opts = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1",
        root.display()
    );
    run(&mut pg.cmd(
        "pg_ctl",
        &[
            "-D".into(),
            d.clone(),
            "-o".into(),
            opts,
            "-l".into(),
            root.join("log").display().to_string(),
            "-w".into(),
            "start".into(),
        ],
    ));
    run(&mut pg.cmd(
        "pg_basebackup",
        &[
            "-h".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port,
            "-U".into(),
            "postgres".into(),
            "-D".into(),
            backup.display().to_string(),
            "-Fp".into(),
            "-Xs".into(),
        ],
    ));
    drop(pg);
    backup
}

fn manifest_files(manifest: &Path) -> Vec<(String, u64)> {
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
    m["Files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["Path"].as_str().unwrap().to_string(),
                f["Size"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn real_pg_basebackup_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let backup = real_basebackup(dir.path());
    let manifest = backup.join("backup_manifest");
    let files = manifest_files(&manifest);
    let total: u64 = files.iter().map(|f| f.1).sum();

    let mut checked = BackupSourceConfig::new("pg", BackupFormat::PgBackupManifest, "basebackup");
    checked.verify = VerifyMode::Checksums;
    let mut sizes = BackupSourceConfig::new(
        "pg_sizes",
        BackupFormat::PgBackupManifest,
        "basebackup/backup_manifest",
    );
    sizes.verify = VerifyMode::Sizes;
    let plain = BackupSourceConfig::new("pg_plain", BackupFormat::PgBackupManifest, "basebackup");
    let m = BackupMonitor::new(
        config(vec![checked, sizes, plain]),
        dir.path().to_path_buf(),
    );
    let now = SystemTime::now() + Duration::from_secs(60);
    let s = collect_at(&m, now).await;
    for src in ["pg", "pg_sizes", "pg_plain"] {
        assert_eq!(
            v(&s, "backup_source_up", src),
            Some(1.0),
            "{src}: {:?}",
            target(&s, src)
        );
        assert_eq!(
            v(&s, "backup_verification_success", src),
            Some(1.0),
            "{src}: {:?}",
            target(&s, src)
        );
        assert_eq!(v(&s, "backup_snapshots", src), Some(1.0));
    }
    assert_eq!(v(&s, "backup_last_files", "pg"), Some(files.len() as f64));
    // Formats without sets: one recovery window, set `all`, from the oldest backup.
    assert_eq!(
        set_value(
            &s,
            "backup_oldest_restorable_timestamp_seconds",
            "pg",
            "all"
        ),
        v(&s, "backup_oldest_timestamp_seconds", "pg")
    );
    assert!(v(&s, "backup_oldest_timestamp_seconds", "pg").is_some());
    assert_eq!(v(&s, "backup_last_size_bytes", "pg"), Some(total as f64));
    // When the backup started, as the server stamped its backup_label (whole
    // seconds, GMT), not the manifest file's mtime.
    let started = label_time(&manifest);
    let mtime = secs(std::fs::metadata(&manifest).unwrap().modified().unwrap());
    assert!(
        started <= mtime && started > mtime - 600.0,
        "{started} vs {mtime}"
    );
    assert_eq!(
        v(&s, "backup_last_success_timestamp_seconds", "pg"),
        Some(started)
    );

    // Change one byte of a backed-up file, keeping its size: only checksums see it.
    let victim = backup.join("PG_VERSION");
    let original = std::fs::read(&victim).unwrap();
    let mut changed = original.clone();
    changed[0] ^= 0x01;
    std::fs::write(&victim, &changed).unwrap();
    let s = collect_at(&m, now).await;
    assert_eq!(v(&s, "backup_verification_success", "pg"), Some(0.0));
    assert!(
        target(&s, "pg")
            .summary
            .contains("another checksum: PG_VERSION"),
        "{}",
        target(&s, "pg").summary
    );
    assert_eq!(v(&s, "backup_verification_success", "pg_sizes"), Some(1.0));
    std::fs::write(&victim, &original).unwrap();
    let s = collect_at(&m, now).await;
    assert_eq!(v(&s, "backup_verification_success", "pg"), Some(1.0));

    // Delete a backed-up file.
    let (gone, _) = files
        .iter()
        .find(|f| f.0.starts_with("global/"))
        .unwrap()
        .clone();
    std::fs::remove_file(backup.join(&gone)).unwrap();
    let s = collect_at(&m, now).await;
    assert_eq!(v(&s, "backup_verification_success", "pg"), Some(0.0));
    assert_eq!(v(&s, "backup_verification_success", "pg_sizes"), Some(0.0));
    assert!(
        target(&s, "pg_sizes")
            .summary
            .contains(&format!("missing: {gone}")),
        "{}",
        target(&s, "pg_sizes").summary
    );
    assert_eq!(
        v(&s, "backup_verification_success", "pg_plain"),
        Some(1.0),
        "no file checks without verify"
    );

    // A listed file with another size.
    std::fs::write(backup.join(&gone), b"short").unwrap();
    let s = collect_at(&m, now).await;
    assert!(
        target(&s, "pg_sizes")
            .summary
            .contains(&format!("another size: {gone}")),
        "{}",
        target(&s, "pg_sizes").summary
    );

    // Edit the manifest itself: its Manifest-Checksum no longer matches.
    let text = std::fs::read_to_string(&manifest).unwrap();
    let edited = text.replacen("\"Size\": ", "\"Size\": 1", 1);
    assert_ne!(text, edited);
    std::fs::write(&manifest, edited).unwrap();
    let s = collect_at(&m, now).await;
    assert_eq!(v(&s, "backup_source_up", "pg_plain"), Some(1.0));
    assert_eq!(v(&s, "backup_verification_success", "pg_plain"), Some(0.0));
    assert!(target(&s, "pg_plain")
        .summary
        .contains("Manifest-Checksum does not match"));

    // Make the backup old.
    let old = now - Duration::from_secs(40 * DAY);
    set_mtime(&manifest, old);
    let s = collect_at(&m, now).await;
    assert_eq!(v(&s, "backup_snapshots", "pg_plain"), Some(0.0));
    assert_eq!(
        v(&s, "backup_last_success_timestamp_seconds", "pg_plain"),
        Some(secs(old))
    );

    // Truncated manifest: down, stale values kept, but not a stale pass.
    std::fs::write(&manifest, &text.as_bytes()[..text.len() / 3]).unwrap();
    let s = collect_at(&m, now).await;
    assert_eq!(v(&s, "backup_source_up", "pg_plain"), Some(0.0));
    assert_eq!(v(&s, "backup_verification_success", "pg_plain"), Some(0.0));
    assert_eq!(
        v(&s, "backup_last_success_timestamp_seconds", "pg_plain"),
        Some(secs(old))
    );
}

/// The `Last-Modified` of the manifest's `backup_label` entry, in seconds.
fn label_time(manifest: &Path) -> f64 {
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
    let lm = m["Files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["Path"] == "backup_label")
        .expect("pg_basebackup lists backup_label")["Last-Modified"]
        .as_str()
        .unwrap()
        .to_string();
    let civil: jiff::civil::DateTime = lm
        .strip_suffix(" GMT")
        .expect("GMT")
        .replacen(' ', "T", 1)
        .parse()
        .unwrap();
    jiff::tz::TimeZone::UTC
        .to_timestamp(civil)
        .unwrap()
        .as_second() as f64
}

/// `pg_verifybackup`'s verdict on the backup folder (WAL parsing included).
fn pg_verifybackup(backup: &Path) -> bool {
    let exe = require("pg_verifybackup", "postgresql");
    Command::new(exe)
        .arg(backup)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[tokio::test]
async fn pg_verification_agrees_with_pg_verifybackup() {
    let dir = tempfile::tempdir().unwrap();
    let backup = real_basebackup(dir.path());
    let mut checksums = BackupSourceConfig::new("pg", BackupFormat::PgBackupManifest, "basebackup");
    checksums.verify = VerifyMode::Checksums;
    let mut sizes =
        BackupSourceConfig::new("pg_sizes", BackupFormat::PgBackupManifest, "basebackup");
    sizes.verify = VerifyMode::Sizes;
    let m = BackupMonitor::new(config(vec![checksums, sizes]), dir.path().to_path_buf());
    let verdicts = |s: &Snapshot| {
        (
            v(s, "backup_verification_success", "pg"),
            v(s, "backup_verification_success", "pg_sizes"),
        )
    };
    assert!(pg_verifybackup(&backup));
    let s = collect_at(&m, SystemTime::now()).await;
    assert_eq!(
        verdicts(&s),
        (Some(1.0), Some(1.0)),
        "{:?}",
        target(&s, "pg")
    );

    // Paths pg_verifybackup ignores: still a pass for both.
    std::fs::write(backup.join("pg_wal/unexpected"), "x").unwrap();
    std::fs::write(backup.join("standby.signal"), "").unwrap();
    std::fs::write(backup.join("recovery.signal"), "").unwrap();
    let mut auto = std::fs::read(backup.join("postgresql.auto.conf")).unwrap();
    auto.extend_from_slice(b"primary_conninfo = 'host=127.0.0.1'\n");
    std::fs::write(backup.join("postgresql.auto.conf"), auto).unwrap();
    assert!(pg_verifybackup(&backup));
    let s = collect_at(&m, SystemTime::now()).await;
    assert_eq!(
        verdicts(&s),
        (Some(1.0), Some(1.0)),
        "{:?}",
        target(&s, "pg")
    );

    // Added files, at the top and deep inside: "present on disk but not in the manifest".
    let db = std::fs::read_dir(backup.join("base"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    for added in [backup.join("restore-notes.txt"), db.join("99999")] {
        std::fs::write(&added, "not from the server").unwrap();
        assert!(!pg_verifybackup(&backup), "{added:?}");
        let s = collect_at(&m, SystemTime::now()).await;
        assert_eq!(verdicts(&s), (Some(0.0), Some(0.0)), "{added:?}");
        let summary = &target(&s, "pg_sizes").summary;
        assert!(summary.contains("not in the manifest"), "{summary}");
        std::fs::remove_file(&added).unwrap();
    }
    let s = collect_at(&m, SystemTime::now()).await;
    assert_eq!(verdicts(&s), (Some(1.0), Some(1.0)));

    // A modified file (same size): both see it with checksums.
    let victim = backup.join("global/pg_control");
    let original = std::fs::read(&victim).unwrap();
    let mut changed = original.clone();
    changed[100] ^= 0x01;
    std::fs::write(&victim, &changed).unwrap();
    assert!(!pg_verifybackup(&backup));
    let s = collect_at(&m, SystemTime::now()).await;
    assert_eq!(v(&s, "backup_verification_success", "pg"), Some(0.0));
    std::fs::write(&victim, &original).unwrap();

    // A deleted file.
    let pg_version = std::fs::read(backup.join("PG_VERSION")).unwrap();
    std::fs::remove_file(backup.join("PG_VERSION")).unwrap();
    assert!(!pg_verifybackup(&backup));
    let s = collect_at(&m, SystemTime::now()).await;
    assert_eq!(verdicts(&s), (Some(0.0), Some(0.0)));
    std::fs::write(backup.join("PG_VERSION"), pg_version).unwrap();
    assert!(pg_verifybackup(&backup));
    let s = collect_at(&m, SystemTime::now()).await;
    assert_eq!(verdicts(&s), (Some(1.0), Some(1.0)));
}

#[tokio::test]
async fn pg_backup_copied_without_times_does_not_look_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let backup = real_basebackup(dir.path());
    let manifest = backup.join("backup_manifest");
    let started = label_time(&manifest);
    let mut src = BackupSourceConfig::new("pg", BackupFormat::PgBackupManifest, "basebackup");
    src.max_age = Some(HumanDuration(Duration::from_secs(26 * 3600)));
    let m = BackupMonitor::new(config(vec![src]), dir.path().to_path_buf());
    // 40 days later the backup is copied without keeping times (`cp -r`): its
    // files, manifest included, are stamped with the copy's time.
    let later = SystemTime::now() + Duration::from_secs(40 * DAY);
    for f in walk(&backup) {
        set_mtime(&f, later);
    }
    let s = collect_at(&m, later + Duration::from_secs(60)).await;
    assert_eq!(
        v(&s, "backup_last_success_timestamp_seconds", "pg"),
        Some(started)
    );
    assert_eq!(v(&s, "backup_snapshots", "pg"), Some(0.0));
    let t = target(&s, "pg");
    assert_eq!(t.health, Health::Findings);
    assert!(t.summary.contains("over max_age"), "{}", t.summary);
    // The CLI and the status page see it as a late freshness fact, with its
    // max_age, and the lateness is not counted twice as a separate finding.
    let now = homelab_monitor::core::clock::unix_seconds(later + Duration::from_secs(60)) as i64;
    let fresh: Vec<&Fact> = t
        .facts
        .iter()
        .filter(|f| matches!(f, Fact::Freshness { .. }))
        .collect();
    assert_eq!(fresh.len(), 1, "{:?}", t.facts);
    assert!(fresh[0].is_late(now), "{:?}", fresh[0]);
    assert!(
        matches!(fresh[0], Fact::Freshness { item, last_success: Some(l), max_age_seconds: Some(m) }
            if item == "pg" && *l == started.floor() as i64 && *m == 26 * 3600),
        "{:?}",
        fresh[0]
    );
    assert!(
        t.facts
            .iter()
            .all(|f| !matches!(f, Fact::Finding { detail, .. } if detail.contains("max_age"))),
        "{:?}",
        t.facts
    );
}

#[tokio::test]
async fn pg_checksum_verification_is_cost_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let backup = real_basebackup(dir.path());
    let files = manifest_files(&backup.join("backup_manifest"));
    let mut src = BackupSourceConfig::new("pg", BackupFormat::PgBackupManifest, "basebackup");
    src.verify = VerifyMode::Checksums;
    // 8 KiB per check: one relation page per check, the rest on later checks.
    src.verify_max_bytes = ByteSize(8192);
    let m = BackupMonitor::new(config(vec![src]), dir.path().to_path_buf());
    let s = collect_at(&m, SystemTime::now()).await;
    assert_eq!(
        v(&s, "backup_verification_success", "pg"),
        None,
        "not complete after one check"
    );
    assert!(
        target(&s, "pg").summary.contains("verified so far"),
        "{}",
        target(&s, "pg").summary
    );
    // Each check hashes at least one more file, so this ends.
    let mut checks = 1;
    while v(&s_again(&m).await, "backup_verification_success", "pg").is_none() {
        checks += 1;
        assert!(checks <= files.len() + 1, "verification never completes");
    }
    assert_eq!(
        v(&s_again(&m).await, "backup_verification_success", "pg"),
        Some(1.0)
    );
}

async fn s_again(m: &BackupMonitor) -> Snapshot {
    collect_at(m, SystemTime::now()).await
}

// ---------------------------------------------------------------- own manifest

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn own_manifest_runs_verification_and_failed_runs() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    write_data(&runs, &[("db.sql.gz", 4096), ("etc.tar", 1024)]);
    let db = std::fs::read(runs.join("db.sql.gz")).unwrap();
    let etc = std::fs::read(runs.join("etc.tar")).unwrap();
    let old = r#"{"version":1,"id":"n1","start":"2026-11-23T01:00:00Z","end":"2026-11-23T01:05:00Z","status":"success","size":10240,"files":3}"#;
    let new = format!(
        r#"{{"version":1,"id":"n2","start":"2026-11-24T01:00:00Z","end":"2026-11-24T01:05:00Z","status":"success",
"files":[{{"path":"db.sql.gz","size":4096,"sha256":"{}"}},{{"path":"etc.tar","size":1024,"sha256":"{}"}}]}}"#,
        sha256_hex(&db),
        sha256_hex(&etc)
    );
    std::fs::write(runs.join("2026-11-23.json"), old).unwrap();
    std::fs::write(runs.join("2026-11-24.json"), new).unwrap();
    let mut src = BackupSourceConfig::new("scripts", BackupFormat::Manifest, "runs/*.json");
    src.verify = VerifyMode::Checksums;
    src.max_age = Some(HumanDuration(Duration::from_secs(26 * 3600)));
    let m = BackupMonitor::new(config(vec![src]), dir.path().to_path_buf());
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_482_000 + 3600); // 2026-11-24T02:00:00Z
    let end2 = 1_795_482_000.0 + 300.0; // 2026-11-24T01:05:00Z
    let s = collect_at(&m, now).await;
    assert_eq!(v(&s, "backup_source_up", "scripts"), Some(1.0));
    assert_eq!(
        v(&s, "backup_last_success_timestamp_seconds", "scripts"),
        Some(end2)
    );
    assert_eq!(v(&s, "backup_last_size_bytes", "scripts"), Some(5120.0));
    assert_eq!(v(&s, "backup_last_files", "scripts"), Some(2.0));
    assert_eq!(v(&s, "backup_size_change_ratio", "scripts"), Some(0.5));
    assert_eq!(v(&s, "backup_snapshots", "scripts"), Some(2.0));
    assert_eq!(v(&s, "backup_verification_success", "scripts"), Some(1.0));
    assert_eq!(v(&s, "backup_last_run_success", "scripts"), Some(1.0));
    assert_eq!(target(&s, "scripts").health, Health::Ok);

    // A later failed run is not a success: the last success stays, and it is a finding.
    std::fs::write(
        runs.join("2026-11-25.json"),
        r#"{"version":1,"id":"n3","start":"2026-11-25T01:00:00Z","end":"2026-11-25T01:01:00Z","status":"partial","size":10}"#,
    )
    .unwrap();
    let later = now + Duration::from_secs(DAY);
    let s = collect_at(&m, later).await;
    assert_eq!(
        v(&s, "backup_last_success_timestamp_seconds", "scripts"),
        Some(end2)
    );
    assert_eq!(v(&s, "backup_snapshots", "scripts"), Some(2.0));
    let t = target(&s, "scripts");
    assert_eq!(t.health, Health::Findings);
    assert!(t.summary.contains("failed or is partial"), "{}", t.summary);
    assert_eq!(v(&s, "backup_last_run_success", "scripts"), Some(0.0));

    // Change a byte of a listed file (same size).
    let mut changed = etc.clone();
    changed[10] ^= 0xff;
    std::fs::write(runs.join("etc.tar"), &changed).unwrap();
    let s = collect_at(&m, now).await;
    assert_eq!(v(&s, "backup_verification_success", "scripts"), Some(0.0));
    // Delete one.
    std::fs::write(runs.join("etc.tar"), &etc).unwrap();
    std::fs::remove_file(runs.join("db.sql.gz")).unwrap();
    let s = collect_at(&m, now).await;
    assert_eq!(v(&s, "backup_verification_success", "scripts"), Some(0.0));
    assert!(target(&s, "scripts").summary.contains("missing: db.sql.gz"));
}

// ---------------------------------------------------------------- directory

#[tokio::test]
async fn directory_of_dumps() {
    let dir = tempfile::tempdir().unwrap();
    let dumps = dir.path().join("dumps");
    write_data(
        &dumps,
        &[("a.sql.gz", 100), ("b.sql.gz", 300), ("notes.txt", 5)],
    );
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_564_800);
    set_mtime(&dumps.join("a.sql.gz"), now - Duration::from_secs(2 * DAY));
    set_mtime(&dumps.join("b.sql.gz"), now - Duration::from_secs(DAY));
    set_mtime(&dumps.join("notes.txt"), now);
    let mut src = BackupSourceConfig::new("dumps", BackupFormat::Directory, "dumps");
    src.pattern = Some(GlobPattern("*.sql.gz".into()));
    let mut none = BackupSourceConfig::new("empty", BackupFormat::Directory, "dumps");
    none.pattern = Some(GlobPattern("*.tar.zst".into()));
    let missing = BackupSourceConfig::new("missing", BackupFormat::Directory, "no-such-folder");
    let m = BackupMonitor::new(config(vec![src, none, missing]), dir.path().to_path_buf());
    let s = collect_at(&m, now).await;
    assert_eq!(
        v(&s, "backup_last_success_timestamp_seconds", "dumps"),
        Some(secs(now) - DAY as f64)
    );
    assert_eq!(
        v(&s, "backup_oldest_timestamp_seconds", "dumps"),
        Some(secs(now) - 2.0 * DAY as f64)
    );
    assert_eq!(v(&s, "backup_last_size_bytes", "dumps"), Some(300.0));
    assert_eq!(v(&s, "backup_size_change_ratio", "dumps"), Some(3.0));
    assert_eq!(v(&s, "backup_snapshots", "dumps"), Some(2.0));
    // No matching file: readable, no backup.
    assert_eq!(v(&s, "backup_source_up", "empty"), Some(1.0));
    assert_eq!(v(&s, "backup_snapshots", "empty"), Some(0.0));
    assert_eq!(
        v(&s, "backup_last_success_timestamp_seconds", "empty"),
        Some(0.0)
    );
    assert!(target(&s, "empty").summary.contains("matches *.tar.zst"));
    // A missing folder is that source's error only.
    assert_eq!(v(&s, "backup_source_up", "missing"), Some(0.0));
    assert_eq!(
        v(&s, "backup_last_success_timestamp_seconds", "missing"),
        None
    );
    assert_eq!(target(&s, "missing").health, Health::Error);
    assert!(target(&s, "missing")
        .error
        .as_deref()
        .unwrap()
        .contains("does not exist"));

    // The newest dump gets old; a new, much smaller one arrives.
    write_data(&dumps, &[("c.sql.gz", 30)]);
    set_mtime(&dumps.join("c.sql.gz"), now);
    let s = collect_at(&m, now).await;
    assert_eq!(v(&s, "backup_size_change_ratio", "dumps"), Some(0.1));
    let s = collect_at(&m, now + Duration::from_secs(30 * DAY)).await;
    assert_eq!(v(&s, "backup_snapshots", "dumps"), Some(1.0));
}

// ---------------------------------------------------------------- config

fn load(yaml: &str) -> Result<homelab_monitor::core::config::ConfigFile, String> {
    parse(yaml, Path::new("monitoring-config.yaml")).map_err(|e| e.to_string())
}

#[test]
fn config_formats_are_validated_at_load() {
    let ok = load(
        "custom_monitors:\n  backup_validation:\n    enabled: true\n    check_interval: \"1d\"\n    retention_days: 30\n    sources:\n      - { name: nas, format: restic, path: \"backups/restic-snapshots.json\", max_age: \"26h\" }\n",
    )
    .unwrap();
    let b = ok.custom_monitors.backup_validation.unwrap();
    assert_eq!(b.sources[0].format, BackupFormat::Restic);
    assert_eq!(
        b.sources[0].max_age,
        Some(HumanDuration(Duration::from_secs(26 * 3600)))
    );

    let e = load("custom_monitors:\n  backup_validation:\n    sources:\n      - name: nas\n        format: resticc\n        path: x.json\n").unwrap_err();
    assert!(e.contains("monitoring-config.yaml"), "{e}");
    // The line that holds the bad format.
    assert!(e.contains("line 5"), "{e}");
    assert!(e.contains("sources[0].format"), "{e}");
    assert!(e.contains("unknown backup format `resticc`"), "{e}");
    assert!(e.contains("did you mean `restic`?"), "{e}");

    let e = load("custom_monitors:\n  backup_validation:\n    sources:\n      - { name: db, format: pg_manifest, path: x }\n").unwrap_err();
    assert!(e.contains("did you mean `pg_backup_manifest`?"), "{e}");

    let e = load("custom_monitors:\n  backup_validation:\n    sources:\n      - { name: b, format: borg, path: x, timezone: Mars/Olympus }\n").unwrap_err();
    assert!(e.contains("unknown time zone"), "{e}");
    assert!(load("custom_monitors:\n  backup_validation:\n    sources:\n      - { name: b, format: borg, path: x, timezone: Europe/Berlin }\n").is_ok());

    let e = load("custom_monitors:\n  backup_validation:\n    sources:\n      - { name: b, format: borg, path: x, stats_file: s.json }\n").unwrap_err();
    assert!(e.contains("applies to format restic only"), "{e}");

    let e = load("custom_monitors:\n  backup_validation:\n    sources:\n      - { name: b, format: borg, path: x, infofile: i.json }\n").unwrap_err();
    assert!(e.contains("did you mean `info_file`?"), "{e}");

    let e = load("custom_monitors:\n  backup_validation:\n    sources:\n      - { name: a, format: borg, path: x }\n      - { name: a, format: restic, path: y }\n").unwrap_err();
    assert!(e.contains("used twice"), "{e}");

    let e = load("custom_monitors:\n  backup_validation:\n    sources:\n      - { name: a, format: manifest, path: x, verify: everything }\n").unwrap_err();
    assert!(e.contains("verify"), "{e}");

    // Sets, run status and locks: restic/borg keys, checked at load.
    let b = load("custom_monitors:\n  backup_validation:\n    sources:\n      - { name: r, format: restic, path: x, group_by: [host, tags], max_sets: 5, set_max_age: { \"host=a\": 8d }, status_file: s.txt, repository: /srv/r }\n      - { name: b, format: borg, path: y, sets: [ { name: web, glob: \"web-*\" } ] }\n")
        .unwrap()
        .custom_monitors
        .backup_validation
        .unwrap();
    assert_eq!(
        b.sources[0].group_by,
        Some(vec![GroupField::Host, GroupField::Tags])
    );
    assert_eq!(b.sources[0].max_sets, 5);
    assert_eq!(b.sources[1].max_sets, 50);
    assert_eq!(b.sources[1].sets[0].glob.0, "web-*");
    let e = load("custom_monitors:\n  backup_validation:\n    sources:\n      - { name: b, format: borg, path: x, group_by: [host] }\n").unwrap_err();
    assert!(
        e.contains("`group_by` applies to format restic only"),
        "{e}"
    );
    let e = load("custom_monitors:\n  backup_validation:\n    sources:\n      - { name: r, format: restic, path: x, group_by: [hosts] }\n").unwrap_err();
    assert!(e.contains("group_by"), "{e}");
    let e = load("custom_monitors:\n  backup_validation:\n    sources:\n      - { name: d, format: directory, path: x, repository: /r }\n").unwrap_err();
    assert!(
        e.contains("`repository` applies to format restic, borg only"),
        "{e}"
    );
    let e = load("custom_monitors:\n  backup_validation:\n    sources:\n      - { name: b, format: borg, path: x, sets: [ { name: a, glob: \"a*\" }, { name: a, glob: \"b*\" } ] }\n").unwrap_err();
    assert!(e.contains("unique"), "{e}");
    let e = load("custom_monitors:\n  backup_validation:\n    sources:\n      - { name: r, format: restic, path: x, max_sets: 0 }\n").unwrap_err();
    assert!(e.contains("max_sets must be at least 1"), "{e}");
}

#[test]
fn schema_and_parser_agree() {
    use homelab_monitor::monitors::backups::manifest;
    let schema: serde_json::Value = serde_json::from_slice(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/schemas/backup-manifest.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let run = &schema["$defs"]["run"];
    let statuses: Vec<&str> = run["properties"]["status"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["success", "failed", "partial", "running"]);
    for st in &statuses {
        let doc = format!(
            r#"{{"version":1,"id":"x","start":"2026-11-24T01:00:00Z","end":"2026-11-24T01:10:00Z","status":"{st}"}}"#
        );
        assert!(manifest::parse(doc.as_bytes()).is_ok(), "{st}");
    }
    let required: Vec<&str> = run["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(required, ["version", "id", "start", "status"]);
    // Each required key is required by the parser too.
    let full =
        serde_json::json!({"version":1,"id":"x","start":"2026-11-24T01:00:00Z","status":"failed"});
    assert!(manifest::parse(full.to_string().as_bytes()).is_ok());
    for key in required {
        let mut doc = full.clone();
        doc.as_object_mut().unwrap().remove(key);
        assert!(
            manifest::parse(doc.to_string().as_bytes()).is_err(),
            "{key} should be required"
        );
    }
}

#[test]
fn registered_from_config_with_interval_override() {
    use homelab_monitor::core::config::Config;
    use homelab_monitor::monitors::{build, Overrides};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("monitoring-config.yaml");
    std::fs::write(
        &path,
        "custom_monitors:\n  backup_validation:\n    check_interval: \"1d\"\n    sources:\n      - { name: nas, format: restic, path: snaps.json }\n",
    )
    .unwrap();
    let cfg = Config::load(&path).unwrap();
    let monitors = build(&cfg, &Overrides::default());
    let m = monitors
        .iter()
        .find(|m| m.name() == "backup_validation")
        .expect("backup monitor registered");
    assert_eq!(m.check_interval(), Duration::from_secs(DAY));
    assert!(
        m.describe().contains("nas (restic snaps.json)"),
        "{}",
        m.describe()
    );
    let ov = Overrides {
        interval: Some(Duration::from_secs(300)),
        ..Overrides::default()
    };
    let monitors = build(&cfg, &ov);
    let m = monitors
        .iter()
        .find(|m| m.name() == "backup_validation")
        .unwrap();
    assert_eq!(m.check_interval(), Duration::from_secs(300));
}

#[tokio::test]
async fn special_files_are_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("snaps.json");
    run(Command::new("mkfifo").arg(&fifo));
    let m = BackupMonitor::new(
        config(vec![
            BackupSourceConfig::new("fifo", BackupFormat::Restic, "snaps.json"),
            BackupSourceConfig::new("folder", BackupFormat::Borg, "."),
        ]),
        dir.path().to_path_buf(),
    );
    let s = collect_at(&m, SystemTime::now()).await;
    for src in ["fifo", "folder"] {
        assert_eq!(v(&s, "backup_source_up", src), Some(0.0));
        assert!(
            target(&s, src)
                .error
                .as_deref()
                .unwrap()
                .contains("not a regular file"),
            "{:?}",
            target(&s, src)
        );
    }
}

// ---------------------------------------------------------------- issue 20: sets, runs, locks

/// `restic snapshots --json` of `repo` into `dir/snapshots.json`; the parsed list.
fn restic_snapshots(dir: &Path, repo: &Path, cache: &Path) -> serde_json::Value {
    let out = run(restic(repo, cache).args(["snapshots", "--json"]));
    std::fs::write(dir.join("snapshots.json"), &out).unwrap();
    serde_json::from_slice(&out).unwrap()
}

/// restic's `--time` (zone-less, read in the command's TZ=UTC) for `t`.
fn restic_time(t: SystemTime) -> String {
    let ts = jiff::Timestamp::from_second(secs(t) as i64).unwrap();
    ts.strftime("%Y-%m-%d %H:%M:%S").to_string()
}

fn set_value(s: &Snapshot, metric: &str, source: &str, set: &str) -> Option<f64> {
    s.value(metric, &[("source", source), ("set", set)])
}

#[tokio::test]
async fn restic_sets_a_stale_host_is_not_hidden_by_a_fresh_one() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, cache) = (dir.path().join("repo"), dir.path().join("cache"));
    let (web, db) = (dir.path().join("web"), dir.path().join("db"));
    write_data(&web, &[("index.html", 3000)]);
    write_data(&db, &[("dump.sql", 5000), ("dump2.sql", 100)]);
    run(restic(&repo, &cache).arg("init"));
    let now = SystemTime::now();
    let backup = |host: &str, path: &Path, at: SystemTime, tag: Option<&str>| {
        let mut c = restic(&repo, &cache);
        c.env("TZ", "UTC")
            .args(["backup", "--host", host, "--time", &restic_time(at)]);
        if let Some(t) = tag {
            c.args(["--tag", t]);
        }
        run(c.arg(path));
    };
    // db stopped 10 days ago; web backs up daily, the newest an hour ago.
    backup("db", &db, now - Duration::from_secs(11 * DAY), None);
    backup("db", &db, now - Duration::from_secs(10 * DAY), None);
    backup("web", &web, now - Duration::from_secs(DAY + 3600), None);
    backup("web", &web, now - Duration::from_secs(3600), None);
    // A one-off tagged backup of web, 20 days ago: a set of its own.
    backup(
        "web",
        &web,
        now - Duration::from_secs(20 * DAY),
        Some("manual"),
    );
    let snaps = restic_snapshots(dir.path(), &repo, &cache);
    // The newest time restic itself reports for a host and tag.
    let newest = |host: &str, tagged: bool| -> f64 {
        snaps
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| {
                s["hostname"] == host && s.get("tags").is_some_and(|t| !t.is_null()) == tagged
            })
            .map(|s| {
                let t: jiff::Timestamp = s["time"].as_str().unwrap().parse().unwrap();
                t.as_second() as f64 + f64::from(t.subsec_nanosecond()) / 1e9
            })
            .max_by(f64::total_cmp)
            .unwrap()
    };
    let db_set = format!("host=db paths={}", db.display());
    let web_set = format!("host=web paths={}", web.display());
    let manual_set = format!("host=web paths={} tags=manual", web.display());

    let mut src = BackupSourceConfig::new("shared", BackupFormat::Restic, "snapshots.json");
    src.max_age = Some(HumanDuration(Duration::from_secs(26 * 3600)));
    src.set_max_age.insert(
        manual_set.clone(),
        HumanDuration(Duration::from_secs(365 * DAY)),
    );
    let m = BackupMonitor::new(config(vec![src.clone()]), dir.path().to_path_buf());
    let s = collect_at(&m, now).await;
    assert_eq!(v(&s, "backup_sets", "shared"), Some(3.0));
    assert_eq!(v(&s, "backup_sets_truncated", "shared"), Some(0.0));
    let last = |set: &str| {
        set_value(
            &s,
            "backup_set_last_success_timestamp_seconds",
            "shared",
            set,
        )
    };
    assert_eq!(last(&db_set), Some(newest("db", false)));
    assert_eq!(last(&web_set), Some(newest("web", false)));
    assert_eq!(last(&manual_set), Some(newest("web", true)));
    assert_eq!(
        set_value(&s, "backup_set_snapshots", "shared", &db_set),
        Some(2.0)
    );
    // The set's recovery window starts at its oldest snapshot (restic's own time).
    let oldest_db = snaps
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["hostname"] == "db")
        .map(|s| {
            let t: jiff::Timestamp = s["time"].as_str().unwrap().parse().unwrap();
            t.as_second() as f64 + f64::from(t.subsec_nanosecond()) / 1e9
        })
        .min_by(f64::total_cmp)
        .unwrap();
    assert!(oldest_db < newest("db", false));
    assert_eq!(
        set_value(&s, "backup_set_oldest_timestamp_seconds", "shared", &db_set),
        Some(oldest_db)
    );
    // ... and so does its recovery window (every snapshot restic lists is restorable).
    assert_eq!(
        set_value(
            &s,
            "backup_oldest_restorable_timestamp_seconds",
            "shared",
            &db_set
        ),
        Some(oldest_db)
    );
    assert_eq!(
        set_value(&s, "backup_set_max_age_seconds", "shared", &manual_set),
        Some(365.0 * DAY as f64)
    );
    assert_eq!(
        set_value(&s, "backup_set_max_age_seconds", "shared", &db_set),
        Some(26.0 * 3600.0)
    );
    // The per-source series is the stalest set's newest among the sets
    // judged by the source's max_age: the one-off manual set (its own
    // set_max_age of a year, 20 days old) does not make BackupTooOld fire;
    // db, stopped 10 days ago, does.
    assert_eq!(
        v(&s, "backup_last_success_timestamp_seconds", "shared"),
        Some(newest("db", false))
    );
    // The status page: one freshness fact per set; db is late, web is not.
    let t = target(&s, "shared");
    let fresh = |set: &str| {
        t.facts
            .iter()
            .find_map(|f| match f {
                Fact::Freshness {
                    item,
                    last_success,
                    max_age_seconds,
                } if *item == format!("shared set {set}") => {
                    Some((*last_success, *max_age_seconds))
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("no freshness fact for {set}: {:?}", t.facts))
    };
    let now_s = secs(now) as i64;
    let (db_last, db_max) = fresh(&db_set);
    assert!(now_s - db_last.unwrap() > db_max.unwrap(), "db is late");
    let (web_last, web_max) = fresh(&web_set);
    assert!(now_s - web_last.unwrap() < web_max.unwrap(), "web is fresh");
    assert_eq!(t.health, Health::Findings);
    assert!(
        t.summary.contains(&format!("set {db_set} stopped")),
        "{}",
        t.summary
    );
    assert!(
        !t.summary.contains(&format!("set {web_set} stopped")),
        "{}",
        t.summary
    );
    assert!(!t.summary.contains("tags=manual stopped"), "{}", t.summary);

    // group_by host: the tagged one-off joins web's set.
    let mut by_host = src.clone();
    by_host.group_by = Some(vec![GroupField::Host]);
    by_host.max_sets = 1;
    let m = BackupMonitor::new(config(vec![by_host]), dir.path().to_path_buf());
    let s = collect_at(&m, now).await;
    assert_eq!(v(&s, "backup_sets", "shared"), Some(2.0));
    // Bounded: max_sets 1 exports the first set by label and says so.
    assert_eq!(v(&s, "backup_sets_truncated", "shared"), Some(1.0));
    assert_eq!(
        set_value(
            &s,
            "backup_set_last_success_timestamp_seconds",
            "shared",
            "host=db"
        ),
        Some(newest("db", false))
    );
    assert_eq!(
        set_value(
            &s,
            "backup_set_last_success_timestamp_seconds",
            "shared",
            "host=web"
        ),
        None
    );
    assert!(target(&s, "shared").summary.contains("over max_sets 1"));

    // An empty repository: no set, and not fresh.
    std::fs::write(dir.path().join("snapshots.json"), "[]").unwrap();
    let m = BackupMonitor::new(config(vec![src]), dir.path().to_path_buf());
    let s = collect_at(&m, now).await;
    assert_eq!(v(&s, "backup_sets", "shared"), Some(0.0));
    assert_eq!(
        v(&s, "backup_last_success_timestamp_seconds", "shared"),
        Some(0.0)
    );
    assert_eq!(target(&s, "shared").health, Health::Findings);
}

#[tokio::test]
async fn borg_sets_by_archive_glob() {
    let dir = tempfile::tempdir().unwrap();
    let (base, repo, data) = (
        dir.path().join("home"),
        dir.path().join("repo"),
        dir.path().join("data"),
    );
    run(borg(&base, &repo).args(["init", "-e", "repokey"]));
    write_data(&data, &[("a.bin", 1000)]);
    let now = SystemTime::now();
    let create = |name: &str, at: SystemTime| {
        let ts = jiff::Timestamp::from_second(secs(at) as i64)
            .unwrap()
            .strftime("%Y-%m-%dT%H:%M:%S")
            .to_string();
        run(borg(&base, &repo)
            .args(["create", "--timestamp", &ts])
            .arg(format!("::{name}"))
            .arg(&data));
    };
    create("web-1", now - Duration::from_secs(2 * 3600));
    create("db-1", now - Duration::from_secs(9 * DAY));
    create("laptop-1", now - Duration::from_secs(3600));
    let list = run(borg(&base, &repo).args(["list", "--json"]));
    std::fs::write(dir.path().join("list.json"), &list).unwrap();
    let list: serde_json::Value = serde_json::from_slice(&list).unwrap();
    let time_of = |name: &str| -> f64 {
        let a = list["archives"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == name)
            .unwrap();
        let dt: jiff::civil::DateTime = a["time"].as_str().unwrap().parse().unwrap();
        jiff::tz::TimeZone::UTC
            .to_timestamp(dt)
            .unwrap()
            .as_second() as f64
    };
    let mut src = BackupSourceConfig::new("b", BackupFormat::Borg, "list.json");
    src.timezone = Some(TimeZoneName("UTC".into()));
    src.max_age = Some(HumanDuration(Duration::from_secs(DAY)));
    src.sets = vec![
        homelab_monitor::monitors::backups::BorgSet {
            name: "web".into(),
            glob: GlobPattern("web-*".into()),
        },
        homelab_monitor::monitors::backups::BorgSet {
            name: "db".into(),
            glob: GlobPattern("db-*".into()),
        },
    ];
    let m = BackupMonitor::new(config(vec![src]), dir.path().to_path_buf());
    let s = collect_at(&m, now).await;
    let last = |set: &str| set_value(&s, "backup_set_last_success_timestamp_seconds", "b", set);
    assert_eq!(last("web"), Some(time_of("web-1")));
    assert_eq!(last("db"), Some(time_of("db-1")));
    // Archives that match no set are tracked as `other`, never dropped.
    assert_eq!(last("other"), Some(time_of("laptop-1")));
    assert_eq!(v(&s, "backup_sets", "b"), Some(3.0));
    let t = target(&s, "b");
    assert!(t.summary.contains("set db stopped"), "{}", t.summary);
    assert!(!t.summary.contains("set web stopped"), "{}", t.summary);
    // No checkpoint is the newest archive: the last run succeeded.
    assert_eq!(v(&s, "backup_last_run_success", "b"), Some(1.0));
}

/// `{ restic backup --json ARGS 2>&1; echo "exit: $?"; }` as the README's job writes it.
fn restic_status(repo: &Path, cache: &Path, path: &Path) -> Vec<u8> {
    let out = restic(repo, cache)
        .args(["backup", "--json"])
        .arg(path)
        .output()
        .unwrap();
    let mut text = out.stdout;
    text.extend_from_slice(&out.stderr);
    text.extend_from_slice(format!("exit: {}\n", out.status.code().unwrap_or(-1)).as_bytes());
    text
}

#[tokio::test]
async fn restic_last_run_from_the_jobs_status_file() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, cache, data) = (
        dir.path().join("repo"),
        dir.path().join("cache"),
        dir.path().join("data"),
    );
    run(restic(&repo, &cache).arg("init"));
    write_data(&data, &[("a.bin", 1000)]);
    let ok = restic_status(&repo, &cache, &data);
    std::fs::write(dir.path().join("status.txt"), &ok).unwrap();
    restic_snapshots(dir.path(), &repo, &cache);
    let mut src = BackupSourceConfig::new("r", BackupFormat::Restic, "snapshots.json");
    src.status_file = Some("status.txt".into());
    let m = BackupMonitor::new(config(vec![src.clone()]), dir.path().to_path_buf());
    let now = SystemTime::now();
    let s = collect_at(&m, now).await;
    assert_eq!(v(&s, "backup_source_up", "r"), Some(1.0));
    assert_eq!(v(&s, "backup_last_run_success", "r"), Some(1.0));
    let written = std::fs::metadata(dir.path().join("status.txt"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        v(&s, "backup_last_run_timestamp_seconds", "r"),
        Some(secs(written))
    );

    // restic's own JSON summary alone (no exit line) is a success too.
    let summary_only: Vec<u8> = String::from_utf8_lossy(&ok)
        .lines()
        .filter(|l| l.contains("\"message_type\":\"summary\""))
        .flat_map(|l| format!("{l}\n").into_bytes())
        .collect();
    assert!(
        !summary_only.is_empty(),
        "restic backup --json prints a summary"
    );
    std::fs::write(dir.path().join("status.txt"), &summary_only).unwrap();
    assert_eq!(
        v(&collect_at(&m, now).await, "backup_last_run_success", "r"),
        Some(1.0)
    );

    // A failed run (the backed-up folder is gone): restic exits nonzero.
    let failed = restic_status(&repo, &cache, &dir.path().join("gone"));
    assert!(
        !failed.ends_with(b"exit: 0\n"),
        "{}",
        String::from_utf8_lossy(&failed)
    );
    std::fs::write(dir.path().join("status.txt"), &failed).unwrap();
    let s = collect_at(&m, now).await;
    assert_eq!(v(&s, "backup_last_run_success", "r"), Some(0.0));
    assert_eq!(v(&s, "backup_source_up", "r"), Some(1.0));
    let t = target(&s, "r");
    assert_eq!(t.health, Health::Findings);
    assert!(
        t.summary.contains("backup run failed (exit status"),
        "{}",
        t.summary
    );

    // A job killed before it wrote anything: not understood, never a success.
    std::fs::write(dir.path().join("status.txt"), b"").unwrap();
    let s = collect_at(&m, now).await;
    assert_eq!(v(&s, "backup_source_up", "r"), Some(0.0));
    assert_eq!(v(&s, "backup_last_run_success", "r"), None);
    // A missing status file too.
    std::fs::remove_file(dir.path().join("status.txt")).unwrap();
    let s = collect_at(&m, now).await;
    assert_eq!(v(&s, "backup_source_up", "r"), Some(0.0));
    assert_eq!(v(&s, "backup_last_run_success", "r"), None);

    // Without a status file restic's snapshot list cannot tell: absent, not 1.
    let m = BackupMonitor::new(
        config(vec![BackupSourceConfig::new(
            "r",
            BackupFormat::Restic,
            "snapshots.json",
        )]),
        dir.path().to_path_buf(),
    );
    let s = collect_at(&m, now).await;
    assert_eq!(v(&s, "backup_last_run_success", "r"), None);
}

/// The files directly in `dir` (none when it does not exist).
fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn mtime(p: &Path) -> SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

/// Hold a real lock with `cmd` (its stdin is a pipe we keep open), wait until
/// `lock_dir` has an entry, then SIGKILL the tool: the lock stays behind.
fn leave_a_lock(cmd: &mut Command, lock_dir: &Path) -> PathBuf {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // A complete lock file, not restic's `<id>-tmp-XXXX` being written.
    let lock = common::wait_for("the tool to take its lock", 60, || {
        entries(lock_dir).into_iter().find(|p| {
            p.file_name()
                .is_some_and(|n| !n.to_string_lossy().contains("-tmp-"))
        })
    });
    child.kill().unwrap();
    drop(child.stdin.take());
    child.wait().unwrap();
    lock
}

#[tokio::test]
async fn stale_locks_are_counted_without_taking_one() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, cache) = (dir.path().join("repo"), dir.path().join("cache"));
    run(restic(&repo, &cache).arg("init"));
    restic_snapshots(dir.path(), &repo, &cache);
    let mut src = BackupSourceConfig::new("r", BackupFormat::Restic, "snapshots.json");
    src.repository = Some("repo".into());
    let m = BackupMonitor::new(config(vec![src]), dir.path().to_path_buf());
    let s = collect_at(&m, SystemTime::now()).await;
    assert_eq!(v(&s, "backup_locks", "r"), Some(0.0));
    assert_eq!(v(&s, "backup_oldest_lock_age_seconds", "r"), None);

    // A `restic backup --stdin` killed while it reads: its lock stays.
    let lock = leave_a_lock(
        restic(&repo, &cache).args(["backup", "--stdin", "--stdin-filename", "db.sql"]),
        &repo.join("locks"),
    );
    let before = entries(&repo.join("locks"));
    let taken = mtime(&lock);
    let s = collect_at(&m, taken + Duration::from_secs(60)).await;
    assert_eq!(v(&s, "backup_source_up", "r"), Some(1.0));
    assert_eq!(v(&s, "backup_locks", "r"), Some(1.0));
    assert_eq!(v(&s, "backup_oldest_lock_age_seconds", "r"), Some(60.0));
    assert!(!target(&s, "r").summary.contains("lock is"));
    // Two days later nobody refreshed it: stale, and a finding.
    let s = collect_at(&m, taken + Duration::from_secs(2 * DAY)).await;
    assert_eq!(
        v(&s, "backup_oldest_lock_age_seconds", "r"),
        Some(2.0 * DAY as f64)
    );
    assert!(
        target(&s, "r")
            .summary
            .contains("a repository lock is 2 days old"),
        "{}",
        target(&s, "r").summary
    );
    // Reading took no lock and removed none.
    assert_eq!(entries(&repo.join("locks")), before);
    run(restic(&repo, &cache).args(["unlock", "--remove-all"]));
    let s = collect_at(&m, SystemTime::now()).await;
    assert_eq!(v(&s, "backup_locks", "r"), Some(0.0));
    assert_eq!(v(&s, "backup_oldest_lock_age_seconds", "r"), None);

    // borg: `borg with-lock` killed while its command runs leaves lock.exclusive.
    let (base, brepo) = (dir.path().join("home"), dir.path().join("borg"));
    run(borg(&base, &brepo).args(["init", "-e", "repokey"]));
    std::fs::write(
        dir.path().join("list.json"),
        run(borg(&base, &brepo).args(["list", "--json"])),
    )
    .unwrap();
    let mut bsrc = BackupSourceConfig::new("b", BackupFormat::Borg, "list.json");
    bsrc.repository = Some("borg".into());
    let mut missing = BackupSourceConfig::new("typo", BackupFormat::Borg, "list.json");
    missing.repository = Some("no-such-repo".into());
    let m = BackupMonitor::new(config(vec![bsrc, missing]), dir.path().to_path_buf());
    let s = collect_at(&m, SystemTime::now()).await;
    assert_eq!(v(&s, "backup_locks", "b"), Some(0.0));
    // A repository path that is not a repository is an error, never "no locks".
    assert_eq!(v(&s, "backup_source_up", "typo"), Some(0.0));
    assert_eq!(v(&s, "backup_locks", "typo"), None);
    let lock = leave_a_lock(
        borg(&base, &brepo).arg("with-lock").arg(&brepo).arg("cat"),
        &brepo.join("lock.exclusive"),
    );
    let taken = mtime(&lock);
    let s = collect_at(&m, taken + Duration::from_secs(DAY + 3600)).await;
    assert_eq!(v(&s, "backup_source_up", "b"), Some(1.0));
    assert_eq!(v(&s, "backup_locks", "b"), Some(1.0));
    assert_eq!(
        v(&s, "backup_oldest_lock_age_seconds", "b"),
        Some((DAY + 3600) as f64)
    );
    run(borg(&base, &brepo).arg("break-lock").arg(&brepo));
    let s = collect_at(&m, SystemTime::now()).await;
    assert_eq!(v(&s, "backup_locks", "b"), Some(0.0));
}

// ---------------------------------------------------------------- pgBackRest

/// `pgbackrest` and PostgreSQL's `initdb`, or None after printing SKIP.
fn pgbackrest_tools() -> Option<(PathBuf, PathBuf)> {
    let find = |tool: &str| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/lib/postgresql/15/bin")])
            .map(|d| d.join(tool))
            .find(|c| c.is_file())
    };
    match (find("pgbackrest"), find("initdb")) {
        (Some(p), Some(i)) => Some((p, i)),
        _ => {
            eprintln!(
                "SKIP: pgbackrest or initdb is not installed; this test needs them: apt-get install -y pgbackrest postgresql"
            );
            None
        }
    }
}

/// A real PostgreSQL archiving into a real local pgBackRest repository
/// (stanza `main`): stanza-create, a full and an incr backup. Returns the
/// bytes of `pgbackrest info --output=json`.
fn real_pgbackrest_info(root: &Path, pgbackrest: &Path, initdb: &Path) -> Vec<u8> {
    let initdb = std::fs::canonicalize(initdb).unwrap();
    let bin = initdb.parent().map(Path::to_path_buf).unwrap_or_default();
    let is_root = String::from_utf8_lossy(&run(Command::new("id").arg("-u"))).trim() == "0";
    if is_root {
        let uid: u32 = String::from_utf8_lossy(&run(Command::new("id").args(["-u", "postgres"])))
            .trim()
            .parse()
            .unwrap();
        std::os::unix::fs::chown(root, Some(uid), None).unwrap();
    }
    let data = root.join("cluster");
    let conf = root.join("pgbackrest.conf");
    let port = free_port().to_string();
    std::fs::write(
        &conf,
        format!(
            "[global]\nrepo1-path={r}/repo\nrepo1-retention-full=2\nlock-path={r}/lock\nlog-path={r}/log\nlog-level-file=off\nlog-level-console=warn\nspool-path={r}/spool\nstart-fast=y\n\n[main]\npg1-path={d}\npg1-port={port}\npg1-socket-path={r}\npg1-user=postgres\n",
            r = root.display(),
            d = data.display()
        ),
    )
    .unwrap();
    let pg = Postgres {
        bin,
        data: data.clone(),
        as_postgres: is_root,
    };
    let d = data.display().to_string();
    // Superuser `postgres` whoever runs the test (pg1-user above).
    run(&mut pg.cmd(
        "initdb",
        &[
            "-D".into(),
            d.clone(),
            "-A".into(),
            "trust".into(),
            "-U".into(),
            "postgres".into(),
        ],
    ));
    // Unix socket in the temp folder only: no TCP listener at all.
    let archive = format!(
        "{} --config={} --stanza=main archive-push %p",
        pgbackrest.display(),
        conf.display()
    );
    let opts = format!(
        "-p {port} -k {} -c listen_addresses='' -c wal_level=replica -c archive_mode=on -c archive_command='{archive}'",
        root.display()
    );
    run(&mut pg.cmd(
        "pg_ctl",
        &[
            "-D".into(),
            d,
            "-o".into(),
            opts,
            "-l".into(),
            root.join("log.txt").display().to_string(),
            "-w".into(),
            "start".into(),
        ],
    ));
    let brc = |args: &[&str]| {
        let mut line = format!(
            "{} --config={} --stanza=main",
            shell_quote(&pgbackrest.to_string_lossy()),
            shell_quote(&conf.to_string_lossy())
        );
        for a in args {
            line.push(' ');
            line.push_str(a);
        }
        let mut c = if is_root {
            let mut c = Command::new("su");
            c.args(["postgres", "-s", "/bin/sh", "-c", &line]);
            c
        } else {
            let mut c = Command::new("/bin/sh");
            c.args(["-c", &line]);
            c
        };
        run(&mut c)
    };
    brc(&["stanza-create"]);
    brc(&["--type=full", "backup"]);
    brc(&["--type=incr", "backup"]);
    let info = brc(&["--output=json", "info"]);
    drop(pg);
    info
}

#[tokio::test]
async fn real_pgbackrest_stanza_full_and_incr() {
    let Some((pgbackrest, initdb)) = pgbackrest_tools() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let info = real_pgbackrest_info(dir.path(), &pgbackrest, &initdb);
    std::fs::write(dir.path().join("info.json"), &info).unwrap();
    let is_root = String::from_utf8_lossy(&run(Command::new("id").arg("-u"))).trim() == "0";
    let info_line = format!(
        "{} --config={} --stanza=main --output=json info",
        shell_quote(&pgbackrest.to_string_lossy()),
        shell_quote(&dir.path().join("pgbackrest.conf").to_string_lossy())
    );
    assert_command_source_matches_file(
        dir.path(),
        BackupFormat::Pgbackrest,
        "info.json",
        is_root,
        &info_line,
    )
    .await;
    let doc: serde_json::Value = serde_json::from_slice(&info).unwrap();
    let stanza = &doc[0];
    assert_eq!(stanza["name"], "main");
    let backups = stanza["backup"].as_array().unwrap();
    assert_eq!(backups.len(), 2, "{doc}");
    assert_eq!(backups[0]["type"], "full");
    assert_eq!(backups[1]["type"], "incr");
    assert!(backups.iter().all(|b| b["error"] == false), "{doc}");
    let stop = |b: &serde_json::Value| b["timestamp"]["stop"].as_f64().unwrap();
    // The WAL archive pgBackRest reports holds both backups' segments.
    let (min, max) = (
        stanza["archive"][0]["min"].as_str().unwrap(),
        stanza["archive"][0]["max"].as_str().unwrap(),
    );
    assert!(backups.iter().all(|b| {
        let (a, z) = (
            b["archive"]["start"].as_str().unwrap(),
            b["archive"]["stop"].as_str().unwrap(),
        );
        min <= a && z <= max
    }));

    let mut src = BackupSourceConfig::new("pg", BackupFormat::Pgbackrest, "info.json");
    src.max_age = Some(HumanDuration(Duration::from_secs(DAY)));
    src.min_recovery_window = Some(HumanDuration(Duration::from_secs(7 * DAY)));
    let m = BackupMonitor::new(config(vec![src.clone()]), dir.path().to_path_buf());
    let now = SystemTime::now() + Duration::from_secs(60);
    let s = collect_at(&m, now).await;
    let t = target(&s, "pg");
    assert_eq!(v(&s, "backup_source_up", "pg"), Some(1.0), "{t:?}");
    assert_eq!(v(&s, "backup_sets", "pg"), Some(1.0));
    let set = |metric: &str| set_value(&s, metric, "pg", "main");
    assert_eq!(
        set("backup_set_last_success_timestamp_seconds"),
        Some(stop(&backups[1]))
    );
    assert_eq!(set("backup_set_snapshots"), Some(2.0));
    assert_eq!(
        set("backup_set_last_size_bytes"),
        backups[1]["info"]["size"].as_f64()
    );
    assert_eq!(
        set("backup_set_repository_size_bytes"),
        backups[1]["info"]["repository"]["size"].as_f64()
    );
    // Recovery window: from the full backup's end (its WAL is archived).
    assert_eq!(
        set("backup_oldest_restorable_timestamp_seconds"),
        Some(stop(&backups[0]))
    );
    assert_eq!(
        set("backup_set_oldest_timestamp_seconds"),
        Some(stop(&backups[0]))
    );
    assert_eq!(
        v(&s, "backup_last_success_timestamp_seconds", "pg"),
        Some(stop(&backups[1]))
    );
    assert_eq!(
        v(&s, "backup_last_size_bytes", "pg"),
        backups[1]["info"]["size"].as_f64()
    );
    assert_eq!(
        v(&s, "backup_size_change_ratio", "pg"),
        Some(
            backups[1]["info"]["size"].as_f64().unwrap()
                / backups[0]["info"]["size"].as_f64().unwrap()
        )
    );
    assert_eq!(v(&s, "backup_snapshots", "pg"), Some(2.0));
    assert_eq!(v(&s, "backup_last_run_success", "pg"), Some(1.0));
    assert_eq!(
        v(&s, "backup_min_recovery_window_seconds", "pg"),
        Some(7.0 * DAY as f64)
    );
    // pgBackRest reports no file counts: none is made up.
    assert_eq!(set("backup_set_last_files"), None);
    // A minutes-old stanza is short of a 7-day recovery window: a finding.
    assert_eq!(t.health, Health::Findings, "{t:?}");
    assert!(
        t.summary.contains("set main: recovery window")
            && t.summary.contains("shorter than min_recovery_window"),
        "{}",
        t.summary
    );

    // The newest backup flagged with page checksum errors (pgBackRest's
    // `error: true`, set here in the tool's own output): the last run is not
    // a success, and freshness falls back to the full backup.
    let mut bad = doc.clone();
    bad[0]["backup"][1]["error"] = serde_json::Value::Bool(true);
    std::fs::write(
        dir.path().join("info.json"),
        serde_json::to_vec(&bad).unwrap(),
    )
    .unwrap();
    let s = collect_at(&m, now).await;
    assert_eq!(v(&s, "backup_last_run_success", "pg"), Some(0.0));
    assert_eq!(
        set_value(
            &s,
            "backup_set_last_success_timestamp_seconds",
            "pg",
            "main"
        ),
        Some(stop(&backups[0]))
    );
    assert!(
        target(&s, "pg").summary.contains("page checksum errors"),
        "{}",
        target(&s, "pg").summary
    );

    // WAL expired from the archive (min moved past the full backup's
    // segments): the full backup cannot be restored; the window starts at
    // the incr, whose WAL is still there.
    let mut expired = doc.clone();
    expired[0]["archive"][0]["min"] = backups[1]["archive"]["start"].clone();
    std::fs::write(
        dir.path().join("info.json"),
        serde_json::to_vec(&expired).unwrap(),
    )
    .unwrap();
    let s = collect_at(&m, now).await;
    assert_eq!(
        set_value(
            &s,
            "backup_oldest_restorable_timestamp_seconds",
            "pg",
            "main"
        ),
        Some(stop(&backups[1]))
    );
    assert!(target(&s, "pg").summary.contains("cannot be restored"));

    // A truncated info file: up 0, the last good values kept (never a clean 0).
    std::fs::write(dir.path().join("info.json"), &info[..info.len() / 2]).unwrap();
    let s = collect_at(&m, now).await;
    assert_eq!(v(&s, "backup_source_up", "pg"), Some(0.0));
}

#[test]
fn pgbackrest_and_recovery_window_keys_are_validated_at_load() {
    let b = load("custom_monitors:\n  backup_validation:\n    sources:\n      - { name: p, format: pgbackrest, path: info.json, set_max_age: { main: 8d }, status_file: s.txt, min_recovery_window: 14d }\n      - { name: d, format: directory, path: x, min_recovery_window: 2d }\n")
        .unwrap()
        .custom_monitors
        .backup_validation
        .unwrap();
    assert_eq!(b.sources[0].format, BackupFormat::Pgbackrest);
    assert_eq!(
        b.sources[0].min_recovery_window,
        Some(HumanDuration(Duration::from_secs(14 * DAY)))
    );
    let e = load("custom_monitors:\n  backup_validation:\n    sources:\n      - { name: p, format: pgbackrest, path: x, repository: /r }\n").unwrap_err();
    assert!(
        e.contains("`repository` applies to format restic, borg only"),
        "{e}"
    );
    let b = load("custom_monitors:\n  backup_validation:\n    sources:\n      - { name: m, format: borgmatic, path: l.json, info_file: i.json, timezone: UTC, status_file: s.json, sets: [ { name: web, glob: \"web-*\" } ] }\n")
        .unwrap()
        .custom_monitors
        .backup_validation
        .unwrap();
    assert_eq!(b.sources[0].format, BackupFormat::Borgmatic);
    let e = load("custom_monitors:\n  backup_validation:\n    sources:\n      - { name: m, format: borgmatic, path: x, stats_file: s.json }\n").unwrap_err();
    assert!(e.contains("applies to format restic only"), "{e}");
    let e = load("custom_monitors:\n  backup_validation:\n    sources:\n      - { name: p, format: pgbackrest, path: x, min_recovery_window: 0s }\n").unwrap_err();
    assert!(
        e.contains("min_recovery_window must be longer than 0"),
        "{e}"
    );
    let e = load("custom_monitors:\n  backup_validation:\n    sources:\n      - { name: p, format: pgbackrest, path: x, recovery_window: 1d }\n").unwrap_err();
    assert!(e.contains("recovery_window"), "{e}");
}

// ---------------------------------------------------------------- borgmatic

/// `borgmatic` and `borg`, or None after printing SKIP.
fn borgmatic_tools() -> Option<(PathBuf, PathBuf)> {
    let find = |tool: &str| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|d| d.join(tool))
            .find(|c| c.is_file())
    };
    match (find("borgmatic"), find("borg")) {
        (Some(m), Some(b)) => Some((m, b)),
        _ => {
            eprintln!(
                "SKIP: borgmatic or borg is not installed; this test needs them: apt-get install -y borgmatic borgbackup"
            );
            None
        }
    }
}

#[tokio::test]
async fn real_borgmatic_two_repositories() {
    let Some((borgmatic, _borg)) = borgmatic_tools() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let data = root.join("data");
    write_data(&data, &[("a.bin", 40_000), ("b.bin", 20_000)]);
    // Two borgmatic configurations (a local and an "offsite" repository), as
    // borgmatic reads a folder of them; the offsite one stops after its first run.
    for name in ["local", "offsite"] {
        std::fs::write(
            root.join(format!("{name}.yaml")),
            format!(
                "location:\n    source_directories:\n        - {}\n    repositories:\n        - {}\nstorage:\n    encryption_passphrase: \"test-only-passphrase\"\n    archive_name_format: 'web-{{now:%Y-%m-%dT%H:%M:%S.%f}}'\nretention:\n    keep_daily: 7\n",
                data.display(),
                root.join(format!("repo-{name}")).display()
            ),
        )
        .unwrap();
    }
    let bm = |configs: &[&str], args: &[&str]| {
        let mut c = Command::new(&borgmatic);
        c.env("BORG_BASE_DIR", root.join("home"))
            // Borg writes local time without a zone: fix the zone of this run.
            .env("TZ", "UTC")
            .args(["--syslog-verbosity", "-1"]);
        // One --config with every file (a repeated --config replaces the earlier one).
        c.arg("--config");
        for cfg in configs {
            c.arg(root.join(format!("{cfg}.yaml")));
        }
        c.args(args);
        run(&mut c)
    };
    let both = ["local", "offsite"];
    bm(&both, &["init", "--encryption", "repokey"]);
    bm(&both, &["create"]);
    std::fs::remove_file(data.join("b.bin")).unwrap();
    let status = bm(&["local"], &["create", "--json"]);
    std::fs::write(root.join("status.json"), &status).unwrap();
    let list = bm(&both, &["list", "--json"]);
    let info = bm(&both, &["info", "--json", "--last", "2"]);
    std::fs::write(root.join("list.json"), &list).unwrap();
    std::fs::write(root.join("info.json"), &info).unwrap();
    let list: serde_json::Value = serde_json::from_slice(&list).unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");

    let utc = jiff::tz::TimeZone::UTC;
    let t = |s: &serde_json::Value| -> f64 {
        let dt: jiff::civil::DateTime = s.as_str().unwrap().parse().unwrap();
        utc.to_timestamp(dt).unwrap().as_second() as f64
    };
    let mut src = BackupSourceConfig::new("bm", BackupFormat::Borgmatic, "list.json");
    src.info_file = Some("info.json".into());
    src.timezone = Some(TimeZoneName("UTC".into()));
    src.status_file = Some("status.json".into());
    src.max_age = Some(HumanDuration(Duration::from_secs(DAY)));
    let m = BackupMonitor::new(config(vec![src]), root.to_path_buf());
    let s = collect_at(&m, SystemTime::now() + Duration::from_secs(60)).await;
    let tg = target(&s, "bm");
    assert_eq!(v(&s, "backup_source_up", "bm"), Some(1.0), "{tg:?}");
    assert_eq!(v(&s, "backup_sets", "bm"), Some(2.0));
    assert_eq!(v(&s, "backup_last_run_success", "bm"), Some(1.0));
    for (i, repo) in list.as_array().unwrap().iter().enumerate() {
        let set = format!("repo={}", repo["repository"]["location"].as_str().unwrap());
        let archives = repo["archives"].as_array().unwrap();
        // info --last 2 of the same repository, matched by its id.
        let detail = info
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["repository"]["id"] == repo["repository"]["id"])
            .unwrap();
        let newest = detail["archives"].as_array().unwrap().last().unwrap();
        let sv = |metric: &str| set_value(&s, metric, "bm", &set);
        assert_eq!(
            sv("backup_set_snapshots"),
            Some(archives.len() as f64),
            "{set} ({i})"
        );
        assert_eq!(
            sv("backup_set_last_success_timestamp_seconds"),
            Some(t(&newest["end"])),
            "{set}"
        );
        assert_eq!(
            sv("backup_set_last_size_bytes"),
            newest["stats"]["original_size"].as_f64()
        );
        assert_eq!(
            sv("backup_set_last_files"),
            newest["stats"]["nfiles"].as_f64()
        );
        // The recovery window starts at the repository's oldest archive
        // (its end time from info, as borg reports it).
        let oldest = detail["archives"][0]["end"].clone();
        assert_eq!(
            sv("backup_oldest_restorable_timestamp_seconds"),
            Some(t(&oldest)),
            "{set}"
        );
    }
    // The local repository holds 2 archives, the offsite 1: the local's
    // newest has 1 of 2 files.
    let local = format!("repo={}", root.join("repo-local").display());
    assert_eq!(
        set_value(&s, "backup_set_files_change_ratio", "bm", &local),
        Some(0.5)
    );
    // A repository-level info file is refused with the command to use.
    std::fs::write(root.join("info.json"), bm(&both, &["rinfo", "--json"])).unwrap();
    let s = collect_at(&m, SystemTime::now() + Duration::from_secs(60)).await;
    assert_eq!(v(&s, "backup_source_up", "bm"), Some(0.0));
    assert!(
        target(&s, "bm")
            .error
            .as_deref()
            .unwrap_or("")
            .contains("borgmatic info --json --last 2"),
        "{:?}",
        target(&s, "bm")
    );
}

// ---------------------------------------------------------------- barman

/// A shell line, as the postgres user when this test runs as root.
fn sh_as(as_postgres: bool, line: &str) -> Command {
    if as_postgres {
        let mut c = Command::new("su");
        c.args(["postgres", "-s", "/bin/sh", "-c", line]);
        c
    } else {
        let mut c = Command::new("/bin/sh");
        c.args(["-c", line]);
        c
    }
}

/// A `command:` source running the real tool (`line`, through the shell, as
/// postgres when root) gives the same series as the file source `file`
/// holding the same tool's output (issue 20).
async fn assert_command_source_matches_file(
    root: &Path,
    format: BackupFormat,
    file: &str,
    as_postgres: bool,
    line: &str,
) {
    let sh = sh_as(as_postgres, line);
    let argv = std::iter::once(sh.get_program())
        .chain(sh.get_args())
        .map(|a| a.to_string_lossy().to_string())
        .collect();
    let mut cmd = BackupSourceConfig::new("cmd", format, "");
    cmd.command = Some(BackupCommand {
        argv,
        timeout: None,
        env: Default::default(),
        env_files: Default::default(),
    });
    let mut c = config(vec![BackupSourceConfig::new("file", format, file), cmd]);
    c.allow_commands = true;
    let m = BackupMonitor::new(c, root.to_path_buf());
    assert_command_matches_file(&m, 5).await;
}

/// Stops barman's background `receive-wal` (started by `barman cron`).
struct BarmanStreaming {
    line: String,
    as_postgres: bool,
}

impl Drop for BarmanStreaming {
    fn drop(&mut self) {
        let _ = sh_as(self.as_postgres, &self.line)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[tokio::test]
async fn real_barman_streaming_backups() {
    let find = |tool: &str| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/lib/postgresql/15/bin")])
            .map(|d| d.join(tool))
            .find(|c| c.is_file())
    };
    let (Some(barman), Some(initdb)) = (find("barman"), find("initdb")) else {
        eprintln!("SKIP: barman or initdb is not installed; this test needs them: apt-get install -y barman postgresql");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let initdb = std::fs::canonicalize(initdb).unwrap();
    let bin = initdb.parent().map(Path::to_path_buf).unwrap_or_default();
    let is_root = String::from_utf8_lossy(&run(Command::new("id").arg("-u"))).trim() == "0";
    let user = if is_root {
        "postgres".to_string()
    } else {
        String::from_utf8_lossy(&run(Command::new("id").arg("-un")))
            .trim()
            .to_string()
    };
    let port = free_port().to_string();
    let home = root.join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(root.join("conf.d")).unwrap();
    let conf = root.join("barman.conf");
    std::fs::write(
        &conf,
        format!(
            "[barman]\nbarman_home = {home}\nbarman_user = {user}\nlog_file = {r}/barman.log\nlog_level = INFO\nconfiguration_files_directory = {r}/conf.d\n\n\
             [pg]\ndescription = \"test\"\nconninfo = host=127.0.0.1 port={port} user={pguser} dbname=postgres\n\
             streaming_conninfo = host=127.0.0.1 port={port} user={pguser}\nbackup_method = postgres\n\
             streaming_archiver = on\nimmediate_checkpoint = true\nslot_name = barman\ncreate_slot = auto\npath_prefix = {bin}\n",
            home = home.display(),
            r = root.display(),
            pguser = "postgres",
            bin = bin.display()
        ),
    )
    .unwrap();
    if is_root {
        run(Command::new("chown").args(["-R", "postgres"]).arg(root));
    }
    let data = root.join("cluster");
    let pg = Postgres {
        bin,
        data: data.clone(),
        as_postgres: is_root,
    };
    let d = data.display().to_string();
    run(&mut pg.cmd(
        "initdb",
        &[
            "-D".into(),
            d.clone(),
            "-A".into(),
            "trust".into(),
            "-U".into(),
            "postgres".into(),
        ],
    ));
    run(&mut pg.cmd(
        "pg_ctl",
        &[
            "-D".into(),
            d,
            "-o".into(),
            format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1",
                root.display()
            ),
            "-l".into(),
            root.join("log.txt").display().to_string(),
            "-w".into(),
            "start".into(),
        ],
    ));
    let bar = |args: &str| {
        format!(
            "{} -c {} {args}",
            shell_quote(&barman.to_string_lossy()),
            shell_quote(&conf.to_string_lossy())
        )
    };
    // Create the slot synchronously, then let `barman cron` start streaming WAL
    // (pg_receivewal) in the background, and wait until `barman check` sees
    // it running: switching WAL before the receiver is up loses the race.
    run(&mut sh_as(is_root, &bar("receive-wal --create-slot pg")));
    let _streaming = BarmanStreaming {
        line: bar("receive-wal --stop pg"),
        as_postgres: is_root,
    };
    let log = || std::fs::read_to_string(root.join("barman.log")).unwrap_or_default();
    let mut streaming = false;
    for _ in 0..60 {
        run(&mut sh_as(is_root, &bar("cron")));
        let out = sh_as(is_root, &bar("check pg")).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if text.contains("receive-wal running: OK") && text.contains("replication slot: OK") {
            streaming = true;
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(
        streaming,
        "barman never started streaming WAL\nbarman.log:\n{}",
        log()
    );
    run(&mut sh_as(
        is_root,
        &bar("switch-wal --force --archive --archive-timeout 60 pg"),
    ));
    let count = || -> usize {
        let list = run(&mut sh_as(is_root, &bar("-f json list-backups pg")));
        let doc: serde_json::Value = serde_json::from_slice(&list).unwrap();
        doc["pg"].as_array().map_or(0, Vec::len)
    };
    for n in 1..=2 {
        // barman names a backup by the second it starts: two in one second collide.
        std::thread::sleep(Duration::from_millis(1100));
        let out = run(&mut sh_as(
            is_root,
            &bar("backup --wait --wait-timeout 60 pg"),
        ));
        assert_eq!(
            count(),
            n,
            "backup {n} did not land:\n{}\nbarman.log:\n{}",
            String::from_utf8_lossy(&out),
            log()
        );
    }
    let list = run(&mut sh_as(is_root, &bar("-f json list-backups all")));
    std::fs::write(root.join("list.json"), &list).unwrap();
    assert_command_source_matches_file(
        root,
        BackupFormat::Barman,
        "list.json",
        is_root,
        &bar("-f json list-backups all"),
    )
    .await;
    let doc: serde_json::Value = serde_json::from_slice(&list).unwrap();
    let backups = doc["pg"].as_array().unwrap();
    assert_eq!(backups.len(), 2, "{doc}\nbarman.log:\n{}", log());
    assert!(backups.iter().all(|b| b["status"] == "DONE"), "{doc}");
    let end = |b: &serde_json::Value| -> f64 {
        b["end_time_timestamp"]
            .as_str()
            .map(|s| s.parse().unwrap())
            .or_else(|| b["end_time_timestamp"].as_f64())
            .unwrap()
    };
    // barman lists the newest first.
    let (newest, oldest) = (&backups[0], &backups[1]);
    assert!(end(newest) >= end(oldest));

    let mut src = BackupSourceConfig::new("db", BackupFormat::Barman, "list.json");
    src.max_age = Some(HumanDuration(Duration::from_secs(DAY)));
    let m = BackupMonitor::new(config(vec![src]), root.to_path_buf());
    let now = SystemTime::now() + Duration::from_secs(60);
    let s = collect_at(&m, now).await;
    let t = target(&s, "db");
    assert_eq!(v(&s, "backup_source_up", "db"), Some(1.0), "{t:?}");
    assert_eq!(t.health, Health::Ok, "{t:?}");
    assert_eq!(v(&s, "backup_sets", "db"), Some(1.0));
    let sv = |metric: &str| set_value(&s, metric, "db", "pg");
    assert_eq!(
        sv("backup_set_last_success_timestamp_seconds"),
        Some(end(newest))
    );
    assert_eq!(
        sv("backup_set_last_size_bytes"),
        newest["size_bytes"].as_f64()
    );
    assert_eq!(sv("backup_set_snapshots"), Some(2.0));
    assert_eq!(
        sv("backup_oldest_restorable_timestamp_seconds"),
        Some(end(oldest))
    );
    assert_eq!(
        v(&s, "backup_size_change_ratio", "db"),
        Some(newest["size_bytes"].as_f64().unwrap() / oldest["size_bytes"].as_f64().unwrap())
    );
    assert_eq!(v(&s, "backup_last_run_success", "db"), Some(1.0));

    // A backup barman marks FAILED after the good ones (its status edited in
    // the tool's own output): the last run failed, freshness is unchanged.
    let mut failed = doc.clone();
    let mut f = newest.clone();
    f["status"] = "FAILED".into();
    f["backup_id"] = "20991231T000000".into();
    f["end_time_timestamp"] = serde_json::Value::Null;
    failed["pg"].as_array_mut().unwrap().insert(0, f);
    std::fs::write(root.join("list.json"), serde_json::to_vec(&failed).unwrap()).unwrap();
    let s = collect_at(&m, now).await;
    assert_eq!(v(&s, "backup_last_run_success", "db"), Some(0.0));
    assert_eq!(
        set_value(&s, "backup_set_last_success_timestamp_seconds", "db", "pg"),
        Some(end(newest))
    );
    assert!(target(&s, "db").summary.contains("FAILED backup"));
    drop(_streaming);
    drop(pg);
}
