//! The one-shot `--state-file` report: addresses, actions and attribute paths;
//! never values.

use serde_json::json;

use super::analysis::{Analysis, TargetError};
use crate::report::{Report, Section};

fn ts(t: Option<u64>) -> String {
    match t {
        Some(s) => humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(s),
        )
        .to_string(),
        None => "-".into(),
    }
}

/// Build the report for analysed targets (and discovery problems).
pub fn build(analyses: &[Analysis], problems: &[TargetError], problem_labels: &[String]) -> Report {
    let mut report = Report::default();
    let mut states = Vec::new();
    let mut errors = Section::new("Errors", &["TARGET", "COMPONENT", "ERROR"]);
    for a in analyses {
        let label = &a.label;
        let mut summary = Section::new(&format!("State {label}"), &["FIELD", "VALUE"]);
        let mut resources = Section::new("Resources", &["MODE", "TYPE", "INSTANCES"]);
        let mut findings = Section::new("Findings", &["KIND", "ADDRESS", "DETAIL"]);
        findings.empty = if a.unchecked() {
            "not checked: the state is encrypted (OpenTofu), only its envelope is readable; tainted objects, checks and the baseline cannot be checked (a drift report written by `tofu show -json` beside it is still read)".into()
        } else if a.state.is_none() {
            "not checked: the state could not be read (see Errors)".into()
        } else if !a.errors.is_empty() {
            "none in what could be read; not clean: see Errors".into()
        } else {
            "none: state matches its drift report and baseline".into()
        };
        let mtime = super::mtime_secs(a);
        summary.row([
            "read",
            if a.up {
                "ok"
            } else if a.stale {
                "failed (showing the last good read)"
            } else {
                "failed"
            },
        ]);
        if let Some(st) = &a.state {
            summary.row([
                "format".to_string(),
                if st.encrypted {
                    "OpenTofu encrypted state".into()
                } else {
                    format!("version {}", st.version)
                },
            ]);
            summary.row([
                "terraform_version",
                st.terraform_version.as_deref().unwrap_or("-"),
            ]);
            summary.row([
                "serial".to_string(),
                st.serial
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "-".into()),
            ]);
            summary.row(["lineage", st.lineage.as_deref().unwrap_or("-")]);
            summary.row(["last_modified".to_string(), ts(mtime)]);
            if !st.encrypted {
                summary.row(["instances".to_string(), st.instance_count().to_string()]);
                let sens = st.outputs.iter().filter(|o| o.sensitive).count();
                summary.row([
                    "outputs".to_string(),
                    format!("{} ({} sensitive)", st.outputs.len(), sens),
                ]);
            }
            for ((mode, rtype), n) in &st.resource_counts {
                resources.row([mode.clone(), rtype.clone(), n.to_string()]);
            }
            for i in st.tainted() {
                findings.row(["tainted", &i.address, "will be replaced on the next apply"]);
            }
            for d in &st.deposed {
                findings.row(["deposed", d, "left by an interrupted replacement"]);
            }
            for c in st.failed_checks() {
                findings.row([
                    "check ".to_string() + &c.status,
                    c.address.clone(),
                    format!("{} check", c.kind),
                ]);
            }
        }
        match (&a.drift, a.drift_up) {
            (Some(p), _) => {
                summary.row([
                    "drift_report".to_string(),
                    format!(
                        "written {}",
                        ts(a.drift_time
                            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                            .map(|d| d.as_secs()))
                    ),
                ]);
                for c in &p.drift {
                    findings.row([
                        "drift".to_string(),
                        c.address.clone(),
                        detail(c.action.as_str(), &c.paths),
                    ]);
                }
                for c in &p.pending {
                    findings.row(["pending".to_string(), c.address.clone(), c.detail()]);
                }
                for o in &p.output_changes {
                    findings.row([
                        "pending output".to_string(),
                        format!("output.{}", o.name),
                        o.action.to_string(),
                    ]);
                }
                if p.incomplete {
                    findings.row([
                        "incomplete report",
                        "-",
                        "the plan does not cover the whole configuration (made with -target, or with deferred changes): write the drift report from a plan without -target",
                    ]);
                }
                for c in p.failed_checks() {
                    findings.row([
                        format!("check {} (drift report)", c.status),
                        c.address.clone(),
                        format!("{} check", c.kind),
                    ]);
                }
            }
            (None, Some(false)) => summary.row(["drift_report", "unusable (see errors)"]),
            (None, _) if a.state.is_none() => {
                summary.row(["drift_report", "not read (no state to compare)"])
            }
            (None, _) => summary.row(["drift_report", "none"]),
        }
        match (&a.unapproved, a.baseline_up) {
            (Some(u), _) => {
                summary.row([
                    "baseline".to_string(),
                    format!("{} unapproved change(s)", u.total()),
                ]);
                for x in &u.added {
                    findings.row(["unapproved", x, "added"]);
                }
                for x in &u.removed {
                    findings.row(["unapproved", x, "removed"]);
                }
                for (x, paths) in &u.changed {
                    findings.row([
                        "unapproved".to_string(),
                        x.clone(),
                        detail("changed", paths),
                    ]);
                }
            }
            (None, Some(false)) => summary.row(["baseline", "unusable (see errors)"]),
            (None, _) if a.state.is_none() => {
                summary.row(["baseline", "not read (no state to compare)"])
            }
            (None, _) => summary.row(["baseline", "none"]),
        }
        for e in &a.errors {
            errors.row([label.clone(), e.component.to_string(), e.message.clone()]);
        }
        report.findings += a.findings();
        if a.unchecked() && a.errors.is_empty() {
            report.unchecked += 1;
        }
        let mut policy_failed = false;
        let mut policies = None;
        if let Some(p) = &a.policy {
            let mut sec = Section::new(
                "Policy violations",
                &["POLICY", "RULE", "SEVERITY", "ADDRESS", "MESSAGE"],
            );
            sec.empty = format!("none: {} policies passed", p.results.len());
            for r in &p.results {
                for v in &r.violations {
                    sec.row([
                        r.policy.clone(),
                        v.rule.as_str().to_string(),
                        v.severity.to_string(),
                        v.address.clone().unwrap_or_else(|| "-".into()),
                        v.msg.clone(),
                    ]);
                }
                if let Some(e) = &r.error {
                    policy_failed = true;
                    errors.row([label.clone(), "policy".to_string(), e.clone()]);
                }
            }
            policies = Some(sec);
        }
        // A failed `homelab-monitor drift` run: the report is old, not clean.
        let run_failed = a
            .drift_run
            .as_ref()
            .and_then(super::drift_runner::status::failure_summary);
        if let Some(f) = &run_failed {
            errors.row([label.clone(), "drift_run".to_string(), f.clone()]);
        }
        if !a.errors.is_empty() || policy_failed || run_failed.is_some() {
            report.errors += 1;
        }
        report.sections.extend([summary, resources, findings]);
        report.sections.extend(policies);
        states.push(state_json(a, mtime));
    }
    for (p, l) in problems.iter().zip(problem_labels) {
        errors.row([l.clone(), p.component.to_string(), p.message.clone()]);
        report.errors += 1;
    }
    if !errors.rows.is_empty() {
        report.sections.push(errors);
    }
    report.json = json!({
        "states": states,
        "discovery_errors": problems,
        "findings": report.findings,
        "errors": report.errors,
        "unchecked": report.unchecked,
    });
    report
}

