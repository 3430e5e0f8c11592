//! Pure parser of drift reports: `terraform show -json PLANFILE` output, from a
//! `plan -refresh-only` (drift) or a normal plan (pending changes).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::time::SystemTime;

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::digest::{with_path_table, AttrDigest, PathTable};
use super::json_stream::ObjectStream;
use super::policy::DocBuilder;
use super::state::{elements, value, CheckInfo, ParseError, PolicyInput};

/// A planned action, as exported in `terraform_state_pending_changes{action}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    Delete,
    Replace,
    /// A `removed` block with `destroy = false`: Terraform stops managing the object.
    Forget,
    /// A `moved` block (`previous_address`) with no other change.
    Move,
    /// An `import` block (`importing`) with no other change.
    Import,
}

impl Action {
    pub const ALL: [Action; 7] = [
        Action::Create,
        Action::Update,
        Action::Delete,
        Action::Replace,
        Action::Forget,
        Action::Move,
        Action::Import,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Replace => "replace",
            Action::Forget => "forget",
            Action::Move => "move",
            Action::Import => "import",
        }
    }

    /// Terraform's `actions` list, with whether the change moves the object
    /// (`previous_address`) or imports it (`importing`); `None` for a plain
    /// no-op or a read. A change that also moves or imports keeps its main
    /// action (update, replace...): it is counted once.
    pub fn classify(actions: &[String], moved: bool, importing: bool) -> Option<Action> {
        let a: Vec<&str> = actions.iter().map(String::as_str).collect();
        match a.as_slice() {
            ["create"] => Some(Action::Create),
            ["update"] => Some(Action::Update),
            ["delete"] => Some(Action::Delete),
            ["delete", "create"] | ["create", "delete"] => Some(Action::Replace),
            ["forget"] => Some(Action::Forget),
            // An object both forgotten and created again (a future combination):
            // still a change.
            [_, _] if a.contains(&"forget") => Some(Action::Replace),
            ["no-op"] | [] if importing => Some(Action::Import),
            ["no-op"] | [] if moved => Some(Action::Move),
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
    /// The address the object moves from (a `moved` block).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_address: Option<String>,
    /// The change imports an existing object (an `import` block).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub importing: bool,
}

impl Change {
    /// The action with what else the change does, for reports ("update: tags, moved from a.b").
    pub fn detail(&self) -> String {
        let mut d = self.action.as_str().to_string();
        if !self.paths.is_empty() {
            d.push_str(": ");
            d.push_str(&self.paths.join(", "));
        }
        if let Some(from) = &self.previous_address {
            if self.action == Action::Move {
                d = format!("move from {from}");
            } else {
                d.push_str(&format!(" (moved from {from})"));
            }
        }
        if self.importing && self.action != Action::Import {
            d.push_str(" (importing)");
        }
        d
    }
}

/// A root module output the plan changes (its name only, never its value).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OutputChange {
    pub name: String,
    /// create, update or delete.
    pub action: &'static str,
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
    /// `output_changes` that are not no-op, by name.
    pub output_changes: Vec<OutputChange>,
    /// The plan's `checks` (one entry per checked object, or per config
    /// object without objects), like a state's `check_results`.
    pub checks: Vec<CheckInfo>,
    /// The plan itself recorded errors (`errored: true`).
    pub errored: bool,
    /// `complete: false`: the plan does not cover the whole configuration
    /// (made with `-target`, or with deferred changes). Absent (older
    /// Terraform) counts as complete.
    pub incomplete: bool,
}

impl ParsedPlan {
    pub fn pending_count(&self, action: Action) -> usize {
        self.pending.iter().filter(|c| c.action == action).count()
    }

    /// Check counts by status (pass, fail, error, unknown).
    pub fn check_counts(&self) -> BTreeMap<&str, u64> {
        super::state::count_checks(&self.checks)
    }

    /// Checks that failed or could not be evaluated.
    pub fn failed_checks(&self) -> impl Iterator<Item = &CheckInfo> {
        self.checks
            .iter()
            .filter(|c| c.status == "fail" || c.status == "error")
    }
}

/// Why a drift report is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("this is {0}, not a plan; write the drift report with `terraform plan -refresh-only -out=tfplan && terraform show -json tfplan > drift.json`")]
    NotAPlan(&'static str),
    #[error(
        "plan JSON format_version {0} is newer than the supported 1.x; upgrade homelab-monitor"
    )]
    FutureFormat(String),
}

