//! The shipped alert rules: promtool-clean, unit-tested per alert, documented.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::*;
use serde_yaml_ng::Value;

fn run_tool(tool_path: std::path::PathBuf, args: &[&str]) -> String {
    let out = Command::new(tool_path)
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?} failed:\n{text}");
    text
}

fn rules() -> Vec<Value> {
    let text = std::fs::read_to_string(repo().join("alerts/homelab-monitor.rules.yml")).unwrap();
    let v: Value = serde_yaml_ng::from_str(&text).unwrap();
    v["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap().clone())
        .collect()
}

#[test]
fn promtool_checks_and_unit_tests_pass() {
    let promtool = tool("promtool", "prometheus");
    let out = run_tool(
        promtool.clone(),
        &["check", "rules", "alerts/homelab-monitor.rules.yml"],
    );
    assert!(out.contains("SUCCESS") && !out.contains("WARNING"), "{out}");
    let out = run_tool(
        promtool,
        &["test", "rules", "alerts/tests/homelab-monitor.test.yml"],
    );
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn alertmanager_example_is_valid() {
    let amtool = tool("amtool", "prometheus-alertmanager");
    let out = run_tool(amtool, &["check-config", "alerts/alertmanager.yml"]);
    assert!(
        out.contains("SUCCESS") && out.contains("3 inhibit rules"),
        "{out}"
    );
}

#[test]
fn the_seed_rule_is_verbatim() {
    let r = rules();
    let seed = r
        .iter()
        .find(|r| r["alert"] == "TerraformStateDrift")
        .expect("seed rule");
    assert_eq!(seed["expr"], "terraform_state_drift > 0");
    assert_eq!(seed["for"], "5m");
    assert_eq!(seed["labels"]["severity"], "warning");
    assert_eq!(
        seed["annotations"]["summary"],
        "Terraform state drift detected"
    );
    assert_eq!(
        seed["annotations"]["description"],
        "Infrastructure drift detected in {{ $labels.state_file }}"
    );
    let text = std::fs::read_to_string(repo().join("alerts/homelab-monitor.rules.yml")).unwrap();
    assert!(text.contains("- name: homelab.rules\n  rules:\n  - alert: TerraformStateDrift\n    expr: terraform_state_drift > 0\n    for: 5m\n"));
}

#[test]
fn every_alert_is_documented_labelled_and_tested() {
    let runbook = std::fs::read_to_string(repo().join("alerts/runbook.md")).unwrap();
    let tests =
        std::fs::read_to_string(repo().join("alerts/tests/homelab-monitor.test.yml")).unwrap();
    let tv: Value = serde_yaml_ng::from_str(&tests).unwrap();
    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for t in tv["tests"].as_sequence().unwrap() {
        for case in t["alert_rule_test"].as_sequence().unwrap() {
            let name = case["alertname"].as_str().unwrap().to_string();
            if case["exp_alerts"]
                .as_sequence()
                .map(|s| s.is_empty())
                .unwrap_or(true)
            {
                quiet.insert(name);
            } else {
                fires.insert(name);
            }
        }
    }
    let rules = rules();
    assert!(rules.len() >= 20, "{}", rules.len());
    for r in &rules {
        let name = r["alert"].as_str().unwrap();
        assert!(
            name.chars().next().unwrap().is_ascii_uppercase() && !name.contains(['_', '-', ' ']),
            "{name} is not CamelCase"
        );
        let sev = r["labels"]["severity"].as_str().unwrap_or("");
        assert!(
            ["info", "warning", "critical"].contains(&sev),
            "{name}: severity {sev:?}"
        );
        for k in ["summary", "description", "runbook_url"] {
            assert!(
                r["annotations"][k].as_str().is_some_and(|s| !s.is_empty()),
                "{name}: no {k}"
            );
        }
        let url = r["annotations"]["runbook_url"].as_str().unwrap();
        let anchor = url.rsplit_once('#').map(|(_, a)| a).unwrap_or("");
        assert_eq!(anchor, name.to_lowercase(), "{name}: runbook anchor");
        assert!(
            runbook.contains(&format!("\n## {name}\n")),
            "{name} has no runbook section"
        );
        assert!(
            r["annotations"]["description"]
                .as_str()
                .unwrap()
                .contains("{{"),
            "{name}: description is not templated"
        );
        assert!(fires.contains(name), "{name} has no test where it fires");
        assert!(
            quiet.contains(name),
            "{name} has no test where it stays quiet"
        );
    }
}
