//! Pure parser of drift reports: `terraform show -json PLANFILE` output, from a
//! `plan -refresh-only` (drift) or a normal plan (pending changes).

use std::fmt;
use std::io::Read;
use std::time::SystemTime;

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::digest::{with_path_table, AttrDigest, PathTable};
use super::state::ParseError;

/// A planned action, as exported in `terraform_state_pending_changes{action}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    Delete,
    Replace,
}

impl Action {
    pub const ALL: [Action; 4] = [Action::Create, Action::Update, Action::Delete, Action::Replace];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Replace => "replace",
        }
    }

    /// Terraform's `actions` list; `None` for no-op, read and forget.
    pub fn classify(actions: &[String]) -> Option<Action> {
        let a: Vec<&str> = actions.iter().map(String::as_str).collect();
        match a.as_slice() {
            ["create"] => Some(Action::Create),
            ["update"] => Some(Action::Update),
            ["delete"] => Some(Action::Delete),
            ["delete", "create"] | ["create", "delete"] => Some(Action::Replace),
            _ => None,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One changed instance: address, action and the top-level attribute paths that differ.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    pub address: String,
    pub action: Action,
    pub paths: Vec<String>,
}

/// What the monitor needs from a plan.
#[derive(Debug, Clone, Default)]
pub struct ParsedPlan {
    pub format_version: String,
    pub terraform_version: Option<String>,
    /// The plan's own `timestamp` (Terraform 1.5+), when present and valid.
    pub timestamp: Option<SystemTime>,
    /// `resource_drift`: objects changed outside Terraform.
    pub drift: Vec<Change>,
    /// `resource_changes` that are not no-op/read.
    pub pending: Vec<Change>,
    /// The plan itself recorded errors (`errored: true`).
    pub errored: bool,
}

impl ParsedPlan {
    pub fn pending_count(&self, action: Action) -> usize {
        self.pending.iter().filter(|c| c.action == action).count()
    }
}

/// Why a drift report is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("this is {0}, not a plan; write the drift report with `terraform plan -refresh-only -out=tfplan && terraform show -json tfplan > drift.json`")]
    NotAPlan(&'static str),
}

impl PlanError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            PlanError::Parse(p) => p.metric_label(),
            PlanError::NotAPlan(_) => "not_a_plan",
        }
    }
}

#[derive(Deserialize)]
struct RawPlan {
    #[serde(default)]
    format_version: Option<String>,
    #[serde(default)]
    terraform_version: Option<String>,
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    resource_drift: Option<Vec<RawChange>>,
    #[serde(default)]
    resource_changes: Option<Vec<RawChange>>,
    #[serde(default)]
    planned_values: Option<IgnoredAny>,
    #[serde(default)]
    prior_state: Option<IgnoredAny>,
    #[serde(default)]
    configuration: Option<IgnoredAny>,
    #[serde(default)]
    errored: Option<bool>,
    // Shapes of other documents, to say what the file is instead.
    #[serde(default)]
    values: Option<IgnoredAny>,
    #[serde(default)]
    lineage: Option<IgnoredAny>,
    #[serde(default)]
    resources: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct RawChange {
    address: String,
    #[serde(default)]
    deposed: Option<String>,
    change: RawChangeBody,
}

#[derive(Deserialize)]
struct RawChangeBody {
    actions: Vec<String>,
    #[serde(default)]
    before: Option<AttrDigest>,
    #[serde(default)]
    after: Option<AttrDigest>,
}

/// Parse a `terraform show -json` plan document.
pub fn parse_plan<R: Read>(reader: R) -> Result<ParsedPlan, PlanError> {
    let mut reader = std::io::BufReader::with_capacity(256 * 1024, reader);
    {
        use std::io::BufRead;
        let buf = reader
            .fill_buf()
            .map_err(|e| ParseError::Io(format!("{:?}", e.kind())))?;
        if buf.iter().all(|b| b.is_ascii_whitespace()) {
            return Err(ParseError::Empty.into());
        }
    }
    let (raw, paths) = with_path_table(|| {
        let mut de = serde_json::Deserializer::from_reader(&mut reader);
        RawPlan::deserialize(&mut de).and_then(|r| de.end().map(|_| r))
    });
    let raw = raw.map_err(|e| ParseError::from_json(&e, "not a plan in JSON form"))?;
    let is_plan = raw.planned_values.is_some()
        || raw.resource_changes.is_some()
        || raw.resource_drift.is_some()
        || raw.prior_state.is_some()
        || raw.configuration.is_some();
    let format_version = match (raw.format_version, is_plan) {
        (Some(v), true) => v,
        _ => {
            let what = if raw.lineage.is_some() || raw.resources.is_some() {
                "a raw state file"
            } else if raw.values.is_some() {
                "`terraform show -json` of a state"
            } else {
                "a JSON document of another kind"
            };
            return Err(PlanError::NotAPlan(what));
        }
    };
    let timestamp = raw
        .timestamp
        .as_deref()
        .and_then(|t| humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).ok());
    Ok(ParsedPlan {
        format_version,
        terraform_version: raw.terraform_version,
        timestamp,
        drift: changes(raw.resource_drift, &paths),
        pending: changes(raw.resource_changes, &paths),
        errored: raw.errored.unwrap_or(false),
    })
}

