//! Evaluating every policy on a target: the per-target cache, and turning
//! raw rule values into redacted violations. The documents are the policy
//! inputs the monitor's one streaming read built
//! ([`super::super::state::parse_state_with_input`]); nothing here reads a file.

use std::sync::Arc;
use std::time::{Duration, Instant};

use regorus::Value;

use super::super::source::{Stamp, StateSource};
use super::super::state::{PolicyInput, PolicyStream};
use super::engine::{run_bounded, RawResult};
use super::input::{DocBuilder, InputError};
use super::redact::Redactor;
use super::scope::Scope;
use super::stream::{ResourceEval, BATCH_BYTES};
use super::{LoadedPolicy, PolicyCache, PolicyError, PolicyOutcome, PolicyResult, PolicySet, RuleKind, Violation, SEVERITIES};

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

    /// The document builder for this read of the state: bounded by
    /// `policy_max_input_size`, feeding the per-resource policies (if any)
    /// as resources stream past, keeping the whole state only if some
    /// policy needs it.
    pub fn builder(&self, state_label: &str) -> DocBuilder {
        self.builder_with_batches(state_label, BATCH_BYTES)
    }

    fn builder_with_batches(&self, state_label: &str, batch_bytes: usize) -> DocBuilder {
        let doc = DocBuilder::with_limit(self.max_input);
        let (per_resource, whole): (Vec<_>, Vec<_>) = self
            .policies
            .iter()
            .cloned()
            .partition(|p| p.scope == Scope::Resource);
        if per_resource.is_empty() {
            return doc;
        }
        doc.streaming(
            ResourceEval::new(per_resource, state_label, self.timeout).with_batch_bytes(batch_bytes),
            !whole.is_empty(),
        )
    }

    /// Every policy's result from what this collection's read of the state
    /// (and drift report) built, cached for `stamp`. `None` when the policy
    /// input could not be built (not valid JSON where the summary does not
    /// look): the caller keeps the last outcome.
    ///
    /// Whole-state policies: when the state or its drift report is larger
    /// than `policy_max_input_size` they fail with reason `too_large` (and
    /// stay failed until something changes), rather than risking the
    /// process. Per-resource policies were evaluated while the state
    /// streamed past and are not bounded by it.
    pub fn complete(
        self,
        state_label: &str,
        stamp: Stamp,
        built: Built,
        cache: &mut Option<Box<PolicyCache>>,
    ) -> Option<Arc<PolicyOutcome>> {
        let state = match built.state? {
            Ok(v) => Ok(v),
            Err(e @ InputError::TooLarge { .. }) => Err(e),
            Err(e) => {
                tracing::debug!(monitor = "terraform_state", state_file = %state_label, "policies not evaluated: {e}");
                return None;
            }
        };
        let stream = match built.stream {
            Some(Ok(s)) => Some(s),
            Some(Err(e)) => {
                tracing::debug!(monitor = "terraform_state", state_file = %state_label, "policies not evaluated: {e}");
                return None;
            }
            None => None,
        };
        let drift = match built.drift {
            Some(Ok(d)) => Ok(Some(d)),
            Some(Err(e @ InputError::TooLarge { .. })) => Err(e),
            Some(Err(e)) => {
                tracing::debug!(monitor = "terraform_state", state_file = %state_label, "drift report not given to policies: {e}");
                Ok(None)
            }
            None => Ok(None),
        };
        let whole: Vec<LoadedPolicy> = self
            .policies
            .iter()
            .filter(|p| stream.is_none() || p.scope == Scope::State)
            .cloned()
            .collect();
        let per_resource = stream.map(|s| {
            s.finish(
                state.as_ref().ok(),
                drift.as_ref().ok().and_then(Option::as_ref),
            )
        });
        let whole_results = match (state, drift) {
            _ if whole.is_empty() => Vec::new(),
            (Ok(input), Ok(drift)) => {
                evaluate_values(&whole, state_label, input, drift, self.timeout).results
            }
            (Err(e), _) | (_, Err(e)) => {
                // Refused whole rather than risking the process: not run.
                tracing::warn!(monitor = "terraform_state", state_file = %state_label, reason = e.reason(), "{e}");
                whole
                    .iter()
                    .map(|p| PolicyResult {
                        policy: p.name.clone(),
                        file: p.display.clone(),
                        ok: false,
                        error: Some(e.to_string()),
                        reason: Some(e.reason()),
                        violations: Vec::new(),
                        duration_ms: 0,
                    })
                    .collect()
            }
        };
        // In the configured order.
        let mut all: Vec<PolicyResult> = whole_results
            .into_iter()
            .chain(per_resource.into_iter().flatten())
            .collect();
        let order = |r: &PolicyResult| self.policies.iter().position(|p| p.display == r.file);
        all.sort_by_key(order);
        let outcome = Arc::new(PolicyOutcome { results: all });
        *cache = Some(Box::new(PolicyCache {
            key: (stamp, self.drift_stamp, self.fp),
            outcome: outcome.clone(),
        }));
        Some(outcome)
    }
}

