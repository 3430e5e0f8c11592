//! A real Prometheus scrapes the exporter; the seed's TerraformStateDrift rule
//! evaluates on the scraped series (pending live, firing in promtool's
//! simulated time on the very values Prometheus scraped).

mod common;

use std::process::{Command, Stdio};

use common::*;

struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn api(port: u16, path: &str) -> serde_json::Value {
    let r = get(port, path);
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    // Prometheus may answer chunked; take the JSON object inside.
    let start = r.body.find('{').unwrap_or(0);
    let end = r.body.rfind('}').map(|i| i + 1).unwrap_or(r.body.len());
    serde_json::from_str(&r.body[start..end]).unwrap_or_else(|e| panic!("{path}: {e}: {}", r.body))
}

#[test]
fn real_prometheus_scrapes_and_the_seed_drift_alert_goes_pending_then_fires() {
    let prometheus = tool("prometheus", "prometheus");
    let promtool = tool("promtool", "prometheus");
    let ex = example_copy();
    let exporter = Exporter::start(ex.path(), &["--config", "monitoring-config.yaml"]);
    let work = tempfile::tempdir().unwrap();
    let rules = repo().join("alerts/homelab-monitor.rules.yml");
    std::fs::write(
        work.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: homelab-monitor\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            rules.display(),
            exporter.port
        ),
    )
    .unwrap();
    let port = free_port();
    let child = Command::new(prometheus)
        .args([
            &format!(
                "--config.file={}",
                work.path().join("prometheus.yml").display()
            ),
            &format!("--storage.tsdb.path={}", work.path().join("data").display()),
            &format!("--web.listen-address=127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _p = Kill(child);
    wait_for("prometheus ready", 90, || {
        http(port, "GET", "/-/ready", "")
            .ok()
            .filter(|r| r.status == 200)
    });
    wait_for("a healthy scrape", 90, || {
        let v = api(port, "/api/v1/targets");
        let t = &v["data"]["activeTargets"][0];
        (t["health"] == "up").then_some(())
    });
    // The scraped drift series, as Prometheus stored them.
    let drift = wait_for("terraform_state_drift in Prometheus", 90, || {
        let v = api(port, "/api/v1/query?query=terraform_state_drift");
        let r = v["data"]["result"].as_array().cloned().unwrap_or_default();
        (r.len() == 3).then_some(r)
    });
    // Live: the seed's rule is pending (for: 5m) for the drifted state only.
    let alerts = wait_for("TerraformStateDrift pending", 90, || {
        let v = api(port, "/api/v1/alerts");
        let a: Vec<serde_json::Value> = v["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a["labels"]["alertname"] == "TerraformStateDrift")
            .collect();
        (!a.is_empty()).then_some(a)
    });
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["labels"]["alertname"], "TerraformStateDrift");
    assert_eq!(
        alerts[0]["labels"]["state_file"],
        "terraform/environments/prod/terraform.tfstate"
    );
    assert_eq!(alerts[0]["labels"]["severity"], "warning");
    assert_eq!(alerts[0]["state"], "pending");

    // Firing after `for: 5m`: replay the scraped values through promtool.
    let mut series = String::new();
    for s in &drift {
        let m = &s["metric"];
        let value = s["value"][1].as_str().unwrap();
        series.push_str(&format!(
            "      - series: 'terraform_state_drift{{instance=\"{}\",job=\"{}\",state_file=\"{}\"}}'\n        values: '{}x20'\n",
            m["instance"].as_str().unwrap(),
            m["job"].as_str().unwrap(),
            m["state_file"].as_str().unwrap(),
            value
        ));
    }
    let instance = format!("127.0.0.1:{}", exporter.port);
    let test = format!(
        "rule_files:\n  - {}\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n{series}    alert_rule_test:\n      - eval_time: 4m\n        alertname: TerraformStateDrift\n        exp_alerts: []\n      - eval_time: 6m\n        alertname: TerraformStateDrift\n        exp_alerts:\n          - exp_labels:\n              severity: warning\n              instance: '{instance}'\n              job: homelab-monitor\n              state_file: terraform/environments/prod/terraform.tfstate\n            exp_annotations:\n              summary: Terraform state drift detected\n              description: Infrastructure drift detected in terraform/environments/prod/terraform.tfstate\n              runbook_url: https://github.com/homelab-monitor/homelab-monitor/blob/main/alerts/runbook.md#terraformstatedrift\n",
        rules.display()
    );
    let test_file = work.path().join("drift_test.yml");
    std::fs::write(&test_file, test).unwrap();
    let out = Command::new(promtool)
        .args(["test", "rules"])
        .arg(&test_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool test rules failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
