//! Evaluating every policy on a target: the per-target cache, and turning
//! raw rule values into redacted violations. The documents are the policy
//! inputs the monitor's one streaming read built
//! ([`super::super::state::parse_state_with_input`]); nothing here reads a file.

use std::sync::Arc;
use std::time::{Duration, Instant};

use regorus::Value;

use super::super::source::{Stamp, StateSource};
use super::engine::run_bounded;
use super::redact::Redactor;
use super::{LoadedPolicy, PolicyCache, PolicyOutcome, PolicyResult, PolicySet, RuleKind, Violation, SEVERITIES};

/// One target's policies when they must be evaluated in this collection:
/// the state, its drift report or a policy file changed since the cached
/// outcome. The monitor's read of the state (and drift report) then also
/// builds the policy input.
pub struct Due {
    policies: Vec<LoadedPolicy>,
    fp: u64,
    drift_stamp: Option<Stamp>,
    timeout: Duration,
    max_input: u64,
}

impl Due {
    /// `None` when the cached outcome still holds (files unchanged), or when
    /// the state cannot even be stat'ed now (the state monitor reports that;
    /// the last outcome is kept).
    pub fn check(
        set: &PolicySet,
        state: &dyn StateSource,
        drift: Option<&dyn StateSource>,
        cache: Option<&PolicyCache>,
    ) -> Option<Due> {
        let (policies, fp) = set.refresh();
        let state_stamp = state.stamp().ok()?;
        let drift_stamp = drift.and_then(|d| d.stamp().ok());
        if cache.is_some_and(|c| c.key == (state_stamp, drift_stamp, fp)) {
            return None;
        }
        Some(Due {
            policies,
            fp,
            drift_stamp,
            timeout: set.timeout,
            max_input: set.max_input,
        })
    }

    /// The most JSON text one policy input may be built from.
    pub fn max_input(&self) -> u64 {
        self.max_input
    }

    /// The state (or its drift report) was too large to be a policy input:
    /// every policy fails with `reason`, and the outcome is cached for this
    /// stamp like an evaluated one (not retried until something changes).
    pub fn refused(
        self,
        stamp: Stamp,
        reason: &'static str,
        message: String,
        cache: &mut Option<PolicyCache>,
    ) -> Arc<PolicyOutcome> {
        let results = self
            .policies
            .iter()
            .map(|p| PolicyResult {
                policy: p.name.clone(),
                file: p.display.clone(),
                ok: false,
                error: Some(message.clone()),
                reason: Some(reason),
                violations: Vec::new(),
                duration_ms: 0,
            })
            .collect();
        let outcome = Arc::new(PolicyOutcome { results });
        *cache = Some(PolicyCache {
            key: (stamp, self.drift_stamp, self.fp),
            outcome: outcome.clone(),
        });
        outcome
    }

    /// Evaluate on the state read at `stamp` (and its drift report) and
    /// cache the outcome. The documents are dropped on return.
    pub fn evaluate(
        self,
        state_label: &str,
        stamp: Stamp,
        input: Value,
        drift: Option<Value>,
        cache: &mut Option<PolicyCache>,
    ) -> Arc<PolicyOutcome> {
        let outcome = Arc::new(evaluate_values(
            &self.policies,
            state_label,
            input,
            drift,
            self.timeout,
        ));
        *cache = Some(PolicyCache {
            key: (stamp, self.drift_stamp, self.fp),
            outcome: outcome.clone(),
        });
        outcome
    }
}

/// Evaluate policies on documents held as `serde_json` values (tests, tools):
/// the same as the monitor's path once converted.
pub fn evaluate(
    policies: &[LoadedPolicy],
    state_label: &str,
    input: serde_json::Value,
    drift: Option<serde_json::Value>,
    timeout: Duration,
) -> PolicyOutcome {
    evaluate_values(
        policies,
        state_label,
        Value::from(input),
        drift.map(Value::from),
        timeout,
    )
}

/// Evaluate policies on one document. The values are dropped on return
/// (abandoned evaluations drop theirs when their thread ends).
pub fn evaluate_values(
    policies: &[LoadedPolicy],
    state_label: &str,
    input: Value,
    drift: Option<Value>,
    timeout: Duration,
) -> PolicyOutcome {
    let redactor = Arc::new(Redactor::from_documents(&input, drift.as_ref()));
    let data = match drift {
        Some(d) => Value::from(std::collections::BTreeMap::from([(Value::from("drift"), d)])),
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