/// What one read of a state (and of its drift report) built for the policies.
pub struct Built {
    /// The state as one document (without `resources` when no policy needs
    /// the whole state); `None`: encrypted or not read.
    pub state: PolicyInput,
    pub drift: PolicyInput,
    /// The per-resource policies fed as the state streamed past.
    pub stream: PolicyStream,
}

/// Evaluate policies as the monitor does on a state read from `reader`
/// (tests, tools): per-resource policies (`# policy-scope: resource`) in
/// batches of at most `batch_bytes` of JSON text (1: one resource at a
/// time) while it streams past, the others on the whole document; `drift`
/// is the drift report. Not bounded by `policy_max_input_size`. `None`:
/// the input could not be built (not valid JSON where the summary skips).
pub fn evaluate_reader<R: std::io::Read>(
    policies: &[LoadedPolicy],
    state_label: &str,
    reader: R,
    drift: Option<serde_json::Value>,
    timeout: Duration,
    batch_bytes: usize,
) -> Result<Option<PolicyOutcome>, super::super::state::ParseError> {
    let due = Due {
        policies: policies.to_vec(),
        fp: 0,
        drift_stamp: None,
        timeout,
        max_input: u64::MAX,
    };
    let (_, input, stream) =
        super::super::state::parse_state_streaming(reader, due.builder_with_batches(state_label, batch_bytes))?;
    let built = Built {
        state: input,
        drift: drift.map(|d| Ok(Value::from(d))),
        stream,
    };
    let stamp = Stamp {
        size: 0,
        modified: None,
        inode: 0,
    };
    let mut cache = None;
    Ok(due
        .complete(state_label, stamp, built, &mut cache)
        .map(|o| (*o).clone()))
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
            Err(e) => Err(e.clone()),
            Ok((src, v0)) => run_bounded(p, src.clone(), *v0, &input, &data, timeout, state_label),
        };
        results.push(result_of(p, state_label, res, &redactor, started.elapsed()));
    }
    PolicyOutcome { results }
}

/// One policy's result from its raw violations (or error), redacted.
pub(super) fn result_of(
    p: &LoadedPolicy,
    state_label: &str,
    res: Result<RawResult, PolicyError>,
    redactor: &Redactor,
    took: Duration,
) -> PolicyResult {
    let duration_ms = took.as_millis() as u64;
    match res {
        Ok((raw, prints)) => {
            for line in prints {
                tracing::debug!(monitor = "terraform_state", state_file = %state_label, policy = %p.name, "print: {}", redactor.redact(&line));
            }
            let mut violations: Vec<Violation> = raw
                .into_iter()
                .map(|(rule, v)| to_violation(rule, &v, redactor))
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
        Err(e) => {
            let (reason, message) = (e.reason(), redactor.redact(&e.to_string()));
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
    }
}

pub(super) fn to_violation(rule: RuleKind, v: &Value, r: &Redactor) -> Violation {
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
