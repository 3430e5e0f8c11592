//! `homelab-monitor render`: the stack's config from the seed's `monitoring:` block.
//!
//! Writes, under `--out DIR`:
//! - `prometheus.yml` (global scrape/evaluation interval, external labels, a
//!   scrape job for this exporter, Alertmanager, `rules/*.yml`),
//!   `rules/homelab-monitor.rules.yml` (the shipped alert rules) and
//!   `prometheus.flags` (the retention flag and the other flags to start with);
//! - `alertmanager.yml` (the seed's global settings, routes and receivers,
//!   plus grouping, inhibition and a `null` receiver for info alerts);
//! - `grafana/provisioning/datasources/datasources.yaml` (the seed's datasources),
//!   `grafana/provisioning/dashboards/dashboards.yaml` (a file provider) and
//!   `grafana/dashboards/*.json` (the shipped dashboards), `grafana/grafana.env`.
//!
//! Nothing here reads a secret: SMTP passwords and the Grafana admin password
//! are left to files the operator mounts (see `docs/render.md`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};

/// Arguments of `homelab-monitor render`.
#[derive(Debug, Clone, clap::Args)]
pub struct RenderArgs {
    /// Folder to write the rendered files to (created if missing).
    #[arg(long, value_name = "DIR", env = "HOMELAB_MONITOR_RENDER_OUT")]
    pub out: PathBuf,

    /// Address Prometheus scrapes this exporter at.
    #[arg(
        long = "exporter-address",
        value_name = "HOST:PORT",
        default_value = "homelab-monitor:9877",
        env = "HOMELAB_MONITOR_RENDER_EXPORTER_ADDRESS"
    )]
    pub exporter_address: String,

    /// Address of Alertmanager as Prometheus reaches it.
    #[arg(
        long = "alertmanager-address",
        value_name = "HOST:PORT",
        default_value = "alertmanager:9093",
        env = "HOMELAB_MONITOR_RENDER_ALERTMANAGER_ADDRESS"
    )]
    pub alertmanager_address: String,

    /// Where Grafana finds the dashboards (the provider's `options.path`).
    #[arg(
        long = "grafana-dashboards-path",
        value_name = "PATH",
        default_value = "/var/lib/grafana/dashboards",
        env = "HOMELAB_MONITOR_RENDER_GRAFANA_DASHBOARDS_PATH"
    )]
    pub grafana_dashboards_path: String,
}

