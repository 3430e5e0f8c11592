//! Reading one state target with its drift report and baseline, with caching
//! by file stamp, last-good retention and change detection.

use std::sync::Arc;
use std::time::SystemTime;

use super::plan::{parse_plan, parse_plan_with_input_limited, Action, ParsedPlan, PlanError};
use super::policy::{Built, Due, PolicySet};
use super::source::{SourceError, Stamp, StateSource};
use super::state::{parse_state, parse_state_streaming, ParseError, ParsedState, PolicyInput};

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
                    c.changed.push((y.address.to_string(), paths));
                }
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x.address < y.address => {
                c.removed.push(x.address.to_string());
                i += 1;
            }
            (Some(_), Some(y)) => {
                c.added.push(y.address.to_string());
                j += 1;
            }
            (Some(x), None) => {
                c.removed.push(x.address.to_string());
                i += 1;
            }
            (None, Some(y)) => {
                c.added.push(y.address.to_string());
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

/// The last read of a drift report.
pub type CachedPlan = Cached<Result<Arc<ParsedPlan>, PlanError>>;
/// The last read of a baseline.
pub type CachedBaseline = Cached<Result<Arc<ParsedState>, ParseError>>;

/// Per-target memory between collections: the last good parse of each file.
#[derive(Debug, Default, Clone)]
pub struct TargetMemory {
    pub state: Option<Cached<Arc<ParsedState>>>,
    /// (Boxed: kept per target, and most targets have neither.)
    pub drift: Option<Box<CachedPlan>>,
    pub baseline: Option<Box<CachedBaseline>>,
    /// (Boxed too: a fleet without policies keeps 72 bytes less per target.)
    pub policy: Option<Box<super::policy::PolicyCache>>,
}

impl TargetMemory {
    /// Estimated bytes kept between collections: the last parse of the
    /// state, drift report and baseline (each counted once: the analysis
    /// shares them).
    pub fn estimated_bytes(&self) -> usize {
        let plan = |p: &Option<Box<CachedPlan>>| {
            p.as_ref()
                .and_then(|c| c.value.as_ref().ok())
                .map_or(0, |p| plan_bytes(p))
        };
        std::mem::size_of::<Self>()
            + self.drift.as_ref().map_or(0, |_| std::mem::size_of::<CachedPlan>())
            + self.baseline.as_ref().map_or(0, |_| std::mem::size_of::<CachedBaseline>())
            + self.policy.as_ref().map_or(0, |_| std::mem::size_of::<super::policy::PolicyCache>())
            + self.state.as_ref().map_or(0, |c| c.value.estimated_bytes())
            + plan(&self.drift)
            + self
                .baseline
                .as_ref()
                .and_then(|c| c.value.as_ref().ok())
                .map_or(0, |b| b.estimated_bytes())
            + self.policy.as_ref().map_or(0, |p| policy_bytes(&p.outcome))
    }
}

fn plan_bytes(p: &ParsedPlan) -> usize {
    let change = |c: &super::plan::Change| {
        std::mem::size_of::<super::plan::Change>()
            + c.address.capacity()
            + c.paths.iter().map(|x| x.capacity() + 24).sum::<usize>()
            + c.previous_address.as_ref().map_or(0, String::capacity)
    };
    std::mem::size_of::<ParsedPlan>()
        + p.drift.iter().chain(&p.pending).map(change).sum::<usize>()
        + p.output_changes
            .iter()
            .map(|o| std::mem::size_of_val(o) + o.name.capacity())
            .sum::<usize>()
        + p.checks
            .iter()
            .map(|c| std::mem::size_of_val(c) + c.address.capacity() + c.kind.capacity())
            .sum::<usize>()
}

fn policy_bytes(p: &super::policy::PolicyOutcome) -> usize {
    p.results
        .iter()
        .map(|r| {
            std::mem::size_of_val(r)
                + r.policy.capacity()
                + r.file.capacity()
                + r.violations
                    .iter()
                    .map(|v| {
                        std::mem::size_of_val(v)
                            + v.msg.capacity()
                            + v.address.as_ref().map_or(0, String::capacity)
                    })
                    .sum::<usize>()
        })
        .sum()
}

impl Analysis {
    /// Estimated bytes of this analysis; `shared`: also the parsed state,
    /// drift report and policy results it shares with the target's memory.
    pub fn estimated_bytes(&self, shared: bool) -> usize {
        let changes = |c: &Option<Box<Changes>>| {
            c.as_ref().map_or(0, |c| {
                std::mem::size_of::<Changes>() +
                c.added.iter().chain(&c.removed).map(|x| x.capacity() + 24).sum::<usize>()
                    + c.changed
                        .iter()
                        .map(|(a, p)| a.capacity() + 48 + p.iter().map(|x| x.capacity() + 24).sum::<usize>())
                        .sum::<usize>()
            })
        };
        let mut n = std::mem::size_of::<Self>()
            + self.label.len()
            + self
                .errors
                .iter()
                .map(|e| std::mem::size_of_val(e) + e.message.capacity())
                .sum::<usize>()
            + changes(&self.unapproved)
            + changes(&self.changed_since_last)
            + self.drift_run.as_ref().map_or(0, |r| std::mem::size_of_val(&**r));
        if shared {
            n += self.state.as_ref().map_or(0, |s| s.estimated_bytes())
                + self.drift.as_ref().map_or(0, |p| plan_bytes(p))
                + self.policy.as_ref().map_or(0, |p| policy_bytes(p));
        }
        n
    }
}

pub use crate::remote::LockState;

/// Everything known about one target after a collection.
#[derive(Debug, Clone)]
pub struct Analysis {
    /// (Shared: the snapshot's series carry this very string as their
    /// `state_file` label value.)
    pub label: std::sync::Arc<str>,
    /// The state to report: this read's, or the last good one (then `stale`).
    pub state: Option<Arc<ParsedState>>,
    pub state_stamp: Option<Stamp>,
    /// This read of the state succeeded.
    pub up: bool,
    pub stale: bool,
    pub drift: Option<Arc<ParsedPlan>>,
    pub drift_time: Option<SystemTime>,
    pub drift_up: Option<bool>,
    /// (Boxed, like the other rarely set parts: the analysis is kept per
    /// target, and most targets have none.)
    pub unapproved: Option<Box<Changes>>,
    pub baseline_up: Option<bool>,
    pub errors: Vec<TargetError>,
    /// Changes since the previous good read (for change events), if it changed.
    pub changed_since_last: Option<Box<Changes>>,
    pub previous_serial: Option<u64>,
    /// Rego policy results (set by the monitor when policies are configured).
    pub policy: Option<Arc<super::policy::PolicyOutcome>>,
    /// Lock state of a remote state whose backend shows locks.
    pub lock: Option<LockState>,
    /// Bytes of a remote state received since start (`None` for local files).
    pub remote_bytes: Option<u64>,
    /// The last `homelab-monitor drift` run of this state (its status file beside the drift report).
    pub drift_run: Option<Box<super::drift_runner::status::RunInfo>>,
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
            + self.unapproved.as_deref().map(Changes::total).unwrap_or(0)
            + st.map(|s| s.tainted().count() + s.deposed.len() + s.failed_checks().count())
                .unwrap_or(0)
            + self.policy.as_ref().map(|p| p.denies()).unwrap_or(0)
    }
}

