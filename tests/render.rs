//! `homelab-monitor render`: the seed's example config, unchanged, renders files
//! that promtool and amtool accept, and a real Prometheus starts with them.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn check(tool_name: &str, package: &str, args: &[&str], cwd: &std::path::Path) -> String {
    let out = Command::new(tool(tool_name, package))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{tool_name} {args:?} failed:\n{text}");
    text
}

#[test]
fn renders_the_seed_example_into_a_working_stack() {
    let ex = example_copy();
    let before = std::fs::read(ex.path().join("monitoring-config.yaml")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let prom_port = free_port();
    let am_port = free_port();
    let exporter_port = free_port();
    let (code, stdout, stderr) = run(
        ex.path(),
        &[
            "render",
            "--config",
            "monitoring-config.yaml",
            "--out",
            out.path().to_str().unwrap(),
            "--exporter-address",
            &format!("127.0.0.1:{exporter_port}"),
            "--alertmanager-address",
            &format!("127.0.0.1:{am_port}"),
        ],
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(
        std::fs::read(ex.path().join("monitoring-config.yaml")).unwrap(),
        before
    );
    let o = out.path();
    for f in [
        "prometheus.yml",
        "prometheus.flags",
        "rules/homelab-monitor.rules.yml",
        "alertmanager.yml",
        "grafana/provisioning/datasources/datasources.yaml",
        "grafana/provisioning/dashboards/dashboards.yaml",
        "grafana/dashboards/homelab-overview.json",
        "grafana/grafana.env",
    ] {
        assert!(o.join(f).is_file(), "{f} missing; stdout:\n{stdout}");
    }

    // Prometheus: the seed's interval and labels, our job, the rules.
    let prom: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(o.join("prometheus.yml")).unwrap())
            .unwrap();
    assert_eq!(prom["global"]["scrape_interval"], "15s");
    assert_eq!(prom["global"]["external_labels"]["cluster"], "homelab");
    assert_eq!(
        prom["global"]["external_labels"]["environment"],
        "production"
    );
    assert_eq!(prom["scrape_configs"][0]["job_name"], "homelab-monitor");
    let flags = std::fs::read_to_string(o.join("prometheus.flags")).unwrap();
    assert!(
        flags.contains("--storage.tsdb.retention.time=30d"),
        "{flags}"
    );
    check(
        "promtool",
        "prometheus",
        &["check", "config", "prometheus.yml"],
        o,
    );

    // Alertmanager: the seed's routes and receivers, grouping, inhibition.
    let am_text = std::fs::read_to_string(o.join("alertmanager.yml")).unwrap();
    let am: serde_yaml_ng::Value = serde_yaml_ng::from_str(&am_text).unwrap();
    assert_eq!(am["global"]["smtp_smarthost"], "localhost:587");
    assert_eq!(am["route"]["routes"][0]["receiver"], "critical-alerts");
    assert_eq!(
        am["route"]["routes"][0]["matchers"][0],
        "severity=\"critical\""
    );
    assert_eq!(am["route"]["routes"][1]["receiver"], "warning-alerts");
    assert!(am["route"]["group_by"].as_sequence().unwrap().len() >= 3);
    assert!(am["inhibit_rules"].as_sequence().unwrap().len() >= 2);
    assert!(am_text.contains("Critical Alert: {{ .GroupLabels.alertname }}"));
    check(
        "amtool",
        "prometheus-alertmanager",
        &["check-config", "alertmanager.yml"],
        o,
    );

    // Grafana: the seed's datasources and a provider.
    let ds: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(o.join("grafana/provisioning/datasources/datasources.yaml"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(ds["datasources"][0]["name"], "Prometheus");
    assert_eq!(ds["datasources"][0]["url"], "http://prometheus:9090");
    assert_eq!(ds["datasources"][0]["isDefault"], true);
    assert_eq!(ds["datasources"][1]["type"], "loki");
    let env = std::fs::read_to_string(o.join("grafana/grafana.env")).unwrap();
    assert!(env.contains("GF_SECURITY_ADMIN_USER=admin"));

    // A real Prometheus starts with the rendered files (loopback only).
    let data = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = flags.lines().map(str::to_string).collect();
    args.push(format!("--storage.tsdb.path={}", data.path().display()));
    args.push(format!("--web.listen-address=127.0.0.1:{prom_port}"));
    let mut child = Command::new(tool("prometheus", "prometheus"))
        .args(&args)
        .current_dir(o)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ready = false;
    while Instant::now() < deadline {
        if http(prom_port, "GET", "/-/ready", "")
            .map(|r| r.status == 200)
            .unwrap_or(false)
        {
            ready = true;
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("prometheus exited: {status}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let rules = if ready {
        http(prom_port, "GET", "/api/v1/rules", "")
            .map(|r| r.body)
            .unwrap_or_default()
    } else {
        String::new()
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(ready, "prometheus did not become ready");
    assert!(rules.contains("TerraformStateDrift"), "{rules}");
}

#[test]
fn render_needs_a_config_and_rejects_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(dir.path(), &["render", "--out", "x"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--config"), "{err}");
    std::fs::write(
        dir.path().join("bad.yaml"),
        "monitoring:\n  prometheus:\n    retention: \"thirty days\"\n",
    )
    .unwrap();
    let (code, _, err) = run(
        dir.path(),
        &["render", "--config", "bad.yaml", "--out", "x"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("retention"), "{err}");
}
