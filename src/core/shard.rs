//! Sharding (issue 19): `--shard N --total-shards M` splits the targets of a
//! fleet between M replicas, like kube-state-metrics' `--shard`/`--total-shards`.
//!
//! Every replica discovers everything (config, globs, backends' listings) and
//! then keeps only the targets whose stable key hashes to its shard: it reads
//! and exports those only. Keys: a local Terraform state by its label (the
//! path as exported in `state_file`), a remote state by its label
//! (`s3://bucket/key`...), a certificate file by its label (`path`), a TLS
//! endpoint by its address (`endpoint`), a backup source by its name
//! (`source`), a health check by its name (`check`), a zpool status file by
//! its path as configured.
//!
//! The shard is a property of the process, like its version: it is installed
//! once at start-up ([`install`]) before any monitor is built, and monitors
//! ask [`owns`] where they enumerate targets. Without [`install`] (tests, the
//! one-shot `--state-file` mode) a process owns every target.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::core::snapshot::{MetricDef, Snapshot, SnapshotBuilder};

pub const SHARD_INFO: MetricDef = MetricDef::gauge(
    "homelab_monitor_shard_info",
    "This replica's shard and the total number of shards it partitions with now (--shard/--total-shards, or --pod and its StatefulSet's replicas); always 1.",
);
pub const SHARD_TOTAL: MetricDef = MetricDef::gauge(
    "homelab_monitor_shard_total_shards",
    "The total number of shards this replica partitions with now (--total-shards, or its StatefulSet's spec.replicas with --pod alone), as a value (alerts compare it with the shards seen).",
);
pub const SHARD_STATEFULSET_UP: MetricDef = MetricDef::gauge(
    "homelab_monitor_shard_statefulset_up",
    "With --pod and no --total-shards: 1 if the last read or watch of this replica's StatefulSet succeeded, 0 if the API fails or refuses (the total is then the last known one).",
);
pub const SHARD_STATEFULSET_REPLICAS: MetricDef = MetricDef::gauge(
    "homelab_monitor_shard_statefulset_replicas",
    "With --pod and no --total-shards: the StatefulSet's spec.replicas as last seen (differs from homelab_monitor_shard_total_shards while a scale-down below this pod's ordinal is held).",
);
pub const SHARD_TARGETS: MetricDef = MetricDef::gauge(
    "homelab_monitor_shard_targets",
    "Targets this replica owns and read for the monitor (one per homelab_monitor_target_last_read_timestamp_seconds series; all of them with --total-shards 1).",
);

/// This replica's part of the fleet: shard `index` of `total` (`index < total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: u32,
    total: u32,
}

impl Default for Shard {
    /// One shard: every target.
    fn default() -> Self {
        Shard { index: 0, total: 1 }
    }
}

/// What the flags ask for: a fixed shard, or the total from the StatefulSet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardPlan {
    Fixed(Shard),
    /// `--pod` without `--total-shards`: shard `index` (the ordinal) of the
    /// pod's StatefulSet's `spec.replicas`.
    FromStatefulSet {
        index: u32,
        pod: String,
    },
}

/// Invalid sharding flags, with what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("--total-shards must be at least 1 (got 0); use 1 for a single replica")]
    NoShards,
    #[error("--shard {index} is out of range for --total-shards {total}: shards are numbered 0 to {last}")]
    OutOfRange { index: u32, total: u32, last: u32 },
    #[error("--pod {pod:?} does not end in a StatefulSet ordinal (-0, -1, ...): pass the pod name from the downward API (metadata.name) of a StatefulSet pod, or use --shard")]
    NoOrdinal { pod: String },
    #[error("--pod and --shard both set the shard: give only one")]
    PodAndShard,
    #[error("--shard needs --total-shards (the number of replicas)")]
    ShardWithoutTotal,
    #[error(
        "--pod needs --total-shards: set it to the StatefulSet's replicas (the Helm chart does)"
    )]
    PodWithoutTotal,
    #[error("--total-shards {total} needs this replica's --shard (0 to {total}-1) or --pod (a StatefulSet pod name)")]
    TotalWithoutShard { total: u32 },
}