/// Why rendering failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("invalid `monitoring:` block: {0}")]
    Invalid(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot serialize {file}: {message}")]
    Serialize { file: &'static str, message: String },
}

/// The shipped rules and dashboards, embedded so the binary renders them anywhere.
const RULES: &str = include_str!("../alerts/homelab-monitor.rules.yml");
const DASHBOARDS: &[(&str, &str)] = &[
    (
        "homelab-overview.json",
        include_str!("../dashboards/homelab-overview.json"),
    ),
    (
        "terraform-state.json",
        include_str!("../dashboards/terraform-state.json"),
    ),
    (
        "certificates.json",
        include_str!("../dashboards/certificates.json"),
    ),
    ("backups.json", include_str!("../dashboards/backups.json")),
    (
        "exporter-health.json",
        include_str!("../dashboards/exporter-health.json"),
    ),
];

#[derive(Debug, Default, Deserialize)]
struct Stack {
    #[serde(default)]
    prometheus: PrometheusStack,
    #[serde(default)]
    grafana: GrafanaStack,
    #[serde(default)]
    alertmanager: AlertmanagerStack,
}

#[derive(Debug, Default, Deserialize)]
struct PrometheusStack {
    retention: Option<String>,
    scrape_interval: Option<String>,
    evaluation_interval: Option<String>,
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct GrafanaStack {
    admin_user: Option<String>,
    #[serde(default)]
    datasources: Vec<Datasource>,
}

#[derive(Debug, Deserialize)]
struct Datasource {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    url: String,
    #[serde(default)]
    is_default: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
struct AlertmanagerStack {
    global: Option<Mapping>,
    #[serde(default)]
    routes: Vec<Mapping>,
    #[serde(default)]
    receivers: Vec<Mapping>,
}

/// A file to write: path relative to the output folder and its text.
pub type Rendered = Vec<(PathBuf, String)>;

fn prom_duration(key: &str, v: &str) -> Result<String, RenderError> {
    let ok = !v.is_empty()
        && regex::Regex::new(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
            .map(|re| re.is_match(v))
            .unwrap_or(false);
    if ok {
        Ok(v.to_string())
    } else {
        Err(RenderError::Invalid(format!(
            "{key} {v:?} is not a Prometheus duration (like \"15s\", \"30d\")"
        )))
    }
}

fn s(v: &str) -> Value {
    Value::String(v.to_string())
}

fn map(pairs: Vec<(&str, Value)>) -> Value {
    let mut m = Mapping::new();
    for (k, v) in pairs {
        m.insert(s(k), v);
    }
    Value::Mapping(m)
}

fn list(items: Vec<Value>) -> Value {
    Value::Sequence(items)
}

fn strs(items: &[&str]) -> Value {
    list(items.iter().map(|i| s(i)).collect())
}

fn yaml(file: &'static str, header: &str, v: &Value) -> Result<String, RenderError> {
    let body = serde_yaml_ng::to_string(v).map_err(|e| RenderError::Serialize {
        file,
        message: e.to_string(),
    })?;
    Ok(format!("# {header}\n# Rendered by `homelab-monitor render` from monitoring-config.yaml; edit that file, not this one.\n{body}"))
}

/// Render every file from the `monitoring:` block (pure; no I/O).
pub fn render(monitoring: Option<&Value>, args: &RenderArgs) -> Result<Rendered, RenderError> {
    let stack: Stack = match monitoring {
        Some(v) if !v.is_null() => {
            serde_yaml_ng::from_value(v.clone()).map_err(|e| RenderError::Invalid(e.to_string()))?
        }
        _ => Stack::default(),
    };
    let mut out: Rendered = Vec::new();

    // Prometheus
    let p = &stack.prometheus;
    let scrape = prom_duration(
        "prometheus.scrape_interval",
        p.scrape_interval.as_deref().unwrap_or("15s"),
    )?;
    let eval = prom_duration(
        "prometheus.evaluation_interval",
        p.evaluation_interval.as_deref().unwrap_or(&scrape),
    )?;
    let retention = prom_duration(
        "prometheus.retention",
        p.retention.as_deref().unwrap_or("15d"),
    )?;
    let mut labels = Mapping::new();
    for (k, v) in &p.external_labels {
        let valid = k
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(RenderError::Invalid(format!(
                "prometheus.external_labels: {k:?} is not a valid label name"
            )));
        }
        labels.insert(s(k), s(v));
    }
    let mut global = vec![
        ("scrape_interval", s(&scrape)),
        ("evaluation_interval", s(&eval)),
    ];
    if !labels.is_empty() {
        global.push(("external_labels", Value::Mapping(labels)));
    }
    let prom = map(vec![
        ("global", map(global)),
        ("rule_files", strs(&["rules/*.yml"])),
        (
            "alerting",
            map(vec![(
                "alertmanagers",
                list(vec![map(vec![(
                    "static_configs",
                    list(vec![map(vec![(
                        "targets",
                        strs(&[args.alertmanager_address.as_str()]),
                    )])]),
                )])]),
            )]),
        ),
        (
            "scrape_configs",
            list(vec![
                map(vec![
                    ("job_name", s("homelab-monitor")),
                    ("metrics_path", s("/metrics")),
                    (
                        "static_configs",
                        list(vec![map(vec![(
                            "targets",
                            strs(&[args.exporter_address.as_str()]),
                        )])]),
                    ),
                ]),
                map(vec![
                    ("job_name", s("prometheus")),
                    (
                        "static_configs",
                        list(vec![map(vec![("targets", strs(&["localhost:9090"]))])]),
                    ),
                ]),
            ]),
        ),
    ]);
    out.push((
        PathBuf::from("prometheus.yml"),
        yaml("prometheus.yml", "Prometheus configuration", &prom)?,
    ));
    out.push((
        PathBuf::from("rules/homelab-monitor.rules.yml"),
        RULES.to_string(),
    ));
    out.push((
        PathBuf::from("prometheus.flags"),
        format!("--config.file=prometheus.yml\n--storage.tsdb.retention.time={retention}\n"),
    ));

    // Alertmanager
    out.push((
        PathBuf::from("alertmanager.yml"),
        yaml(
            "alertmanager.yml",
            "Alertmanager configuration",
            &alertmanager(&stack.alertmanager)?,
        )?,
    ));

    // Grafana
    let mut sources = Vec::new();
    let any_default = stack
        .grafana
        .datasources
        .iter()
        .any(|d| d.is_default == Some(true));
    let mut first_prom = true;
    for d in &stack.grafana.datasources {
        let is_default = match d.is_default {
            Some(b) => b,
            None if !any_default && d.kind == "prometheus" && first_prom => {
                first_prom = false;
                true
            }
            None => false,
        };
        sources.push(map(vec![
            ("name", s(&d.name)),
            ("type", s(&d.kind)),
            ("access", s("proxy")),
            ("url", s(&d.url)),
            ("isDefault", Value::Bool(is_default)),
            ("editable", Value::Bool(false)),
        ]));
    }
    let ds = map(vec![
        ("apiVersion", Value::Number(1.into())),
        ("datasources", list(sources)),
    ]);
    out.push((
        PathBuf::from("grafana/provisioning/datasources/datasources.yaml"),
        yaml("datasources.yaml", "Grafana datasources", &ds)?,
    ));
    let providers = map(vec![
        ("apiVersion", Value::Number(1.into())),
        (
            "providers",
            list(vec![map(vec![
                ("name", s("homelab-monitor")),
                ("folder", s("homelab-monitor")),
                ("type", s("file")),
                ("disableDeletion", Value::Bool(true)),
                ("allowUiUpdates", Value::Bool(false)),
                ("updateIntervalSeconds", Value::Number(60.into())),
                (
                    "options",
                    map(vec![("path", s(&args.grafana_dashboards_path))]),
                ),
            ])]),
        ),
    ]);
    out.push((
        PathBuf::from("grafana/provisioning/dashboards/dashboards.yaml"),
        yaml("dashboards.yaml", "Grafana dashboard provider", &providers)?,
    ));
    for (name, text) in DASHBOARDS {
        out.push((
            PathBuf::from("grafana/dashboards").join(name),
            (*text).to_string(),
        ));
    }
    let mut env = String::from("# Grafana settings from monitoring-config.yaml. Set the admin password with\n# GF_SECURITY_ADMIN_PASSWORD__FILE pointing at a mounted secret.\n");
    if let Some(u) = &stack.grafana.admin_user {
        if u.contains(['\n', '\r']) {
            return Err(RenderError::Invalid(
                "grafana.admin_user must be one line".into(),
            ));
        }
        env.push_str(&format!("GF_SECURITY_ADMIN_USER={u}\n"));
    }
    out.push((PathBuf::from("grafana/grafana.env"), env));
    Ok(out)
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

fn alertmanager(am: &AlertmanagerStack) -> Result<Value, RenderError> {
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

/// Write the rendered files under `out`.
pub fn write(out: &Path, files: &Rendered) -> Result<(), RenderError> {
    for (rel, text) in files {
        let path = out.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| RenderError::Write {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        std::fs::write(&path, text).map_err(|source| RenderError::Write { path, source })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> RenderArgs {
        RenderArgs {
            out: PathBuf::from("x"),
            exporter_address: "127.0.0.1:9877".into(),
            alertmanager_address: "127.0.0.1:9093".into(),
            grafana_dashboards_path: "/d".into(),
        }
    }

    #[test]
    fn bad_duration_is_an_error() {
        let v: Value = serde_yaml_ng::from_str("prometheus: {retention: \"30 days\"}").unwrap();
        assert!(matches!(
            render(Some(&v), &args()),
            Err(RenderError::Invalid(_))
        ));
    }

    #[test]
    fn route_to_unknown_receiver_is_an_error() {
        let v: Value = serde_yaml_ng::from_str(
            "alertmanager: {routes: [{match: {severity: critical}, receiver: nope}], receivers: [{name: a}]}",
        )
        .unwrap();
        let e = render(Some(&v), &args()).unwrap_err().to_string();
        assert!(e.contains("nope"), "{e}");
    }

    #[test]
    fn routes_become_matchers_and_subjects_become_headers() {
        let v: Value = serde_yaml_ng::from_str(
            "alertmanager:\n  routes:\n    - { match_re: { service: \"db|web\" }, receiver: ops, continue: true }\n    - { matchers: ['team=\"nas\"'], receiver: ops }\n  receivers:\n    - name: ops\n      email_configs:\n        - { to: a@b.c, subject: \"S\", headers: { X-Tag: t } }\n",
        )
        .unwrap();
        let files = render(Some(&v), &args()).unwrap();
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

    #[test]
    fn empty_block_renders_defaults() {
        let files = render(None, &args()).unwrap();
        assert!(files.iter().any(|(p, _)| p == Path::new("prometheus.yml")));
    }
}
