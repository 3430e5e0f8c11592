//! The registry: every enabled monitor behind a single-flight TTL cache.
//!
//! Concurrent scrapes inside one `check_interval` window cause at most one
//! collection per monitor. A collection that takes longer than the monitor's
//! timeout does not hold the scrape: the last good snapshot is served, marked
//! stale, and the collection's result lands in the cache when it finishes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use futures::future::{BoxFuture, FutureExt, Shared};

use crate::clock::{age, SharedClock};
use crate::monitor::{CollectContext, Monitor, MonitorError};
use crate::snapshot::{MetricDef, Snapshot, SnapshotBuilder};

pub const BUILD_INFO: MetricDef = MetricDef::gauge(
    "homelab_monitor_build_info",
    "Build information of the running homelab-monitor; always 1.",
);
pub const COLLECTOR_SUCCESS: MetricDef = MetricDef::gauge(
    "homelab_monitor_collector_success",
    "1 if the monitor's last collection succeeded, 0 if it failed or timed out.",
);
pub const COLLECTOR_DURATION: MetricDef = MetricDef::gauge(
    "homelab_monitor_collector_duration_seconds",
    "Wall time of the monitor's last collection.",
);
pub const CACHE_AGE: MetricDef = MetricDef::gauge(
    "homelab_monitor_cache_age_seconds",
    "Age of the values served for this monitor. Values are cached for the monitor's check_interval; scrapes in between are answered from the cache.",
);
pub const COLLECTOR_STALE: MetricDef = MetricDef::gauge(
    "homelab_monitor_collector_stale",
    "1 if the values served for this monitor come from an earlier collection because the last one failed or is still running.",
);
pub const COLLECTIONS: MetricDef = MetricDef::counter(
    "homelab_monitor_collections",
    "Collections run per monitor since start (each re-reads that monitor's targets).",
);
pub const TARGETS_FAILING: MetricDef = MetricDef::gauge(
    "homelab_monitor_targets_failing",
    "Targets of this monitor whose last read failed.",
);

/// The result of one collection attempt as served to scrapes.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub monitor: &'static str,
    /// The data to serve: from this collection, or the last good one when it failed.
    pub snapshot: Arc<Snapshot>,
    /// The last collection attempt succeeded.
    pub success: bool,
    /// `snapshot` comes from an earlier collection than the last attempt.
    pub stale: bool,
    /// Wall time of the last attempt.
    pub duration: Duration,
    /// When the served data was collected (injected clock); `None` before any success.
    pub data_time: Option<SystemTime>,
    pub error: Option<String>,
}

type SharedOutcome = Shared<BoxFuture<'static, Arc<Outcome>>>;

#[derive(Default)]
struct CacheState {
    last: Option<Arc<Outcome>>,
    fresh_until: Option<Instant>,
    inflight: Option<(Instant, SharedOutcome)>,
}

/// One monitor and its cache.
pub struct Entry {
    monitor: Arc<dyn Monitor>,
    state: Mutex<CacheState>,
    collections: AtomicU64,
}

