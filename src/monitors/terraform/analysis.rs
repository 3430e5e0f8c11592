//! Reading one state target with its drift report and baseline, with caching
//! by file stamp, last-good retention and change detection.

use std::sync::Arc;
use std::time::SystemTime;

use super::plan::{parse_plan, Action, ParsedPlan, PlanError};
use super::source::{SourceError, Stamp, StateSource};
use super::state::{parse_state, ParseError, ParsedState};

/// An error of one component of a target, with a bounded reason label.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TargetError {
    /// `state`, `drift_report`, `baseline` or `discovery`.
    pub component: &'static str,
    pub reason: &'static str,
    pub message: String,
}

impl TargetError {
    pub fn source(component: &'static str, e: &SourceError) -> Self {
        TargetError {
            component,
            reason: e.metric_label(),
            message: e.to_string(),
        }
    }

    pub fn parse(component: &'static str, label: &str, e: &ParseError) -> Self {
        TargetError {
            component,
            reason: e.metric_label(),
            message: format!("{label}: {e}"),
        }
    }
}

/// Instances added, removed and changed between two states.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// (address, changed top-level attribute names)
    pub changed: Vec<(String, Vec<String>)>,
}

impl Changes {
    pub fn total(&self) -> usize {
        self.added.len() + self.removed.len() + self.changed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }
}

/// Compare the current objects of two states (both sorted by address).
pub fn diff(old: &ParsedState, new: &ParsedState) -> Changes {
    let mut c = Changes::default();
    let (mut i, mut j) = (0, 0);
    let (a, b) = (&old.instances, &new.instances);
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x.address == y.address => {
                if x.digest.whole != y.digest.whole || x.tainted != y.tainted {
                    let mut paths = x.digest.changed_paths(&old.paths, &y.digest, &new.paths);
                    if x.tainted != y.tainted {
                        paths.insert(0, "(status)".into());
                    }
                    c.changed.push((y.address.clone(), paths));
                }
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x.address < y.address => {
                c.removed.push(x.address.clone());
                i += 1;
            }
            (Some(_), Some(y)) => {
                c.added.push(y.address.clone());
                j += 1;
            }
            (Some(x), None) => {
                c.removed.push(x.address.clone());
                i += 1;
            }
            (None, Some(y)) => {
                c.added.push(y.address.clone());
                j += 1;
            }
            (None, None) => break,
        }
    }
    c
}

/// A document cached with the stamp it was read at.
#[derive(Debug, Clone)]
pub struct Cached<T> {
    pub stamp: Stamp,
    pub value: T,
    /// The stamp cannot vouch for the content (written too recently, see
    /// [`StateSource::racy`]): read again next time even if it is unchanged.
    pub racy: bool,
}

/// Per-target memory between collections: the last good parse of each file.
#[derive(Debug, Default, Clone)]
pub struct TargetMemory {
    pub state: Option<Cached<Arc<ParsedState>>>,
    pub drift: Option<Cached<Result<Arc<ParsedPlan>, PlanError>>>,
    pub baseline: Option<Cached<Result<Arc<ParsedState>, ParseError>>>,
    pub policy: Option<super::policy::PolicyCache>,
}

/// Whether a state is locked, where the backend shows it (S3 lock files of
/// `use_lockfile`, HCP workspaces); `since` when the backend tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockState {
    pub locked: bool,
    pub since: Option<SystemTime>,
}

/// Everything known about one target after a collection.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub label: String,
    /// The state to report: this read's, or the last good one (then `stale`).
    pub state: Option<Arc<ParsedState>>,
    pub state_stamp: Option<Stamp>,
    /// This read of the state succeeded.
    pub up: bool,
    pub stale: bool,
    pub drift: Option<Arc<ParsedPlan>>,
    pub drift_time: Option<SystemTime>,
    pub drift_up: Option<bool>,
    pub unapproved: Option<Changes>,
    pub baseline_up: Option<bool>,
    pub errors: Vec<TargetError>,
    /// Changes since the previous good read (for change events), if it changed.
    pub changed_since_last: Option<Changes>,
    pub previous_serial: Option<u64>,
    /// Rego policy results (set by the monitor when policies are configured).
    pub policy: Option<Arc<super::policy::PolicyOutcome>>,
    /// Lock state of a remote state whose backend shows locks.
    pub lock: Option<LockState>,
    /// Bytes of a remote state received since start (`None` for local files).
    pub remote_bytes: Option<u64>,
    /// The last `homelab-monitor drift` run of this state (its status file beside the drift report).
    pub drift_run: Option<super::drift_runner::status::RunInfo>,
}