impl PlanError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            PlanError::Parse(p) => p.metric_label(),
            PlanError::NotAPlan(_) => "not_a_plan",
            PlanError::FutureFormat(_) => "unsupported_version",
        }
    }
}

#[derive(Deserialize)]
struct RawChange {
    address: String,
    #[serde(default)]
    deposed: Option<String>,
    #[serde(default)]
    previous_address: Option<String>,
    change: RawChangeBody,
}

#[derive(Deserialize)]
struct RawChangeBody {
    #[serde(default)]
    actions: Vec<String>,
    /// Present (an object with the import id) when the change imports.
    #[serde(default)]
    importing: Option<IgnoredAny>,
    #[serde(default)]
    before: Option<AttrDigest>,
    #[serde(default)]
    after: Option<AttrDigest>,
}

/// Parse a `terraform show -json` plan document (streamed: `prior_state`,
/// `planned_values` and the like are skipped without being kept).
pub fn parse_plan<R: Read>(reader: R) -> Result<ParsedPlan, PlanError> {
    parse(reader, None)
}

/// [`parse_plan`] that also builds, in the same single pass, the policy's
/// `data.drift`: the whole document as the engine's value, whenever it was
/// read whole as a JSON object (a plan or not: policies see what is there).
pub fn parse_plan_with_input<R: Read>(reader: R) -> (Result<ParsedPlan, PlanError>, PolicyInput) {
    parse_plan_with_input_limited(reader, u64::MAX)
}

/// [`parse_plan_with_input`] with the policy input bounded as in
/// [`super::state::parse_state_with_input_limited`].
pub fn parse_plan_with_input_limited<R: Read>(
    reader: R,
    limit: u64,
) -> (Result<ParsedPlan, PlanError>, PolicyInput) {
    let mut doc = DocBuilder::with_limit(limit);
    let res = parse(reader, Some(&mut doc));
    let input = match &res {
        Err(PlanError::Parse(_)) => None,
        _ => Some(doc.finish()),
    };
    (res, input)
}

fn parse<R: Read>(reader: R, doc: Option<&mut DocBuilder>) -> Result<ParsedPlan, PlanError> {
    let mut s = ObjectStream::new(reader, "not a plan in JSON form")?;
    let (res, paths) = with_path_table(|| read_plan(&mut s, doc));
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
    // A new major format may move what is read here: never read it as "no drift".
    let major = format_version.split('.').next().unwrap_or("");
    if major != "1" && major != "0" {
        return Err(PlanError::FutureFormat(format_version));
    }
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
        output_changes: p.output_changes,
        checks: p.checks,
        errored: p.errored,
        incomplete: p.complete == Some(false),
    })
}

#[derive(Default)]
struct PartialPlan {
    format_version: Option<String>,
    terraform_version: Option<String>,
    timestamp: Option<String>,
    drift: Vec<RawChange>,
    pending: Vec<RawChange>,
    output_changes: Vec<OutputChange>,
    checks: Vec<CheckInfo>,
    errored: bool,
    complete: Option<bool>,
    plan_keys: usize,
    state_keys: usize,
    has_values: bool,
}