impl Shard {
    /// Shard `index` of `total`, checked.
    pub fn new(index: u32, total: u32) -> Result<Self, ShardError> {
        if total == 0 {
            return Err(ShardError::NoShards);
        }
        if index >= total {
            return Err(ShardError::OutOfRange {
                index,
                total,
                last: total - 1,
            });
        }
        Ok(Shard { index, total })
    }

    /// From the flags: `--shard`, `--total-shards`, `--pod` (a StatefulSet
    /// pod name such as `homelab-monitor-2`, whose ordinal is the shard).
    /// Nothing given: one shard.
    pub fn from_flags(
        shard: Option<u32>,
        total: Option<u32>,
        pod: Option<&str>,
    ) -> Result<Self, ShardError> {
        let index = match (shard, pod) {
            (Some(_), Some(_)) => return Err(ShardError::PodAndShard),
            (Some(i), None) => Some(i),
            (None, Some(p)) => Some(pod_ordinal(p)?),
            (None, None) => None,
        };
        match (index, total) {
            (None, None) => Ok(Shard::default()),
            (None, Some(t)) if t <= 1 => Shard::new(0, t),
            (None, Some(total)) => Err(ShardError::TotalWithoutShard { total }),
            (Some(_), None) if pod.is_some() => Err(ShardError::PodWithoutTotal),
            (Some(_), None) => Err(ShardError::ShardWithoutTotal),
            (Some(i), Some(t)) => Shard::new(i, t),
        }
    }

    /// From the flags, allowing `--pod` without `--total-shards`: the total
    /// is then read from the pod's StatefulSet (`core::shard_kube`).
    pub fn plan(
        shard: Option<u32>,
        total: Option<u32>,
        pod: Option<&str>,
    ) -> Result<ShardPlan, ShardError> {
        match (shard, total, pod) {
            (None, None, Some(p)) => Ok(ShardPlan::FromStatefulSet {
                index: pod_ordinal(p)?,
                pod: p.to_string(),
            }),
            _ => Shard::from_flags(shard, total, pod).map(ShardPlan::Fixed),
        }
    }

    pub fn index(self) -> u32 {
        self.index
    }

    pub fn total(self) -> u32 {
        self.total
    }

    /// True if the target with this key is this shard's.
    pub fn owns(self, key: &str) -> bool {
        self.total <= 1 || shard_of(key, self.total) == self.index
    }
}

/// The ordinal of a StatefulSet pod (`<statefulset>-<ordinal>`).
pub fn pod_ordinal(pod: &str) -> Result<u32, ShardError> {
    pod.rsplit_once('-')
        .map(|(_, n)| n)
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| ShardError::NoOrdinal {
            pod: pod.to_string(),
        })
}

/// The shard (of `total`) that owns `key`: FNV-1a 64 of the key's UTF-8
/// bytes, modulo `total`.
///
/// This function is part of the exporter's contract: replicas of different
/// versions running side by side during a rolling update must agree on it,
/// so it must never change (the tests pin known values).
pub fn shard_of(key: &str, total: u32) -> u32 {
    if total <= 1 {
        return 0;
    }
    (fnv1a64(key.as_bytes()) % u64::from(total)) as u32
}

/// FNV-1a, 64 bits (offset basis 0xcbf29ce484222325, prime 0x100000001b3),
/// as published by Fowler, Noll and Vo.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

/// Where the total number of shards comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotalSource {
    /// `--total-shards` (or nothing: one shard): fixed for the process's life.
    Flag,
    /// `--pod` without `--total-shards`: the StatefulSet's `spec.replicas`,
    /// watched at run time (`core::shard_kube`).
    StatefulSet,
}

/// The StatefulSet the total follows, as last seen (self metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
struct StatefulSetView {
    /// `namespace/name`.
    name: String,
    /// False while the API refuses or fails: the total is the last known one.
    up: bool,
    /// `spec.replicas` as last seen (may differ from the total while held).
    replicas: u32,
}

/// This process's shard as it can change at run time: the index (the pod
/// ordinal or `--shard`) is fixed, the total is shared and atomic so that
/// every monitor's next check re-partitions when the StatefulSet scales.
#[derive(Debug)]
pub struct LiveShard {
    index: u32,
    total: AtomicU32,
    source: TotalSource,
    statefulset: Mutex<Option<StatefulSetView>>,
}