/// Nothing monitored is a finding, never a clean report.
pub fn nothing_found(report: &mut Report, message: &str) {
    let mut s = Section::new("States", &["STATE"]);
    s.empty = message.to_string();
    report.sections.insert(0, s);
    report.findings += 1;
    if let Some(obj) = report.json.as_object_mut() {
        obj.insert("nothing_monitored".into(), json!(message));
        obj.insert("findings".into(), json!(report.findings));
    }
}

fn detail(action: &str, paths: &[String]) -> String {
    if paths.is_empty() {
        action.to_string()
    } else {
        format!("{action}: {}", paths.join(", "))
    }
}

fn state_json(a: &Analysis, mtime: Option<u64>) -> serde_json::Value {
    let st = a.state.as_deref();
    json!({
        "state_file": a.label,
        "up": a.up,
        "stale": a.stale,
        "encrypted": st.map(|s| s.encrypted),
        "checked": a.state.is_some() && !a.unchecked(),
        "version": st.map(|s| s.version),
        "terraform_version": st.and_then(|s| s.terraform_version.clone()),
        "serial": st.and_then(|s| s.serial),
        "lineage": st.and_then(|s| s.lineage.clone()),
        "last_modified": mtime,
        "instances": st.map(|s| s.instance_count()),
        "resources": st.map(|s| s.resource_counts.iter().map(|((m, t), n)| json!({"mode": m, "type": t, "instances": n})).collect::<Vec<_>>()),
        "outputs": st.map(|s| &s.outputs),
        "tainted": st.map(|s| s.tainted().map(|i| i.address.clone()).collect::<Vec<_>>()),
        "deposed": st.map(|s| &s.deposed),
        "failed_checks": st.map(|s| s.failed_checks().collect::<Vec<_>>()),
        "drift_report": a.drift.as_ref().map(|p| json!({
            "terraform_version": p.terraform_version,
            "timestamp": a.drift_time.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_secs()),
            "drift": p.drift,
            "pending": p.pending,
            "output_changes": p.output_changes,
            "checks": p.checks,
            "errored": p.errored,
            "complete": !p.incomplete,
        })),
        "unapproved": a.unapproved,
        "policies": a.policy.as_ref().map(|p| &p.results),
        "findings": a.findings(),
        "errors": a.errors,
    })
}
