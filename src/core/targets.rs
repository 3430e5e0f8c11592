//! Per-target freshness: every target of a monitor has its own last values,
//! read time, retry timer and read deadline.
//!
//! A monitor's collection hands its current targets to [`Targets::collect`].
//! A target is read again only when it is due: `check_interval` after a
//! healthy read, `retry_interval` after a failing one, so one failing target
//! never makes the healthy ones re-read sooner. Reads run as blocking tasks,
//! at most [`MAX_CONCURRENT_READS`] at once across the process. A read past
//! its deadline is abandoned: the target reports a timeout (built by the
//! monitor from its last values, which stay, marked stale) and is not read
//! again until the hung read returns. A permanently hung mount therefore
//! holds at most one thread per target, and never more threads than the
//! read bound; abandoned reads are counted ([`abandoned_reads`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::core::snapshot::{MetricDef, SnapshotBuilder};

/// Blocking reads running at once across every monitor.
pub const MAX_CONCURRENT_READS: usize = 16;

pub const LAST_READ: MetricDef = MetricDef::gauge(
    "homelab_monitor_target_last_read_timestamp_seconds",
    "When this target was last read (successfully or not); a target that is behind its check_interval shows here.",
);
pub const TARGET_STALE: MetricDef = MetricDef::gauge(
    "homelab_monitor_target_stale",
    "1 if the values served for this target come from an earlier read because the last one failed or timed out.",
);
pub const ABANDONED: MetricDef = MetricDef::counter(
    "homelab_monitor_abandoned_reads",
    "Target reads abandoned after their deadline (a hung mount, a peer that never answers).",
);
pub const HUNG: MetricDef = MetricDef::gauge(
    "homelab_monitor_reads_hung",
    "Abandoned target reads that have still not returned (each holds one blocking thread; bounded by the number of targets and the read pool).",
);

static ABANDONED_TOTAL: AtomicU64 = AtomicU64::new(0);
static HUNG_NOW: AtomicU64 = AtomicU64::new(0);

fn permits() -> Arc<Semaphore> {
    static P: OnceLock<Arc<Semaphore>> = OnceLock::new();
    P.get_or_init(|| Arc::new(Semaphore::new(MAX_CONCURRENT_READS)))
        .clone()
}

/// Reads abandoned since start, and those still hung.
pub fn abandoned_reads() -> (u64, u64) {
    (
        ABANDONED_TOTAL.load(Ordering::Relaxed),
        HUNG_NOW.load(Ordering::Relaxed),
    )
}

/// Process-wide read metrics (for the registry's self metrics).
pub fn self_metrics(b: &mut SnapshotBuilder) {
    let (total, hung) = abandoned_reads();
    b.gauge(&ABANDONED, &[], total as f64);
    b.gauge(&HUNG, &[], hung as f64);
}

/// When targets are read again, how long one read may take, and how long
/// one collection waits for reads before serving what it has.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub check_interval: Duration,
    pub retry_interval: Duration,
    /// A read past this is abandoned and reported as a timeout.
    pub deadline: Duration,
    /// A collection serves what it has after this: reads still running go
    /// on (up to their deadline) and land in a later collection, so one slow
    /// target never delays the others' values.
    pub wait: Duration,
}

/// How long a collection waits for slow reads by default.
pub const PATIENCE: Duration = Duration::from_secs(2);

impl Schedule {
    /// A monitor's schedule: reads may take 90% of its `timeout`; a
    /// collection waits at most [`PATIENCE`] for them.
    pub fn for_monitor(
        check_interval: Duration,
        retry_interval: Duration,
        timeout: Duration,
    ) -> Self {
        let deadline = timeout.mul_f64(0.9);
        Schedule {
            check_interval,
            retry_interval,
            deadline,
            wait: PATIENCE.min(deadline),
        }
    }

    /// Wait for every read (up to its deadline): one-shot commands.
    pub fn complete(self) -> Self {
        Schedule {
            wait: self.deadline,
            ..self
        }
    }
}

