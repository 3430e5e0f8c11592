//! Where the Terraform monitor's per-target memory goes, by category
//! (issue 21): what the fleet benchmark prints next to its counting
//! allocator's total. Heap bytes as requested from the allocator (not its
//! own per-allocation overhead), each shared part counted once.

use std::cell::RefCell;
use std::mem::size_of;
use std::sync::Arc;

use super::analysis::{Analysis, Changes, TargetMemory};
use super::source::KeptTarget;
use super::state::ParsedState;

/// Bytes by category, in a fixed order; `targets`: how many were counted.
#[derive(Debug, Default, Clone)]
pub struct MemoryBreakdown {
    pub targets: usize,
    pub parts: Vec<(&'static str, usize)>,
}

impl MemoryBreakdown {
    fn add(&mut self, what: &'static str, bytes: usize) {
        match self.parts.iter_mut().find(|(w, _)| *w == what) {
            Some((_, n)) => *n += bytes,
            None => self.parts.push((what, bytes)),
        }
    }

    pub fn total(&self) -> usize {
        self.parts.iter().map(|(_, n)| n).sum()
    }
}

/// Bytes of `v`'s spare capacity plus its length, in elements of `T`.
fn vec_bytes<T>(v: &Vec<T>) -> usize {
    v.capacity() * size_of::<T>()
}

fn opt_string(s: &Option<Box<str>>) -> usize {
    s.as_ref().map_or(0, |s| s.len())
}

/// One parsed state's parts (its `Arc` counted once by the caller).
fn parsed_state(b: &mut MemoryBreakdown, st: &ParsedState) {
    b.add("state: struct (Arc)", 2 * size_of::<usize>() + size_of::<ParsedState>());
    b.add(
        "state: version, lineage",
        opt_string(&st.terraform_version) + opt_string(&st.lineage),
    );
    b.add(
        "state: resource counts",
        vec_bytes(&st.resource_counts)
            + st
                .resource_counts
                .iter()
                .map(|((m, t), _)| m.len() + t.len())
                .sum::<usize>(),
    );
    let (addresses, items, words) = st.instances.heap_parts();
    b.add("state: instance array", items);
    b.add("state: addresses", addresses);
    b.add("state: attribute digests", words);
    b.add("state: path table (share)", st.paths.estimated_bytes());
    b.add(
        "state: deposed, checks",
        vec_bytes(&st.deposed)
            + st.deposed.iter().map(String::capacity).sum::<usize>()
            + vec_bytes(&st.checks)
            + st
                .checks
                .iter()
                .map(|c| c.address.capacity() + c.kind.capacity() + c.status.capacity())
                .sum::<usize>(),
    );
}

fn changes(c: &Option<Box<Changes>>) -> usize {
    c.as_ref().map_or(0, |c| {
        size_of::<Changes>()
            + vec_bytes(&c.added)
            + vec_bytes(&c.removed)
            + vec_bytes(&c.changed)
            + c.added.iter().chain(&c.removed).map(String::capacity).sum::<usize>()
            + c.changed
                .iter()
                .map(|(a, p)| a.capacity() + vec_bytes(p) + p.iter().map(String::capacity).sum::<usize>())
                .sum::<usize>()
    })
}

fn analysis(b: &mut MemoryBreakdown, a: &Analysis) {
    b.add("analysis: struct (Arc)", 2 * size_of::<usize>() + size_of::<Analysis>());
    b.add("analysis: label (Arc)", 2 * size_of::<usize>() + a.label.len());
    b.add(
        "analysis: errors, changes, drift run",
        vec_bytes(&a.errors)
            + a.errors.iter().map(|e| e.message.capacity()).sum::<usize>()
            + changes(&a.unapproved)
            + changes(&a.changed_since_last)
            + a.drift_run.as_ref().map_or(0, |r| std::mem::size_of_val(&**r)),
    );
}

/// The breakdown of the local targets (the target map, each target's memory
/// and last analysis) and of the discovered targets' list.
pub(super) fn breakdown(
    local: &crate::core::targets::Targets<TargetMemory, Arc<Analysis>>,
    discovered: &[KeptTarget],
) -> MemoryBreakdown {
    let acc = RefCell::new(MemoryBreakdown::default());
    let total = local.retained_bytes(|mem, last| {
        let mut b = acc.borrow_mut();
        b.targets += 1;
        let mut seen_state = None;
        if let Some(m) = mem {
            if let Some(c) = &m.state {
                parsed_state(&mut b, &c.value);
                seen_state = Some(Arc::as_ptr(&c.value));
            }
            let rare = m.drift.as_ref().map_or(0, |_| size_of::<super::analysis::CachedPlan>())
                + m.baseline.as_ref().map_or(0, |_| size_of::<super::analysis::CachedBaseline>())
                + m.policy.as_ref().map_or(0, |_| size_of::<super::policy::PolicyCache>());
            b.add("drift report, baseline, policy (boxed)", rare);
        }
        if let Some(a) = last {
            analysis(&mut b, a);
            if let Some(st) = a.state.as_ref().filter(|s| Some(Arc::as_ptr(s)) != seen_state) {
                parsed_state(&mut b, st);
            }
        }
        0
    });
    // What `retained_bytes` counted itself: the map's slots and its keys.
    let mut b = acc.into_inner();
    b.parts.insert(0, ("target map: slots and keys", total));
    b.add(
        "discovered targets: labels, paths",
        std::mem::size_of_val(discovered)
            + discovered.iter().map(KeptTarget::heap_bytes).sum::<usize>(),
    );
    b
}
