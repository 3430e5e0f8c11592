//! End-to-end tests of the binary on the shipped example and on bad inputs.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use common::*;

const FIXED_NOW: &str = "2026-11-25T00:00:00Z";
const MTIME: u64 = 1_795_996_800; // 2026-11-24T00:00:00Z

/// Replace values that are wall-clock measurements (durations) with a marker,
/// and the open connection count (the readiness check's connection may still
/// be closing when the scrape is answered: 1 or 2; checked separately).
fn mask(metrics: &str) -> String {
    metrics
        .lines()
        .map(|l| {
            if l.starts_with("homelab_monitor_http_connections_open ") {
                "homelab_monitor_http_connections_open <connections>".to_string()
            } else if l.starts_with("homelab_monitor_collector_duration_seconds{")
                || l.starts_with("homelab_monitor_collection_in_flight_seconds{")
            {
                let (k, _) = l.rsplit_once(' ').unwrap();
                format!("{k} <duration>")
            } else if l.starts_with("homelab_monitor_retained_bytes{")
                || l.starts_with("homelab_monitor_exposition_cache_bytes{")
            {
                // Estimates that depend on the platform's type sizes.
                let (k, _) = l.rsplit_once(' ').unwrap();
                format!("{k} <bytes>")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[test]
fn golden_metrics_of_the_example_and_promtool_clean() {
    let ex = example_copy();
    set_mtimes(ex.path(), UNIX_EPOCH + Duration::from_secs(MTIME));
    let e = Exporter::start(
        ex.path(),
        &[
            "--config",
            "monitoring-config.yaml",
            "--clock.fixed",
            FIXED_NOW,
        ],
    );
    e.wait_ready();
    let raw = e.metrics();
    // This scrape's own connection is open; the readiness check's may be too.
    let open = series(&raw, "homelab_monitor_http_connections_open");
    assert!(
        matches!(open, Some(v) if (1.0..=2.0).contains(&v)),
        "{open:?}"
    );
    let got = mask(&raw);
    let golden = repo().join("tests/golden/example-metrics.prom");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &got).unwrap();
    }
    let want =
        std::fs::read_to_string(&golden).expect("golden file missing: run with UPDATE_GOLDEN=1");
    assert_eq!(got, want, "metrics differ from {}", golden.display());
    // The seed's alert expression has a series to work on.
    assert_eq!(
        series(
            &got,
            "terraform_state_drift{state_file=\"terraform/environments/prod/terraform.tfstate\"}"
        ),
        Some(2.0)
    );
    promtool_check(&e.metrics());
}

#[test]
fn openmetrics_is_served_when_asked_and_methods_are_limited() {
    let ex = example_copy();
    let e = Exporter::start(ex.path(), &["--config", "monitoring-config.yaml"]);
    let r = http(
        e.port,
        "GET",
        "/metrics",
        "Accept: application/openmetrics-text; version=1.0.0\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.headers
            .to_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{}",
        r.headers
    );
    assert!(r.body.ends_with("# EOF\n"));
    let r = get(e.port, "/metrics");
    assert!(
        r.headers
            .to_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{}",
        r.headers
    );
    assert!(!r.body.contains("# EOF"));
    assert_eq!(
        http(e.port, "POST", "/metrics", "Content-Length: 0\r\n")
            .unwrap()
            .status,
        405
    );
    assert_eq!(get(e.port, "/nope").status, 404);
    let landing = get(e.port, "/");
    assert_eq!(landing.status, 200);
    assert!(landing.body.contains("href=\"/metrics\"") && landing.body.contains("terraform_state"));
    let head = http(e.port, "HEAD", "/healthz", "").unwrap();
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
}

#[test]
fn custom_telemetry_path() {
    let ex = example_copy();
    let e = Exporter::start(
        ex.path(),
        &[
            "--config",
            "monitoring-config.yaml",
            "--web.telemetry-path",
            "/custom",
        ],
    );
    let r = get(e.port, "/custom");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("terraform_state_up"));
    assert_eq!(get(e.port, "/metrics").status, 404);
}

#[test]
fn seed_invocation_state_file_report_and_exit_codes() {
    let ex = example_copy();
    let (code, out, err) = run(
        ex.path(),
        &[
            "--state-file",
            "terraform/terraform.tfstate",
            "--config",
            "monitoring-config.yaml",
        ],
    );
    assert_eq!(code, 2, "findings must exit 2: {out}{err}");
    assert!(has_row(&out, &["tainted", "null_resource.web[1]"]), "{out}");
    // The example's plan also changes an output: a pending change too.
    assert!(
        has_row(&out, &["pending output", "output.web_ids", "update"]),
        "{out}"
    );
    assert!(
        out.contains("null_resource.web[3]") && out.contains("create"),
        "{out}"
    );
    assert!(out.contains("lineage"), "{out}");
    let (code, out, _) = run(
        ex.path(),
        &[
            "--state-file",
            "terraform/environments/prod/terraform.tfstate",
            "--format",
            "json",
        ],
    );
    assert_eq!(code, 2);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(details(&v)["serial"], 42);
    assert_eq!(
        findings(&v, "drift")[0],
        pair("aws_instance.web[0]", "update: instance_type, tags")
    );
    assert_eq!(
        findings(&v, "deposed")[0].0,
        "aws_db_instance.main (deposed a1b2c3d4)"
    );
    assert_eq!(findings(&v, "check fail")[0].0, "aws_instance.web[1]");
    // Clean state: exit 0.
    let (code, out, _) = run(
        ex.path(),
        &[
            "--state-file",
            "terraform/environments/staging/terraform.tfstate",
        ],
    );
    assert_eq!(code, 0, "{out}");
    // Unreadable: exit 1.
    let (code, out, _) = run(ex.path(), &["--state-file", "missing.tfstate"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("missing.tfstate does not exist"), "{out}");
}

#[test]
fn seed_invocation_status() {
    let ex = example_copy();
    let (code, out, err) = run(
        ex.path(),
        &["--status", "--config", "monitoring-config.yaml"],
    );
    assert_eq!(code, 2, "{out}{err}");
    for s in [
        "terraform/terraform.tfstate",
        "terraform/environments/prod/terraform.tfstate",
        "terraform/environments/staging/terraform.tfstate",
    ] {
        assert!(out.contains(s), "{out}");
    }
    assert!(out.contains("terraform_state"), "{out}");
    // Without a config: discovery under the working directory.
    let (code, out, _) = run(ex.path(), &["--status", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["targets"].as_array().unwrap().len(), 3, "{out}");
    assert_eq!(code, 2);
}

#[test]
fn seed_invocation_watch_serves_and_logs_change_events() {
    let ex = example_copy();
    let e = Exporter::start(
        ex.path(),
        &[
            "--watch",
            "--interval",
            "300",
            "--state-dir",
            "terraform/",
            "--log.format",
            "json",
            "--log.level",
            "debug",
        ],
    );
    e.wait_ready();
    let m = e.metrics();
    assert_eq!(series(&m, "terraform_state_serial{state_file=\"terraform/environments/staging/terraform.tfstate\"}"), Some(7.0));
    assert_eq!(
        series(
            &m,
            "terraform_state_drift{state_file=\"terraform/environments/prod/terraform.tfstate\"}"
        ),
        Some(2.0)
    );
    drop(e);

    // A short interval to see a change event.
    let e = Exporter::start(
        ex.path(),
        &[
            "--watch",
            "--interval",
            "1",
            "--state-dir",
            "terraform/",
            "--log.format",
            "json",
        ],
    );
    e.wait_ready();
    let p = ex
        .path()
        .join("terraform/environments/staging/terraform.tfstate");
    let mut st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    st["serial"] = 8.into();
    st["resources"][0]["instances"][0]["attributes"]["instance_type"] = "t3.xlarge".into();
    st["resources"][0]["instances"][0]["attributes"]["password"] = "CANARY-changed-secret".into();
    st["resources"].as_array_mut().unwrap().push(serde_json::json!({"mode":"managed","type":"null_resource","name":"new","instances":[{"attributes":{"id":"n1"}}]}));
    std::fs::write(&p, serde_json::to_string_pretty(&st).unwrap()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let event = loop {
        let logs = e.logs();
        if let Some(l) = logs.lines().find(|l| l.contains("terraform_state_changed")) {
            break l.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no change event: {logs}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let v: serde_json::Value = serde_json::from_str(&event).unwrap();
    assert_eq!(
        v["state_file"],
        "terraform/environments/staging/terraform.tfstate"
    );
    assert_eq!(v["serial"], 8);
    assert_eq!(v["previous_serial"], 7);
    assert_eq!(v["lineage"], "5c1f2a8e-stag-4b7e-9d1a-000000000007");
    // Lists are JSON arrays in JSON logs (not JSON text inside a string).
    assert!(
        v["added"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "null_resource.new")),
        "{event}"
    );
    assert!(
        v["changed"].as_array().is_some_and(|a| a
            .iter()
            .any(|x| x == "aws_instance.web[0] (instance_type, password)")),
        "{event}"
    );
    assert!(v["removed"].is_array(), "{event}");
    assert!(!e.logs().contains("CANARY"), "a secret reached the log");
}

#[test]
fn no_config_discovers_under_working_directory() {
    let t = tempfile::tempdir().unwrap();
    let sub = t.path().join("infra/live");
    std::fs::create_dir_all(sub.join(".terraform")).unwrap();
    std::fs::copy(
        repo().join("tests/fixtures/terraform/real/terraform.tfstate"),
        sub.join("terraform.tfstate"),
    )
    .unwrap();
    std::fs::copy(
        repo().join("tests/fixtures/terraform/real/terraform.tfstate"),
        sub.join(".terraform/terraform.tfstate"),
    )
    .unwrap();
    let e = Exporter::start(t.path(), &[]);
    e.wait_ready();
    let m = e.metrics();
    assert_eq!(
        series(
            &m,
            "terraform_state_up{state_file=\"infra/live/terraform.tfstate\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        m.matches("terraform_state_up{").count(),
        1,
        ".terraform/ must be skipped: {m}"
    );
}

#[test]
fn bad_config_stops_start_up_with_one_clear_message() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("c.yaml"), "custom_monitors:\n  terraform_state:\n    check_interval: \"5m\"\n    state_file: [\"x\"]\n").unwrap();
    let (code, _, err) = run(t.path(), &["--config", "c.yaml", "--status"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("c.yaml")
            && err.contains("line 4")
            && err.contains("did you mean `state_files`?"),
        "{err}"
    );
    std::fs::write(
        t.path().join("d.yaml"),
        "custom_monitors:\n  terraform_state:\n    check_interval: \"five minutes\"\n",
    )
    .unwrap();
    let (code, _, err) = run(t.path(), &["--config", "d.yaml"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("line 3")
            && err.contains("check_interval")
            && err.contains("invalid duration"),
        "{err}"
    );
    let (code, _, err) = run(t.path(), &["--config", "nope.yaml"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot read config file nope.yaml"), "{err}");
}

#[test]
fn graceful_shutdown_on_sigterm() {
    let ex = example_copy();
    let mut e = Exporter::start(ex.path(), &["--config", "monitoring-config.yaml"]);
    assert_eq!(e.terminate(), Some(0));
    assert!(e.logs().contains("shutting down"), "{}", e.logs());
}

#[test]
fn env_vars_configure_flags() {
    let ex = example_copy();
    let out = Command::new(BIN)
        .current_dir(ex.path())
        .env(
            "HOMELAB_MONITOR_STATE_FILE",
            "terraform/environments/staging/terraform.tfstate",
        )
        .env("HOMELAB_MONITOR_FORMAT", "json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(details(&v)["serial"], 7);
}

/// The details of the first target of a `--format json` report, by field.
fn details(v: &serde_json::Value) -> &serde_json::Value {
    &v["targets"][0]["details"]
}

/// The findings of the first target of a `--format json` report whose kind
/// is `kind`, as (subject, detail).
fn findings(v: &serde_json::Value, kind: &str) -> Vec<(String, String)> {
    v["targets"][0]["facts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["fact"] == "finding" && f["kind"] == kind)
        .map(|f| {
            (
                f["subject"].as_str().unwrap_or_default().to_string(),
                f["detail"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}

/// A table row whose first cells (padding removed) are `cells`.
fn has_row(table: &str, cells: &[&str]) -> bool {
    table.lines().any(|l| {
        let got: Vec<&str> = l
            .trim()
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        got.starts_with(cells)
    })
}

fn write(p: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[test]
fn bad_inputs_become_per_target_errors_and_scrape_stays_200() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let good =
        std::fs::read(repo().join("tests/fixtures/terraform/real/terraform.tfstate")).unwrap();
    let hand = repo().join("tests/fixtures/terraform/hand");
    write(&d.join("s/good/terraform.tfstate"), &good);
    write(
        &d.join("s/truncated/terraform.tfstate"),
        &good[..good.len() / 2],
    );
    write(&d.join("s/empty/terraform.tfstate"), b"");
    write(
        &d.join("s/garbage/terraform.tfstate"),
        &[0u8, 159, 146, 150, 255, 1, 2, 3],
    );
    std::fs::create_dir_all(d.join("s/dir/terraform.tfstate")).unwrap();
    write(&d.join("s/denied/terraform.tfstate"), &good);
    std::fs::create_dir_all(d.join("s/loop")).unwrap();
    std::os::unix::fs::symlink("terraform.tfstate", d.join("s/loop/terraform.tfstate")).unwrap();
    write(
        &d.join("s/v3/terraform.tfstate"),
        &std::fs::read(hand.join("v3.tfstate")).unwrap(),
    );
    write(
        &d.join("s/v5/terraform.tfstate"),
        &std::fs::read(hand.join("v5.tfstate")).unwrap(),
    );
    write(
        &d.join("s/encrypted/terraform.tfstate"),
        &std::fs::read(hand.join("encrypted.tfstate")).unwrap(),
    );
    // A drift report that is not a plan, and a baseline with another lineage.
    write(&d.join("s/good/drift.json"), &good);
    let mut other: serde_json::Value = serde_json::from_slice(&good).unwrap();
    other["lineage"] = "another-lineage".into();
    write(
        &d.join("s/good/terraform.tfstate.approved"),
        other.to_string().as_bytes(),
    );
    // A state of several hundred MB.
    {
        let f = std::fs::File::create(d.join("s/huge.tfstate")).unwrap();
        let mut w = std::io::BufWriter::new(f);
        gen::write_state(&mut w, 100_000, 3_000, "huge-lineage", 1).unwrap();
    }
    let huge_size = std::fs::metadata(d.join("s/huge.tfstate")).unwrap().len();
    assert!(huge_size > 250_000_000, "{huge_size}");
    let files = [
        "good",
        "truncated",
        "empty",
        "garbage",
        "dir",
        "denied",
        "loop",
        "v3",
        "v5",
        "encrypted",
    ]
    .iter()
    .map(|n| format!("      - \"s/{n}/terraform.tfstate\"\n"))
    .collect::<String>();
    write(
        &d.join("c.yaml"),
        format!("custom_monitors:\n  terraform_state:\n    check_interval: 1h\n    timeout: 5m\n    baseline: \"{{file}}.approved\"\n    state_files:\n{files}      - \"s/huge.tfstate\"\n").as_bytes(),
    );
    let prefix: Option<Vec<&str>> = if is_root() {
        // Root reads everything: drop privileges so that permission denied is real.
        tool("setpriv", "util-linux");
        for p in walk_all(d) {
            let mode = if p.is_dir() { 0o755 } else { 0o644 };
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(mode)).ok();
        }
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        Some(vec![
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ])
    } else {
        None
    };
    std::fs::set_permissions(
        d.join("s/denied/terraform.tfstate"),
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();
    let e = Exporter::start_with(
        d,
        &["--config", "c.yaml", "--log.level", "debug"],
        prefix.as_deref(),
    );
    e.wait_ready();
    let m = e.metrics();
    let up = |n: &str| {
        series(
            &m,
            &format!("terraform_state_up{{state_file=\"s/{n}/terraform.tfstate\"}}"),
        )
    };
    let err = |n: &str, comp: &str, reason: &str| {
        series(&m, &format!("terraform_state_error_info{{state_file=\"s/{n}/terraform.tfstate\",component=\"{comp}\",reason=\"{reason}\"}}"))
    };
    assert_eq!(up("good"), Some(1.0), "{m}");
    for (n, reason) in [
        ("truncated", "truncated"),
        ("empty", "empty"),
        ("garbage", "syntax"),
        ("dir", "not_a_file"),
        ("denied", "permission_denied"),
        ("loop", "symlink_loop"),
        ("v3", "unsupported_version"),
        ("v5", "unsupported_version"),
    ] {
        assert_eq!(up(n), Some(0.0), "{n}: {m}");
        assert_eq!(
            err(n, "state", reason),
            Some(1.0),
            "{n} should fail with {reason}: {m}"
        );
    }
    assert_eq!(up("encrypted"), Some(1.0));
    assert_eq!(
        series(
            &m,
            "terraform_state_encrypted{state_file=\"s/encrypted/terraform.tfstate\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        series(
            &m,
            "terraform_state_serial{state_file=\"s/encrypted/terraform.tfstate\"}"
        ),
        Some(12.0)
    );
    assert_eq!(err("good", "drift_report", "not_a_plan"), Some(1.0), "{m}");
    assert_eq!(
        series(
            &m,
            "terraform_state_drift_report_up{state_file=\"s/good/terraform.tfstate\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        err("good", "baseline", "lineage_mismatch"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        series(
            &m,
            "terraform_state_baseline_up{state_file=\"s/good/terraform.tfstate\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        series(&m, "terraform_state_up{state_file=\"s/huge.tfstate\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(series(&m, "terraform_state_resource_instances{state_file=\"s/huge.tfstate\",mode=\"managed\",type=\"aws_instance\"}"), Some(25_000.0));
    assert_eq!(
        series(
            &m,
            "homelab_monitor_collector_success{monitor=\"terraform_state\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        series(
            &m,
            "homelab_monitor_targets_failing{monitor=\"terraform_state\"}"
        ),
        Some(9.0),
        "{m}"
    );
    let logs = e.logs();
    assert!(
        logs.contains("s/truncated/terraform.tfstate: the JSON ends early"),
        "{logs}"
    );
    assert!(
        !logs.contains("CANARY") && !m.contains("CANARY"),
        "secret leaked"
    );
    assert!(!logs.contains("panicked"), "{logs}");
    promtool_check(&m);
}

fn walk_all(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let is_dir = std::fs::symlink_metadata(&p)
            .map(|m| m.is_dir())
            .unwrap_or(false);
        if std::fs::symlink_metadata(&p)
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false)
        {
            continue;
        }
        out.push(p.clone());
        if is_dir {
            out.extend(walk_all(&p));
        }
    }
    out
}

#[test]
fn half_written_state_keeps_last_good_values_then_recovers() {
    let t = tempfile::tempdir().unwrap();
    let good =
        std::fs::read(repo().join("tests/fixtures/terraform/real/terraform.tfstate")).unwrap();
    let p = t.path().join("terraform.tfstate");
    std::fs::write(&p, &good).unwrap();
    let e = Exporter::with_config(t.path(), "custom_monitors:\n  terraform_state:\n    check_interval: 1s\n    retry_interval: 0s\n    state_files: [terraform.tfstate]\n");
    e.wait_ready();
    let state = "terraform.tfstate";
    let m = e.refreshed_metrics();
    let [up, _, serial] = state_values(&m, state);
    assert_eq!((up, serial), (Some(1.0), Some(10.0)), "up, serial");
    // Terraform rewrites local state in place: a scrape can see half a file.
    std::fs::write(&p, &good[..good.len() / 3]).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let m = e.refreshed_metrics();
    assert_state(&m, state, [Some(0.0), Some(1.0), Some(10.0)]);
    // The write completes (with a new serial): the next scrape recovers.
    let mut v: serde_json::Value = serde_json::from_slice(&good).unwrap();
    v["serial"] = 11.into();
    std::fs::write(&p, v.to_string()).unwrap();
    let m = e.refreshed_metrics();
    assert_state(&m, state, [Some(1.0), Some(0.0), Some(11.0)]);
}

#[test]
fn unapproved_changes_against_a_real_baseline() {
    let t = tempfile::tempdir().unwrap();
    let real = repo().join("tests/fixtures/terraform/real");
    std::fs::copy(
        real.join("terraform.tfstate"),
        t.path().join("terraform.tfstate"),
    )
    .unwrap();
    std::fs::copy(
        real.join("terraform.tfstate.approved"),
        t.path().join("terraform.tfstate.approved"),
    )
    .unwrap();
    std::fs::write(
        t.path().join("c.yaml"),
        "custom_monitors:\n  terraform_state:\n    state_files: [terraform.tfstate]\n    baseline: terraform.tfstate.approved\n",
    )
    .unwrap();
    let (code, out, _) = run(
        t.path(),
        &[
            "--state-file",
            "terraform.tfstate",
            "--config",
            "c.yaml",
            "--format",
            "json",
        ],
    );
    assert_eq!(code, 2);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    // The only change since approval is `terraform taint null_resource.web[1]`.
    assert_eq!(
        findings(&v, "unapproved"),
        [pair("null_resource.web[1]", "changed: (status)")],
        "{out}"
    );
    let e = Exporter::start(t.path(), &["--config", "c.yaml"]);
    e.wait_ready();
    let m = e.metrics();
    assert_eq!(
        series(
            &m,
            "terraform_state_unapproved_changes{state_file=\"terraform.tfstate\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        series(
            &m,
            "terraform_state_baseline_up{state_file=\"terraform.tfstate\"}"
        ),
        Some(1.0)
    );
}

#[test]
fn secrets_never_reach_metrics_logs_reports_or_pages() {
    let ex = example_copy();
    // The example and the real fixture hold canaries in attributes, outputs,
    // private fields, plan variables and prior state.
    let corpus = [
        "terraform/terraform.tfstate",
        "terraform/drift.json",
        "terraform/environments/prod/terraform.tfstate",
        "terraform/environments/prod/drift.json",
    ];
    for f in corpus {
        assert!(
            std::fs::read_to_string(ex.path().join(f))
                .unwrap()
                .contains("CANARY"),
            "{f} has no canary"
        );
    }
    let mut seen = String::new();
    for args in [
        vec![
            "--state-file",
            "terraform/environments/prod/terraform.tfstate",
            "--log.level",
            "trace",
        ],
        vec![
            "--state-file",
            "terraform/terraform.tfstate",
            "--format",
            "json",
            "--log.level",
            "trace",
        ],
        vec![
            "--status",
            "--config",
            "monitoring-config.yaml",
            "--log.level",
            "trace",
        ],
        vec!["--status", "--format", "json", "--log.level", "trace"],
    ] {
        let (_, out, err) = run(ex.path(), &args);
        seen.push_str(&out);
        seen.push_str(&err);
    }
    let e = Exporter::start(
        ex.path(),
        &[
            "--config",
            "monitoring-config.yaml",
            "--log.level",
            "trace",
            "--log.format",
            "json",
        ],
    );
    e.wait_ready();
    seen.push_str(&e.metrics());
    seen.push_str(&get(e.port, "/").body);
    seen.push_str(
        &http(
            e.port,
            "GET",
            "/metrics",
            "Accept: application/openmetrics-text\r\n",
        )
        .unwrap()
        .body,
    );
    seen.push_str(&e.logs());
    assert!(seen.len() > 10_000, "too little output to be meaningful");
    assert!(
        !seen.contains("CANARY"),
        "a secret value leaked: {}",
        &seen[seen.find("CANARY").unwrap().saturating_sub(300)..]
    );
}

// ---------------------------------------------------------------------------
// Issue 13: no false "clean". Fixtures come from the real terraform on PATH
// (1.11 here; `terraform_data` is built in, so no provider is needed).

/// The real terraform, or `None` (the test prints why it is skipped).
fn real_terraform(test: &str) -> Option<std::path::PathBuf> {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join("terraform");
        if p.is_file() {
            return Some(p);
        }
    }
    eprintln!(
        "SKIPPED {test}: `terraform` is not on PATH (scripts/install-terraform.sh installs one)"
    );
    None
}

/// Run terraform in `dir`; returns (exit code, stdout, stderr).
fn tf_run(bin: &Path, dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin)
        .current_dir(dir)
        .args(args)
        .env("TF_IN_AUTOMATION", "1")
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_CLI_CONFIG_FILE", "/dev/null")
        .env_remove("TF_LOG")
        .output()
        .expect("cannot run terraform");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Run terraform and require exit code `want`; returns stdout.
fn tf_ok(bin: &Path, dir: &Path, args: &[&str], want: i32) -> String {
    let (code, out, err) = tf_run(bin, dir, args);
    assert_eq!(code, want, "terraform {args:?}:\n{out}\n{err}");
    out
}

/// `terraform init` + `apply` of `main_tf` in `dir` (local backend).
fn tf_apply(bin: &Path, dir: &Path, main_tf: &str) {
    std::fs::write(dir.join("main.tf"), main_tf).unwrap();
    tf_ok(bin, dir, &["init", "-input=false", "-no-color"], 0);
    tf_ok(
        bin,
        dir,
        &["apply", "-auto-approve", "-input=false", "-no-color"],
        0,
    );
}

/// `plan -out` then `show -json` into `drift.json`; returns the plan's exit code.
fn tf_plan_to_drift_json(bin: &Path, dir: &Path, extra: &[&str]) -> i32 {
    let mut args = vec![
        "plan",
        "-out=tfplan",
        "-input=false",
        "-no-color",
        "-detailed-exitcode",
    ];
    args.extend_from_slice(extra);
    let (code, _, _) = tf_run(bin, dir, &args);
    let json = tf_ok(bin, dir, &["show", "-json", "tfplan"], 0);
    std::fs::write(dir.join("drift.json"), json).unwrap();
    code
}

fn report_json(dir: &Path, args: &[&str]) -> (i32, serde_json::Value, String) {
    let mut a = vec!["--format", "json"];
    a.extend_from_slice(args);
    let (code, out, err) = run(dir, &a);
    let v = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    (code, v, err)
}

#[test]
fn real_plan_with_forget_move_import_output_and_check_changes_is_not_clean() {
    let Some(bin) =
        real_terraform("real_plan_with_forget_move_import_output_and_check_changes_is_not_clean")
    else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    tf_apply(
        &bin,
        d,
        r#"
resource "terraform_data" "a" { input = 1 }
resource "terraform_data" "b" { input = 2 }
resource "terraform_data" "c" { input = 3 }
output "o" { value = 1 }
"#,
    );
    // A refactoring: a moved, a removed (destroy = false), an import block,
    // a changed output and a failing check block. No create/update/delete.
    std::fs::write(
        d.join("main.tf"),
        r#"
resource "terraform_data" "a2" { input = 1 }
moved {
  from = terraform_data.a
  to   = terraform_data.a2
}
removed {
  from = terraform_data.b
  lifecycle { destroy = false }
}
import {
  to = terraform_data.d
  id = "existing-object"
}
resource "terraform_data" "d" {}
resource "terraform_data" "c" { input = 3 }
output "o" { value = 2 }
check "c_is_four" {
  assert {
    condition     = terraform_data.c.output == 4
    error_message = "c is not four"
  }
}
"#,
    )
    .unwrap();
    assert_eq!(
        tf_plan_to_drift_json(&bin, d, &[]),
        2,
        "terraform itself says there are changes"
    );
    let (code, v, err) = report_json(d, &["--state-file", "terraform.tfstate"]);
    assert_eq!(code, 2, "pending changes are findings: {v}{err}");
    assert_eq!(
        findings(&v, "pending"),
        vec![
            pair("terraform_data.a2", "move from terraform_data.a"),
            pair("terraform_data.b", "forget"),
            pair("terraform_data.d", "import"),
        ],
        "{v}"
    );
    assert_eq!(findings(&v, "pending output"), [pair("output.o", "update")]);
    assert_eq!(
        findings(&v, "check fail (drift report)"),
        [pair("check.c_is_four", "check check")],
        "{v}"
    );
    // 3 resource changes + 1 output + 1 failing check.
    assert_eq!(v["targets"][0]["finding_count"], 5, "{v}");
    let (_, table, _) = run(d, &["--state-file", "terraform.tfstate"]);
    for row in [
        &["pending", "terraform_data.a2", "move from terraform_data.a"][..],
        &["pending", "terraform_data.b", "forget"],
        &["pending", "terraform_data.d", "import"],
        &["pending output", "output.o", "update"],
        &[
            "check fail (drift report)",
            "check.c_is_four",
            "check check",
        ],
    ] {
        assert!(has_row(&table, row), "{row:?}: {table}");
    }
    assert!(
        !table.contains("c is not four"),
        "check messages are not shown: {table}"
    );

    // The metrics.
    std::fs::write(
        d.join("c.yaml"),
        "custom_monitors:\n  terraform_state:\n    state_files: [terraform.tfstate]\n",
    )
    .unwrap();
    let e = Exporter::start(d, &["--config", "c.yaml"]);
    e.wait_ready();
    let m = e.metrics();
    for (action, n) in [
        ("create", 0.0),
        ("update", 0.0),
        ("delete", 0.0),
        ("replace", 0.0),
        ("forget", 1.0),
        ("move", 1.0),
        ("import", 1.0),
    ] {
        assert_eq!(
            series(
                &m,
                &format!("terraform_state_pending_changes{{state_file=\"terraform.tfstate\",action=\"{action}\"}}")
            ),
            Some(n),
            "{action}: {m}"
        );
    }
    assert_eq!(
        series(
            &m,
            "terraform_state_pending_output_changes{state_file=\"terraform.tfstate\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        series(
            &m,
            "terraform_state_drift_report_checks{state_file=\"terraform.tfstate\",status=\"fail\"}"
        ),
        Some(1.0),
        "{m}"
    );
    promtool_check(&m);
}

#[test]
fn real_errored_plan_is_an_unusable_drift_report() {
    let Some(bin) = real_terraform("real_errored_plan_is_an_unusable_drift_report") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    tf_apply(&bin, d, "resource \"terraform_data\" \"a\" { input = 1 }\n");
    std::fs::write(
        d.join("main.tf"),
        r#"
resource "terraform_data" "a" { input = 1 }
resource "terraform_data" "b" {
  input = 2
  lifecycle {
    precondition {
      condition     = terraform_data.a.output == 5
      error_message = "a must be 5"
    }
  }
}
"#,
    )
    .unwrap();
    // The plan fails, but Terraform still saves it (marked errored).
    assert_eq!(tf_plan_to_drift_json(&bin, d, &[]), 1);
    let doc = std::fs::read_to_string(d.join("drift.json")).unwrap();
    assert!(doc.contains("\"errored\":true"), "{doc}");
    let (code, out, err) = run(d, &["--state-file", "terraform.tfstate"]);
    assert_eq!(code, 1, "an errored plan is an error: {out}{err}");
    assert!(out.contains("the plan failed"), "{out}");
    assert!(!out.contains("none: state matches"), "{out}");
    std::fs::write(
        d.join("c.yaml"),
        "custom_monitors:\n  terraform_state:\n    state_files: [terraform.tfstate]\n",
    )
    .unwrap();
    let e = Exporter::start(d, &["--config", "c.yaml"]);
    e.wait_ready();
    let m = e.metrics();
    let sf = "state_file=\"terraform.tfstate\"";
    assert_eq!(
        series(&m, &format!("terraform_state_drift_report_up{{{sf}}}")),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        series(
            &m,
            &format!(
                "terraform_state_error_info{{{sf},component=\"drift_report\",reason=\"errored\"}}"
            )
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        series(&m, &format!("terraform_state_drift{{{sf}}}")),
        None,
        "never drift 0 from a failed plan: {m}"
    );
}

#[test]
fn real_for_each_keys_print_like_terraform_state_list() {
    let Some(bin) = real_terraform("real_for_each_keys_print_like_terraform_state_list") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    tf_apply(
        &bin,
        d,
        r#"
resource "terraform_data" "k" {
  for_each = toset(["$${x}", "%%{y}", "$x", "a\"b", "bs\\z", "nl\nx", "tab\tx", "ctl\u0001", "nbsp\u00a0x", "zw\u200bx", "é ü 日本", "emoji😀"])
  input    = 1
}
"#,
    );
    let list = tf_ok(&bin, d, &["state", "list"], 0);
    let mut want: Vec<String> = list.lines().map(str::to_string).collect();
    assert_eq!(want.len(), 12, "{list}");
    // Terraform accepts its own printed addresses back: taint every one.
    for addr in &want {
        tf_ok(&bin, d, &["taint", "-no-color", addr], 0);
    }
    let (code, v, err) = report_json(d, &["--state-file", "terraform.tfstate"]);
    assert_eq!(code, 2, "{err}");
    let mut got: Vec<String> = findings(&v, "tainted")
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    want.sort();
    got.sort();
    assert_eq!(
        got, want,
        "addresses must be printed as Terraform prints them"
    );
    assert!(want.iter().any(|a| a == "terraform_data.k[\"$${x}\"]"));
    assert!(want.iter().any(|a| a == "terraform_data.k[\"é ü 日本\"]"));
}

#[test]
fn real_state_numbers_compare_with_cty_semantics_against_a_baseline() {
    let Some(bin) =
        real_terraform("real_state_numbers_compare_with_cty_semantics_against_a_baseline")
    else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    tf_apply(
        &bin,
        d,
        "resource \"terraform_data\" \"n\" {\n  input = { port = 80, big = 18446744073709551617, huge = 1e400 }\n}\n",
    );
    let state = std::fs::read_to_string(d.join("terraform.tfstate")).unwrap();
    // Terraform writes 1e400 as its 401 digits, and the big integer exactly.
    let huge = format!("1{}", "0".repeat(400));
    assert!(state.contains(&huge), "{state}");
    assert!(state.contains("18446744073709551617"), "{state}");
    std::fs::write(
        d.join("c.yaml"),
        "custom_monitors:\n  terraform_state:\n    state_files: [terraform.tfstate]\n    baseline: terraform.tfstate.approved\n",
    )
    .unwrap();
    // The same numbers written another way (a tool that reformats JSON): equal.
    let same = state
        .replace("\"port\": 80", "\"port\": 80.0")
        .replace(&huge, "1e400");
    assert_ne!(same, state);
    std::fs::write(d.join("terraform.tfstate.approved"), &same).unwrap();
    let (code, v, err) = report_json(
        d,
        &["--state-file", "terraform.tfstate", "--config", "c.yaml"],
    );
    assert_eq!(code, 0, "80 == 80.0 and 1e400 is a number: {v}{err}");
    assert_eq!(findings(&v, "unapproved"), []);
    // One more than 2^64 is not 2^64 (a 64-bit float cannot tell them apart).
    let other = state.replace("18446744073709551617", "18446744073709551616");
    std::fs::write(d.join("terraform.tfstate.approved"), &other).unwrap();
    let (code, v, err) = report_json(
        d,
        &["--state-file", "terraform.tfstate", "--config", "c.yaml"],
    );
    assert_eq!(code, 2, "{v}{err}");
    assert_eq!(
        findings(&v, "unapproved"),
        [pair("terraform_data.n", "changed: input, output")],
        "{v}"
    );
}

#[test]
fn null_instances_are_read_as_an_empty_resource() {
    let t = tempfile::tempdir().unwrap();
    let real =
        std::fs::read_to_string(repo().join("tests/fixtures/terraform/real/terraform.tfstate"))
            .unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&real).unwrap();
    std::fs::write(t.path().join("s.tfstate"), &real).unwrap();
    let (_, before, _) = report_json(t.path(), &["--state-file", "s.tfstate"]);
    let res = v["resources"].as_array_mut().unwrap();
    let dropped = res[0]["instances"].as_array().unwrap().len() as u64;
    assert!(dropped > 0);
    res[0]["instances"] = serde_json::Value::Null;
    std::fs::write(t.path().join("s.tfstate"), v.to_string()).unwrap();
    let (code, v, err) = report_json(t.path(), &["--state-file", "s.tfstate"]);
    assert_ne!(code, 1, "{v}{err}");
    assert_eq!(details(&v)["read"], "ok", "{v}");
    assert_eq!(
        details(&v)["instances"].as_u64().unwrap(),
        details(&before)["instances"].as_u64().unwrap() - dropped,
        "{v}"
    );
}

#[test]
fn an_encrypted_state_is_not_checked_rather_than_clean() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    std::fs::copy(
        repo().join("tests/fixtures/terraform/hand/encrypted.tfstate"),
        d.join("terraform.tfstate"),
    )
    .unwrap();
    let (code, out, err) = run(d, &["--state-file", "terraform.tfstate"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("not checked: the state is encrypted"), "{out}");
    assert!(!out.contains("none: state matches"), "{out}");
    assert!(out.contains("1 not checked"), "{out}");
    let (code, out, _) = run(d, &["--status"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("unchecked"), "{out}");
    let e = Exporter::start(d, &[]);
    e.wait_ready();
    let page = get(e.port, "/").body;
    assert!(
        page.contains("<span class=\"b unk\">not checked</span>"),
        "{page}"
    );
    let api = get(e.port, "/api/v1/status").body;
    let s: serde_json::Value = serde_json::from_str(&api).unwrap();
    assert_eq!(s["overall"], "unchecked", "{api}");
}

#[test]
fn nothing_monitored_is_a_finding_not_ok() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    std::fs::create_dir_all(d.join("empty")).unwrap();
    let (code, out, err) = run(d, &["--status", "--state-dir", "empty"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("nothing is monitored"), "{out}");
    let (code, out, _) = run(d, &["--status"]);
    assert_eq!(code, 2, "{out}");
    let (code, out, _) = run(d, &["--state-file", "empty/*.tfstate"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("nothing is monitored"), "{out}");
    let e = Exporter::start(d, &["--state-dir", "empty"]);
    e.wait_ready();
    let api = get(e.port, "/api/v1/status").body;
    let s: serde_json::Value = serde_json::from_str(&api).unwrap();
    assert_eq!(s["overall"], "findings", "{api}");
    let m = e.metrics();
    assert_eq!(series(&m, "terraform_state_targets"), Some(0.0), "{m}");
    let logs = e.logs();
    assert!(
        logs.contains("nothing is monitored") && logs.contains("WARN"),
        "a warning at start: {logs}"
    );
}

#[test]
fn a_missing_state_or_a_folder_is_an_error_not_the_drift_report_beside_it() {
    let ex = example_copy();
    let d = ex.path();
    // The example's prod drift report stays; its state is gone.
    std::fs::remove_file(d.join("terraform/environments/prod/terraform.tfstate")).unwrap();
    let (code, out, err) = run(
        d,
        &[
            "--state-file",
            "terraform/environments/prod/terraform.tfstate",
        ],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("does not exist"), "{out}");
    assert!(
        !out.contains("pending"),
        "no findings from a report of an unread state: {out}"
    );
    assert!(!out.contains("drift  "), "{out}");
    assert!(
        out.contains("not checked: the state could not be read"),
        "{out}"
    );
    // A folder given as --state-file.
    let (code, out, err) = run(d, &["--state-file", "terraform/environments/staging"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("--state-dir"), "{out}");
    assert!(!out.contains("none: state matches"), "{out}");
}

#[test]
fn real_targeted_plan_is_an_incomplete_drift_report_not_clean() {
    let Some(bin) = real_terraform("real_targeted_plan_is_an_incomplete_drift_report_not_clean")
    else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    tf_apply(
        &bin,
        d,
        "resource \"terraform_data\" \"a\" { input = 1 }\nresource \"terraform_data\" \"b\" { input = 2 }\n",
    );
    // A nightly drift check limited with -target checks only part of the state.
    assert_eq!(
        tf_plan_to_drift_json(&bin, d, &["-refresh-only", "-target=terraform_data.a"]),
        0
    );
    let (code, v, err) = report_json(d, &["--state-file", "terraform.tfstate"]);
    assert_eq!(code, 2, "a partial report is not a clean one: {v}{err}");
    assert_eq!(findings(&v, "incomplete report").len(), 1, "{v}");
    let (_, table, _) = run(d, &["--state-file", "terraform.tfstate"]);
    assert!(has_row(&table, &["incomplete report", "-"]), "{table}");
    // Without -target: complete and clean.
    assert_eq!(tf_plan_to_drift_json(&bin, d, &["-refresh-only"]), 0);
    let (code, v, err) = report_json(d, &["--state-file", "terraform.tfstate"]);
    assert_eq!(code, 0, "{v}{err}");
    assert_eq!(findings(&v, "incomplete report").len(), 0, "{v}");
}