impl Entry {
    fn lock(&self) -> MutexGuard<'_, CacheState> {
        // A poisoned lock only means a panic elsewhere while holding it; the
        // cache state is still consistent (plain assignments), so keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn monitor(&self) -> &Arc<dyn Monitor> {
        &self.monitor
    }

    pub fn collections(&self) -> u64 {
        self.collections.load(Ordering::Relaxed)
    }

    /// Serve from cache, join the collection in flight, or start one.
    async fn get(self: &Arc<Self>, clock: &SharedClock) -> Arc<Outcome> {
        let timeout = self.monitor.timeout();
        let (started, fut) = {
            let mut st = self.lock();
            if let (Some(last), Some(until)) = (&st.last, st.fresh_until) {
                if Instant::now() < until {
                    return last.clone();
                }
            }
            match &st.inflight {
                Some((started, f)) => (*started, f.clone()),
                None => {
                    let f = self.clone().start(clock.clone());
                    let started = Instant::now();
                    st.inflight = Some((started, f.clone()));
                    (started, f)
                }
            }
        };
        let wait = timeout.saturating_sub(started.elapsed());
        match tokio::time::timeout(wait, fut).await {
            Ok(outcome) => outcome,
            Err(_) => {
                let err = MonitorError::Timeout(timeout);
                tracing::warn!(monitor = self.monitor.name(), error = %err, "serving stale values");
                let st = self.lock();
                Arc::new(stale_outcome(
                    self.monitor.name(),
                    st.last.as_deref(),
                    started.elapsed(),
                    err.to_string(),
                ))
            }
        }
    }

    fn start(self: Arc<Self>, clock: SharedClock) -> SharedOutcome {
        let entry = self;
        let task = tokio::spawn(async move {
            let began = Instant::now();
            let now = clock.now();
            let monitor = entry.monitor.clone();
            let name = monitor.name();
            entry.collections.fetch_add(1, Ordering::Relaxed);
            // The collection runs in its own task so that a panic in a monitor
            // is caught here and becomes an error, never a dead registry.
            let result = tokio::spawn(async move { monitor.collect(CollectContext { now }).await })
                .await
                .unwrap_or_else(|e| Err(MonitorError::Panicked(e.to_string())));
            let duration = began.elapsed();
            let mut st = entry.lock();
            let outcome = match result {
                Ok(snapshot) => {
                    let failing = snapshot.failed_targets();
                    Outcome {
                        monitor: name,
                        snapshot: Arc::new(snapshot),
                        success: true,
                        stale: false,
                        duration,
                        data_time: Some(now),
                        error: (failing > 0).then(|| format!("{failing} target(s) failing")),
                    }
                }
                Err(e) => {
                    tracing::warn!(monitor = name, error = %e, reason = e.metric_label(), "collection failed; serving the last good values");
                    stale_outcome(name, st.last.as_deref(), duration, e.to_string())
                }
            };
            let healthy = outcome.success && outcome.snapshot.failed_targets() == 0;
            let ttl = if healthy {
                entry.monitor.check_interval()
            } else {
                // A retry never waits longer than a normal re-check.
                entry
                    .monitor
                    .retry_interval()
                    .min(entry.monitor.check_interval())
            };
            let outcome = Arc::new(outcome);
            st.last = Some(outcome.clone());
            st.fresh_until = Some(Instant::now() + ttl);
            st.inflight = None;
            outcome
        });
        async move {
            // The outer task holds no monitor code, so it cannot panic; map the
            // impossible case to an empty failed outcome rather than unwrap.
            task.await.unwrap_or_else(|e| {
                Arc::new(stale_outcome(
                    "unknown",
                    None,
                    Duration::ZERO,
                    e.to_string(),
                ))
            })
        }
        .boxed()
        .shared()
    }
}

fn stale_outcome(
    monitor: &'static str,
    last: Option<&Outcome>,
    duration: Duration,
    error: String,
) -> Outcome {
    Outcome {
        monitor,
        snapshot: last.map(|l| l.snapshot.clone()).unwrap_or_default(),
        success: false,
        stale: last.is_some_and(|l| l.data_time.is_some()),
        duration,
        data_time: last.and_then(|l| l.data_time),
        error: Some(error),
    }
}

type EncodedCache = Vec<(crate::encoder::Format, Vec<Arc<Snapshot>>, Arc<String>)>;

/// All enabled monitors.
pub struct Registry {
    entries: Vec<Arc<Entry>>,
    clock: SharedClock,
    ready: AtomicBool,
    /// Encoded monitors' part per format, with the snapshots it was made from
    /// (held, so their identity cannot be reused while the entry exists).
    encoded: Mutex<EncodedCache>,
}

impl Registry {
    pub fn new(monitors: Vec<Arc<dyn Monitor>>, clock: SharedClock) -> Self {
        let entries = monitors
            .into_iter()
            .map(|monitor| {
                Arc::new(Entry {
                    monitor,
                    state: Mutex::new(CacheState::default()),
                    collections: AtomicU64::new(0),
                })
            })
            .collect();
        Self {
            entries,
            clock,
            ready: AtomicBool::new(false),
            encoded: Mutex::new(Vec::new()),
        }
    }

