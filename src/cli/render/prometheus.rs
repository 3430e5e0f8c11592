//! `prometheus.yml`, the shipped alert rules and `prometheus.flags`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};

use super::{list, map, s, strs, yaml, RenderArgs, RenderError, Rendered};

/// The shipped rules, embedded so the binary renders them anywhere.
const RULES: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/alerts/homelab-monitor.rules.yml"
));

#[derive(Debug, Default, Deserialize)]
pub(super) struct PrometheusStack {
    retention: Option<String>,
    scrape_interval: Option<String>,
    evaluation_interval: Option<String>,
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
}

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

/// The Prometheus files, from the `prometheus:` settings.
pub(super) fn render(p: &PrometheusStack, args: &RenderArgs) -> Result<Rendered, RenderError> {
    let mut out: Rendered = Vec::new();
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
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_duration_is_an_error() {
        let v: Value = serde_yaml_ng::from_str("prometheus: {retention: \"30 days\"}").unwrap();
        assert!(matches!(
            super::super::render(Some(&v), &super::super::test_args()),
            Err(RenderError::Invalid(_))
        ));
    }
}
