//! The registry: every enabled monitor behind a single-flight,
//! stale-while-revalidate cache.
//!
//! - A scrape never waits for a collection once a monitor has values: values
//!   older than `check_interval` are served at once and a refresh starts (or is
//!   joined) in the background.
//! - Only a scrape that arrives before a monitor's first collection waits, and
//!   at most for its own budget ([`Wait::Serve`]).
//! - Every collection has a deadline (the monitor's `timeout`): past it the
//!   collection is abandoned and recorded as `timeout`, so the next refresh is
//!   never blocked by a hung one.
//! - Concurrent callers inside one window cause at most one collection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use futures::future::{BoxFuture, FutureExt, Shared};
use hyper::body::Bytes;

use crate::core::clock::{age, SharedClock};
use crate::core::monitor::{CollectContext, Monitor, MonitorError};
use crate::core::snapshot::{MetricDef, Snapshot, SnapshotBuilder};

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
    "Age of the values served for this monitor. Values are cached for the monitor's check_interval; scrapes in between are answered from the cache, and a scrape after it is answered from the cache while a refresh runs in the background.",
);
pub const COLLECTOR_STALE: MetricDef = MetricDef::gauge(
    "homelab_monitor_collector_stale",
    "1 if the values served for this monitor come from an earlier collection because the last one failed or timed out.",
);
pub const COLLECTIONS: MetricDef = MetricDef::counter(
    "homelab_monitor_collections",
    "Collections run per monitor since start (each re-reads that monitor's targets that are due).",
);
pub const TARGETS_FAILING: MetricDef = MetricDef::gauge(
    "homelab_monitor_targets_failing",
    "Targets of this monitor whose last read failed.",
);
pub const RETAINED: MetricDef = MetricDef::gauge(
    "homelab_monitor_retained_bytes",
    "Estimated bytes this monitor keeps in memory between collections: its last values (series, label values, target statuses) and per-target memory (parsed states, digests, labels). The encoded /metrics cache is homelab_monitor_exposition_cache_bytes.",
);
pub const EXPOSITION_CACHE: MetricDef = MetricDef::gauge(
    "homelab_monitor_exposition_cache_bytes",
    "Bytes of the cached encoded monitors' part of /metrics, by content coding (identity: the text per exposition format; gzip: its compressed prefix, once a scrape asked for gzip).",
);
pub const IN_FLIGHT: MetricDef = MetricDef::gauge(
    "homelab_monitor_collection_in_flight_seconds",
    "How long the monitor's current collection has been running; 0 when none is running.",
);

/// How soon a collection that left target reads running is repeated.
const PENDING_RECHECK: Duration = Duration::from_millis(250);

/// How long a caller is willing to wait for values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// A scrape or a page: answer from memory at once; only a monitor that has
    /// no values yet is waited for, at most this long.
    Serve(Duration),
    /// A one-shot command or the `--watch` schedule: wait for values no older
    /// than `check_interval` (each collection is bounded by its monitor's timeout).
    Fresh,
}

