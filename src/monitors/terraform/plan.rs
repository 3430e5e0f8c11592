//! Pure parser of drift reports: `terraform show -json PLANFILE` output, from a
//! `plan -refresh-only` (drift) or a normal plan (pending changes).

use std::fmt;
use std::io::Read;
use std::time::SystemTime;

use serde::Deserialize;

use super::digest::{with_path_table, AttrDigest, PathTable};
use super::json_stream::ObjectStream;
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
    pub const ALL: [Action; 4] = [
        Action::Create,
        Action::Update,
        Action::Delete,
        Action::Replace,
    ];

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

/// Parse a `terraform show -json` plan document (streamed: `prior_state`,
/// `planned_values` and the like are skipped without being kept).
pub fn parse_plan<R: Read>(reader: R) -> Result<ParsedPlan, PlanError> {
    let mut s = ObjectStream::new(reader, "not a plan in JSON form")?;
    let (res, paths) = with_path_table(|| read_plan(&mut s));
    let p = res?;
    let is_plan = p.plan_keys > 0;
    let format_version = match (p.format_version, is_plan) {
        (Some(v), true) => v,
        _ => {
            let what = if p.state_keys > 0 {
                "a raw state file"
            } else if p.has_values {
                "`terraform show -json` of a state"
            } else {
                "a JSON document of another kind"
            };
            return Err(PlanError::NotAPlan(what));
        }
    };
    let timestamp = p
        .timestamp
        .as_deref()
        .and_then(|t| humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).ok());
    Ok(ParsedPlan {
        format_version,
        terraform_version: p.terraform_version,
        timestamp,
        drift: changes(p.drift, &paths),
        pending: changes(p.pending, &paths),
        errored: p.errored,
    })
}

#[derive(Default)]
struct PartialPlan {
    format_version: Option<String>,
    terraform_version: Option<String>,
    timestamp: Option<String>,
    drift: Vec<RawChange>,
    pending: Vec<RawChange>,
    errored: bool,
    plan_keys: usize,
    state_keys: usize,
    has_values: bool,
}

fn read_plan<R: Read>(s: &mut ObjectStream<R>) -> Result<PartialPlan, ParseError> {
    let mut p = PartialPlan::default();
    while let Some(key) = s.next_key()? {
        match key.as_str() {
            "format_version" => p.format_version = s.value()?,
            "terraform_version" => p.terraform_version = s.value()?,
            "timestamp" => p.timestamp = s.value()?,
            "errored" => p.errored = s.value::<Option<bool>>()?.unwrap_or(false),
            "resource_drift" => {
                p.plan_keys += 1;
                let keep = &mut p.drift;
                s.each(|c: RawChange| keep_change(keep, c))?;
            }
            "resource_changes" => {
                p.plan_keys += 1;
                let keep = &mut p.pending;
                s.each(|c: RawChange| keep_change(keep, c))?;
            }
            "planned_values" | "prior_state" | "configuration" => {
                p.plan_keys += 1;
                s.skip()?;
            }
            "lineage" | "resources" => {
                p.state_keys += 1;
                s.skip()?;
            }
            "values" => {
                p.has_values = true;
                s.skip()?;
            }
            _ => s.skip()?,
        }
    }
    s.finish()?;
    Ok(p)
}

/// Keep only real changes (no-op and read entries are dropped as they stream past).
fn keep_change(keep: &mut Vec<RawChange>, c: RawChange) {
    if Action::classify(&c.change.actions).is_some() {
        keep.push(c);
    }
}

fn changes(raw: Vec<RawChange>, paths: &PathTable) -> Vec<Change> {
    let mut out: Vec<Change> = raw
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
        let e = parse_plan(r#"{"version":4,"serial":1,"lineage":"x","resources":[]}"#.as_bytes())
            .unwrap_err();
        assert_eq!(e, PlanError::NotAPlan("a raw state file"));
        let e = parse_plan(r#"{"format_version":"1.0","values":{"root_module":{}}}"#.as_bytes())
            .unwrap_err();
        assert_eq!(e, PlanError::NotAPlan("`terraform show -json` of a state"));
        let e = parse_plan(r#"{"hello":"world"}"#.as_bytes()).unwrap_err();
        assert_eq!(e.metric_label(), "not_a_plan");
        let e =
            parse_plan(r#"{"format_version":"1.2","resource_changes":["#.as_bytes()).unwrap_err();
        assert_eq!(e.metric_label(), "truncated");
        assert_eq!(
            parse_plan("".as_bytes()).unwrap_err().metric_label(),
            "empty"
        );
    }
}