fn read_plan<R: Read>(
    s: &mut ObjectStream<R>,
    mut doc: Option<&mut DocBuilder>,
) -> Result<PartialPlan, ParseError> {
    let mut p = PartialPlan::default();
    while let Some(key) = s.next_key()? {
        let mut doc = doc.as_deref_mut();
        let d = &mut doc;
        match key.as_str() {
            "format_version" => p.format_version = value(s, d, &key)?,
            "terraform_version" => p.terraform_version = value(s, d, &key)?,
            "timestamp" => p.timestamp = value(s, d, &key)?,
            "errored" => p.errored = value::<Option<bool>, _>(s, d, &key)?.unwrap_or(false),
            "complete" => p.complete = value::<Option<bool>, _>(s, d, &key)?,
            "resource_drift" => {
                p.plan_keys += 1;
                let keep = &mut p.drift;
                elements(s, d, &key, |c: RawChange| keep_change(keep, c))?;
            }
            "resource_changes" => {
                p.plan_keys += 1;
                let keep = &mut p.pending;
                elements(s, d, &key, |c: RawChange| keep_change(keep, c))?;
            }
            "output_changes" => {
                p.plan_keys += 1;
                p.output_changes = value::<Option<OutputChanges>, _>(s, d, &key)?
                    .map(|o| o.0)
                    .unwrap_or_default();
            }
            "checks" => {
                let keep = &mut p.checks;
                elements(s, d, &key, |c: RawPlanCheck| add_plan_check(keep, c))?;
            }
            other => {
                match other {
                    "planned_values" | "prior_state" | "configuration" => p.plan_keys += 1,
                    "lineage" | "resources" => p.state_keys += 1,
                    "values" => p.has_values = true,
                    _ => {}
                }
                match doc {
                    Some(doc) => s.raw_value(|raw| {
                        doc.member(&key, raw);
                        Ok(())
                    })?,
                    None => s.skip()?,
                }
            }
        }
    }
    s.finish()?;
    Ok(p)
}

/// Keep only real changes (no-op and read entries are dropped as they stream past).
fn keep_change(keep: &mut Vec<RawChange>, c: RawChange) {
    if classify(&c).is_some() {
        keep.push(c);
    }
}

fn classify(c: &RawChange) -> Option<Action> {
    let moved = c
        .previous_address
        .as_deref()
        .is_some_and(|p| p != c.address);
    Action::classify(&c.change.actions, moved, c.change.importing.is_some())
}

/// `output_changes`: name -> change; only names and actions are kept.
struct OutputChanges(Vec<OutputChange>);

#[derive(Deserialize)]
struct RawOutputChange {
    #[serde(default)]
    actions: Vec<String>,
}

