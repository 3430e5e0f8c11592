//! A real Prometheus scrapes the exporter; the seed's TerraformStateDrift rule
//! evaluates on the scraped series (pending live, firing in promtool's
//! simulated time on the very values Prometheus scraped).

mod common;

use std::process::Command;

use common::*;

use common::tools::{openssl_cert, prom_api as api, prom_query, prometheus};

#[test]
fn real_prometheus_scrapes_and_the_seed_drift_alert_goes_pending_then_fires() {
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
    let (_p, port) = prometheus(work.path(), &work.path().join("prometheus.yml"));
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
    run_ok(
        "promtool test rules",
        Command::new(promtool)
            .args(["test", "rules"])
            .arg(&test_file),
    );
}

fn query(port: u16, expr: &str) -> Vec<serde_json::Value> {
    let v = prom_query(port, expr);
    assert_eq!(v["status"], "success", "{expr}: {v}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

fn value(sample: &serde_json::Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The colour Grafana gives `v` with these thresholds (steps ascending, the
/// first with value null).
fn colour(thresholds: &serde_json::Value, v: f64) -> String {
    let mut c = String::new();
    for step in thresholds["steps"].as_array().expect("threshold steps") {
        if step["value"].is_null() || step["value"].as_f64().is_some_and(|t| v >= t) {
            c = step["color"].as_str().unwrap_or_default().to_string();
        }
    }
    c
}

fn dashboard(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(repo().join("dashboards").join(name)).unwrap())
        .unwrap()
}

fn panel<'a>(dash: &'a serde_json::Value, title: &str) -> &'a serde_json::Value {
    dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["title"] == title)
        .unwrap_or_else(|| panic!("no panel {title:?}"))
}