/// What a monitor gets for one target.
#[derive(Debug, Clone)]
pub struct Read<V> {
    pub value: V,
    /// When the read that produced `value` started (injected clock).
    pub read_at: SystemTime,
    /// `value` comes from this collection's read (false: served from memory
    /// because the target was not due, or built by `on_timeout`).
    pub fresh: bool,
    /// A read of this target is still running (it lands in a later collection).
    pub pending: bool,
    /// `value` is [`TargetValue::pending`]: the target has never been read yet.
    pub placeholder: bool,
}

struct Done<M, V> {
    memory: M,
    value: V,
}

struct Slot<M, V> {
    memory: Option<M>,
    last: Option<(V, SystemTime)>,
    due: Option<Instant>,
    /// A read still running (not yet taken by a collection). Boxed: a
    /// fleet's slots hold none most of the time (48 bytes a slot otherwise).
    running: Option<Box<Running<M, V>>>,
}

struct Running<M, V> {
    started: Instant,
    read_at: SystemTime,
    handle: ReadTask<M, V>,
    state: Arc<AtomicU8>,
}

impl<M, V> Default for Slot<M, V> {
    fn default() -> Self {
        Self {
            memory: None,
            last: None,
            due: None,
            running: None,
        }
    }
}

/// The targets of one monitor.
pub struct Targets<M, V> {
    slots: Mutex<HashMap<String, Slot<M, V>>>,
}

impl<M, V> Default for Targets<M, V> {
    fn default() -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
        }
    }
}

/// What the monitor tells [`Targets::collect`] about its values.
pub trait TargetValue: Clone + Send + 'static {
    /// A healthy value is re-read after `check_interval`, others after `retry_interval`.
    fn healthy(&self) -> bool;
    /// The value to serve when a read did not finish within `waited`: the
    /// last values (if any) marked stale, and a `timeout` error.
    fn timed_out(last: Option<&Self>, label: &str, waited: Duration) -> Self;
    /// What to serve for a target whose first read is still running.
    fn pending(label: &str) -> Self;
}

type ReadTask<M, V> = JoinHandle<Option<Done<M, V>>>;

enum Plan<M, V> {
    Serve(Read<V>),
    /// Abandoned earlier and still not back.
    Hung(Duration),
    /// A read in progress: started now or by an earlier collection.
    Wait(Running<M, V>),
}

enum Waited<M, V> {
    Finished(Option<Done<M, V>>),
    Abandoned,
    StillRunning,
}

const RUNNING: u8 = 0;
const DONE: u8 = 1;
const ABANDONED_STATE: u8 = 2;