/// What [`LiveShard::apply_replicas`] did with a StatefulSet's `spec.replicas`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotalChange {
    Unchanged(u32),
    Changed {
        from: u32,
        to: u32,
    },
    /// `replicas` does not include this shard (scaled down below this pod's
    /// ordinal, the pod is about to be deleted): the total `kept` stays, so
    /// this replica keeps its part until it is gone (double coverage for a
    /// moment, never a missing part and never an empty replica).
    Held {
        replicas: u32,
        kept: u32,
    },
}

impl LiveShard {
    /// A shard whose total is a flag (never changes).
    pub fn fixed(shard: Shard) -> Self {
        LiveShard {
            index: shard.index,
            total: AtomicU32::new(shard.total),
            source: TotalSource::Flag,
            statefulset: Mutex::new(None),
        }
    }

    /// A shard whose total follows the StatefulSet `name` (`namespace/name`).
    pub fn from_statefulset(shard: Shard, name: &str) -> Self {
        LiveShard {
            index: shard.index,
            total: AtomicU32::new(shard.total),
            source: TotalSource::StatefulSet,
            statefulset: Mutex::new(Some(StatefulSetView {
                name: name.to_string(),
                up: true,
                replicas: shard.total,
            })),
        }
    }

    /// The shard now (a copy: one check uses one total throughout).
    pub fn get(&self) -> Shard {
        Shard {
            index: self.index,
            total: self.total.load(Ordering::Acquire),
        }
    }

    pub fn source(&self) -> TotalSource {
        self.source
    }

    fn view(&self) -> std::sync::MutexGuard<'_, Option<StatefulSetView>> {
        self.statefulset.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take the StatefulSet's `spec.replicas` as the total, unless it leaves
    /// this shard out (see [`TotalChange::Held`]). Marks the StatefulSet seen.
    pub fn apply_replicas(&self, replicas: u32) -> TotalChange {
        if let Some(v) = self.view().as_mut() {
            v.up = true;
            v.replicas = replicas;
        }
        let from = self.total.load(Ordering::Acquire);
        if replicas <= self.index {
            return TotalChange::Held {
                replicas,
                kept: from,
            };
        }
        if replicas == from {
            return TotalChange::Unchanged(from);
        }
        self.total.store(replicas, Ordering::Release);
        TotalChange::Changed { from, to: replicas }
    }

    /// The StatefulSet could not be read (API error, RBAC, deleted): the
    /// total stays the last known one; `homelab_monitor_shard_statefulset_up` says 0.
    pub fn mark_unavailable(&self) {
        if let Some(v) = self.view().as_mut() {
            v.up = false;
        }
    }
}

static CURRENT: OnceLock<LiveShard> = OnceLock::new();

/// Set this process's shard (once, at start-up, before monitors are built).
/// A second call is ignored and returns false.
pub fn install(shard: Shard) -> bool {
    CURRENT.set(LiveShard::fixed(shard)).is_ok()
}

/// Set this process's shard with its total following a StatefulSet
/// (`core::shard_kube`); the handle to update it, or None if a shard was
/// already installed.
pub fn install_live(live: LiveShard) -> Option<&'static LiveShard> {
    CURRENT.set(live).ok()?;
    CURRENT.get()
}

/// This process's shard now (one shard if none was installed).
pub fn current() -> Shard {
    CURRENT.get().map(LiveShard::get).unwrap_or_default()
}

/// True if this process owns the target with this key.
pub fn owns(key: &str) -> bool {
    current().owns(key)
}

/// The entries of a configured list that `shard` owns, by each entry's
/// stable key (a backup source's name, a health check's name, a zpool status
/// file's path as configured), in configuration order. Every replica loads
/// the whole list; each reads and exports only these.
pub fn owned<T>(shard: Shard, items: &[T], key: impl Fn(&T) -> &str) -> Vec<&T> {
    items.iter().filter(|t| shard.owns(key(t))).collect()
}

/// The targets a monitor's snapshot reports as read by this replica: one per
/// `homelab_monitor_target_last_read_timestamp_seconds` series.
pub fn owned_targets(snap: &Snapshot) -> usize {
    snap.families
        .iter()
        .filter(|f| f.def.name == crate::core::targets::LAST_READ.name)
        .map(|f| f.samples.len())
        .sum()
}

