//! The only place that knows the exposition formats.
//!
//! Snapshots are encoded through `prometheus-client`'s `Collector` interface, in
//! the classic Prometheus text format (0.0.4) by default, or OpenMetrics 1.0
//! when the scraper's `Accept` header asks for it.

use std::collections::HashSet;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabel, EncodeLabelSet, EncodeMetric, LabelSetEncoder,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::core::snapshot::{LabelValue, MetricKind, Sample, Snapshot};

/// Exposition format of a `/metrics` response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Classic,
    /// OpenMetrics 1.0 text format.
    OpenMetrics,
}

impl Format {
    /// Choose the format from an `Accept` header: OpenMetrics only when asked for.
    pub fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Classic,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Classic => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Encodes snapshots as one exposition. Families with the same name in several
/// snapshots are merged; a repeated label set inside a family is dropped (the
/// first one wins) so that one bad target can never make the output invalid.
#[derive(Debug)]
struct SnapshotCollector {
    snapshots: Vec<Arc<Snapshot>>,
    /// Appended to every family's HELP (the note that values may be cached).
    help_suffix: &'static str,
}

/// A series' labels, encoded as the pairs they are (the same escaping and
/// order as a slice of pairs).
struct Labels<'a>(Sample<'a>);

impl EncodeLabelSet for Labels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        for label in self.0.labels() {
            label.encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

/// What the HELP text of every monitor family says about caching, as the
/// Prometheus exporter guidelines ask of exporters that cache.
pub const CACHED_HELP: &str =
    " (Cached: re-read at most once per check_interval; see homelab_monitor_cache_age_seconds.)";

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut done: HashSet<&str> = HashSet::new();
        for (i, snap) in self.snapshots.iter().enumerate() {
            for fam in &snap.families {
                if !done.insert(fam.def.name) {
                    continue;
                }
                let metric_type = match fam.def.kind {
                    MetricKind::Gauge => MetricType::Gauge,
                    MetricKind::Counter => MetricType::Counter,
                };
                let help;
                let help_text = if self.help_suffix.is_empty() {
                    fam.def.help
                } else {
                    help = format!("{}{}", fam.def.help, self.help_suffix);
                    help.as_str()
                };
                let mut family_encoder =
                    encoder.encode_descriptor(fam.def.name, help_text, None, metric_type)?;
                let mut seen: HashSet<(&[&'static str], &[LabelValue])> = HashSet::new();
                let later = self.snapshots[i..].iter().flat_map(|s| {
                    s.families
                        .iter()
                        .filter(|f| f.def.name == fam.def.name)
                        .flat_map(|f| f.samples.iter())
                });
                for sample in later {
                    if !seen.insert(sample.key()) {
                        tracing::debug!(
                            metric = fam.def.name,
                            "dropping a repeated label set from the exposition"
                        );
                        continue;
                    }
                    let labels = Labels(sample);
                    let metric_encoder = family_encoder.encode_family(&labels)?;
                    match fam.def.kind {
                        MetricKind::Gauge => {
                            ConstGauge::new(sample.value).encode(metric_encoder)?
                        }
                        MetricKind::Counter => {
                            ConstCounter::new(sample.value.max(0.0)).encode(metric_encoder)?
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Encode `snapshots` in `format`: a complete exposition.
pub fn encode(snapshots: Vec<Arc<Snapshot>>, format: Format) -> Result<String, std::fmt::Error> {
    let mut out = encode_part(snapshots, format)?;
    finish(&mut out, format)?;
    Ok(out)
}

/// Encode `snapshots` as part of an exposition (no OpenMetrics `# EOF`).
/// Parts with disjoint metric names can be concatenated, then [`finish`]ed.
pub fn encode_part(
    snapshots: Vec<Arc<Snapshot>>,
    format: Format,
) -> Result<String, std::fmt::Error> {
    encode_with(snapshots, format, "")
}

/// [`encode_part`] for monitors' values: each HELP says they may be cached.
pub fn encode_cached_part(
    snapshots: Vec<Arc<Snapshot>>,
    format: Format,
) -> Result<String, std::fmt::Error> {
    let mut out = encode_with(snapshots, format, CACHED_HELP)?;
    // Kept until the next collection: give back the slack of the doubling
    // growth (up to half the buffer; 86 MB on a 100,000-state fleet).
    out.shrink_to_fit();
    Ok(out)
}

/// [`encode_cached_part`] into any writer, piece by piece (the text
/// library hands over a few KiB at a time): a sink that compresses as it
/// goes never holds the whole text.
pub fn encode_cached_part_to<W: std::fmt::Write>(
    snapshots: Vec<Arc<Snapshot>>,
    format: Format,
    out: &mut W,
) -> Result<(), std::fmt::Error> {
    encode_into(snapshots, format, CACHED_HELP, out)
}

fn encode_with(
    snapshots: Vec<Arc<Snapshot>>,
    format: Format,
    help_suffix: &'static str,
) -> Result<String, std::fmt::Error> {
    let mut out = String::with_capacity(16 * 1024);
    encode_into(snapshots, format, help_suffix, &mut out)?;
    Ok(out)
}

fn encode_into<W: std::fmt::Write>(
    snapshots: Vec<Arc<Snapshot>>,
    format: Format,
    help_suffix: &'static str,
    out: &mut W,
) -> Result<(), std::fmt::Error> {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(SnapshotCollector {
        snapshots,
        help_suffix,
    }));
    match format {
        Format::Classic => prometheus_client::encoding::prometheus_text::encode(out, &registry),
        Format::OpenMetrics => prometheus_client::encoding::text::encode_registry(out, &registry),
    }
}

/// Close an exposition built from parts.
pub fn finish(out: &mut String, format: Format) -> Result<(), std::fmt::Error> {
    match format {
        Format::Classic => Ok(()),
        Format::OpenMetrics => prometheus_client::encoding::text::encode_eof(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::snapshot::{MetricDef, SnapshotBuilder};

    const G: MetricDef = MetricDef::gauge("test_gauge", "A test gauge.");
    const C: MetricDef = MetricDef::counter("test_events", "A test counter.");

    fn snap() -> Arc<Snapshot> {
        let mut b = SnapshotBuilder::new();
        b.gauge(&G, &[("path", "a\"b\\c\nd")], 1.5);
        b.gauge(&G, &[("path", "x")], 2.0);
        b.gauge(&G, &[("path", "x")], 3.0);
        b.gauge(&C, &[], 4.0);
        Arc::new(b.build())
    }

    #[test]
    fn classic_format_escapes_labels_and_drops_duplicates() {
        let out = encode(vec![snap()], Format::Classic).unwrap();
        assert!(out.contains("# TYPE test_gauge gauge\n"), "{out}");
        assert!(
            out.contains(r#"test_gauge{path="a\"b\\c\nd"} 1.5"#),
            "{out}"
        );
        assert!(out.contains("test_gauge{path=\"x\"} 2.0\n"), "{out}");
        assert!(
            !out.contains("3.0"),
            "duplicate label set must be dropped: {out}"
        );
        assert!(out.contains("# TYPE test_events_total counter\n"), "{out}");
        assert!(!out.contains("# EOF"));
    }

    #[test]
    fn openmetrics_format_ends_with_eof() {
        let out = encode(vec![snap()], Format::OpenMetrics).unwrap();
        assert!(out.ends_with("# EOF\n"), "{out}");
        assert!(out.contains("# TYPE test_events counter\n"), "{out}");
    }

    #[test]
    fn same_family_in_two_snapshots_is_merged_once() {
        let out = encode(vec![snap(), snap()], Format::Classic).unwrap();
        assert_eq!(out.matches("# TYPE test_gauge gauge").count(), 1, "{out}");
        assert_eq!(out.matches("test_gauge{path=\"x\"}").count(), 1, "{out}");
    }

    #[test]
    fn negotiation() {
        assert_eq!(Format::negotiate(None), Format::Classic);
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
            )),
            Format::OpenMetrics
        );
        assert_eq!(Format::negotiate(Some("text/plain")), Format::Classic);
    }
}