/// Per series of a table column: (the series' `label`, value, colour). The
/// column is a renamed `Value #X`; its thresholds are the column's override,
/// else the panel's defaults.
fn column_colours(
    port: u16,
    job: &str,
    p: &serde_json::Value,
    column: &str,
    label: &str,
) -> Vec<(String, f64, String)> {
    let rename = &p["transformations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "organize")
        .unwrap()["options"]["renameByName"];
    let from = rename
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, to)| *to == column)
        .map(|(k, _)| k.clone())
        .unwrap_or_else(|| panic!("{}: no column {column}", p["title"]));
    let ref_id = from.rsplit('#').next().unwrap().trim();
    let t = p["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["refId"] == ref_id)
        .unwrap();
    let mut th = p["fieldConfig"]["defaults"]["thresholds"].clone();
    for o in p["fieldConfig"]["overrides"].as_array().unwrap() {
        if o["matcher"]["options"] == column {
            for prop in o["properties"].as_array().unwrap() {
                if prop["id"] == "thresholds" {
                    th = prop["value"].clone();
                }
            }
        }
    }
    let expr = t["expr"]
        .as_str()
        .unwrap()
        .replace("$job", job)
        .replace("$instance", ".*");
    let mut out: Vec<(String, f64, String)> = query(port, &expr)
        .iter()
        .map(|s| {
            let v = value(s);
            let l = s["metric"][label].as_str().unwrap_or_default().to_string();
            (l, v, colour(&th, v))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// issue 13: on a healthy setup stat panels said "No data" instead of 0, and
/// colours were fixed (backups red after 2 days, certificates orange inside
/// 30 days) instead of following each source's max_age and the configured
/// warning_days / critical_days, which the exporter exports.
#[test]
fn dashboards_show_zero_when_healthy_and_colour_by_exported_thresholds() {
    // "seed": the example as shipped (Terraform only, no certificate paths, no backup sources).
    let ex = example_copy();
    let seed = Exporter::start(ex.path(), &["--config", "monitoring-config.yaml"]);
    // "colours": a weekly backup 3 days old (max_age 8d), a daily one 30 h
    // old (max_age 26h), one without max_age 30 h old, and a certificate with
    // 20 days left against warning_days 10.
    let work = tempfile::tempdir().unwrap();
    let d = work.path().join("colours");
    std::fs::create_dir_all(d.join("certs")).unwrap();
    std::fs::create_dir_all(d.join("backups")).unwrap();
    openssl_cert(&d, "k.pem", "certs/web.pem", "web.homelab.lan", 20);
    std::fs::remove_file(d.join("k.pem")).unwrap();
    let now = std::time::SystemTime::now();
    let run = |hours_ago: u64| {
        let at = |h: u64| {
            humantime::format_rfc3339_seconds(now - std::time::Duration::from_secs(h * 3600))
                .to_string()
        };
        serde_json::json!({"version": 1, "id": format!("run-{hours_ago}"), "start": at(hours_ago + 1),
            "end": at(hours_ago), "status": "success", "size": 1000})
    };
    for (name, hours) in [("weekly", 72), ("daily", 30), ("nomax", 30)] {
        let runs = serde_json::json!([run(hours + 24 * 7), run(hours)]);
        std::fs::write(d.join(format!("backups/{name}.json")), runs.to_string()).unwrap();
    }
    std::fs::write(
        d.join("monitoring-config.yaml"),
        "custom_monitors:\n  certificate_expiry:\n    warning_days: 10\n    critical_days: 3\n    paths: [certs/]\n  backup_validation:\n    sources:\n      - { name: weekly, format: manifest, path: backups/weekly.json, max_age: 8d }\n      - { name: daily, format: manifest, path: backups/daily.json, max_age: 26h }\n      - { name: nomax, format: manifest, path: backups/nomax.json }\n",
    )
    .unwrap();
    let colours = Exporter::start(&d, &["--config", "monitoring-config.yaml"]);
    colours.wait_ready();
    std::fs::write(
        work.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: seed\n    static_configs: [{{targets: ['127.0.0.1:{}']}}]\n  - job_name: colours\n    static_configs: [{{targets: ['127.0.0.1:{}']}}]\n",
            seed.port, colours.port
        ),
    )
    .unwrap();
    let (_p, port) = prometheus(work.path(), &work.path().join("prometheus.yml"));
    wait_for("both jobs scraped", 90, || {
        let r = query(port, "homelab_monitor_build_info");
        (r.len() == 2).then_some(())
    });
    wait_for("backup and certificate series", 90, || {
        let b = query(port, "backup_last_success_timestamp_seconds");
        let c = query(port, "certificate_not_after_timestamp_seconds");
        (b.len() == 3 && c.len() == 1).then_some(())
    });

    // Every stat panel of every dashboard, on the seed job alone: a value, or
    // words saying why there is none (never a bare "No data").
    let mut no_data = Vec::new();
    for entry in std::fs::read_dir(repo().join("dashboards")).unwrap() {
        let path = entry.unwrap().path();
        let dash: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for p in dash["panels"].as_array().unwrap() {
            if p["type"] != "stat" || p["fieldConfig"]["defaults"]["noValue"].is_string() {
                continue;
            }
            let expr = p["targets"][0]["expr"]
                .as_str()
                .unwrap()
                .replace("$job", "seed")
                .replace("$instance", ".*")
                .replace("$state_file", ".*")
                .replace("$__rate_interval", "1m");
            if query(port, &expr).is_empty() {
                no_data.push(format!(
                    "{} / {}: {expr}",
                    path.file_name().unwrap().to_string_lossy(),
                    p["title"]
                ));
            }
        }
    }
    assert!(
        no_data.is_empty(),
        "stat panels showing \"No data\":\n{}",
        no_data.join("\n")
    );

    // Backups: coloured against each source's own max_age (2 days without one).
    for dash in ["backups.json", "homelab-overview.json"] {
        let dash = dashboard(dash);
        let got = column_colours(
            port,
            "colours",
            panel(&dash, "Backups by age"),
            "Age / max_age",
            "source",
        );
        let names: Vec<(&str, &str)> = got
            .iter()
            .map(|(s, _, c)| (s.as_str(), c.as_str()))
            .collect();
        assert_eq!(
            names,
            [("daily", "red"), ("nomax", "green"), ("weekly", "green")],
            "{got:?}"
        );
    }

    // Certificates: 20 days left is fine with warning_days 10.
    for (dash, title) in [
        ("certificates.json", "Certificates by time left"),
        (
            "homelab-overview.json",
            "Certificates by time left (10 soonest)",
        ),
    ] {
        let dash = dashboard(dash);
        let got = column_colours(port, "colours", panel(&dash, title), "Level", "path");
        assert_eq!(got.len(), 1, "{title}: {got:?}");
        assert_eq!(
            (got[0].1, got[0].2.as_str()),
            (0.0, "green"),
            "{title}: {got:?}"
        );
    }
}
