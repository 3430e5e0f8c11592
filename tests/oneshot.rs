//! The one-shot modes as a user runs them (issue 22): `--once --output` for
//! node_exporter's textfile collector, served by a real
//! `prometheus-node-exporter`; `--state-file` logging nothing about monitors
//! it does not use; `--status` picking up `monitoring-config.yaml` from the
//! working directory; JSON output ending with a newline.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{example_copy, free_port, run, series};

/// `prometheus-node-exporter` on PATH, or None after printing SKIP.
fn node_exporter() -> Option<PathBuf> {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join("prometheus-node-exporter");
        if p.is_file() {
            return Some(p);
        }
    }
    eprintln!("SKIP: prometheus-node-exporter is not installed: run `apt-get install -y prometheus-node-exporter` (scripts/test.sh does this)");
    None
}

/// Kills the child on drop (a failed assertion must not leave it running).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn once_output_is_served_by_node_exporter_textfile_collector() {
    let Some(ne) = node_exporter() else { return };
    let dir = example_copy();
    let textfile = dir.path().join("textfile");
    std::fs::create_dir(&textfile).unwrap();
    // An older file is replaced as a whole.
    let prom = textfile.join("homelab.prom");
    std::fs::write(&prom, "homelab_old_series 1\n").unwrap();
    let (code, stdout, stderr) = run(
        dir.path(),
        &[
            "--config",
            "monitoring-config.yaml",
            "--once",
            "--output",
            "textfile/homelab.prom",
        ],
    );
    // The example has drift and a tainted instance: findings, like --status.
    assert_eq!(code, 2, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.is_empty(),
        "nothing on stdout with --output: {stdout}"
    );
    let body = std::fs::read_to_string(&prom).unwrap();
    assert!(!body.contains("homelab_old_series"), "{body}");
    assert!(body.ends_with('\n'));
    let mode = std::fs::metadata(&prom).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    let names: Vec<String> = std::fs::read_dir(&textfile)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(names, ["homelab.prom"], "no temporary file is left behind");

    // The real node_exporter, textfile collector only, on loopback.
    let port = free_port();
    let log = dir.path().join("node_exporter.log");
    let _ne = Child(
        Command::new(ne)
            .arg("--collector.disable-defaults")
            .arg("--collector.textfile")
            .arg(format!(
                "--collector.textfile.directory={}",
                textfile.display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("cannot start prometheus-node-exporter"),
    );
    let metrics = common::wait_for("node_exporter's /metrics", 60, || {
        common::http(port, "GET", "/metrics", "")
            .ok()
            .filter(|r| r.status == 200)
            .map(|r| r.body)
    });
    let ne_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        series(&metrics, "node_textfile_scrape_error"),
        Some(0.0),
        "node_exporter could not read the file: {ne_log}\n{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "node_textfile_mtime_seconds{{file=\"{}\"}}",
            prom.display()
        )),
        "{metrics}"
    );
    for s in [
        "terraform_state_up{state_file=\"terraform/terraform.tfstate\"}",
        "terraform_state_drift{state_file=\"terraform/environments/prod/terraform.tfstate\"}",
        "homelab_monitor_collector_success{monitor=\"terraform_state\"}",
        "homelab_monitor_build_info{version=\"0.1.0\"}",
    ] {
        assert!(series(&metrics, s).is_some(), "{s} missing: {metrics}");
    }
    assert_eq!(
        series(
            &metrics,
            "terraform_state_drift{state_file=\"terraform/environments/prod/terraform.tfstate\"}"
        ),
        Some(2.0)
    );
}

#[test]
fn once_without_output_prints_a_valid_exposition() {
    let dir = example_copy();
    let (code, stdout, stderr) = run(dir.path(), &["--once", "--state-dir", "terraform"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stdout.contains("# TYPE terraform_state_up gauge\n"),
        "{stdout}"
    );
    assert!(!stdout.contains("# EOF"), "classic text format: {stdout}");
    common::promtool_check(&stdout);
}

#[test]
fn once_that_cannot_write_exits_1_and_says_why() {
    let dir = example_copy();
    let (code, _, stderr) = run(
        dir.path(),
        &[
            "--state-dir",
            "terraform",
            "--once",
            "--output",
            "missing-folder/homelab.prom",
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("cannot write --output missing-folder/homelab.prom"),
        "{stderr}"
    );
    // A folder given as the output.
    let (code, _, stderr) = run(
        dir.path(),
        &[
            "--state-dir",
            "terraform",
            "--once",
            "--output",
            "terraform",
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("is a folder"), "{stderr}");
    // --output needs --once; --once is no companion of the other modes.
    let (code, _, _) = run(dir.path(), &["--output", "x.prom"]);
    assert_eq!(code, 2, "clap's usage error");
    let (code, _, _) = run(dir.path(), &["--once", "--status"]);
    assert_eq!(code, 2, "clap's usage error");
}

#[test]
fn state_file_mode_logs_nothing_about_monitors_it_does_not_use() {
    let dir = example_copy();
    // The example enables certificate_expiry without paths: serving it warns.
    let (code, stdout, stderr) = run(
        dir.path(),
        &[
            "--state-file",
            "terraform/environments/staging/terraform.tfstate",
            "--config",
            "monitoring-config.yaml",
        ],
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(!stderr.contains("WARN"), "{stderr}");
    assert!(!stderr.contains("certificate_expiry"), "{stderr}");
    // The --status run of the same config does use it, and does warn.
    let (_, _, stderr) = run(
        dir.path(),
        &["--status", "--config", "monitoring-config.yaml"],
    );
    assert!(stderr.contains("certificate_expiry"), "{stderr}");
}

#[test]
fn status_uses_the_config_in_the_working_directory_and_says_so() {
    let dir = example_copy();
    // A config watching one clean state of the three the folder holds.
    std::fs::write(
        dir.path().join("monitoring-config.yaml"),
        "custom_monitors:\n  terraform_state:\n    state_files: [terraform/environments/staging/terraform.tfstate]\n",
    )
    .unwrap();
    let (code, stdout, stderr) = run(dir.path(), &["--status"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with(
            "Config: monitoring-config.yaml (found in the working directory; no --config given)\n"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("environments/staging"), "{stdout}");
    assert!(
        !stdout.contains("environments/prod"),
        "discovered: {stdout}"
    );
    let (code, stdout, stderr) = run(dir.path(), &["--status", "--format", "json"]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["config"], "monitoring-config.yaml");
    assert_eq!(v["targets"].as_array().map(Vec::len), Some(1), "{stdout}");
    // Without the file: discovery (all three states), and no config named.
    std::fs::remove_file(dir.path().join("monitoring-config.yaml")).unwrap();
    let (code, stdout, stderr) = run(dir.path(), &["--status", "--format", "json"]);
    assert_eq!(code, 2, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(v["config"].is_null(), "{stdout}");
    assert_eq!(v["targets"].as_array().map(Vec::len), Some(3), "{stdout}");
    assert!(stderr.contains("discovering"), "{stderr}");
}

#[test]
fn json_output_of_one_shot_modes_ends_with_a_newline() {
    let dir = example_copy();
    for args in [
        &[
            "--state-file",
            "terraform/terraform.tfstate",
            "--format",
            "json",
        ][..],
        &["--status", "--format", "json"][..],
    ] {
        let (_, stdout, stderr) = run(dir.path(), args);
        assert!(stdout.ends_with("}\n"), "{args:?}: {stdout:?} {stderr}");
        assert_eq!(stdout.matches('\n').count(), stdout.lines().count());
    }
}
