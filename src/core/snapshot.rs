//! The plain-value result of one collection.
//!
//! A [`Snapshot`] holds metric families (names, label values, numbers) and a
//! per-target status for `--status`. Monitors build it; the encoder turns it
//! into the exposition format. It never holds a value read from a secret field.

use std::collections::HashMap;

/// Kind of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Gauge,
    /// A counter; `name` is the base name, the encoder appends `_total`.
    Counter,
}

/// Static description of one metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDef {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricKind,
}

impl MetricDef {
    pub const fn gauge(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            kind: MetricKind::Gauge,
        }
    }

    pub const fn counter(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            kind: MetricKind::Counter,
        }
    }
}

/// One series: label pairs and a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// A metric family with its samples, in insertion order.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricFamily {
    pub def: MetricDef,
    pub samples: Vec<Sample>,
}

/// Health of one target (a state file, a certificate source, a backup source).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Read and nothing to report.
    Ok,
    /// Read, and there are findings (drift, unapproved changes, expiring...).
    Findings,
    /// Read, but its contents could not be checked (an encrypted state):
    /// neither clean nor a read error.
    Unchecked,
    /// This read failed; older values may still be served (stale).
    Error,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Findings => "findings",
            Health::Unchecked => "unchecked",
            Health::Error => "error",
        }
    }
}

/// Status of one target, for `--status` and the landing page.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TargetStatus {
    pub target: String,
    pub health: Health,
    /// Short human summary ("42 instances, 0 drifted"). Never contains values from inputs.
    pub summary: String,
    /// What went wrong, quoting paths and positions only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// True when the values served for this target come from an earlier read.
    pub stale: bool,
}

/// Everything one collection of one monitor produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub families: Vec<MetricFamily>,
    pub targets: Vec<TargetStatus>,
    /// Targets whose read was still running when this collection served
    /// what it had: the registry re-collects soon to pick them up.
    pub pending: usize,
}

impl Snapshot {
    /// Number of targets whose last read failed.
    pub fn failed_targets(&self) -> usize {
        self.targets
            .iter()
            .filter(|t| t.health == Health::Error)
            .count()
    }

    /// Look up a family by name (tests, reports).
    pub fn family(&self, name: &str) -> Option<&MetricFamily> {
        self.families.iter().find(|f| f.def.name == name)
    }

    /// Value of the first sample of `name` whose labels include all of `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.family(name)?
            .samples
            .iter()
            .find(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|s| s.value)
    }
}

/// Builds a [`Snapshot`], grouping samples by family in first-use order.
#[derive(Debug, Default)]
pub struct SnapshotBuilder {
    families: Vec<MetricFamily>,
    index: HashMap<&'static str, usize>,
    targets: Vec<TargetStatus>,
}

impl SnapshotBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Declare a family so it is exported (with HELP/TYPE) even without samples.
    pub fn declare(&mut self, def: &MetricDef) -> &mut Self {
        self.family_mut(def);
        self
    }

    /// Add one gauge sample.
    pub fn gauge(&mut self, def: &MetricDef, labels: &[(&'static str, &str)], value: f64) {
        let labels = labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        self.family_mut(def).samples.push(Sample { labels, value });
    }

    /// Add one gauge sample with owned label values.
    pub fn gauge_owned(
        &mut self,
        def: &MetricDef,
        labels: Vec<(&'static str, String)>,
        value: f64,
    ) {
        self.family_mut(def).samples.push(Sample { labels, value });
    }

    pub fn target(&mut self, status: TargetStatus) {
        self.targets.push(status);
    }

    /// Append every family and target of `other` (used to merge per-target parts).
    pub fn extend(&mut self, other: Snapshot) {
        for fam in other.families {
            let def = fam.def;
            self.family_mut(&def).samples.extend(fam.samples);
        }
        self.targets.extend(other.targets);
    }

    pub fn build(self) -> Snapshot {
        Snapshot {
            families: self.families,
            targets: self.targets,
            pending: 0,
        }
    }

    fn family_mut(&mut self, def: &MetricDef) -> &mut MetricFamily {
        let idx = match self.index.get(def.name) {
            Some(&i) => i,
            None => {
                self.families.push(MetricFamily {
                    def: *def,
                    samples: Vec::new(),
                });
                let i = self.families.len() - 1;
                self.index.insert(def.name, i);
                i
            }
        };
        &mut self.families[idx]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: MetricDef = MetricDef::gauge("a_metric", "A.");
    const B: MetricDef = MetricDef::gauge("b_metric", "B.");

    #[test]
    fn builder_groups_samples_by_family_in_first_use_order() {
        let mut b = SnapshotBuilder::new();
        b.gauge(&B, &[("x", "1")], 1.0);
        b.gauge(&A, &[("x", "1")], 2.0);
        b.gauge(&B, &[("x", "2")], 3.0);
        let s = b.build();
        assert_eq!(s.families.len(), 2);
        assert_eq!(s.families[0].def.name, "b_metric");
        assert_eq!(s.families[0].samples.len(), 2);
        assert_eq!(s.value("b_metric", &[("x", "2")]), Some(3.0));
        assert_eq!(s.value("a_metric", &[("x", "2")]), None);
    }
}