/// The result of one collection attempt as served to callers.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub monitor: &'static str,
    /// The data to serve: from this collection, or the last good one when it failed.
    pub snapshot: Arc<Snapshot>,
    /// The last collection attempt succeeded.
    pub success: bool,
    /// `snapshot` comes from an earlier collection than the last attempt.
    pub stale: bool,
    /// No collection has finished yet (a cold scrape whose budget ran out).
    pub pending: bool,
    /// Wall time of the last attempt.
    pub duration: Duration,
    /// When the served data was collected (injected clock); `None` before any success.
    pub data_time: Option<SystemTime>,
    pub error: Option<String>,
    /// Estimated bytes retained for the monitor (its snapshot and per-target
    /// memory), measured once per collection.
    pub retained: usize,
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

    /// True once a collection of this monitor has finished (well or not)
    /// with no target read still running.
    pub fn has_collected(&self) -> bool {
        self.lock()
            .last
            .as_ref()
            .is_some_and(|l| l.snapshot.pending == 0)
    }

    /// How long the collection in flight has been running.
    pub fn in_flight(&self) -> Option<Duration> {
        self.lock().inflight.as_ref().map(|(s, _)| s.elapsed())
    }

    /// Serve from memory, join the collection in flight, or start one.
    async fn get(self: &Arc<Self>, clock: &SharedClock, wait: Wait) -> Arc<Outcome> {
        let (fut, last) = {
            let mut st = self.lock();
            if let (Some(last), Some(until)) = (&st.last, st.fresh_until) {
                if Instant::now() < until {
                    return last.clone();
                }
            }
            (self.join_or_start(&mut st, clock), st.last.clone())
        };
        match (wait, last) {
            // Stale-while-revalidate: the refresh runs on without us.
            (Wait::Serve(_), Some(last)) => last,
            (Wait::Serve(budget), None) => match tokio::time::timeout(budget, fut).await {
                Ok(outcome) => outcome,
                Err(_) => Arc::new(Outcome {
                    monitor: self.monitor.name(),
                    snapshot: Arc::default(),
                    success: false,
                    stale: false,
                    pending: true,
                    duration: self.in_flight().unwrap_or_default(),
                    data_time: None,
                    error: Some("the first collection is still running".into()),
                    retained: 0,
                }),
            },
            (Wait::Fresh, _) => {
                // Wait until the reads left running by a collection land
                // (each is bounded by its deadline).
                let mut outcome = fut.await;
                let until = Instant::now() + self.monitor.timeout();
                while outcome.snapshot.pending > 0 && Instant::now() < until {
                    tokio::time::sleep(PENDING_RECHECK).await;
                    let next = self.join_or_start(&mut self.lock(), clock);
                    outcome = next.await;
                }
                outcome
            }
        }
    }

    /// The collection in flight, or a new one (single flight).
    fn join_or_start(self: &Arc<Self>, st: &mut CacheState, clock: &SharedClock) -> SharedOutcome {
        match &st.inflight {
            Some((_, f)) => f.clone(),
            None => {
                let f = self.clone().start(clock.clone());
                st.inflight = Some((Instant::now(), f.clone()));
                f
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
            let deadline = monitor.timeout();
            entry.collections.fetch_add(1, Ordering::Relaxed);
            // The collection runs in its own task so that a panic in a monitor
            // is caught here and becomes an error, never a dead registry; past
            // its deadline it is aborted (blocking reads inside it are bounded
            // and counted by the monitor's target pool).
            let mut handle =
                tokio::spawn(async move { monitor.collect(CollectContext { now }).await });
            let result = match tokio::time::timeout(deadline, &mut handle).await {
                Ok(joined) => joined.unwrap_or_else(|e| Err(MonitorError::Panicked(e.to_string()))),
                Err(_) => {
                    handle.abort();
                    Err(MonitorError::Timeout(deadline))
                }
            };
            let duration = began.elapsed();
            // Measured here, on the collection's task, not per scrape.
            let retained = result.as_ref().map_or(0, Snapshot::estimated_bytes)
                + entry.monitor.retained_bytes();
            let mut st = entry.lock();
            let outcome = match result {
                Ok(snapshot) => {
                    let failing = snapshot.failed_targets();
                    Outcome {
                        monitor: name,
                        snapshot: Arc::new(snapshot),
                        success: true,
                        stale: false,
                        pending: false,
                        duration,
                        data_time: Some(now),
                        error: (failing > 0).then(|| format!("{failing} target(s) failing")),
                        retained,
                    }
                }
                Err(e) => {
                    tracing::warn!(monitor = name, error = %e, reason = e.metric_label(), "collection failed; serving the last good values");
                    Outcome {
                        retained: retained
                            + st.last.as_ref().map_or(0, |l| l.snapshot.estimated_bytes()),
                        ..stale_outcome(name, st.last.as_deref(), duration, e.to_string())
                    }
                }
            };
            let healthy = outcome.success && outcome.snapshot.failed_targets() == 0;
            let pending = outcome.snapshot.pending > 0;
            let ttl = if pending {
                // Reads still running: pick them up as soon as they land.
                PENDING_RECHECK
            } else if healthy {
                entry.monitor.check_interval()
            } else {
                // A retry never waits longer than a normal re-check. Monitors
                // keep per-target freshness, so a retry re-reads only the
                // targets that are due.
                entry
                    .monitor
                    .retry_interval()
                    .min(entry.monitor.check_interval())
            };
            let outcome = Arc::new(outcome);
            st.last = Some(outcome.clone());
            st.fresh_until = Some(Instant::now() + ttl);
            st.inflight = None;
            drop(st);
            if !pending {
                // The previous collection's values are freed (unless a
                // scrape still encodes them): give the freed pages back.
                trim_heap();
            }
            if pending {
                // Nobody may scrape before the next interval: collect again
                // shortly so the slow reads' values are in memory when
                // they land. Bounded: a read is pending only until its deadline.
                let again = entry.clone();
                let clock = clock.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(PENDING_RECHECK).await;
                    again.get(&clock, Wait::Serve(Duration::ZERO)).await;
                });
            }
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

/// Give freed heap pages back to the system (glibc keeps them, in one arena
/// per thread that ever allocated: after a large fleet's collection the
/// resident size stayed about twice the live heap). Called once per
/// collection and once per re-encoding; a no-op on other C libraries.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim only releases free memory of glibc's arenas;
        // it takes the arenas' own locks and touches no live allocation.
        unsafe {
            malloc_trim(0);
        }
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
        pending: false,
        duration,
        data_time: last.and_then(|l| l.data_time),
        error: Some(error),
        retained: last.map_or(0, |l| l.retained),
    }
}