/// Read (or reuse) one file's parse by stamp; `fresh`: read it even if
/// unchanged (its policies are due and need its values).
fn read_cached<T: Clone>(
    src: &dyn StateSource,
    cached: Option<&Cached<T>>,
    fresh: bool,
    parse: impl FnOnce(Box<dyn std::io::Read + Send>) -> T,
) -> Result<Cached<T>, SourceError> {
    let stamp = src.stamp()?;
    let valid = cached.filter(|c| c.stamp == stamp && !c.racy);
    if let (Some(c), false) = (valid, fresh) {
        return Ok(c.clone());
    }
    let (reader, stamp) = match (src.open(), valid) {
        (Ok(opened), _) => opened,
        // Read again only for the policies, and the source cannot serve the
        // unchanged content again (a remote backend answered "not
        // modified"): the parse held is still right; policies keep theirs.
        (Err(_), Some(c)) => return Ok(c.clone()),
        (Err(e), None) => return Err(e),
    };
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
    analyse_with_policies(src, mem, None)
}

/// [`analyse`], and evaluate the target's Rego policies when some are
/// configured. When they are due (the state, drift report or a policy file
/// changed since the cached outcome), the one streaming read of the state and
/// of the drift report also builds the policy input: no file is read twice.
pub fn analyse_with_policies(
    src: TargetSources<'_>,
    mem: &mut TargetMemory,
    policies: Option<&PolicySet>,
) -> Analysis {
    let due = policies.and_then(|set| Due::check(set, src.state, src.drift, mem.policy.as_deref()));
    let fresh = due.is_some();
    let max_input = due.as_ref().map_or(u64::MAX, Due::max_input);
    let mut state_input: PolicyInput = None;
    let mut state_stream = None;
    let mut drift_input: PolicyInput = None;
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
        fresh,
        |r| {
            if let Some(due) = due.as_ref() {
                parse_state_streaming(r, due.builder(&label)).map(|(st, input, stream)| {
                    state_input = input;
                    state_stream = stream;
                    Arc::new(st)
                })
            } else {
                parse_state(r).map(Arc::new)
            }
        },
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
                        changed_since_last = Some(Box::new(ch));
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
        match read_cached(dsrc, mem.drift.as_deref(), fresh, |r| {
            if fresh {
                let (plan, input) = parse_plan_with_input_limited(r, max_input);
                drift_input = input;
                plan.map(Arc::new)
            } else {
                parse_plan(r).map(Arc::new)
            }
        }) {
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
                mem.drift = Some(Box::new(c));
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
        match read_cached(bsrc, mem.baseline.as_deref(), false, |r| {
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
                            unapproved = Some(Box::new(diff(base, cur)));
                        }
                    }
                    (Ok(_), None) => baseline_up = Some(true),
                    (Err(e), _) => {
                        baseline_up = Some(false);
                        errors.push(TargetError::parse("baseline", bsrc.label(), e));
                    }
                }
                mem.baseline = Some(Box::new(c));
            }
            Err(SourceError::NotFound(_)) => mem.baseline = None,
            Err(e) => {
                baseline_up = Some(false);
                errors.push(TargetError::source("baseline", &e));
            }
        }
    }

    let policy = policies.and_then(|_| {
        let current = state.as_ref()?;
        if current.encrypted {
            // Only the envelope is readable: nothing to evaluate.
            mem.policy = None;
            return None;
        }
        let cached = || mem.policy.as_ref().map(|c| c.outcome.clone());
        let Some(due) = due else {
            return cached();
        };
        if !up || state_input.is_none() {
            // The read failed (the state error says why): keep the last outcome.
            return cached();
        }
        let stamp = state_stamp?;
        let built = Built {
            state: state_input,
            drift: drift_input,
            stream: state_stream,
        };
        let before = cached();
        due.complete(&label, stamp, built, &mut mem.policy)
            .or(before)
    });

    Analysis {
        label: label.into(),
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
        policy,
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

    /// A source that counts opens and serves its next document on each one
    /// (as a file rewritten between two reads with an unchanged stamp would).
    struct Counting {
        label: String,
        docs: Vec<String>,
        opens: std::sync::atomic::AtomicUsize,
        stamp: std::sync::Mutex<Option<Stamp>>,
        /// `open` fails (the content cannot be served again).
        gone: bool,
    }

    impl Counting {
        fn new(label: &str, docs: &[String]) -> Self {
            Counting {
                label: label.into(),
                docs: docs.to_vec(),
                opens: Default::default(),
                stamp: std::sync::Mutex::new(Some(Stamp {
                    size: 1,
                    modified: Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1000)),
                    inode: 7,
                })),
                gone: false,
            }
        }
        fn opens(&self) -> usize {
            self.opens.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    impl StateSource for Counting {
        fn label(&self) -> &str {
            &self.label
        }
        fn stamp(&self) -> Result<Stamp, SourceError> {
            (*self.stamp.lock().unwrap()).ok_or_else(|| SourceError::NotFound(self.label.clone()))
        }
        fn open(&self) -> Result<(Box<dyn std::io::Read + Send>, Stamp), SourceError> {
            let stamp = self.stamp()?;
            if self.gone {
                return Err(SourceError::Remote {
                    label: self.label.clone(),
                    reason: "protocol",
                    message: "unchanged, but the earlier copy is gone".into(),
                });
            }
            let n = self.opens.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let doc = self.docs[n.min(self.docs.len() - 1)].clone();
            Ok((Box::new(std::io::Cursor::new(doc.into_bytes())), stamp))
        }
    }

    fn messages(a: &Analysis) -> Vec<String> {
        let mut m: Vec<String> = a
            .policy
            .as_ref()
            .expect("policies evaluated")
            .results
            .iter()
            .flat_map(|r| {
                assert!(r.ok, "{:?}", r.error);
                r.violations.iter().map(|v| v.msg.clone())
            })
            .collect();
        m.sort();
        m
    }

    #[test]
    fn policy_input_is_built_by_the_one_read_of_the_state_and_drift_report() {
        let t = tempfile::tempdir().unwrap();
        let policy = t.path().join("p.rego");
        std::fs::write(&policy, "package p\nimport rego.v1\ndeny contains sprintf(\"serial %d\", [input.serial]) if true\ndeny contains sprintf(\"drift %s\", [c.address]) if { some c in data.drift.resource_drift }\n").unwrap();
        let set = PolicySet::new(
            vec!["p.rego".into()],
            t.path().into(),
            std::time::Duration::from_secs(10),
        );
        let states: Vec<String> = (1..=3)
            .map(|n| format!(r#"{{"version":4,"serial":{n},"lineage":"l","resources":[]}}"#))
            .collect();
        let drifts: Vec<String> = (1..=3)
            .map(|n| format!(r#"{{"format_version":"1.2","resource_drift":[{{"address":"a.d{n}","change":{{"actions":["update"]}}}}]}}"#))
            .collect();
        let (state, drift) = (Counting::new("s", &states), Counting::new("d", &drifts));
        let mut mem = TargetMemory::default();
        let run = |mem: &mut TargetMemory| {
            analyse_with_policies(
                TargetSources {
                    state: &state,
                    drift: Some(&drift),
                    baseline: None,
                },
                mem,
                Some(&set),
            )
        };
        let a = run(&mut mem);
        assert_eq!(
            (state.opens(), drift.opens()),
            (1, 1),
            "each file is read once per collection, policies included"
        );
        // The policies saw what the monitor read (a second read would see serial 2).
        assert_eq!(messages(&a), vec!["drift a.d1", "serial 1"]);
        assert_eq!(a.state.as_ref().unwrap().serial, Some(1));
        // Unchanged stamps: nothing is read, the outcome is reused.
        let b = run(&mut mem);
        assert_eq!((state.opens(), drift.opens()), (1, 1));
        assert!(Arc::ptr_eq(a.policy.as_ref().unwrap(), b.policy.as_ref().unwrap()));
        // A policy change: one read of each file builds the input again.
        std::fs::write(&policy, "package p\nimport rego.v1\nwarn contains sprintf(\"now %d\", [input.serial]) if true\n").unwrap();
        let c = run(&mut mem);
        assert_eq!((state.opens(), drift.opens()), (2, 2));
        assert_eq!(messages(&c), vec!["now 2"]);
        assert_eq!(c.state.as_ref().unwrap().serial, Some(2));
        // The state cannot be read now: the last outcome is kept, nothing opened.
        *state.stamp.lock().unwrap() = None;
        let d = run(&mut mem);
        assert!(d.stale);
        assert!(Arc::ptr_eq(c.policy.as_ref().unwrap(), d.policy.as_ref().unwrap()));
        assert_eq!((state.opens(), drift.opens()), (2, 2));
    }

    #[test]
    fn a_state_over_the_policy_input_budget_fails_its_policies_as_too_large_not_the_process() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("p.rego"), "package p\nimport rego.v1\ndeny contains \"x\" if true\n").unwrap();
        let resources: Vec<String> = (0..200)
            .map(|i| format!(r#"{{"mode":"managed","type":"null_resource","name":"r{i}","instances":[{{"attributes":{{"id":"{i}","pad":"{}"}}}}]}}"#, "x".repeat(100)))
            .collect();
        let big = format!(r#"{{"version":4,"serial":1,"lineage":"l","resources":[{}]}}"#, resources.join(","));
        let run = |limit: u64| {
            let set = PolicySet::new(
                vec!["p.rego".into()],
                t.path().into(),
                std::time::Duration::from_secs(10),
            )
            .with_max_input(limit);
            let src = Counting::new("s", std::slice::from_ref(&big));
            let mut mem = TargetMemory::default();
            let a = analyse_with_policies(
                TargetSources {
                    state: &src,
                    drift: None,
                    baseline: None,
                },
                &mut mem,
                Some(&set),
            );
            // The state itself is read and summarised either way.
            assert!(a.up, "{:?}", a.errors);
            assert_eq!(a.state.as_ref().unwrap().instance_count(), 200);
            a
        };
        let a = run(10_000);
        let p = a.policy.as_ref().expect("an outcome, not silence");
        assert_eq!(p.results.len(), 1);
        let r = &p.results[0];
        assert!(!r.ok);
        assert_eq!(r.reason, Some("too_large"));
        assert!(r.error.as_deref().unwrap().contains("policy_max_input_size"), "{r:?}");
        // Within the budget: evaluated as usual.
        let b = run(big.len() as u64);
        assert_eq!(messages(&b), vec!["x"]);
    }

    #[test]
    fn policy_change_on_a_source_that_cannot_serve_unchanged_content_again_is_no_state_error() {
        let t = tempfile::tempdir().unwrap();
        let policy = t.path().join("p.rego");
        std::fs::write(&policy, "package p\nimport rego.v1\ndeny contains \"x\" if true\n").unwrap();
        let set = PolicySet::new(
            vec!["p.rego".into()],
            t.path().into(),
            std::time::Duration::from_secs(10),
        );
        let mut src = Counting::new("s", &[STATE.to_string()]);
        let mut mem = TargetMemory::default();
        let mut run = |src: &Counting| {
            analyse_with_policies(
                TargetSources {
                    state: src,
                    drift: None,
                    baseline: None,
                },
                &mut mem,
                Some(&set),
            )
        };
        let a = run(&src);
        assert_eq!(messages(&a), vec!["x"]);
        // As a remote state answered "not modified": same stamp, no content.
        src.gone = true;
        std::fs::write(&policy, "package p\nimport rego.v1\ndeny contains \"y\" if true\nwarn contains \"z\" if true\n").unwrap();
        let b = run(&src);
        assert!(b.up && !b.stale && b.errors.is_empty(), "{:?}", b.errors);
        assert!(Arc::ptr_eq(&a.state.unwrap(), b.state.as_ref().unwrap()));
        assert_eq!(messages(&b), vec!["x"], "the last outcome is kept");
    }

    #[test]
    fn policy_input_is_not_built_for_an_encrypted_state_or_without_policies() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("p.rego"), "package p\nimport rego.v1\ndeny contains \"x\" if true\n").unwrap();
        let set = PolicySet::new(
            vec!["p.rego".into()],
            t.path().into(),
            std::time::Duration::from_secs(10),
        );
        let enc = Counting::new("e", &[r#"{"serial": 3, "meta": {}, "encrypted_data": "AAAA", "encryption_version": "v0"}"#.to_string()]);
        let src = || TargetSources {
            state: &enc,
            drift: None,
            baseline: None,
        };
        let a = analyse_with_policies(src(), &mut TargetMemory::default(), Some(&set));
        assert!(a.unchecked() && a.policy.is_none());
        let (st, input) = crate::monitors::terraform::state::parse_state_with_input(enc.docs[0].as_bytes()).unwrap();
        assert!(st.encrypted && input.is_none());
        let plain = Counting::new("p", &[STATE.to_string()]);
        let a = analyse(
            TargetSources {
                state: &plain,
                drift: None,
                baseline: None,
            },
            &mut TargetMemory::default(),
        );
        assert!(a.up && a.policy.is_none());
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
