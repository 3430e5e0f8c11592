//! What the terraform monitor knows about one target, as typed facts for the
//! CLI and the status page: addresses, actions and attribute paths; never values.

use super::analysis::Analysis;
use crate::core::snapshot::{Fact, Value};

fn detail(field: &str, value: Value) -> Fact {
    Fact::Detail {
        field: field.into(),
        value,
    }
}

fn finding(kind: impl Into<String>, subject: impl Into<String>, detail: impl Into<String>) -> Fact {
    Fact::Finding {
        kind: kind.into(),
        subject: subject.into(),
        detail: detail.into(),
        counted: true,
    }
}

fn with_paths(action: &str, paths: &[String]) -> String {
    if paths.is_empty() {
        action.to_string()
    } else {
        format!("{action}: {}", paths.join(", "))
    }
}

fn unix(t: std::time::SystemTime) -> Option<i64> {
    t.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
}

/// Every fact of one analysed target (the former `--state-file` tables).
pub fn facts(a: &Analysis) -> Vec<Fact> {
    let mut details = Vec::new();
    let mut counts = Vec::new();
    let mut findings = Vec::new();
    let mut problems = Vec::new();
    let mut fresh = Vec::new();
    details.push(detail(
        "read",
        Value::text(if a.up {
            "ok"
        } else if a.stale {
            "failed (showing the last good read)"
        } else {
            "failed"
        }),
    ));
    let mtime = super::mtime_secs(a).and_then(|s| i64::try_from(s).ok());
    if let Some(st) = &a.state {
        details.push(detail(
            "format",
            Value::text(if st.encrypted {
                "OpenTofu encrypted state".to_string()
            } else {
                format!("version {}", st.version)
            }),
        ));
        details.push(detail(
            "terraform_version",
            Value::opt_text(st.terraform_version.as_deref()),
        ));
        details.push(detail(
            "serial",
            st.serial
                .and_then(|s| i64::try_from(s).ok())
                .map(Value::Int)
                .unwrap_or(Value::None),
        ));
        details.push(detail("lineage", Value::opt_text(st.lineage.as_deref())));
        details.push(detail(
            "last_modified",
            mtime.map(Value::Timestamp).unwrap_or(Value::None),
        ));
        if !st.encrypted {
            details.push(detail(
                "instances",
                Value::Int(i64::try_from(st.instance_count()).unwrap_or(i64::MAX)),
            ));
            let sens = st.outputs.sensitive;
            details.push(detail(
                "outputs",
                Value::text(format!("{} ({} sensitive)", st.outputs.total, sens)),
            ));
        }
        for ((mode, rtype), n) in &st.resource_counts {
            counts.push(Fact::Count {
                group: "resources".into(),
                item: format!("{mode} {rtype}"),
                count: *n,
            });
        }
        for i in st.tainted() {
            findings.push(finding(
                "tainted",
                i.address,
                "will be replaced on the next apply",
            ));
        }
        for d in &st.deposed {
            findings.push(finding("deposed", d, "left by an interrupted replacement"));
        }
        for c in st.failed_checks() {
            findings.push(finding(
                format!("check {}", c.status),
                &c.address,
                format!("{} check", c.kind),
            ));
        }
    }
    match (&a.drift, a.drift_up) {
        (Some(p), _) => {
            let written = a.drift_time.and_then(unix);
            details.push(detail(
                "drift_report",
                Value::text(format!(
                    "written {}",
                    written.map(crate::core::snapshot::rfc3339).unwrap_or("-".into())
                )),
            ));
            fresh.push(Fact::Freshness {
                item: format!("{} (drift report)", a.label),
                last_success: written,
                max_age_seconds: None,
            });
            for c in &p.drift {
                findings.push(finding(
                    "drift",
                    &c.address,
                    with_paths(c.action.as_str(), &c.paths),
                ));
            }
            for c in &p.pending {
                findings.push(finding("pending", &c.address, c.detail()));
            }
            for o in &p.output_changes {
                findings.push(finding(
                    "pending output",
                    format!("output.{}", o.name),
                    o.action,
                ));
            }
            if p.incomplete {
                findings.push(finding(
                    "incomplete report",
                    "-",
                    "the plan does not cover the whole configuration (made with -target, or with deferred changes): write the drift report from a plan without -target",
                ));
            }
            for c in p.failed_checks() {
                findings.push(finding(
                    format!("check {} (drift report)", c.status),
                    &c.address,
                    format!("{} check", c.kind),
                ));
            }
        }
        (None, Some(false)) => details.push(detail(
            "drift_report",
            Value::text("unusable (see errors)"),
        )),
        (None, _) if a.state.is_none() => details.push(detail(
            "drift_report",
            Value::text("not read (no state to compare)"),
        )),
        (None, _) => details.push(detail("drift_report", Value::text("none"))),
    }
    match (&a.unapproved, a.baseline_up) {
        (Some(u), _) => {
            details.push(detail(
                "baseline",
                Value::text(format!("{} unapproved change(s)", u.total())),
            ));
            for x in &u.added {
                findings.push(finding("unapproved", x, "added"));
            }
            for x in &u.removed {
                findings.push(finding("unapproved", x, "removed"));
            }
            for (x, paths) in &u.changed {
                findings.push(finding("unapproved", x, with_paths("changed", paths)));
            }
        }
        (None, Some(false)) => {
            details.push(detail("baseline", Value::text("unusable (see errors)")))
        }
        (None, _) if a.state.is_none() => details.push(detail(
            "baseline",
            Value::text("not read (no state to compare)"),
        )),
        (None, _) => details.push(detail("baseline", Value::text("none"))),
    }
    if let Some(p) = &a.policy {
        details.push(detail(
            "policies",
            Value::text(format!(
                "{} evaluated, {} violation(s), {} failed",
                p.results.len(),
                p.violations(),
                p.failed()
            )),
        ));
        for r in &p.results {
            details.push(detail(
                &format!("policy {}", r.policy),
                Value::text(if r.ok {
                    format!(
                        "ok, {} violation(s), {} ms ({})",
                        r.violations.len(),
                        r.duration_ms,
                        r.file
                    )
                } else {
                    format!("failed, {} ms ({})", r.duration_ms, r.file)
                }),
            ));
            for v in &r.violations {
                findings.push(Fact::Finding {
                    kind: format!("policy {}", v.rule.as_str()),
                    subject: v.address.clone().unwrap_or_else(|| "-".into()),
                    detail: format!("{} ({}): {}", r.policy, v.severity, v.msg),
                    // Only `deny` rules make the one-shot exit 2; `warn` is shown.
                    counted: v.rule == super::policy::RuleKind::Deny,
                });
            }
            if let Some(e) = &r.error {
                problems.push(Fact::Problem {
                    component: "policy".into(),
                    message: e.clone(),
                });
            }
        }
    }
    for e in &a.errors {
        problems.push(Fact::Problem {
            component: e.component.to_string(),
            message: e.message.clone(),
        });
    }
    // A failed `homelab-monitor drift` run: the report is old, not clean.
    if let Some(f) = a
        .drift_run
        .as_deref()
        .and_then(super::drift_runner::status::failure_summary)
    {
        problems.push(Fact::Problem {
            component: "drift_run".into(),
            message: f,
        });
    }
    let counted = findings
        .iter()
        .filter(|f| matches!(f, Fact::Finding { counted: true, .. }))
        .count();
    let result = if a.unchecked() {
        "not checked: the state is encrypted (OpenTofu), only its envelope is readable; tainted objects, checks and the baseline cannot be checked (a drift report written by `tofu show -json` beside it is still read)".to_string()
    } else if a.state.is_none() {
        "not checked: the state could not be read (see Errors)".into()
    } else if counted > 0 {
        format!("{counted} finding(s)")
    } else if !a.errors.is_empty() {
        "none in what could be read; not clean: see Errors".into()
    } else {
        "none: state matches its drift report and baseline".into()
    };
    details.push(detail("result", Value::Text(result)));
    details
        .into_iter()
        .chain(counts)
        .chain(fresh)
        .chain(findings)
        .chain(problems)
        .collect()
}