type EncodedCache = Vec<(
    crate::core::encoder::Format,
    Vec<Arc<Snapshot>>,
    Arc<EncodedPart>,
)>;

/// The monitors' part of an exposition, encoded once per collection when an
/// uncompressed scrape asks for it, and its gzip prefix, compressed once on
/// the first scrape that asks for gzip. Each is kept only once asked for:
/// a scraper that always asks for gzip (Prometheus) leaves only the gzip
/// prefix in memory (5 MB instead of 170 MB on a 100,000-state fleet).
/// A text above the registry's identity cache limit is never kept (nor held
/// whole while encoding): uncompressed answers inflate the gzip prefix as
/// they are sent.
struct EncodedPart {
    snapshots: Vec<Arc<Snapshot>>,
    format: crate::core::encoder::Format,
    text: std::sync::OnceLock<Bytes>,
    gzip: std::sync::OnceLock<crate::core::compress::GzipPrefix>,
    /// One encoding at a time (concurrent first scrapes wait for it).
    compressing: Mutex<()>,
}

/// The monitors' part of an uncompressed answer.
enum IdentityPart {
    /// The cached text, shared.
    Cached(Bytes),
    /// Too large to keep: inflated from the gzip prefix while sent.
    Streamed(crate::core::compress::Inflated),
}

impl EncodedPart {
    fn new(snapshots: Vec<Arc<Snapshot>>, format: crate::core::encoder::Format) -> Self {
        EncodedPart {
            snapshots,
            format,
            text: std::sync::OnceLock::new(),
            gzip: std::sync::OnceLock::new(),
            compressing: Mutex::new(()),
        }
    }

    fn encode_to<W: std::fmt::Write>(&self, out: &mut W) -> Result<(), std::fmt::Error> {
        crate::core::encoder::encode_cached_part_to(self.snapshots.clone(), self.format, out)
    }

    /// What is already there for an uncompressed answer.
    fn identity_ready(&self, limit: usize) -> Option<IdentityPart> {
        if let Some(t) = self.text.get() {
            return Some(IdentityPart::Cached(t.clone()));
        }
        match self.gzip.get() {
            Some(g) if g.text_len() > limit as u64 => Some(IdentityPart::Streamed(g.inflated())),
            _ => None,
        }
    }