/// `homelab_monitor_shard_info` and `..._shard_total_shards` (always, also with one shard).
pub fn self_metrics(b: &mut SnapshotBuilder) {
    let s = current();
    b.gauge(
        &SHARD_INFO,
        &[
            ("shard", &s.index.to_string()),
            ("total_shards", &s.total.to_string()),
        ],
        1.0,
    );
    b.gauge(&SHARD_TOTAL, &[], f64::from(s.total));
    let view = CURRENT.get().and_then(|l| l.view().clone());
    if let Some(v) = view {
        let labels = [("statefulset", v.name.as_str())];
        b.gauge(&SHARD_STATEFULSET_UP, &labels, if v.up { 1.0 } else { 0.0 });
        b.gauge(&SHARD_STATEFULSET_REPLICAS, &labels, f64::from(v.replicas));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Published FNV-1a 64 test vectors: the hash is the real algorithm.
    #[test]
    fn shard_hash_is_fnv1a64() {
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }

    // Pinned assignments: changing the function breaks rolling updates,
    // so this test must never be "updated".
    #[test]
    fn shard_assignment_is_pinned() {
        let keys = [
            "terraform/terraform.tfstate",
            "s3://tfstate/prod/app.tfstate",
            "127.0.0.1:8443",
            "certs/web.pem",
        ];
        let got: Vec<u32> = keys.iter().map(|k| shard_of(k, 3)).collect();
        let want: Vec<u32> = keys
            .iter()
            .map(|k| (fnv1a64(k.as_bytes()) % 3) as u32)
            .collect();
        assert_eq!(got, want);
        assert_eq!(got, PINNED_3.to_vec());
        assert_eq!(shard_of("anything", 1), 0);
    }
    const PINNED_3: [u32; 4] = [1, 2, 0, 0];

    #[test]
    fn shard_partition_is_exact_and_spread() {
        for total in 1..=5u32 {
            let shards: Vec<Shard> = (0..total).map(|i| Shard::new(i, total).unwrap()).collect();
            let mut per = vec![0usize; total as usize];
            for n in 0..600 {
                let key = format!("states/env-{n}/terraform.tfstate");
                let owners: Vec<u32> = shards
                    .iter()
                    .filter(|s| s.owns(&key))
                    .map(|s| s.index())
                    .collect();
                assert_eq!(owners.len(), 1, "{key} owned by {owners:?} of {total}");
                per[owners[0] as usize] += 1;
            }
            // Every shard gets a fair part (no empty or hogging replica).
            for c in &per {
                assert!(*c * total as usize >= 600 / 2, "{per:?}");
            }
        }
    }

    #[test]
    fn shard_flags_are_validated() {
        assert_eq!(Shard::from_flags(None, None, None), Ok(Shard::default()));
        assert_eq!(Shard::from_flags(Some(2), Some(3), None), Shard::new(2, 3));
        assert_eq!(Shard::from_flags(None, Some(1), None), Shard::new(0, 1));
        assert_eq!(
            Shard::from_flags(Some(0), Some(0), None),
            Err(ShardError::NoShards)
        );
        let e = Shard::from_flags(Some(3), Some(3), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--shard 3 is out of range for --total-shards 3: shards are numbered 0 to 2"
        );
        assert_eq!(
            Shard::from_flags(Some(1), None, None),
            Err(ShardError::ShardWithoutTotal)
        );
        assert_eq!(
            Shard::from_flags(None, Some(3), None),
            Err(ShardError::TotalWithoutShard { total: 3 })
        );
        // StatefulSet pods: the ordinal is the shard.
        assert_eq!(
            Shard::from_flags(None, Some(3), Some("homelab-monitor-2")),
            Shard::new(2, 3)
        );
        assert_eq!(
            Shard::from_flags(None, Some(2), Some("homelab-monitor-2")),
            Err(ShardError::OutOfRange {
                index: 2,
                total: 2,
                last: 1
            })
        );
        assert_eq!(
            Shard::from_flags(Some(0), Some(3), Some("x-0")),
            Err(ShardError::PodAndShard)
        );
        assert_eq!(
            Shard::from_flags(None, None, Some("homelab-monitor-1")),
            Err(ShardError::PodWithoutTotal)
        );
        for bad in [
            "homelab-monitor",
            "homelab-monitor-",
            "homelab-monitor-7f9c",
            "0x",
        ] {
            assert!(
                matches!(
                    Shard::from_flags(None, Some(3), Some(bad)),
                    Err(ShardError::NoOrdinal { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn owned_keeps_configuration_order_and_partitions() {
        let names: Vec<String> = (0..30).map(|i| format!("check-{i}")).collect();
        let parts: Vec<Vec<&String>> = (0..3)
            .map(|i| owned(Shard::new(i, 3).unwrap(), &names, |n| n.as_str()))
            .collect();
        for p in &parts {
            let pos: Vec<usize> = p
                .iter()
                .filter_map(|n| names.iter().position(|m| m == *n))
                .collect();
            assert!(pos.windows(2).all(|w| w[0] < w[1]), "{pos:?}");
        }
        let mut all: Vec<&String> = parts.concat();
        assert_eq!(all.len(), names.len(), "each entry in exactly one part");
        all.sort();
        all.dedup();
        assert_eq!(all.len(), names.len());
        assert_eq!(owned(Shard::default(), &names, |n| n.as_str()).len(), 30);
    }

    // --pod alone: the total comes from the StatefulSet; everything else as before.
    #[test]
    fn shard_plan_reads_the_total_from_the_statefulset_for_a_pod_alone() {
        assert_eq!(
            Shard::plan(None, None, Some("homelab-monitor-1")),
            Ok(ShardPlan::FromStatefulSet {
                index: 1,
                pod: "homelab-monitor-1".into()
            })
        );
        assert_eq!(
            Shard::plan(None, Some(3), Some("homelab-monitor-2")),
            Ok(ShardPlan::Fixed(Shard::new(2, 3).unwrap()))
        );
        assert!(matches!(
            Shard::plan(None, None, Some("homelab-monitor")),
            Err(ShardError::NoOrdinal { .. })
        ));
        assert_eq!(
            Shard::plan(Some(1), None, None),
            Err(ShardError::ShardWithoutTotal)
        );
        assert_eq!(
            Shard::plan(None, None, None),
            Ok(ShardPlan::Fixed(Shard::default()))
        );
    }

    // The total changes at run time; a total that leaves this shard out is held.
    #[test]
    fn live_shard_follows_replicas_and_holds_a_scale_down_below_its_ordinal() {
        let live = LiveShard::from_statefulset(Shard::new(1, 3).unwrap(), "ns/sts");
        assert_eq!(live.get(), Shard::new(1, 3).unwrap());
        assert_eq!(live.apply_replicas(3), TotalChange::Unchanged(3));
        assert_eq!(
            live.apply_replicas(2),
            TotalChange::Changed { from: 3, to: 2 }
        );
        assert_eq!(live.get(), Shard::new(1, 2).unwrap());
        // Scaled to 1: shard 1 is about to go; it keeps 2, never owns nothing.
        assert_eq!(
            live.apply_replicas(1),
            TotalChange::Held {
                replicas: 1,
                kept: 2
            }
        );
        assert_eq!(live.get().total(), 2);
        assert_eq!(
            live.apply_replicas(0),
            TotalChange::Held {
                replicas: 0,
                kept: 2
            }
        );
        let v = live.view().clone().unwrap();
        assert_eq!((v.up, v.replicas), (true, 0));
        live.mark_unavailable();
        assert!(!live.view().clone().unwrap().up);
        assert_eq!(live.get().total(), 2, "an API error keeps the last total");
        assert_eq!(
            live.apply_replicas(4),
            TotalChange::Changed { from: 2, to: 4 }
        );
        assert!(live.view().clone().unwrap().up);
        let fixed = LiveShard::fixed(Shard::new(0, 2).unwrap());
        assert_eq!(fixed.source(), TotalSource::Flag);
        assert!(fixed.view().is_none());
    }

    #[test]
    fn one_shard_owns_everything() {
        let s = Shard::default();
        assert!(s.owns(""));
        assert!(s.owns("anything"));
    }
}