impl Analysis {
    pub fn drift_count(&self) -> usize {
        self.drift.as_ref().map(|p| p.drift.len()).unwrap_or(0)
    }

    pub fn pending_count(&self) -> usize {
        self.drift.as_ref().map(|p| p.pending.len()).unwrap_or(0)
    }

    pub fn pending(&self, a: Action) -> usize {
        self.drift.as_ref().map(|p| p.pending_count(a)).unwrap_or(0)
    }

    /// Root outputs the drift report changes.
    pub fn output_changes(&self) -> usize {
        self.drift
            .as_ref()
            .map(|p| p.output_changes.len())
            .unwrap_or(0)
    }

    /// The drift report's checks that failed or errored.
    pub fn drift_report_failed_checks(&self) -> usize {
        self.drift
            .as_ref()
            .map(|p| p.failed_checks().count())
            .unwrap_or(0)
    }

    /// The state was read but its contents could not be checked (an OpenTofu
    /// encrypted state: only its envelope is readable). Never "clean".
    pub fn unchecked(&self) -> bool {
        self.state.as_ref().is_some_and(|s| s.encrypted)
    }

    /// Number of findings that make the one-shot exit 2.
    pub fn findings(&self) -> usize {
        let st = self.state.as_deref();
        self.drift_count()
            + self.pending_count()
            + self.output_changes()
            + self.drift_report_failed_checks()
            + usize::from(self.drift.as_ref().is_some_and(|p| p.incomplete))
            + self.unapproved.as_ref().map(Changes::total).unwrap_or(0)
            + st.map(|s| s.tainted().count() + s.deposed.len() + s.failed_checks().count())
                .unwrap_or(0)
            + self.policy.as_ref().map(|p| p.denies()).unwrap_or(0)
    }
}

/// Read (or reuse) one file's parse by stamp.
fn read_cached<T: Clone>(
    src: &dyn StateSource,
    cached: Option<&Cached<T>>,
    parse: impl FnOnce(Box<dyn std::io::Read + Send>) -> T,
) -> Result<Cached<T>, SourceError> {
    let stamp = src.stamp()?;
    if let Some(c) = cached {
        if c.stamp == stamp && !c.racy {
            return Ok(c.clone());
        }
    }
    let (reader, stamp) = src.open()?;
    Ok(Cached {
        stamp,
        value: parse(reader),
        racy: src.racy(&stamp),
    })
}

/// Inputs of one target.
pub struct TargetSources<'a> {
    pub state: &'a dyn StateSource,
    pub drift: Option<&'a dyn StateSource>,
    pub baseline: Option<&'a dyn StateSource>,
}

