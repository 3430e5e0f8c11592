//! `alertmanager.yml`: the seed's global settings, routes and receivers, plus
//! grouping, inhibition and a `null` receiver for info alerts.

use std::path::PathBuf;

use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};

use super::{list, map, s, strs, yaml, RenderError, Rendered};

#[derive(Debug, Default, Deserialize)]
pub(super) struct AlertmanagerStack {
    global: Option<Mapping>,
    #[serde(default)]
    routes: Vec<Mapping>,
    #[serde(default)]
    receivers: Vec<Mapping>,
}

/// The Alertmanager file, from the `alertmanager:` settings.
pub(super) fn render(am: &AlertmanagerStack) -> Result<Rendered, RenderError> {
    Ok(vec![(
        PathBuf::from("alertmanager.yml"),
        yaml(
            "alertmanager.yml",
            "Alertmanager configuration",
            &config(am)?,
        )?,
    )])
}

/// Labels alerts are grouped by: one notification per alert and target.
pub const GROUP_BY: &[&str] = &["alertname", "state_file", "source", "path", "check"];

fn matcher_value(v: &Value) -> Result<String, RenderError> {
    let text = match v {
        Value::String(t) => t.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => {
            return Err(RenderError::Invalid(
                "route match values must be strings".into(),
            ))
        }
    };
    serde_json::to_string(&text).map_err(|e| RenderError::Invalid(e.to_string()))
}

fn config(am: &AlertmanagerStack) -> Result<Value, RenderError> {
    let mut routes = Vec::new();
    for (i, r) in am.routes.iter().enumerate() {
        let mut matchers = Vec::new();
        let mut route = Mapping::new();
        for (k, v) in r {
            let key = k.as_str().unwrap_or_default();
            match key {
                "match" | "match_re" => {
                    let op = if key == "match" { "=" } else { "=~" };
                    let m = v.as_mapping().ok_or_else(|| {
                        RenderError::Invalid(format!(
                            "alertmanager.routes[{i}].{key} must be a map"
                        ))
                    })?;
                    for (lk, lv) in m {
                        let name = lk.as_str().unwrap_or_default();
                        matchers.push(s(&format!("{name}{op}{}", matcher_value(lv)?)));
                    }
                }
                "matchers" => {
                    if let Some(seq) = v.as_sequence() {
                        matchers.extend(seq.iter().cloned());
                    }
                }
                _ => {
                    route.insert(k.clone(), v.clone());
                }
            }
        }
        if !matchers.is_empty() {
            route.insert(s("matchers"), list(matchers));
        }
        if !route.contains_key("receiver") {
            return Err(RenderError::Invalid(format!(
                "alertmanager.routes[{i}] needs a receiver"
            )));
        }
        routes.push(Value::Mapping(route));
    }
    let mut receivers = Vec::new();
    let mut names = Vec::new();
    for (i, r) in am.receivers.iter().enumerate() {
        let name = r.get("name").and_then(Value::as_str).ok_or_else(|| {
            RenderError::Invalid(format!("alertmanager.receivers[{i}] needs a name"))
        })?;
        names.push(name.to_string());
        let mut r = r.clone();
        // The seed writes `subject:` in email_configs; Alertmanager wants headers.Subject.
        if let Some(Value::Sequence(emails)) = r.get_mut("email_configs") {
            for e in emails.iter_mut() {
                if let Value::Mapping(e) = e {
                    if let Some(subject) = e.remove("subject") {
                        let headers = e
                            .entry(s("headers"))
                            .or_insert_with(|| Value::Mapping(Mapping::new()));
                        if let Value::Mapping(h) = headers {
                            h.entry(s("Subject")).or_insert(subject);
                        }
                    }
                }
            }
        }
        receivers.push(Value::Mapping(r));
    }
    if !names.iter().any(|n| n == "null") {
        receivers.push(map(vec![("name", s("null"))]));
    }
    for (i, r) in routes.iter().enumerate() {
        let rec = r
            .get("receiver")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if rec != "null" && !names.iter().any(|n| n == rec) {
            return Err(RenderError::Invalid(format!(
                "alertmanager.routes[{i}] sends to receiver {rec:?}, which is not in receivers"
            )));
        }
    }
    // info alerts stay on the Alertmanager page, like alerts/alertmanager.yml.
    routes.push(map(vec![
        ("matchers", strs(&["severity=\"info\""])),
        ("receiver", s("null")),
    ]));
    let default_receiver = names
        .iter()
        .find(|n| n.contains("warning"))
        .or(names.first())
        .cloned()
        .unwrap_or_else(|| "null".into());
    let inhibit = |label: &str, equal: &[&str]| {
        map(vec![
            (
                "source_matchers",
                strs(&["severity=\"critical\"", &format!("{label}=~\".+\"")]),
            ),
            (
                "target_matchers",
                strs(&["severity=\"warning\"", &format!("{label}=~\".+\"")]),
            ),
            ("equal", strs(equal)),
        ])
    };
    let mut top = vec![];
    if let Some(g) = &am.global {
        top.push(("global", Value::Mapping(g.clone())));
    }
    top.push((
        "route",
        map(vec![
            ("receiver", s(&default_receiver)),
            ("group_by", strs(GROUP_BY)),
            ("group_wait", s("30s")),
            ("group_interval", s("5m")),
            ("repeat_interval", s("4h")),
            ("routes", list(routes)),
        ]),
    ));
    top.push((
        "inhibit_rules",
        list(vec![
            inhibit("state_file", &["instance", "state_file"]),
            inhibit("source", &["instance", "source", "path"]),
            inhibit("check", &["instance", "check"]),
        ]),
    ));
    top.push(("receivers", list(receivers)));
    Ok(map(top))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn route_to_unknown_receiver_is_an_error() {
        let v: Value = serde_yaml_ng::from_str(
            "alertmanager: {routes: [{match: {severity: critical}, receiver: nope}], receivers: [{name: a}]}",
        )
        .unwrap();
        let e = super::super::render(Some(&v), &super::super::test_args())
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope"), "{e}");
    }

    #[test]
    fn routes_become_matchers_and_subjects_become_headers() {
        let v: Value = serde_yaml_ng::from_str(
            "alertmanager:\n  routes:\n    - { match_re: { service: \"db|web\" }, receiver: ops, continue: true }\n    - { matchers: ['team=\"nas\"'], receiver: ops }\n  receivers:\n    - name: ops\n      email_configs:\n        - { to: a@b.c, subject: \"S\", headers: { X-Tag: t } }\n",
        )
        .unwrap();
        let files = super::super::render(Some(&v), &super::super::test_args()).unwrap();
        let am = &files
            .iter()
            .find(|(p, _)| p == Path::new("alertmanager.yml"))
            .unwrap()
            .1;
        let am: Value = serde_yaml_ng::from_str(am).unwrap();
        let routes = &am["route"]["routes"];
        assert_eq!(routes[0]["matchers"][0], "service=~\"db|web\"");
        assert_eq!(routes[0]["continue"], true);
        assert_eq!(routes[1]["matchers"][0], "team=\"nas\"");
        assert_eq!(routes[2]["receiver"], "null");
        assert_eq!(am["route"]["receiver"], "ops");
        let email = &am["receivers"][0]["email_configs"][0];
        assert_eq!(email["headers"]["Subject"], "S");
        assert_eq!(email["headers"]["X-Tag"], "t");
        assert!(email.get("subject").is_none());
    }
}