impl<M, V> Targets<M, V>
where
    M: Default + Send + 'static,
    V: TargetValue,
{
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot<M, V>>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Estimated bytes kept for the targets: each slot and label, plus `f`
    /// of its memory (absent while a read runs) and last value.
    pub fn retained_bytes(&self, f: impl Fn(Option<&M>, Option<&V>) -> usize) -> usize {
        let slots = self.lock();
        slots.capacity() * std::mem::size_of::<(String, Slot<M, V>)>()
            + slots
                .iter()
                .map(|(label, s)| {
                    label.capacity() + f(s.memory.as_ref(), s.last.as_ref().map(|(v, _)| v))
                })
                .sum::<usize>()
    }

    /// Values of `items` (label, what to read) in their order: read now when
    /// due, else served from memory. Targets no longer listed are forgotten.
    /// `read` is blocking I/O (run on the bounded read pool); it gets the
    /// target's memory each time.
    pub async fn collect<T, F>(
        &self,
        schedule: Schedule,
        now: SystemTime,
        items: Vec<(String, T)>,
        read: F,
    ) -> Vec<Read<V>>
    where
        T: Send + 'static,
        F: Fn(T, &mut M) -> V + Send + Sync + 'static,
    {
        let read = Arc::new(read);
        self.collect_with(schedule, now, items, move |item, mut memory: M| {
            let read = read.clone();
            async move {
                let permit = permits().acquire_owned().await.ok();
                tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    let value = read(item, &mut memory);
                    (value, memory)
                })
                .await
                .ok()
            }
        })
        .await
    }

    /// [`Targets::collect`] for async reads (network probes): each read is
    /// a future with its own timeouts; `read` gets the target's memory and
    /// gives it back with the value.
    pub async fn collect_async<T, F, Fut>(
        &self,
        schedule: Schedule,
        now: SystemTime,
        items: Vec<(String, T)>,
        read: F,
    ) -> Vec<Read<V>>
    where
        T: Send + 'static,
        F: Fn(T, M) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = (V, M)> + Send + 'static,
    {
        let items = items.into_iter().map(|(l, t)| (l, t, schedule)).collect();
        self.collect_async_each(schedule.wait, now, items, read)
            .await
    }

    /// [`Targets::collect_async`] where each target has its own schedule
    /// (health checks: each its interval and timeout); the collection waits
    /// at most `wait` for reads still running.
    pub async fn collect_async_each<T, F, Fut>(
        &self,
        wait: Duration,
        now: SystemTime,
        items: Vec<(String, T, Schedule)>,
        read: F,
    ) -> Vec<Read<V>>
    where
        T: Send + 'static,
        F: Fn(T, M) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = (V, M)> + Send + 'static,
    {
        self.collect_each(wait, now, items, move |item, memory| {
            let fut = read(item, memory);
            async move { Some(fut.await) }
        })
        .await
    }

    async fn collect_with<T, F, Fut>(
        &self,
        schedule: Schedule,
        now: SystemTime,
        items: Vec<(String, T)>,
        start: F,
    ) -> Vec<Read<V>>
    where
        T: Send + 'static,
        F: Fn(T, M) -> Fut,
        Fut: std::future::Future<Output = Option<(V, M)>> + Send + 'static,
    {
        let items = items.into_iter().map(|(l, t)| (l, t, schedule)).collect();
        self.collect_each(schedule.wait, now, items, start).await
    }

    async fn collect_each<T, F, Fut>(
        &self,
        wait: Duration,
        now: SystemTime,
        items: Vec<(String, T, Schedule)>,
        start: F,
    ) -> Vec<Read<V>>
    where
        T: Send + 'static,
        F: Fn(T, M) -> Fut,
        Fut: std::future::Future<Output = Option<(V, M)>> + Send + 'static,
    {
        let began = Instant::now();
        let mut plans: Vec<(String, Schedule, Plan<M, V>)> = Vec::with_capacity(items.len());
        {
            let mut slots = self.lock();
            let keep: std::collections::HashSet<&str> =
                items.iter().map(|(l, _, _)| l.as_str()).collect();
            slots.retain(|label, _| keep.contains(label.as_str()));
            // A fleet that shrank gives its slots back (a map never shrinks by itself).
            if slots.capacity() > 2 * keep.len().max(16) {
                slots.shrink_to(keep.len());
            }
            for (label, item, schedule) in items {
                let slot = slots.entry(label.clone()).or_default();
                if let Some(run) = slot.running.take().map(|r| *r) {
                    let abandoned = run.state.load(Ordering::Acquire) == ABANDONED_STATE;
                    if !abandoned {
                        plans.push((label, schedule, Plan::Wait(run)));
                        continue;
                    }
                    if !run.handle.is_finished() {
                        plans.push((label, schedule, Plan::Hung(run.started.elapsed())));
                        slot.running = Some(Box::new(run));
                        continue;
                    }
                    // The hung read came back: keep its memory, read again now.
                    if let Some(Ok(Some(done))) = futures::FutureExt::now_or_never(run.handle) {
                        slot.memory = Some(done.memory);
                    }
                    slot.due = None;
                }
                let due = slot.due.is_none_or(|d| began >= d);
                if let (false, Some((v, at))) = (due, &slot.last) {
                    let r = Read {
                        value: v.clone(),
                        read_at: *at,
                        fresh: false,
                        pending: false,
                        placeholder: false,
                    };
                    plans.push((label, schedule, Plan::Serve(r)));
                    continue;
                }
                let memory = slot.memory.take().unwrap_or_default();
                let fut = start(item, memory);
                let state = Arc::new(AtomicU8::new(RUNNING));
                let st = state.clone();
                let handle = tokio::spawn(async move {
                    let done = fut.await.map(|(value, memory)| Done { memory, value });
                    if st
                        .compare_exchange(RUNNING, DONE, Ordering::AcqRel, Ordering::Acquire)
                        .is_err()
                    {
                        // Abandoned earlier: it no longer holds a thread.
                        HUNG_NOW.fetch_sub(1, Ordering::Relaxed);
                    }
                    done
                });
                let run = Running {
                    started: Instant::now(),
                    read_at: now,
                    handle,
                    state,
                };
                plans.push((label, schedule, Plan::Wait(run)));
            }
        }
        // Wait for the reads in progress, together: each until this
        // collection's patience runs out or its own deadline passes.
        let patience = began + wait;
        let waits = plans.iter_mut().map(|(_, schedule, plan)| async move {
            let Plan::Wait(run) = plan else {
                return None;
            };
            let deadline = run.started + schedule.deadline;
            let until = patience.min(deadline);
            if let Ok(joined) = tokio::time::timeout_at(until.into(), &mut run.handle).await {
                return Some(Waited::Finished(joined.ok().flatten()));
            }
            if Instant::now() < deadline {
                return Some(Waited::StillRunning);
            }
            if run
                .state
                .compare_exchange(
                    RUNNING,
                    ABANDONED_STATE,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
            {
                Some(Waited::Abandoned)
            } else {
                // It finished just now: take its result.
                Some(Waited::Finished((&mut run.handle).await.ok().flatten()))
            }
        });
        let results: Vec<Option<Waited<M, V>>> = futures::future::join_all(waits).await;
        let mut slots = self.lock();
        let mut out = Vec::with_capacity(plans.len());
        for ((label, schedule, plan), res) in plans.into_iter().zip(results) {
            let slot = slots.entry(label.clone()).or_default();
            let last = slot.last.as_ref().map(|(v, _)| v.clone());
            let last_at = slot.last.as_ref().map(|(_, t)| *t);
            let r = match (plan, res) {
                (Plan::Serve(r), _) => r,
                (Plan::Hung(waited), _) => Read {
                    value: V::timed_out(last.as_ref(), &label, waited),
                    read_at: last_at.unwrap_or(now),
                    fresh: false,
                    pending: false,
                    placeholder: false,
                },
                (Plan::Wait(run), Some(Waited::Finished(Some(done)))) => {
                    slot.memory = Some(done.memory);
                    let every = if done.value.healthy() {
                        schedule.check_interval
                    } else {
                        schedule.retry_interval.min(schedule.check_interval)
                    };
                    slot.due = Some(run.started + every);
                    slot.last = Some((done.value.clone(), run.read_at));
                    Read {
                        value: done.value,
                        read_at: run.read_at,
                        fresh: true,
                        pending: false,
                        placeholder: false,
                    }
                }
                (Plan::Wait(run), Some(Waited::Abandoned)) => {
                    ABANDONED_TOTAL.fetch_add(1, Ordering::Relaxed);
                    HUNG_NOW.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(target_label = %label.escape_debug(), deadline = ?schedule.deadline, "read did not finish within its deadline; abandoned and reported as timeout");
                    slot.running = Some(Box::new(run));
                    Read {
                        value: V::timed_out(last.as_ref(), &label, schedule.deadline),
                        read_at: last_at.unwrap_or(now),
                        fresh: false,
                        pending: false,
                        placeholder: false,
                    }
                }
                (Plan::Wait(run), Some(Waited::StillRunning)) => {
                    let read_at = last_at.unwrap_or(run.read_at);
                    slot.running = Some(Box::new(run));
                    Read {
                        placeholder: last.is_none(),
                        value: last.unwrap_or_else(|| V::pending(&label)),
                        read_at,
                        fresh: false,
                        pending: true,
                    }
                }
                (Plan::Wait(run), _) => {
                    // The read panicked: its memory is lost; serve the last
                    // values as after a timeout, and retry soon.
                    slot.due = Some(run.started + schedule.retry_interval);
                    tracing::error!(target_label = %label.escape_debug(), "target read panicked");
                    Read {
                        value: V::timed_out(last.as_ref(), &label, run.started.elapsed()),
                        read_at: now,
                        fresh: false,
                        pending: false,
                        placeholder: false,
                    }
                }
            };
            out.push(r);
        }
        out
    }
}

