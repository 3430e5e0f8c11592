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

mod alertmanager;
mod grafana;
mod prometheus;

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};

pub use self::alertmanager::GROUP_BY;

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

#[derive(Debug, Default, Deserialize)]
struct Stack {
    #[serde(default)]
    prometheus: prometheus::PrometheusStack,
    #[serde(default)]
    grafana: grafana::GrafanaStack,
    #[serde(default)]
    alertmanager: alertmanager::AlertmanagerStack,
}

/// A file to write: path relative to the output folder and its text.
pub type Rendered = Vec<(PathBuf, String)>;

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

/// Render every file from the `monitoring:` block (pure; no I/O): Prometheus,
/// then Alertmanager, then Grafana (the first invalid setting is the error).
pub fn render(monitoring: Option<&Value>, args: &RenderArgs) -> Result<Rendered, RenderError> {
    let stack: Stack = match monitoring {
        Some(v) if !v.is_null() => {
            serde_yaml_ng::from_value(v.clone()).map_err(|e| RenderError::Invalid(e.to_string()))?
        }
        _ => Stack::default(),
    };
    let mut out: Rendered = Vec::new();
    out.extend(prometheus::render(&stack.prometheus, args)?);
    out.extend(alertmanager::render(&stack.alertmanager)?);
    out.extend(grafana::render(&stack.grafana, args)?);
    Ok(out)
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
fn test_args() -> RenderArgs {
    RenderArgs {
        out: PathBuf::from("x"),
        exporter_address: "127.0.0.1:9877".into(),
        alertmanager_address: "127.0.0.1:9093".into(),
        grafana_dashboards_path: "/d".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_block_renders_defaults() {
        let files = render(None, &test_args()).unwrap();
        assert!(files.iter().any(|(p, _)| p == Path::new("prometheus.yml")));
    }
}