impl<'de> Deserialize<'de> for OutputChanges {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OutputChanges;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an output_changes object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<OutputChanges, A::Error> {
                let mut out = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    let c: RawOutputChange = map.next_value()?;
                    let a: Vec<&str> = c.actions.iter().map(String::as_str).collect();
                    let action = match a.as_slice() {
                        ["create"] => "create",
                        ["update"] => "update",
                        ["delete"] => "delete",
                        ["no-op"] | [] => continue,
                        _ => "update",
                    };
                    out.push(OutputChange { name, action });
                }
                out.sort_by(|a, b| a.name.cmp(&b.name));
                Ok(OutputChanges(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// One entry of the plan's `checks` (Terraform 1.5+).
#[derive(Deserialize)]
struct RawPlanCheck {
    #[serde(default)]
    address: Option<RawCheckAddress>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    instances: Option<Vec<RawPlanCheckInstance>>,
}

#[derive(Deserialize)]
struct RawCheckAddress {
    #[serde(default)]
    to_display: Option<String>,
    #[serde(default)]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct RawPlanCheckInstance {
    #[serde(default)]
    address: Option<RawCheckAddress>,
    #[serde(default)]
    status: Option<String>,
}

fn add_plan_check(keep: &mut Vec<CheckInfo>, c: RawPlanCheck) {
    let (config_addr, kind) = match c.address {
        Some(a) => (
            a.to_display.unwrap_or_default(),
            a.kind.unwrap_or_else(|| "unknown".into()),
        ),
        None => (String::new(), "unknown".into()),
    };
    match c.instances {
        Some(list) if !list.is_empty() => {
            for i in list {
                keep.push(CheckInfo {
                    address: i
                        .address
                        .and_then(|a| a.to_display)
                        .unwrap_or_else(|| config_addr.clone()),
                    kind: kind.clone(),
                    status: super::state::normalize_status(i.status),
                });
            }
        }
        _ => keep.push(CheckInfo {
            address: config_addr,
            kind,
            status: super::state::normalize_status(c.status),
        }),
    }
}

fn changes(raw: Vec<RawChange>, paths: &PathTable) -> Vec<Change> {
    let mut out: Vec<Change> = raw
        .into_iter()
        .filter_map(|c| {
            let action = classify(&c)?;
            let changed = match (&c.change.before, &c.change.after) {
                (Some(b), Some(a)) if action == Action::Update || action == Action::Replace => {
                    b.changed_paths(paths, a, paths)
                }
                _ => Vec::new(),
            };
            let previous_address = c.previous_address.filter(|p| *p != c.address);
            let address = match c.deposed {
                Some(k) => format!("{} (deposed {k})", c.address),
                None => c.address,
            };
            Some(Change {
                address,
                action,
                paths: changed,
                previous_address,
                importing: c.change.importing.is_some(),
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
    fn forget_move_import_outputs_and_checks_are_kept() {
        // Shapes as `terraform show -json` 1.11 writes them (removed/moved/import/check blocks).
        let p = parse_plan(
            r#"{"format_version":"1.2","terraform_version":"1.11.4",
            "resource_changes":[
              {"address":"terraform_data.a2","previous_address":"terraform_data.a","change":{"actions":["no-op"],"before":{"id":"1","input":1},"after":{"id":"1","input":1}}},
              {"address":"terraform_data.b","change":{"actions":["forget"],"before":{"id":"2"},"after":null},"action_reason":"delete_because_no_resource_config"},
              {"address":"terraform_data.d","change":{"actions":["no-op"],"before":{"id":"abc"},"after":{"id":"abc"},"importing":{"id":"abc"}}},
              {"address":"terraform_data.e","previous_address":"terraform_data.f","change":{"actions":["update"],"before":{"id":"3","input":1},"after":{"id":"3","input":2}}},
              {"address":"terraform_data.c","change":{"actions":["no-op"],"before":{},"after":{}}}],
            "output_changes":{"o":{"actions":["update"],"before":1,"after":2},"same":{"actions":["no-op"],"before":1,"after":1},"n":{"actions":["create"],"before":null,"after":1e400}},
            "checks":[{"address":{"kind":"check","name":"h","to_display":"check.h"},"status":"fail","instances":[{"address":{"to_display":"check.h"},"status":"fail","problems":[{"message":"CANARY"}]}]},
                      {"address":{"kind":"resource","to_display":"terraform_data.c"},"status":"pass","instances":[{"address":{"to_display":"terraform_data.c"},"status":"pass"}]},
                      {"address":{"kind":"output_value","to_display":"output.o"},"status":"unknown"}],
            "planned_values":{},"errored":false}"#
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(p.pending_count(Action::Move), 1);
        assert_eq!(p.pending_count(Action::Forget), 1);
        assert_eq!(p.pending_count(Action::Import), 1);
        assert_eq!(p.pending_count(Action::Update), 1);
        assert_eq!(p.pending.len(), 4);
        let mv = p.pending.iter().find(|c| c.action == Action::Move).unwrap();
        assert_eq!(mv.detail(), "move from terraform_data.a");
        let up = p
            .pending
            .iter()
            .find(|c| c.action == Action::Update)
            .unwrap();
        assert_eq!(up.detail(), "update: input (moved from terraform_data.f)");
        assert_eq!(
            p.output_changes,
            vec![
                OutputChange {
                    name: "n".into(),
                    action: "create"
                },
                OutputChange {
                    name: "o".into(),
                    action: "update"
                },
            ]
        );
        let counts = p.check_counts();
        assert_eq!(counts.get("fail"), Some(&1));
        assert_eq!(counts.get("pass"), Some(&1));
        assert_eq!(counts.get("unknown"), Some(&1));
        let failed: Vec<&str> = p.failed_checks().map(|c| c.address.as_str()).collect();
        assert_eq!(failed, vec!["check.h"]);
        assert!(!format!("{p:?}").contains("CANARY"));
    }

    #[test]
    fn incomplete_and_future_plans_are_flagged() {
        let p = parse_plan(
            r#"{"format_version":"1.2","resource_changes":[],"complete":false}"#.as_bytes(),
        )
        .unwrap();
        assert!(p.incomplete);
        let p = parse_plan(r#"{"format_version":"1.0","resource_changes":[]}"#.as_bytes()).unwrap();
        assert!(!p.incomplete, "older plans have no `complete`");
        let e =
            parse_plan(r#"{"format_version":"2.0","resource_changes":[]}"#.as_bytes()).unwrap_err();
        assert_eq!(e.metric_label(), "unsupported_version");
    }

    #[test]
    fn errored_plan_is_flagged() {
        let p = parse_plan(
            r#"{"format_version":"1.2","resource_changes":[],"errored":true}"#.as_bytes(),
        )
        .unwrap();
        assert!(p.errored);
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
