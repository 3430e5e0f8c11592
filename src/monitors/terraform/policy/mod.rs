//! Configuration compliance: Rego policies evaluated on the live state and its
//! drift report with the embedded `regorus` engine.
//!
//! Input contract (conftest-compatible): `input` is the state file's JSON
//! exactly as Terraform wrote it; `data.drift` is the drift report beside it
//! (the `terraform show -json` plan), when there is one. Rules: `deny` and
//! `warn` sets (conftest's `violation` too) of strings or objects with `msg`,
//! `address` and `severity`.
//!
//! Values: the state's values are in memory only while a target is
//! evaluated, then dropped. They come from the monitor's one streaming read
//! of the state (and drift report), which builds the input only when the
//! policies are due ([`Due`]); a state is never read a second time for them. Everything that leaves an evaluation (messages,
//! addresses, errors) goes through a [`Redactor`] built from the state's
//! sensitive values first. Metrics carry no message at all.

mod builtins;
mod engine;
mod evaluate;
mod input;
mod load;
mod redact;
mod scope;
mod stream;

use std::sync::Arc;

use super::source::Stamp;
use crate::core::snapshot::MetricDef;

pub use self::evaluate::{evaluate, evaluate_reader, evaluate_values, Built, Due};
pub use self::input::{DocBuilder, InputError};
pub use self::load::{check_config, compile, resolve, LoadedPolicy, PolicySet};
pub use self::redact::{Redactor, REDACTED};
pub use self::scope::{scope_of, Scope, DECLARATION};
pub use self::stream::{ResourceEval, BATCH_BYTES};

pub const VIOLATIONS: MetricDef = MetricDef::gauge(
    "terraform_state_policy_violations",
    "Violations found by a Rego policy in the live state (and its drift report), by severity.",
);
pub const EVALUATION_SUCCESS: MetricDef = MetricDef::gauge(
    "terraform_state_policy_evaluation_success",
    "1 if the policy was evaluated on this state on the last evaluation, 0 if it failed to load, errored or ran too long.",
);

/// Severity label values, most severe first (bounded: never a policy's raw text).
pub const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "info"];

/// What the policy layer reports. Messages quote paths, never values.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy {path}: {message}")]
    Read { path: String, message: String },
    #[error("policy {path} line {line}: {message}")]
    Parse {
        path: String,
        line: u32,
        message: String,
    },
    #[error("policy {path}: {message}")]
    Invalid { path: String, message: String },
    #[error("policy {policy} on {state}: {message}")]
    Eval {
        policy: String,
        state: String,
        message: String,
    },
    #[error("policy {policy} on {state}: stopped after {limit_ms} ms (policy_timeout)")]
    Timeout {
        policy: String,
        state: String,
        limit_ms: u128,
    },
}

impl PolicyError {
    /// A bounded reason label.
    pub fn reason(&self) -> &'static str {
        match self {
            PolicyError::Read { .. } => "read",
            PolicyError::Parse { .. } => "parse",
            PolicyError::Invalid { .. } => "invalid",
            PolicyError::Eval { .. } => "eval",
            PolicyError::Timeout { .. } => "timeout",
        }
    }
}

/// Which rule produced a violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleKind {
    Deny,
    Warn,
}

impl RuleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Deny => "deny",
            RuleKind::Warn => "warn",
        }
    }
    fn default_severity(self) -> &'static str {
        match self {
            RuleKind::Deny => "high",
            RuleKind::Warn => "low",
        }
    }
}

/// One violation, already redacted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Violation {
    pub rule: RuleKind,
    pub severity: &'static str,
    pub address: Option<String>,
    pub msg: String,
}

/// The result of one policy on one state.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PolicyResult {
    pub policy: String,
    pub file: String,
    pub ok: bool,
    pub error: Option<String>,
    #[serde(skip)]
    pub reason: Option<&'static str>,
    pub violations: Vec<Violation>,
    pub duration_ms: u64,
}

impl PolicyResult {
    pub fn denies(&self) -> usize {
        self.violations
            .iter()
            .filter(|v| v.rule == RuleKind::Deny)
            .count()
    }
}

/// Every policy's result on one state.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PolicyOutcome {
    pub results: Vec<PolicyResult>,
}

impl PolicyOutcome {
    pub fn denies(&self) -> usize {
        self.results.iter().map(PolicyResult::denies).sum()
    }
    pub fn violations(&self) -> usize {
        self.results.iter().map(|r| r.violations.len()).sum()
    }
    pub fn failed(&self) -> usize {
        self.results.iter().filter(|r| !r.ok).count()
    }
}

/// Per-target cache: re-evaluated only when the state, drift report or policies change.
#[derive(Debug, Clone)]
pub struct PolicyCache {
    key: (Stamp, Option<Stamp>, u64),
    pub outcome: Arc<PolicyOutcome>,
}
