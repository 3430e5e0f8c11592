//! Issue 19: the total number of shards from the pod's StatefulSet, like
//! kube-state-metrics' auto-sharding. With `--pod NAME` and no
//! `--total-shards`, the shard is the pod's ordinal and the total is its
//! StatefulSet's `spec.replicas`: read once at start-up (the pod's
//! `ownerReferences` name the StatefulSet), then watched, so that a scale
//! up or down re-partitions every monitor at its next check, without a
//! restart ([`crate::core::shard::LiveShard`]).
//!
//! Failure rules (fail closed on coverage, never an empty shard):
//! - no total at start-up (no API client, the API unreachable or refusing,
//!   the pod not a StatefulSet's, a StatefulSet that leaves this ordinal
//!   out): the exporter refuses to start, with the RBAC/flags needed;
//! - API errors later (RBAC removed, API server down, StatefulSet deleted):
//!   the last known total stays; `homelab_monitor_shard_statefulset_up` is 0
//!   and a warning is logged;
//! - a scale-down to a total that leaves this ordinal out (this pod is
//!   about to be deleted): the old total stays and a warning is logged, so
//!   this replica keeps its part until it is gone (double coverage for that
//!   moment rather than a missing part, and never an empty replica).
//!
//! Only start-up code and one background task: monitors read the shared
//! total through `shard::current()`, never the API.

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};

use crate::core::shard::{install_live, LiveShard, Shard, TotalChange};

/// How long each start-up call to the API may take.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The RBAC the look-up needs, for messages.
pub const RBAC_NEEDED: &str = "the service account needs a Role in the pod's namespace with `get` on pods and `get`, `list`, `watch` on statefulsets (API group apps) (the Helm chart's sharding.enabled renders it), or give --total-shards";

/// Why the total could not be read at start-up.
#[derive(Debug, thiserror::Error)]
pub enum AutoShardError {
    #[error("--pod {pod} without --total-shards reads the number of shards from the pod's StatefulSet through the Kubernetes API, but {problem}; run it in the StatefulSet's pod with its service account token mounted, give --kubeconfig, or give --total-shards")]
    Client { pod: String, problem: String },
    #[error("--pod {pod} without --total-shards: cannot {what}: {error}; {RBAC_NEEDED}")]
    Api {
        pod: String,
        what: String,
        error: String,
    },
    #[error("--pod {pod} without --total-shards: pod {namespace}/{pod} has no StatefulSet among its ownerReferences; the total is read only in a StatefulSet's pods: give --total-shards")]
    NotStatefulSet { pod: String, namespace: String },
    #[error("StatefulSet {statefulset} has spec.replicas {replicas}, which leaves out this pod's ordinal {index} (the pod is being scaled away): not starting with no part of the targets; give --total-shards to override")]
    Excluded {
        statefulset: String,
        replicas: u32,
        index: u32,
    },
    #[error("StatefulSet {statefulset}: spec.replicas {replicas} is not a number of shards")]
    BadReplicas { statefulset: String, replicas: i32 },
    #[error("the shard was already set")]
    AlreadyInstalled,
}

/// `spec.replicas` (absent: 1, the API's default).
fn replicas_of(s: &StatefulSet) -> i32 {
    s.spec.as_ref().and_then(|sp| sp.replicas).unwrap_or(1)
}

async fn client(pod: &str, kubeconfig: Option<&Path>) -> Result<(Client, String), AutoShardError> {
    use crate::net::kube::KubeClientError as E;
    crate::net::kube::client(kubeconfig, None)
        .await
        .map_err(|e| AutoShardError::Client {
            pod: pod.to_string(),
            problem: match e {
                E::Read { path, error } => format!("cannot read --kubeconfig {path} ({error})"),
                E::Kubeconfig { path, error } => format!("--kubeconfig {path}: {error}"),
                E::NotInCluster(error) => {
                    format!("this is not a Kubernetes pod with a service account token ({error})")
                }
                E::Build(error) => format!("cannot build the Kubernetes client ({error})"),
            },
        })
}

fn api_error(pod: &str, what: &str, e: impl std::fmt::Display) -> AutoShardError {
    AutoShardError::Api {
        pod: pod.to_string(),
        what: what.to_string(),
        error: e.to_string(),
    }
}

async fn within<T>(
    pod: &str,
    what: &str,
    f: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, AutoShardError> {
    match tokio::time::timeout(START_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(kube::Error::Api(s))) => Err(api_error(
            pod,
            what,
            format_args!(
                "the API server answered {} {}: {}",
                s.code, s.reason, s.message
            ),
        )),
        Ok(Err(e)) => Err(api_error(pod, what, e)),
        Err(_) => Err(api_error(
            pod,
            what,
            format_args!("no answer within {START_TIMEOUT:?}"),
        )),
    }
}