fn changes(raw: Option<Vec<RawChange>>, paths: &PathTable) -> Vec<Change> {
    let mut out: Vec<Change> = raw
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| {
            let action = Action::classify(&c.change.actions)?;
            let changed = match (&c.change.before, &c.change.after) {
                (Some(b), Some(a)) if action == Action::Update || action == Action::Replace => {
                    b.changed_paths(paths, a, paths)
                }
                _ => Vec::new(),
            };
            let address = match c.deposed {
                Some(k) => format!("{} (deposed {k})", c.address),
                None => c.address,
            };
            Some(Change {
                address,
                action,
                paths: changed,
            })
        })
        .collect();
    out.sort_by(|a, b| a.address.cmp(&b.address));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_only_plan_gives_drift_with_paths() {
        let p = parse_plan(
            r#"{"format_version":"1.2","terraform_version":"1.9.0","timestamp":"2026-11-20T10:00:00Z",
            "resource_drift":[
              {"address":"aws_instance.web","mode":"managed","type":"aws_instance","name":"web",
               "change":{"actions":["update"],"before":{"id":"i-1","tags":{"a":"1"},"pw":"CANARY"},"after":{"id":"i-1","tags":{"a":"2"},"pw":"CANARY"}}},
              {"address":"aws_instance.gone","change":{"actions":["delete"],"before":{"id":"i-2"},"after":null}},
              {"address":"aws_instance.same","change":{"actions":["no-op"],"before":{},"after":{}}}],
            "resource_changes":[
              {"address":"a.b","change":{"actions":["create"],"before":null,"after":{"x":1}}},
              {"address":"a.c","change":{"actions":["delete","create"],"before":{"x":1},"after":{"x":2}}},
              {"address":"data.a.d","change":{"actions":["read"],"before":null,"after":{}}},
              {"address":"a.e","change":{"actions":["no-op"],"before":{},"after":{}}}],
            "planned_values":{},"errored":false}"#
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(p.drift.len(), 2);
        assert_eq!(p.drift[1].address, "aws_instance.web");
        assert_eq!(p.drift[1].paths, vec!["tags"]);
        assert_eq!(p.drift[0].action, Action::Delete);
        assert_eq!(p.pending_count(Action::Create), 1);
        assert_eq!(p.pending_count(Action::Replace), 1);
        assert_eq!(p.pending_count(Action::Update), 0);
        assert_eq!(p.pending[1].paths, vec!["x"]);
        assert!(p.timestamp.is_some());
    }

    #[test]
    fn documents_that_are_not_plans_are_named() {
        let e = parse_plan(r#"{"version":4,"serial":1,"lineage":"x","resources":[]}"#.as_bytes()).unwrap_err();
        assert_eq!(e, PlanError::NotAPlan("a raw state file"));
        let e = parse_plan(r#"{"format_version":"1.0","values":{"root_module":{}}}"#.as_bytes()).unwrap_err();
        assert_eq!(e, PlanError::NotAPlan("`terraform show -json` of a state"));
        let e = parse_plan(r#"{"hello":"world"}"#.as_bytes()).unwrap_err();
        assert_eq!(e.metric_label(), "not_a_plan");
        let e = parse_plan(r#"{"format_version":"1.2","resource_changes":["#.as_bytes()).unwrap_err();
        assert_eq!(e.metric_label(), "truncated");
        assert_eq!(parse_plan("".as_bytes()).unwrap_err().metric_label(), "empty");
    }
}