    pub fn entries(&self) -> &[Arc<Entry>] {
        &self.entries
    }

    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// True once every monitor has finished one collection.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Collect (or serve from cache) every monitor concurrently.
    pub async fn gather(&self) -> Vec<Arc<Outcome>> {
        let futs = self.entries.iter().map(|e| e.get(&self.clock));
        let outcomes = futures::future::join_all(futs).await;
        if !self.ready.load(Ordering::Relaxed)
            && outcomes
                .iter()
                .all(|o| o.data_time.is_some() || o.error.is_some())
        {
            self.ready.store(true, Ordering::Relaxed);
        }
        outcomes
    }

    /// Self metrics for `outcomes`, using the injected clock for ages.
    pub fn self_metrics(&self, outcomes: &[Arc<Outcome>]) -> Snapshot {
        let now = self.clock.now();
        let mut b = SnapshotBuilder::new();
        b.gauge(&BUILD_INFO, &[("version", crate::VERSION)], 1.0);
        for (entry, o) in self.entries.iter().zip(outcomes) {
            let m = [("monitor", o.monitor)];
            b.gauge(&COLLECTOR_SUCCESS, &m, if o.success { 1.0 } else { 0.0 });
            b.gauge(&COLLECTOR_DURATION, &m, o.duration.as_secs_f64());
            if let Some(t) = o.data_time {
                b.gauge(&CACHE_AGE, &m, age(now, t).as_secs_f64());
            }
            b.gauge(&COLLECTOR_STALE, &m, if o.stale { 1.0 } else { 0.0 });
            b.gauge(&TARGETS_FAILING, &m, o.snapshot.failed_targets() as f64);
            b.gauge(&COLLECTIONS, &m, entry.collections() as f64);
        }
        b.build()
    }

