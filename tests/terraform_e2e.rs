//! End-to-end tests of the binary on the shipped example and on bad inputs.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use common::*;

const FIXED_NOW: &str = "2026-11-25T00:00:00Z";
const MTIME: u64 = 1_795_996_800; // 2026-11-24T00:00:00Z

/// Replace values that are wall-clock measurements (durations) with a marker.
fn mask(metrics: &str) -> String {
    metrics
        .lines()
        .map(|l| {
            if l.starts_with("homelab_monitor_collector_duration_seconds{")
                || l.starts_with("homelab_monitor_collection_in_flight_seconds{")
            {
                let (k, _) = l.rsplit_once(' ').unwrap();
                format!("{k} <duration>")
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
    let got = mask(&e.metrics());
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
    assert!(out.contains("tainted  null_resource.web[1]"), "{out}");
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
    let st = &v["states"][0];
    assert_eq!(st["serial"], 42);
    assert_eq!(
        st["drift_report"]["drift"][0]["address"],
        "aws_instance.web[0]"
    );
    assert_eq!(
        st["drift_report"]["drift"][0]["paths"],
        serde_json::json!(["instance_type", "tags"])
    );
    assert_eq!(st["deposed"][0], "aws_db_instance.main (deposed a1b2c3d4)");
    assert_eq!(st["failed_checks"][0]["address"], "aws_instance.web[1]");
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
    assert!(
        v["added"].as_str().unwrap().contains("null_resource.new"),
        "{event}"
    );
    assert!(
        v["changed"]
            .as_str()
            .unwrap()
            .contains("aws_instance.web[0] (instance_type, password)"),
        "{event}"
    );
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
    assert_eq!(v["states"][0]["serial"], 7);
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
    std::fs::write(
        t.path().join("c.yaml"),
        "custom_monitors:\n  terraform_state:\n    check_interval: 1s\n    retry_interval: 0s\n    state_files: [terraform.tfstate]\n",
    )
    .unwrap();
    let e = Exporter::start(t.path(), &["--config", "c.yaml"]);
    e.wait_ready();
    let key = "{state_file=\"terraform.tfstate\"}";
    let m = e.refreshed_metrics();
    assert_eq!(series(&m, &format!("terraform_state_up{key}")), Some(1.0));
    assert_eq!(
        series(&m, &format!("terraform_state_serial{key}")),
        Some(10.0)
    );
    // Terraform rewrites local state in place: a scrape can see half a file.
    std::fs::write(&p, &good[..good.len() / 3]).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let m = e.refreshed_metrics();
    assert_eq!(
        series(&m, &format!("terraform_state_up{key}")),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        series(&m, &format!("terraform_state_stale{key}")),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        series(&m, &format!("terraform_state_serial{key}")),
        Some(10.0),
        "last good values stay: {m}"
    );
    // The write completes (with a new serial): the next scrape recovers.
    let mut v: serde_json::Value = serde_json::from_slice(&good).unwrap();
    v["serial"] = 11.into();
    std::fs::write(&p, v.to_string()).unwrap();
    let m = e.refreshed_metrics();
    assert_eq!(
        series(&m, &format!("terraform_state_up{key}")),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        series(&m, &format!("terraform_state_stale{key}")),
        Some(0.0)
    );
    assert_eq!(
        series(&m, &format!("terraform_state_serial{key}")),
        Some(11.0)
    );
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
        v["states"][0]["unapproved"]["changed"],
        serde_json::json!([["null_resource.web[1]", ["(status)"]]]),
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