/// Read the pod's StatefulSet, install shard `index` of its `spec.replicas`
/// as this process's shard, and start following the StatefulSet (on the
/// current tokio runtime). `namespace`: `--pod-namespace`, else the
/// client's default (the service account's namespace in a pod).
pub async fn start(
    pod: &str,
    index: u32,
    namespace: Option<&str>,
    kubeconfig: Option<&Path>,
) -> Result<Shard, AutoShardError> {
    let (client, default_ns) = client(pod, kubeconfig).await?;
    let ns = namespace
        .filter(|n| !n.is_empty())
        .unwrap_or(&default_ns)
        .to_string();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let p = within(pod, &format!("get pod {ns}/{pod}"), pods.get(pod)).await?;
    let owner = p
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.kind == "StatefulSet" && o.api_version.starts_with("apps/"))
        .map(|o| o.name.clone())
        .ok_or_else(|| AutoShardError::NotStatefulSet {
            pod: pod.to_string(),
            namespace: ns.clone(),
        })?;
    let what = format!("{ns}/{owner}");
    let sets: Api<StatefulSet> = Api::namespaced(client, &ns);
    let s = within(pod, &format!("get StatefulSet {what}"), sets.get(&owner)).await?;
    let raw = replicas_of(&s);
    let replicas =
        u32::try_from(raw)
            .ok()
            .filter(|r| *r > 0)
            .ok_or_else(|| AutoShardError::BadReplicas {
                statefulset: what.clone(),
                replicas: raw,
            })?;
    let shard = Shard::new(index, replicas).map_err(|_| AutoShardError::Excluded {
        statefulset: what.clone(),
        replicas,
        index,
    })?;
    let live = install_live(LiveShard::from_statefulset(shard, &what))
        .ok_or(AutoShardError::AlreadyInstalled)?;
    tracing::info!(
        shard = index,
        total_shards = replicas,
        statefulset = %what,
        "total shards {replicas} from StatefulSet {what} (followed at run time)"
    );
    tokio::spawn(follow(sets, owner, what, live));
    Ok(shard)
}

/// Watch the StatefulSet and apply each `spec.replicas` seen.
async fn follow(api: Api<StatefulSet>, name: String, what: String, live: &'static LiveShard) {
    let wc = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher(api, wc).default_backoff().boxed();
    let mut failing = false;
    let mut seen = false;
    let mut held: Option<u32> = None;
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(watcher::Event::Init) => seen = false,
            Ok(watcher::Event::InitApply(s)) | Ok(watcher::Event::Apply(s)) => {
                seen = true;
                if failing {
                    failing = false;
                    tracing::info!(statefulset = %what, "StatefulSet {what} readable again");
                }
                apply(live, &what, replicas_of(&s), &mut held);
            }
            Ok(watcher::Event::InitDone) => {
                if !seen {
                    gone(live, &what, &mut failing);
                }
            }
            Ok(watcher::Event::Delete(_)) => gone(live, &what, &mut failing),
            Err(e) => {
                live.mark_unavailable();
                if !failing {
                    tracing::warn!(
                        statefulset = %what,
                        total_shards = live.get().total(),
                        "cannot watch StatefulSet {what} ({e}); keeping the last known total of {} shards; {RBAC_NEEDED}",
                        live.get().total()
                    );
                }
                failing = true;
            }
        }
    }
}

fn gone(live: &LiveShard, what: &str, failing: &mut bool) {
    live.mark_unavailable();
    if !*failing {
        tracing::warn!(
            statefulset = %what,
            "StatefulSet {what} is gone; keeping the last known total of {} shards",
            live.get().total()
        );
    }
    *failing = true;
}

fn apply(live: &LiveShard, what: &str, raw: i32, held: &mut Option<u32>) {
    let Some(replicas) = u32::try_from(raw).ok() else {
        live.mark_unavailable();
        tracing::warn!(statefulset = %what, "StatefulSet {what}: spec.replicas {raw} ignored");
        return;
    };
    match live.apply_replicas(replicas) {
        TotalChange::Unchanged(_) => *held = None,
        TotalChange::Changed { from, to } => {
            *held = None;
            tracing::info!(
                statefulset = %what,
                from,
                to,
                "total shards {from} → {to} from StatefulSet {what}"
            );
        }
        TotalChange::Held { replicas, kept } => {
            if *held != Some(replicas) {
                tracing::warn!(
                    statefulset = %what,
                    replicas,
                    total_shards = kept,
                    "StatefulSet {what} scaled to {replicas} replicas, which leaves out this pod's shard {}: keeping {kept} shards (this replica's targets stay covered until the pod is deleted)",
                    live.get().index()
                );
            }
            *held = Some(replicas);
        }
    }
}
