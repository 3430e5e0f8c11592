//! Evaluating every policy on a target: the per-target cache, reading the
//! state and drift report, and turning raw rule values into redacted violations.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use regorus::Value;

use super::super::source::{SourceError, Stamp, StateSource};
use super::engine::run_bounded;
use super::redact::Redactor;
use super::{LoadedPolicy, PolicyCache, PolicyOutcome, PolicyResult, PolicySet, RuleKind, Violation, SEVERITIES};

/// Read a whole document (bounded by the source's max size).
fn read_json(src: &dyn StateSource) -> Result<(serde_json::Value, Stamp), String> {
    let (mut r, stamp) = src.open().map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    r.read_to_end(&mut buf)
        .map_err(|e| format!("cannot read {}: {e}", src.label()))?;
    let v = serde_json::from_slice(&buf)
        .map_err(|e| format!("{} is not valid JSON (line {})", src.label(), e.line()))?;
    Ok((v, stamp))
}

/// Evaluate every policy on one target, reusing the cache when nothing changed.
/// `state_stamp` is the stamp of the last good state parse; encrypted states are skipped.
pub fn evaluate_target(
    set: &PolicySet,
    state: &dyn StateSource,
    drift: Option<&dyn StateSource>,
    cache: &mut Option<PolicyCache>,
) -> Option<Arc<PolicyOutcome>> {
    let (policies, fp) = set.refresh();
    // Unreadable now: keep the last results (the state monitor reports the error).
    let Ok(state_stamp) = state.stamp() else {
        return cache.as_ref().map(|c| c.outcome.clone());
    };
    let drift_stamp = drift.and_then(|d| d.stamp().ok());
    let key = (state_stamp, drift_stamp, fp);
    if let Some(c) = cache {
        if c.key == key {
            return Some(c.outcome.clone());
        }
    }
    let (input, stamp) = match read_json(state) {
        Ok(v) => v,
        // The state monitor already reports read errors; keep the last outcome.
        Err(_) => return cache.as_ref().map(|c| c.outcome.clone()),
    };
    if input.get("encrypted_data").is_some() || input.get("encryption_version").is_some() {
        *cache = None;
        return None;
    }
    let drift_doc = drift.and_then(|d| match read_json(d) {
        Ok((v, _)) => Some(v),
        Err(e) => match d.stamp() {
            Err(SourceError::NotFound(_)) => None,
            _ => {
                tracing::debug!(
                    monitor = "terraform_state",
                    "drift report not given to policies: {e}"
                );
                None
            }
        },
    });
    let outcome = Arc::new(evaluate(
        &policies,
        state.label(),
        input,
        drift_doc,
        set.timeout,
    ));
    *cache = Some(PolicyCache {
        key: (stamp, drift_stamp, fp),
        outcome: outcome.clone(),
    });
    Some(outcome)
}

/// Evaluate policies on one document. The values are dropped on return
/// (abandoned evaluations drop theirs when their thread ends).
pub fn evaluate(
    policies: &[LoadedPolicy],
    state_label: &str,
    input: serde_json::Value,
    drift: Option<serde_json::Value>,
    timeout: Duration,
) -> PolicyOutcome {
    let redactor = Arc::new(Redactor::from_documents(&input, drift.as_ref()));
    let input = Value::from(input);
    let data = match drift {
        Some(d) => Value::from(serde_json::json!({ "drift": d })),
        None => Value::new_object(),
    };
    let mut results = Vec::new();
    for p in policies {
        let started = Instant::now();
        let res = match &p.compiled {
            Err(e) => Err((e.reason(), redactor.redact(&e.to_string()))),
            Ok((src, v0)) => run_bounded(p, src.clone(), *v0, &input, &data, timeout, state_label)
                .map_err(|e| (e.reason(), redactor.redact(&e.to_string()))),
        };
        let duration_ms = started.elapsed().as_millis() as u64;
        let result = match res {
            Ok((raw, prints)) => {
                for line in prints {
                    tracing::debug!(monitor = "terraform_state", state_file = %state_label, policy = %p.name, "print: {}", redactor.redact(&line));
                }
                let mut violations: Vec<Violation> = raw
                    .into_iter()
                    .map(|(rule, v)| to_violation(rule, &v, &redactor))
                    .collect();
                violations.sort();
                violations.dedup();
                PolicyResult {
                    policy: p.name.clone(),
                    file: p.display.clone(),
                    ok: true,
                    error: None,
                    reason: None,
                    violations,
                    duration_ms,
                }
            }
            Err((reason, message)) => {
                tracing::warn!(monitor = "terraform_state", state_file = %state_label, policy = %p.name, reason, "{message}");
                PolicyResult {
                    policy: p.name.clone(),
                    file: p.display.clone(),
                    ok: false,
                    error: Some(message),
                    reason: Some(reason),
                    violations: Vec::new(),
                    duration_ms,
                }
            }
        };
        results.push(result);
    }
    PolicyOutcome { results }
}

fn to_violation(rule: RuleKind, v: &Value, r: &Redactor) -> Violation {
    let text = |v: &Value| -> Option<String> {
        match v {
            Value::String(s) => Some(s.to_string()),
            Value::Undefined => None,
            other => other.to_json_str().ok(),
        }
    };
    match v {
        Value::Object(o) => {
            let get = |k: &str| o.get(&Value::from(k)).and_then(text);
            let severity = get("severity")
                .map(|s| s.to_ascii_lowercase())
                .and_then(|s| SEVERITIES.iter().find(|x| **x == s).copied())
                .unwrap_or(rule.default_severity());
            let msg = get("msg").or_else(|| text(v)).unwrap_or_default();
            Violation {
                rule,
                severity,
                address: get("address").map(|a| r.redact(&a)),
                msg: r.redact(&msg),
            }
        }
        other => Violation {
            rule,
            severity: rule.default_severity(),
            address: None,
            msg: r.redact(&text(other).unwrap_or_default()),
        },
    }
}