/// Emit `homelab_monitor_target_last_read_timestamp_seconds` and
/// `homelab_monitor_target_stale` for one target of a monitor.
pub fn emit_freshness(
    b: &mut SnapshotBuilder,
    monitor: &str,
    target: &str,
    read_at: SystemTime,
    stale: bool,
) {
    let l = [("monitor", monitor), ("target", target)];
    b.gauge(&LAST_READ, &l, crate::core::clock::unix_seconds(read_at));
    b.gauge(&TARGET_STALE, &l, if stale { 1.0 } else { 0.0 });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[derive(Debug, Clone, PartialEq)]
    enum V {
        Good(usize),
        Bad,
        TimedOut(Option<Box<V>>),
        Pending,
    }

    impl TargetValue for V {
        fn healthy(&self) -> bool {
            matches!(self, V::Good(_))
        }
        fn timed_out(last: Option<&Self>, _label: &str, _waited: Duration) -> Self {
            V::TimedOut(last.cloned().map(Box::new))
        }
        fn pending(_label: &str) -> Self {
            V::Pending
        }
    }

    fn schedule(deadline: Duration) -> Schedule {
        Schedule {
            check_interval: Duration::from_secs(3600),
            retry_interval: Duration::ZERO,
            deadline,
            wait: deadline,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_read_never_delays_the_others_and_lands_later() {
        let targets: Targets<(), V> = Targets::new();
        let mut sched = schedule(Duration::from_secs(30));
        sched.wait = Duration::from_millis(100);
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let items = || vec![("slow".to_string(), true), ("fast".to_string(), false)];
        let g = gate.clone();
        let read = move |slow: bool, _: &mut ()| {
            if slow {
                let rx = g.lock().unwrap_or_else(|e| e.into_inner());
                let _ = rx.recv();
                V::Good(1)
            } else {
                V::Good(2)
            }
        };
        let out = targets
            .collect(sched, SystemTime::now(), items(), read.clone())
            .await;
        assert_eq!(out[0].value, V::Pending);
        assert!(out[0].pending && out[0].placeholder);
        assert_eq!(out[1].value, V::Good(2), "the fast target is not held up");
        // Still running: pending again, and not started twice.
        let out = targets
            .collect(sched, SystemTime::now(), items(), read.clone())
            .await;
        assert!(out[0].pending);
        let _ = release.send(());
        let mut landed = None;
        for _ in 0..100 {
            let out = targets
                .collect(sched, SystemTime::now(), items(), read.clone())
                .await;
            if !out[0].pending {
                landed = Some(out[0].clone());
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let landed = landed.expect("the slow read lands in a later collection");
        assert_eq!(landed.value, V::Good(1));
        assert!(landed.fresh && !landed.placeholder);
    }

    #[tokio::test]
    async fn a_failing_target_is_retried_alone() {
        let targets: Targets<(), V> = Targets::new();
        let reads: Arc<Vec<AtomicUsize>> = Arc::new((0..11).map(|_| AtomicUsize::new(0)).collect());
        for _ in 0..5 {
            let items = (0..11).map(|i| (format!("t{i}"), i)).collect();
            let r = reads.clone();
            let out = targets
                .collect(
                    schedule(Duration::from_secs(30)),
                    SystemTime::now(),
                    items,
                    move |i, _| {
                        let n = r[i].fetch_add(1, Ordering::SeqCst) + 1;
                        if i == 10 {
                            V::Bad
                        } else {
                            V::Good(n)
                        }
                    },
                )
                .await;
            assert_eq!(out.len(), 11);
            assert_eq!(out[10].value, V::Bad);
            assert_eq!(out[3].value, V::Good(1), "healthy values come from memory");
        }
        for i in 0..10 {
            assert_eq!(
                reads[i].load(Ordering::SeqCst),
                1,
                "healthy target {i} read once"
            );
        }
        assert_eq!(
            reads[10].load(Ordering::SeqCst),
            5,
            "the failing target at every retry"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hung_read_is_abandoned_once_and_never_blocks_the_others() {
        let targets: Targets<(), V> = Targets::new();
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let hung_reads = Arc::new(AtomicUsize::new(0));
        let mut sched = schedule(Duration::from_millis(200));
        sched.check_interval = Duration::ZERO;
        for round in 0..100 {
            let items = vec![("slow".to_string(), true), ("fast".to_string(), false)];
            let (g, h) = (gate.clone(), hung_reads.clone());
            let out = targets
                .collect(sched, SystemTime::now(), items, move |slow, _| {
                    if slow {
                        h.fetch_add(1, Ordering::SeqCst);
                        // Blocks like a read on a hung mount until released.
                        let rx = g.lock().unwrap_or_else(|e| e.into_inner());
                        let _ = rx.recv();
                        V::Good(0)
                    } else {
                        V::Good(round)
                    }
                })
                .await;
            assert!(
                matches!(out[0].value, V::TimedOut(None)),
                "round {round}: {:?}",
                out[0].value
            );
            assert_eq!(
                out[1].value,
                V::Good(round),
                "the fast target is read every round"
            );
        }
        assert_eq!(
            hung_reads.load(Ordering::SeqCst),
            1,
            "a hung target is not read again while its read is still hung"
        );
        let (_, hung) = abandoned_reads();
        assert!(hung >= 1);
        // The mount comes back: the next collection reads the target again.
        let _ = release.send(());
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let done = targets
                .lock()
                .get("slow")
                .and_then(|s| s.running.as_ref())
                .is_none_or(|r| r.handle.is_finished());
            if done {
                break;
            }
        }
        let g = gate.clone();
        let h = hung_reads.clone();
        let out = targets
            .collect(
                sched,
                SystemTime::now(),
                vec![("slow".to_string(), ())],
                move |_, _| {
                    h.fetch_add(1, Ordering::SeqCst);
                    drop(g.lock());
                    V::Good(7)
                },
            )
            .await;
        assert_eq!(out[0].value, V::Good(7));
        assert!(out[0].fresh);
    }

    #[tokio::test]
    async fn memory_travels_with_the_target_and_gone_targets_are_forgotten() {
        let targets: Targets<usize, V> = Targets::new();
        let mut sched = schedule(Duration::from_secs(30));
        sched.check_interval = Duration::ZERO;
        for expect in 1..=3 {
            let out = targets
                .collect(
                    sched,
                    SystemTime::now(),
                    vec![("a".to_string(), ())],
                    |_, mem: &mut usize| {
                        *mem += 1;
                        V::Good(*mem)
                    },
                )
                .await;
            assert_eq!(out[0].value, V::Good(expect));
        }
        targets
            .collect(
                sched,
                SystemTime::now(),
                Vec::<(String, ())>::new(),
                |_, _: &mut usize| V::Bad,
            )
            .await;
        assert!(targets.lock().is_empty());
    }
}