/// Analyse one target, updating its memory.
pub fn analyse(src: TargetSources<'_>, mem: &mut TargetMemory) -> Analysis {
    let label = src.state.label().to_string();
    let mut errors = Vec::new();
    let previous = mem.state.as_ref().map(|c| c.value.clone());
    let mut up = false;
    let mut changed_since_last = None;
    match read_cached(
        src.state,
        mem.state
            .as_ref()
            .map(|c| Cached {
                stamp: c.stamp,
                value: Ok(c.value.clone()),
                racy: c.racy,
            })
            .as_ref(),
        |r| parse_state(r).map(Arc::new),
    ) {
        Ok(Cached {
            stamp,
            value: Ok(parsed),
            racy,
        }) => {
            up = true;
            if let Some(prev) = &previous {
                if !Arc::ptr_eq(prev, &parsed) {
                    let ch = diff(prev, &parsed);
                    if !ch.is_empty()
                        || prev.serial != parsed.serial
                        || prev.lineage != parsed.lineage
                    {
                        changed_since_last = Some(ch);
                    }
                }
            }
            mem.state = Some(Cached {
                stamp,
                value: parsed,
                racy,
            });
        }
        Ok(Cached { value: Err(e), .. }) => errors.push(TargetError::parse("state", &label, &e)),
        Err(e) => errors.push(TargetError::source("state", &e)),
    }
    let state = mem.state.as_ref().map(|c| c.value.clone());
    let state_stamp = mem.state.as_ref().map(|c| c.stamp);

    // Without any read of the state (missing, a folder, unreadable), the
    // drift report and baseline beside it describe nothing that was read:
    // they are not reported (the state error says what to fix).
    let (drift_src, baseline_src) = if state.is_some() {
        (src.drift, src.baseline)
    } else {
        (None, None)
    };

    // Drift report: absent is fine (no drift metrics); present must parse.
    let (mut drift, mut drift_time, mut drift_up) = (None, None, None);
    if let Some(dsrc) = drift_src {
        match read_cached(dsrc, mem.drift.as_ref(), |r| parse_plan(r).map(Arc::new)) {
            Ok(c) => {
                match &c.value {
                    Ok(p) if p.errored => {
                        // A failed plan says nothing about drift: never "0 drifted".
                        drift_up = Some(false);
                        errors.push(TargetError {
                            component: "drift_report",
                            reason: "errored",
                            message: format!(
                                "drift report {}: the plan failed (\"errored\": true), so it cannot tell whether the state drifted; run the plan by hand, fix its errors and write the report again",
                                dsrc.label()
                            ),
                        });
                    }
                    Ok(p) => {
                        drift_time = p.timestamp.or(c.stamp.modified);
                        drift = Some(p.clone());
                        drift_up = Some(true);
                    }
                    Err(e) => {
                        drift_up = Some(false);
                        errors.push(TargetError {
                            component: "drift_report",
                            reason: e.metric_label(),
                            message: format!("drift report {}: {e}", dsrc.label()),
                        });
                    }
                }
                mem.drift = Some(c);
            }
            Err(SourceError::NotFound(_)) => mem.drift = None,
            Err(e) => {
                drift_up = Some(false);
                errors.push(TargetError::source("drift_report", &e));
            }
        }
    }

    // Baseline: absent is fine; present must parse and share the lineage.
    let (mut unapproved, mut baseline_up) = (None, None);
    if let Some(bsrc) = baseline_src {
        match read_cached(bsrc, mem.baseline.as_ref(), |r| {
            parse_state(r).map(Arc::new)
        }) {
            Ok(c) => {
                match (&c.value, &state) {
                    (Ok(base), Some(cur)) => {
                        if base.lineage.is_some()
                            && cur.lineage.is_some()
                            && base.lineage != cur.lineage
                        {
                            baseline_up = Some(false);
                            errors.push(TargetError {
                                component: "baseline",
                                reason: "lineage_mismatch",
                                message: format!(
                                    "baseline {} has lineage {}, but {} has lineage {}: it is not an approved copy of this state; approve the current state by copying it over the baseline",
                                    bsrc.label(),
                                    base.lineage.as_deref().unwrap_or("-"),
                                    label,
                                    cur.lineage.as_deref().unwrap_or("-")
                                ),
                            });
                        } else if base.encrypted || cur.encrypted {
                            baseline_up = Some(false);
                            errors.push(TargetError {
                                component: "baseline",
                                reason: "encrypted",
                                message: format!(
                                    "baseline {}: encrypted states cannot be compared",
                                    bsrc.label()
                                ),
                            });
                        } else {
                            baseline_up = Some(true);
                            unapproved = Some(diff(base, cur));
                        }
                    }
                    (Ok(_), None) => baseline_up = Some(true),
                    (Err(e), _) => {
                        baseline_up = Some(false);
                        errors.push(TargetError::parse("baseline", bsrc.label(), e));
                    }
                }
                mem.baseline = Some(c);
            }
            Err(SourceError::NotFound(_)) => mem.baseline = None,
            Err(e) => {
                baseline_up = Some(false);
                errors.push(TargetError::source("baseline", &e));
            }
        }
    }

    Analysis {
        label,
        stale: !up && state.is_some(),
        previous_serial: previous.as_ref().and_then(|p| p.serial),
        state,
        state_stamp,
        up,
        drift,
        drift_time,
        drift_up,
        unapproved,
        baseline_up,
        errors,
        changed_since_last,
        policy: None,
        lock: None,
        remote_bytes: None,
        drift_run: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(json: &str) -> ParsedState {
        parse_state(json.as_bytes()).unwrap()
    }

    #[test]
    fn a_rewrite_inside_one_timestamp_tick_is_not_missed() {
        use super::super::source::LocalFile;
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("s.tfstate");
        let doc = |serial: u32| {
            format!(r#"{{"version":4,"serial":{serial},"lineage":"l","resources":[]}}"#)
        };
        std::fs::write(&p, doc(148)).unwrap();
        let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
        let src = LocalFile {
            label: "s".into(),
            path: p.clone(),
            max_size: 1 << 20,
        };
        let mut mem = TargetMemory::default();
        let a = analyse(
            TargetSources {
                state: &src,
                drift: None,
                baseline: None,
            },
            &mut mem,
        );
        assert_eq!(a.state.unwrap().serial, Some(148));
        // Same size, same inode, same mtime: the stamp cannot tell them apart.
        std::fs::write(&p, doc(150)).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let a = analyse(
            TargetSources {
                state: &src,
                drift: None,
                baseline: None,
            },
            &mut mem,
        );
        assert_eq!(
            a.state.unwrap().serial,
            Some(150),
            "a recent file is re-read, not trusted by its stamp"
        );
    }

    fn file(
        dir: &std::path::Path,
        name: &str,
        body: Option<&str>,
    ) -> super::super::source::LocalFile {
        let path = dir.join(name);
        if let Some(b) = body {
            std::fs::write(&path, b).unwrap();
        }
        super::super::source::LocalFile {
            label: name.into(),
            path,
            max_size: 1 << 20,
        }
    }

    const STATE: &str = r#"{"version":4,"serial":1,"lineage":"l","resources":[]}"#;

    #[test]
    fn an_errored_plan_is_an_unusable_report_not_zero_drift() {
        let t = tempfile::tempdir().unwrap();
        let state = file(t.path(), "s.tfstate", Some(STATE));
        let drift = file(
            t.path(),
            "drift.json",
            Some(
                r#"{"format_version":"1.2","resource_drift":[],"resource_changes":[],"errored":true}"#,
            ),
        );
        let a = analyse(
            TargetSources {
                state: &state,
                drift: Some(&drift),
                baseline: None,
            },
            &mut TargetMemory::default(),
        );
        assert_eq!(a.drift_up, Some(false));
        assert!(a.drift.is_none(), "no drift count from a failed plan");
        assert_eq!(a.errors.len(), 1);
        assert_eq!(a.errors[0].component, "drift_report");
        assert_eq!(a.errors[0].reason, "errored");
    }

    #[test]
    fn a_missing_state_does_not_report_the_drift_report_beside_it() {
        let t = tempfile::tempdir().unwrap();
        let state = file(t.path(), "s.tfstate", None);
        let drift = file(
            t.path(),
            "drift.json",
            Some(
                r#"{"format_version":"1.2","resource_changes":[{"address":"a.b","change":{"actions":["create"],"before":null,"after":{}}}]}"#,
            ),
        );
        let base = file(t.path(), "s.approved", Some(STATE));
        let a = analyse(
            TargetSources {
                state: &state,
                drift: Some(&drift),
                baseline: Some(&base),
            },
            &mut TargetMemory::default(),
        );
        assert!(!a.up);
        assert_eq!(a.findings(), 0, "nothing was read: no findings");
        assert!(a.drift.is_none() && a.drift_up.is_none() && a.baseline_up.is_none());
        assert_eq!(a.errors.len(), 1);
        assert_eq!(a.errors[0].reason, "not_found");
    }

    #[test]
    fn diff_finds_added_removed_changed_with_paths() {
        let a = st(
            r#"{"version":4,"resources":[{"type":"t","name":"a","instances":[{"attributes":{"x":1}}]},{"type":"t","name":"b","instances":[{"attributes":{"x":1,"y":2}}]}]}"#,
        );
        let b = st(
            r#"{"version":4,"resources":[{"type":"t","name":"b","instances":[{"attributes":{"x":1,"y":3}}]},{"type":"t","name":"c","instances":[{"attributes":{}}]}]}"#,
        );
        let c = diff(&a, &b);
        assert_eq!(c.added, vec!["t.c"]);
        assert_eq!(c.removed, vec!["t.a"]);
        assert_eq!(c.changed, vec![("t.b".to_string(), vec!["y".to_string()])]);
        assert!(diff(&a, &a).is_empty());
    }
}
