//! Grafana provisioning: datasources, the dashboard provider, the shipped
//! dashboards and `grafana.env`.

use std::path::PathBuf;

use serde::Deserialize;
use serde_yaml_ng::Value;

use super::{list, map, s, yaml, RenderArgs, RenderError, Rendered};

/// The shipped dashboards, embedded so the binary renders them anywhere.
const DASHBOARDS: &[(&str, &str)] = &[
    (
        "homelab-overview.json",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/dashboards/homelab-overview.json"
        )),
    ),
    (
        "terraform-state.json",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/dashboards/terraform-state.json"
        )),
    ),
    (
        "certificates.json",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/dashboards/certificates.json"
        )),
    ),
    (
        "backups.json",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/dashboards/backups.json"
        )),
    ),
    (
        "exporter-health.json",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/dashboards/exporter-health.json"
        )),
    ),
];

#[derive(Debug, Default, Deserialize)]
pub(super) struct GrafanaStack {
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

/// The Grafana files, from the `grafana:` settings.
pub(super) fn render(g: &GrafanaStack, args: &RenderArgs) -> Result<Rendered, RenderError> {
    let mut out: Rendered = Vec::new();
    let mut sources = Vec::new();
    let any_default = g.datasources.iter().any(|d| d.is_default == Some(true));
    let mut first_prom = true;
    for d in &g.datasources {
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
    if let Some(u) = &g.admin_user {
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