    /// The text for an uncompressed answer: the cached one, or encoded now
    /// and kept if it is at most `limit` bytes; a larger one is compressed
    /// as it is encoded (its gzip prefix kept) and streamed from that.
    fn identity(
        &self,
        limit: usize,
        compressions: &AtomicU64,
    ) -> Result<IdentityPart, std::fmt::Error> {
        if let Some(part) = self.identity_ready(limit) {
            return Ok(part);
        }
        let _one = self.compressing.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(part) = self.identity_ready(limit) {
            return Ok(part);
        }
        use crate::core::compress::{SpillWriter, Spilled};
        // A gzip prefix of a text within the limit: only the text is missing.
        let mut w = SpillWriter::new(if self.gzip.get().is_some() {
            usize::MAX
        } else {
            limit
        });
        self.encode_to(&mut w)?;
        match w.finish() {
            Spilled::Text(t) => Ok(IdentityPart::Cached(
                self.text.get_or_init(|| Bytes::from(t)).clone(),
            )),
            Spilled::Gzip(prefix) => {
                compressions.fetch_add(1, Ordering::Relaxed);
                // The spilled text and the encoder's buffers are freed.
                trim_heap();
                Ok(IdentityPart::Streamed(
                    self.gzip.get_or_init(|| prefix).inflated(),
                ))
            }
        }
    }

    /// The gzip prefix, compressed now if no scrape asked for it before,
    /// from the kept text or as the text is encoded (never held whole).
    fn gzip(
        &self,
        compressions: &AtomicU64,
    ) -> Result<&crate::core::compress::GzipPrefix, std::fmt::Error> {
        if let Some(g) = self.gzip.get() {
            return Ok(g);
        }
        let _one = self.compressing.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(g) = self.gzip.get() {
            return Ok(g);
        }
        let prefix = match self.text.get() {
            Some(t) => crate::core::compress::GzipPrefix::new(t),
            None => {
                let mut w = crate::core::compress::PrefixWriter::new();
                self.encode_to(&mut w)?;
                let prefix = w.finish();
                // The encoder's per-family sets and the compressor's
                // growth are freed: give their pages back.
                trim_heap();
                prefix
            }
        };
        compressions.fetch_add(1, Ordering::Relaxed);
        Ok(self.gzip.get_or_init(|| prefix))
    }
}

/// One `/metrics` answer: its body in the negotiated content coding, as
/// chunks sent one after the other (the cached monitors' part is shared by
/// every answer, not copied into each).
#[derive(Debug)]
pub struct ScrapeBody {
    /// Sent first when set: the monitors' part of an uncompressed answer
    /// too large to cache, inflated chunk by chunk.
    pub streamed: Option<crate::core::compress::Inflated>,
    pub parts: Vec<Bytes>,
    pub encoding: crate::core::compress::Encoding,
}

impl ScrapeBody {
    /// A body in one buffer.
    pub fn whole(body: impl Into<Bytes>, encoding: crate::core::compress::Encoding) -> Self {
        ScrapeBody {
            streamed: None,
            parts: vec![body.into()],
            encoding,
        }
    }