    /// Gather and encode everything for one `/metrics` response.
    ///
    /// The monitors' part is encoded once per set of snapshots and format (it
    /// only changes when a collection lands); the small self-metrics part
    /// (ages change every second) is encoded per scrape.
    pub async fn scrape(&self, format: crate::encoder::Format) -> Result<String, std::fmt::Error> {
        use crate::encoder::{encode_part, finish};
        let outcomes = self.gather().await;
        let snaps: Vec<Arc<Snapshot>> = outcomes.iter().map(|o| o.snapshot.clone()).collect();
        let same = |k: &[Arc<Snapshot>]| {
            k.len() == snaps.len() && k.iter().zip(&snaps).all(|(a, b)| Arc::ptr_eq(a, b))
        };
        let cached = {
            let c = self.encoded.lock().unwrap_or_else(|e| e.into_inner());
            c.iter()
                .find(|(f, k, _)| *f == format && same(k))
                .map(|(_, _, body)| body.clone())
        };
        let monitors = match cached {
            Some(body) => body,
            None => {
                let body = Arc::new(encode_part(snaps.clone(), format)?);
                let mut c = self.encoded.lock().unwrap_or_else(|e| e.into_inner());
                c.retain(|(f, _, _)| *f != format);
                c.push((format, snaps.clone(), body.clone()));
                body
            }
        };
        let selfm = encode_part(vec![Arc::new(self.self_metrics(&outcomes))], format)?;
        let mut out = String::with_capacity(monitors.len() + selfm.len() + 8);
        out.push_str(&monitors);
        out.push_str(&selfm);
        finish(&mut out, format)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use async_trait::async_trait;
    use std::sync::atomic::AtomicUsize;

    const V: MetricDef = MetricDef::gauge("t_value", "T.");

    struct Counting {
        calls: Arc<AtomicUsize>,
        delay: Duration,
        fail_after: Option<usize>,
        ttl: Duration,
    }

    #[async_trait]
    impl Monitor for Counting {
        fn name(&self) -> &'static str {
            "counting"
        }
        fn check_interval(&self) -> Duration {
            self.ttl
        }
        fn retry_interval(&self) -> Duration {
            Duration::ZERO
        }
        fn timeout(&self) -> Duration {
            Duration::from_millis(500)
        }
        fn describe(&self) -> String {
            "test".into()
        }
        async fn collect(&self, _ctx: CollectContext) -> Result<Snapshot, MonitorError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(self.delay).await;
            if self.fail_after.is_some_and(|f| n > f) {
                return Err(MonitorError::Failed("broken".into()));
            }
            let mut b = SnapshotBuilder::new();
            b.gauge(&V, &[], n as f64);
            Ok(b.build())
        }
    }

    fn registry(m: Counting) -> Registry {
        Registry::new(vec![Arc::new(m)], Arc::new(SystemClock))
    }

    #[tokio::test]
    async fn concurrent_scrapes_in_one_window_cause_one_collection() {
        let calls = Arc::new(AtomicUsize::new(0));
        let reg = Arc::new(registry(Counting {
            calls: calls.clone(),
            delay: Duration::from_millis(50),
            fail_after: None,
            ttl: Duration::from_secs(60),
        }));
        let mut handles = Vec::new();
        for _ in 0..50 {
            let r = reg.clone();
            handles.push(tokio::spawn(async move { r.gather().await }));
        }
        for h in handles {
            let o = h.await.unwrap();
            assert!(o[0].success);
            assert_eq!(o[0].snapshot.value("t_value", &[]), Some(1.0));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(reg.entries()[0].collections(), 1);
        assert!(reg.is_ready());
    }

    #[tokio::test]
    async fn failure_serves_last_good_values_marked_stale() {
        let calls = Arc::new(AtomicUsize::new(0));
        let reg = registry(Counting {
            calls: calls.clone(),
            delay: Duration::ZERO,
            fail_after: Some(1),
            ttl: Duration::ZERO,
        });
        let first = reg.gather().await;
        assert!(first[0].success && !first[0].stale);
        let second = reg.gather().await;
        assert!(!second[0].success);
        assert!(second[0].stale);
        assert_eq!(second[0].snapshot.value("t_value", &[]), Some(1.0));
        let selfm = reg.self_metrics(&second);
        assert_eq!(
            selfm.value(
                "homelab_monitor_collector_success",
                &[("monitor", "counting")]
            ),
            Some(0.0)
        );
        assert_eq!(
            selfm.value(
                "homelab_monitor_collector_stale",
                &[("monitor", "counting")]
            ),
            Some(1.0)
        );
    }

    #[derive(Debug)]
    struct JumpClock(std::sync::Mutex<SystemTime>);
    impl crate::clock::Clock for JumpClock {
        fn now(&self) -> SystemTime {
            *self.0.lock().unwrap()
        }
    }

    #[tokio::test]
    async fn wall_clock_jumps_neither_expire_the_cache_nor_go_negative() {
        let calls = Arc::new(AtomicUsize::new(0));
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let clock = Arc::new(JumpClock(std::sync::Mutex::new(t0)));
        let reg = Registry::new(
            vec![Arc::new(Counting {
                calls: calls.clone(),
                delay: Duration::ZERO,
                fail_after: None,
                ttl: Duration::from_secs(60),
            })],
            clock.clone(),
        );
        reg.gather().await;
        *clock.0.lock().unwrap() = t0 - Duration::from_secs(86_400);
        let o = reg.gather().await;
        let m = reg.self_metrics(&o);
        assert_eq!(
            m.value(
                "homelab_monitor_cache_age_seconds",
                &[("monitor", "counting")]
            ),
            Some(0.0)
        );
        *clock.0.lock().unwrap() = t0 + Duration::from_secs(10 * 86_400);
        let o = reg.gather().await;
        let m = reg.self_metrics(&o);
        assert_eq!(
            m.value(
                "homelab_monitor_cache_age_seconds",
                &[("monitor", "counting")]
            ),
            Some(864_000.0)
        );
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "the TTL runs on monotonic time, not the wall clock"
        );
    }

    #[tokio::test]
    async fn slow_collection_times_out_and_result_lands_later() {
        let calls = Arc::new(AtomicUsize::new(0));
        let reg = registry(Counting {
            calls: calls.clone(),
            delay: Duration::from_millis(900),
            fail_after: None,
            ttl: Duration::from_secs(60),
        });
        let first = reg.gather().await;
        assert!(
            !first[0].success,
            "a 900ms collection must not hold a 500ms timeout"
        );
        assert!(first[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("did not finish"));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let second = reg.gather().await;
        assert!(
            second[0].success,
            "the finished collection must be in the cache"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
