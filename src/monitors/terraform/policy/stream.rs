//! Per-resource evaluation (`# policy-scope: resource`): the state's
//! resources are handed to each such policy in batches
//! (`{"resources": [...]}`, at most [`BATCH_BYTES`] of JSON text, or one
//! larger resource) while the state streams past, so memory is bounded by a
//! batch, not by the state. Each policy keeps one engine for the whole state
//! and its time limit is the sum over batches. Violations are kept as text
//! (not engine values) and redacted at the end with every sensitive value of the state (resources of
//! every batch, outputs, drift report), as a whole-state evaluation does.

use std::time::{Duration, Instant};

use regorus::{Engine, Value};

use super::engine::{eval_error, eval_rules, prepared_engine};
use super::evaluate::to_violation;
use super::redact::{secrets_of, Redactor};
use super::{LoadedPolicy, PolicyError, PolicyResult, Violation};

/// JSON text of resources given to a policy at a time (a larger resource
/// is a batch on its own).
pub const BATCH_BYTES: usize = 1 << 20;

struct Running {
    policy: LoadedPolicy,
    engine: Option<Engine>,
    /// Violations found so far, not yet redacted (compact: text only).
    found: Vec<Violation>,
    prints: Vec<String>,
    spent: Duration,
    error: Option<PolicyError>,
}

/// The per-resource policies of one state during its read.
pub struct ResourceEval {
    label: String,
    timeout: Duration,
    running: Vec<Running>,
    batch: Vec<Value>,
    batch_bytes: usize,
    batch_limit: usize,
    secrets: Vec<String>,
}

impl ResourceEval {
    /// Start the given (per-resource) policies on the state `label`.
    pub(super) fn new(policies: Vec<LoadedPolicy>, label: &str, timeout: Duration) -> Self {
        let running = policies
            .into_iter()
            .map(|policy| {
                let (engine, error) = match &policy.compiled {
                    Err(e) => (None, Some(e.clone())),
                    Ok((src, v0)) => match prepared_engine(&policy.display, src, *v0, Value::new_object(), timeout) {
                        Ok(e) => (Some(e), None),
                        Err(e) => (None, Some(eval_error(&policy, label, timeout, &e))),
                    },
                };
                Running {
                    policy,
                    engine,
                    found: Vec::new(),
                    prints: Vec::new(),
                    spent: Duration::ZERO,
                    error,
                }
            })
            .collect();
        ResourceEval {
            label: label.to_string(),
            timeout,
            running,
            batch: Vec::new(),
            batch_bytes: 0,
            batch_limit: BATCH_BYTES,
            secrets: Vec::new(),
        }
    }

    /// Batches of at most `bytes` of JSON text (1: one resource at a time).
    pub(super) fn with_batch_bytes(mut self, bytes: usize) -> Self {
        self.batch_limit = bytes.max(1);
        self
    }

    /// One resource (its value and the length of its JSON text).
    pub fn push(&mut self, resource: Value, len: usize) {
        self.batch.push(resource);
        self.batch_bytes += len;
        if self.batch_bytes >= self.batch_limit {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        let input = Value::from(std::collections::BTreeMap::from([(
            Value::from("resources"),
            Value::from(batch),
        )]));
        self.secrets.extend(secrets_of(&input, None));
        self.secrets.sort_unstable();
        self.secrets.dedup();
        for r in &mut self.running {
            let Some(engine) = r.engine.as_mut() else {
                continue;
            };
            let Some(left) = self.timeout.checked_sub(r.spent).filter(|d| !d.is_zero()) else {
                r.error = Some(PolicyError::Timeout {
                    policy: r.policy.name.clone(),
                    state: self.label.clone(),
                    limit_ms: self.timeout.as_millis(),
                });
                r.engine = None;
                continue;
            };
            engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
                limit: left,
                check_interval: std::num::NonZeroU32::new(32).unwrap_or(std::num::NonZeroU32::MIN),
            });
            let started = Instant::now();
            engine.set_input(input.clone());
            let res = eval_rules(engine, &r.policy.display);
            r.prints.extend(engine.take_prints().unwrap_or_default());
            r.spent += started.elapsed();
            match res {
                Ok(v) => {
                    let plain = Redactor::from_secrets(Vec::new());
                    r.found
                        .extend(v.into_iter().map(|(rule, x)| to_violation(rule, &x, &plain)));
                }
                Err(e) => {
                    r.error = Some(eval_error(&r.policy, &self.label, self.timeout, &e));
                    r.engine = None;
                }
            }
        }
    }

    /// Evaluate the last batch; the results, redacted with the secrets of
    /// every resource and of `rest` (the state's other members: outputs)
    /// and `drift`.
    pub fn finish(mut self, rest: Option<&Value>, drift: Option<&Value>) -> Vec<PolicyResult> {
        self.flush();
        let mut secrets = std::mem::take(&mut self.secrets);
        if let Some(rest) = rest {
            secrets.extend(secrets_of(rest, drift));
        } else if let Some(d) = drift {
            secrets.extend(secrets_of(&Value::new_object(), Some(d)));
        }
        let redactor = Redactor::from_secrets(secrets);
        let label = self.label;
        self.running
            .into_iter()
            .map(|r| {
                let raw = match r.error {
                    Some(e) => Err(e),
                    None => Ok((Vec::new(), r.prints)),
                };
                let mut result =
                    super::evaluate::result_of(&r.policy, &label, raw, &redactor, r.spent);
                if result.ok {
                    result.violations = r
                        .found
                        .into_iter()
                        .map(|v| Violation {
                            address: v.address.map(|a| redactor.redact(&a)),
                            msg: redactor.redact(&v.msg),
                            ..v
                        })
                        .collect();
                    result.violations.sort();
                    result.violations.dedup();
                }
                result
            })
            .collect()
    }
}