    /// Length of the body in bytes.
    pub fn len(&self) -> u64 {
        self.streamed.as_ref().map_or(0, |s| s.len())
            + self.parts.iter().map(|p| p.len() as u64).sum::<u64>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The body in one buffer (a copy, inflating a streamed part).
    pub fn read_all(&self) -> Result<Vec<u8>, std::io::Error> {
        let mut out = Vec::with_capacity(usize::try_from(self.len()).unwrap_or(0));
        if let Some(s) = &self.streamed {
            for chunk in s.chunks() {
                out.extend_from_slice(&chunk?);
            }
        }
        for p in &self.parts {
            out.extend_from_slice(p);
        }
        Ok(out)
    }
}

/// The default largest monitors' text kept for uncompressed answers (see
/// [`Registry::set_identity_cache_limit`]).
pub const IDENTITY_CACHE_LIMIT: usize = 16 * 1024 * 1024;

/// All enabled monitors.
pub struct Registry {
    entries: Vec<Arc<Entry>>,
    clock: SharedClock,
    /// Encoded monitors' part per format, with the snapshots it was made from
    /// (held, so their identity cannot be reused while the entry exists).
    encoded: Mutex<EncodedCache>,
    /// Times the monitors' part was gzip-compressed (once per collection
    /// and format at most; a test hook).
    gzip_compressions: AtomicU64,
    /// Largest monitors' text kept for uncompressed answers.
    identity_cache_limit: std::sync::atomic::AtomicUsize,
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
            encoded: Mutex::new(Vec::new()),
            gzip_compressions: AtomicU64::new(0),
            identity_cache_limit: std::sync::atomic::AtomicUsize::new(IDENTITY_CACHE_LIMIT),
        }
    }

    /// Keep the monitors' text for uncompressed answers only up to `bytes`
    /// (default [`IDENTITY_CACHE_LIMIT`], 16 MiB: about 10,000 small
    /// Terraform states). Above it, the text is not kept: an uncompressed
    /// answer inflates the gzip prefix (a few percent of the text) as it is
    /// sent, in 64 KiB chunks, which costs CPU per such scrape instead of
    /// the text's size in memory for as long as it is served. Prometheus
    /// asks for gzip, so large fleets rarely pay it. Applies to encodings
    /// made after the call.
    pub fn set_identity_cache_limit(&self, bytes: usize) {
        self.identity_cache_limit.store(bytes, Ordering::Relaxed);
    }

    pub fn entries(&self) -> &[Arc<Entry>] {
        &self.entries
    }

    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// True once every monitor has finished one collection.
    pub fn is_ready(&self) -> bool {
        self.entries.iter().all(|e| e.has_collected())
    }

    /// Fresh values of every monitor (collected now unless still within
    /// `check_interval`), for one-shot commands and the `--watch` schedule.
    pub async fn gather(&self) -> Vec<Arc<Outcome>> {
        self.gather_with(Wait::Fresh).await
    }

    /// Every monitor's values, concurrently, waiting as `wait` says.
    pub async fn gather_with(&self, wait: Wait) -> Vec<Arc<Outcome>> {
        let futs = self.entries.iter().map(|e| e.get(&self.clock, wait));
        futures::future::join_all(futs).await
    }

    /// Mark every monitor's values as due, so that the next call collects
    /// (benchmarks: a re-collection through the real path).
    #[doc(hidden)]
    pub fn expire(&self) {
        for e in &self.entries {
            e.lock().fresh_until = None;
        }
    }

    /// Self metrics for `outcomes`, using the injected clock for ages.
    pub fn self_metrics(&self, outcomes: &[Arc<Outcome>]) -> Snapshot {
        let now = self.clock.now();
        let mut b = SnapshotBuilder::new();
        b.gauge(&BUILD_INFO, &[("version", crate::VERSION)], 1.0);
        crate::core::targets::self_metrics(&mut b);
        crate::core::shard::self_metrics(&mut b);
        for (entry, o) in self.entries.iter().zip(outcomes) {
            let m = [("monitor", o.monitor)];
            if !o.pending {
                b.gauge(&COLLECTOR_SUCCESS, &m, if o.success { 1.0 } else { 0.0 });
                b.gauge(&COLLECTOR_DURATION, &m, o.duration.as_secs_f64());
            }
            if let Some(t) = o.data_time {
                b.gauge(&CACHE_AGE, &m, age(now, t).as_secs_f64());
            }
            b.gauge(&COLLECTOR_STALE, &m, if o.stale { 1.0 } else { 0.0 });
            b.gauge(&TARGETS_FAILING, &m, o.snapshot.failed_targets() as f64);
            let owned = crate::core::shard::owned_targets(&o.snapshot) as f64;
            b.gauge(&crate::core::shard::SHARD_TARGETS, &m, owned);
            b.gauge(&COLLECTIONS, &m, entry.collections() as f64);
            let in_flight = entry.in_flight().unwrap_or_default();
            b.gauge(&IN_FLIGHT, &m, in_flight.as_secs_f64());
            b.gauge(&RETAINED, &m, o.retained as f64);
        }
        let (text, gzip) = self.exposition_cache_bytes();
        b.gauge(&EXPOSITION_CACHE, &[("encoding", "identity")], text as f64);
        b.gauge(&EXPOSITION_CACHE, &[("encoding", "gzip")], gzip as f64);
        b.build()
    }

    /// Gather and encode everything for one `/metrics` response.
    ///
    /// The monitors' part is encoded once per set of snapshots and format (it
    /// only changes when a collection lands); the small self-metrics part
    /// (ages change every second) is encoded per scrape.
    ///
    /// `wait` bounds how long a scrape waits for a monitor that has no values
    /// yet; monitors with values answer from memory at once. `extra` (the
    /// server's own metrics) is encoded with the self metrics.
    pub async fn scrape(
        &self,
        format: crate::core::encoder::Format,
        wait: Duration,
        extra: Option<Snapshot>,
    ) -> Result<String, std::fmt::Error> {
        let body = self
            .scrape_encoded(
                format,
                wait,
                extra,
                crate::core::compress::Encoding::Identity,
            )
            .await?;
        let bytes = body.read_all().map_err(|e| {
            tracing::error!(error = %e, "inflating the cached exposition failed");
            std::fmt::Error
        })?;
        String::from_utf8(bytes).map_err(|_| std::fmt::Error)
    }

    /// [`Registry::scrape`] in a content coding: with gzip, the monitors'
    /// part is compressed once per collection (cached beside its text) and
    /// only the per-scrape tail is compressed per request.
    pub async fn scrape_encoded(
        &self,
        format: crate::core::encoder::Format,
        wait: Duration,
        extra: Option<Snapshot>,
        encoding: crate::core::compress::Encoding,
    ) -> Result<ScrapeBody, std::fmt::Error> {
        use crate::core::compress::Encoding;
        let (monitors, tail) = self.scrape_parts(format, wait, extra).await?;
        let limit = self.identity_cache_limit.load(Ordering::Relaxed);
        let (streamed, parts) = match encoding {
            Encoding::Identity => match monitors.identity(limit, &self.gzip_compressions)? {
                IdentityPart::Cached(text) => (None, vec![text, Bytes::from(tail)]),
                IdentityPart::Streamed(s) => (Some(s), vec![Bytes::from(tail)]),
            },
            Encoding::Gzip => (
                None,
                monitors
                    .gzip(&self.gzip_compressions)?
                    .finish_parts(tail.as_bytes())
                    .to_vec(),
            ),
        };
        Ok(ScrapeBody {
            streamed,
            parts,
            encoding,
        })
    }

    /// Bytes of the cached monitors' part: (identity text, gzip prefix).
    pub fn exposition_cache_bytes(&self) -> (usize, usize) {
        let c = self.encoded.lock().unwrap_or_else(|e| e.into_inner());
        c.iter().fold((0, 0), |(t, g), (_, _, part)| {
            (
                t + part.text.get().map_or(0, Bytes::len),
                g + part.gzip.get().map_or(0, |z| z.compressed_len()),
            )
        })
    }

    /// How many times the monitors' part was gzip-compressed (test hook: warm
    /// scrapes must not add to it).
    pub fn gzip_compressions(&self) -> u64 {
        self.gzip_compressions.load(Ordering::Relaxed)
    }

    /// The cached monitors' part and the per-scrape tail (self metrics,
    /// `extra`, and the format's end).
    async fn scrape_parts(
        &self,
        format: crate::core::encoder::Format,
        wait: Duration,
        extra: Option<Snapshot>,
    ) -> Result<(Arc<EncodedPart>, String), std::fmt::Error> {
        use crate::core::encoder::{encode_part, finish};
        let outcomes = self.gather_with(Wait::Serve(wait)).await;
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
                // Encoded (and compressed) on demand, by the encoding asked for.
                let body = Arc::new(EncodedPart::new(snaps.clone(), format));
                let old = {
                    let mut c = self.encoded.lock().unwrap_or_else(|e| e.into_inner());
                    let old: Vec<_> = c.extract_if(.., |(f, _, _)| *f == format).collect();
                    c.push((format, snaps.clone(), body.clone()));
                    old
                };
                if !old.is_empty() {
                    // The last collection's encoding (and, with it, often its
                    // snapshots): freed here, outside the lock.
                    drop(old);
                    trim_heap();
                }
                body
            }
        };
        let mut own = vec![Arc::new(self.self_metrics(&outcomes))];
        own.extend(extra.map(Arc::new));
        let mut tail = encode_part(own, format)?;
        finish(&mut tail, format)?;
        Ok((monitors, tail))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::clock::SystemClock;
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
        fn cadence(&self) -> crate::core::monitor::Cadence {
            crate::core::monitor::Cadence {
                check_interval: self.ttl,
                retry_interval: Duration::ZERO,
                timeout: Duration::from_millis(500),
            }
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
    impl crate::core::clock::Clock for JumpClock {
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
    async fn collection_past_its_deadline_is_abandoned_and_does_not_block_the_next() {
        let calls = Arc::new(AtomicUsize::new(0));
        let reg = registry(Counting {
            calls: calls.clone(),
            // Never finishes within the 500 ms timeout.
            delay: Duration::from_secs(3600),
            fail_after: None,
            ttl: Duration::from_secs(60),
        });
        let first = reg.gather().await;
        assert!(
            !first[0].success,
            "a hung collection must not count as success"
        );
        assert!(first[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("did not finish"));
        assert_eq!(
            reg.entries()[0].in_flight(),
            None,
            "abandoned, not in flight"
        );
        assert!(
            reg.is_ready(),
            "a timed-out collection still counts as done"
        );
        // retry_interval is zero: the next call starts a new collection
        // instead of joining the hung one.
        let second = reg.gather().await;
        assert!(!second[0].success);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn scrapes_answer_from_memory_while_a_refresh_runs() {
        let calls = Arc::new(AtomicUsize::new(0));
        let reg = registry(Counting {
            calls: calls.clone(),
            delay: Duration::from_millis(300),
            fail_after: None,
            ttl: Duration::ZERO,
        });
        let first = reg.gather().await;
        assert_eq!(first[0].snapshot.value("t_value", &[]), Some(1.0));
        // The values are expired (ttl 0): a scrape gets them at once and
        // starts a refresh that it does not wait for.
        let served = reg.gather_with(Wait::Serve(Duration::ZERO)).await;
        assert_eq!(served[0].snapshot.value("t_value", &[]), Some(1.0));
        assert!(served[0].success && !served[0].pending);
        assert!(reg.entries()[0].in_flight().is_some(), "refresh started");
        // Concurrent scrapes join the same refresh.
        for _ in 0..20 {
            let o = reg.gather_with(Wait::Serve(Duration::ZERO)).await;
            assert_eq!(o[0].snapshot.value("t_value", &[]), Some(1.0));
        }
        // Let the spawned refresh start (the test runtime has one thread).
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // Once it lands, the next scrape serves it.
        for _ in 0..100 {
            if reg.entries()[0].in_flight().is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let after = reg.gather_with(Wait::Serve(Duration::ZERO)).await;
        assert_eq!(after[0].snapshot.value("t_value", &[]), Some(2.0));
    }

    #[tokio::test]
    async fn cold_scrape_waits_only_for_its_budget() {
        let calls = Arc::new(AtomicUsize::new(0));
        let reg = Registry::new(
            vec![Arc::new(Counting {
                calls: calls.clone(),
                delay: Duration::from_millis(400),
                fail_after: None,
                ttl: Duration::from_secs(60),
            })],
            Arc::new(SystemClock),
        );
        let cold = reg
            .gather_with(Wait::Serve(Duration::from_millis(10)))
            .await;
        assert!(
            cold[0].pending,
            "budget ran out before the first collection"
        );
        assert!(cold[0].snapshot.families.is_empty());
        assert!(!reg.is_ready());
        let selfm = reg.self_metrics(&cold);
        let m = [("monitor", "counting")];
        assert_eq!(selfm.value("homelab_monitor_collector_success", &m), None);
        assert!(selfm
            .value("homelab_monitor_collection_in_flight_seconds", &m)
            .is_some());
        // A patient caller gets the same collection, not a second one.
        let fresh = reg.gather().await;
        assert!(fresh[0].success);
        assert!(reg.is_ready());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
