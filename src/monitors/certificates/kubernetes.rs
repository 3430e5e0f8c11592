//! `certificate_expiry.kubernetes`: certificates read through the Kubernetes
//! API (kube-rs): TLS Secrets, Secrets and ConfigMaps by key, and the CA
//! bundles of admission webhooks, APIServices and CRD conversion webhooks.
//!
//! Each configured source runs one background task per namespace scope with
//! kube-runtime's `watcher`: LIST in pages (`limit`/`continue`), then WATCH
//! from the list's resourceVersion with bookmarks, and a re-list on 410 Gone.
//! Only the certificate facts parsed from each object are kept (in a map keyed
//! by the object's UID), never the Secret data; a scrape reads that map and
//! never waits on the API. A watch that fails (403, unreachable API server)
//! keeps its last good facts, marked stale, and is reported by
//! `certificate_kubernetes_source_up 0` and `certificate_kubernetes_source_error_info`.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::parse;
use super::{SourceData, SourceFailure};
use crate::core::snapshot::MetricDef;

/// `certificate_expiry.kubernetes`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// A kubeconfig file (relative to the config file's folder); absent: the
    /// in-cluster service account (`KUBERNETES_SERVICE_HOST` and the mounted token).
    #[serde(default)]
    pub kubeconfig: Option<String>,
    /// The kubeconfig context to use (default: its current-context).
    #[serde(default)]
    pub context: Option<String>,
    /// Objects per LIST page (`limit`).
    #[serde(default = "KubernetesConfig::default_page_size")]
    pub page_size: u32,
    pub sources: Vec<KubeSource>,
}

impl KubernetesConfig {
    fn default_page_size() -> u32 {
        500
    }

    /// Load-time checks: (key below certificate_expiry, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let key = "kubernetes".to_string();
        if self.page_size == 0 {
            return Err((key, "kubernetes.page_size must be at least 1".into()));
        }
        if self.sources.is_empty() {
            return Err((
                key,
                "kubernetes.sources is empty; list at least one source (kind: tls_secrets, secrets, configmaps, validating_webhooks, mutating_webhooks, api_services or crd_conversions)".into(),
            ));
        }
        for (i, s) in self.sources.iter().enumerate() {
            let at = |m: &str| (key.clone(), format!("kubernetes.sources[{i}]: {m}"));
            let namespaced = s.kind.namespaced();
            if !namespaced && (!s.namespaces.is_empty() || !s.exclude_namespaces.is_empty()) {
                return Err(at(&format!(
                    "{} are cluster-scoped; remove namespaces/exclude_namespaces",
                    s.kind.as_str()
                )));
            }
            if matches!(s.kind, KubeKind::Secrets | KubeKind::Configmaps) && s.keys.is_empty() {
                return Err(at(&format!(
                    "{} needs `keys`: the data keys that hold certificates (PEM, DER or PKCS#12), e.g. [ca.crt]",
                    s.kind.as_str()
                )));
            }
            if !matches!(
                s.kind,
                KubeKind::Secrets | KubeKind::Configmaps | KubeKind::TlsSecrets
            ) && !s.keys.is_empty()
            {
                return Err(at("`keys` applies to secrets, configmaps and tls_secrets only"));
            }
            if s.namespaces.iter().chain(&s.exclude_namespaces).any(|n| n.trim().is_empty()) {
                return Err(at("a namespace name is empty"));
            }
            if !s.namespaces.is_empty() && !s.exclude_namespaces.is_empty() {
                return Err(at("set namespaces or exclude_namespaces, not both"));
            }
        }
        Ok(())
    }
}

/// One kind of object to read certificates from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeSource {
    pub kind: KubeKind,
    /// Only these namespaces (one watch each); empty: all namespaces.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// All namespaces but these.
    #[serde(default)]
    pub exclude_namespaces: Vec<String>,
    /// A label selector sent to the API server (`app=web,tier!=db`).
    #[serde(default)]
    pub label_selector: Option<String>,
    /// Data keys holding certificates (secrets, configmaps; tls_secrets
    /// default to `tls.crt` and `ca.crt`).
    #[serde(default)]
    pub keys: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KubeKind {
    /// Secrets of type kubernetes.io/tls (server-side field selector on `type`).
    TlsSecrets,
    Secrets,
    Configmaps,
    ValidatingWebhooks,
    MutatingWebhooks,
    ApiServices,
    CrdConversions,
}

impl KubeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KubeKind::TlsSecrets => "tls_secrets",
            KubeKind::Secrets => "secrets",
            KubeKind::Configmaps => "configmaps",
            KubeKind::ValidatingWebhooks => "validating_webhooks",
            KubeKind::MutatingWebhooks => "mutating_webhooks",
            KubeKind::ApiServices => "api_services",
            KubeKind::CrdConversions => "crd_conversions",
        }
    }

    /// The `source` label of the certificate series.
    pub fn source_label(self) -> &'static str {
        match self {
            KubeKind::TlsSecrets | KubeKind::Secrets => "secret",
            KubeKind::Configmaps => "configmap",
            KubeKind::ValidatingWebhooks => "validating_webhook",
            KubeKind::MutatingWebhooks => "mutating_webhook",
            KubeKind::ApiServices => "apiservice",
            KubeKind::CrdConversions => "crd_conversion",
        }
    }

    /// The label naming the object.
    pub fn name_label(self) -> &'static str {
        match self {
            KubeKind::TlsSecrets | KubeKind::Secrets => "secret",
            KubeKind::Configmaps => "configmap",
            KubeKind::ValidatingWebhooks | KubeKind::MutatingWebhooks => "webhook",
            KubeKind::ApiServices => "apiservice",
            KubeKind::CrdConversions => "crd",
        }
    }

    pub fn namespaced(self) -> bool {
        matches!(
            self,
            KubeKind::TlsSecrets | KubeKind::Secrets | KubeKind::Configmaps
        )
    }
}

/// Where a Kubernetes certificate came from (the series' identity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeRef {
    pub kind: KubeKind,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
    /// The data key, or the webhook's name inside a webhook configuration.
    pub key: String,
    pub uid: String,
    /// The watch serving it is failing: these are the last good facts.
    pub stale: bool,
}

impl KubeRef {
    pub fn id_labels(&self) -> Vec<(&'static str, String)> {
        vec![
            ("source", self.kind.source_label().to_string()),
            ("namespace", self.namespace.clone()),
            (self.kind.name_label(), self.name.clone()),
            ("key", self.key.clone()),
        ]
    }

    pub fn display(&self) -> String {
        let obj = if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        };
        format!("{} {obj} [{}]", self.kind.source_label(), self.key)
    }
}

/// What was parsed from one data key of one object.
#[derive(Debug, Clone)]
pub struct KeyFacts {
    pub key: String,
    pub outcome: Result<SourceData, SourceFailure>,
}

/// The facts kept for one object (no data).
#[derive(Debug, Clone)]
pub struct ObjectFacts {
    pub namespace: String,
    pub name: String,
    pub keys: Vec<KeyFacts>,
}

/// Why a watch is failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchFailure {
    /// `forbidden`, `unauthorized`, `not_found`, `unreachable`, `api_error`, `config`, `watch`.
    pub reason: &'static str,
    pub message: String,
}

/// Every `reason` of `certificate_kubernetes_source_error_info`.
pub const WATCH_ERROR_REASONS: &[&str] = &[
    "config",
    "forbidden",
    "unauthorized",
    "not_found",
    "unreachable",
    "api_error",
    "watch",
];

/// The state of one watch (one source in one namespace scope).
#[derive(Debug, Default)]
pub struct WatchState {
    /// Objects by UID.
    pub objects: HashMap<String, ObjectFacts>,
    /// A re-list in progress: it replaces `objects` when complete.
    relist: Option<HashMap<String, ObjectFacts>>,
    /// A complete LIST has been seen at least once.
    pub synced: bool,
    pub error: Option<WatchFailure>,
    /// Completed LISTs (the first one and each re-list).
    pub lists: u64,
}

/// One running watch.
pub struct Watch {
    pub source: usize,
    pub kind: KubeKind,
    /// `""`: all namespaces (or cluster-scoped).
    pub scope: String,
    pub state: Arc<Mutex<WatchState>>,
}

pub const KUBE_UP: MetricDef = MetricDef::gauge(
    "certificate_kubernetes_source_up",
    "1 if the Kubernetes source's last LIST/WATCH succeeded, else 0 (its last good certificates are still served, marked stale).",
);
pub const KUBE_ERROR: MetricDef = MetricDef::gauge(
    "certificate_kubernetes_source_error_info",
    "Why the Kubernetes source cannot list or watch (reason is a short code); always 1.",
);
pub const KUBE_OBJECTS: MetricDef = MetricDef::gauge(
    "certificate_kubernetes_source_objects",
    "Objects holding certificate keys currently known from the Kubernetes source.",
);
pub const KUBE_SYNCED: MetricDef = MetricDef::gauge(
    "certificate_kubernetes_source_synced",
    "1 once the Kubernetes source's first complete LIST has been read, else 0 (no certificates of it are known yet).",
);

/// The running watches of a monitor; aborted when dropped.
pub struct Watches {
    pub watches: Vec<Watch>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    started: std::sync::Once,
    cfg: KubernetesConfig,
    kubeconfig: Option<std::path::PathBuf>,
    passphrase: Arc<Result<Option<String>, String>>,
}

impl Drop for Watches {
    fn drop(&mut self) {
        for t in self.tasks.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            t.abort();
        }
    }
}

impl Watches {
    /// One watch per source and namespace scope (started by [`Watches::start`]).
    pub fn new(
        cfg: &KubernetesConfig,
        kubeconfig: Option<std::path::PathBuf>,
        passphrase: Result<Option<String>, String>,
    ) -> Self {
        let mut watches = Vec::new();
        for (i, s) in cfg.sources.iter().enumerate() {
            let scopes: Vec<String> = if s.namespaces.is_empty() {
                vec![String::new()]
            } else {
                s.namespaces.clone()
            };
            for scope in scopes {
                watches.push(Watch {
                    source: i,
                    kind: s.kind,
                    scope,
                    state: Arc::new(Mutex::new(WatchState::default())),
                });
            }
        }
        Watches {
            watches,
            tasks: Mutex::new(Vec::new()),
            started: std::sync::Once::new(),
            cfg: cfg.clone(),
            kubeconfig,
            passphrase: Arc::new(passphrase),
        }
    }

    /// Start the background tasks (once; needs a Tokio runtime).
    pub fn start(&self) {
        self.started.call_once(|| {
            let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
            for w in &self.watches {
                let src = self.cfg.sources[w.source].clone();
                let ctx = WatchCtx {
                    kind: w.kind,
                    scope: w.scope.clone(),
                    exclude: src.exclude_namespaces.clone(),
                    keys: keys_of(&src),
                    label_selector: src.label_selector.clone(),
                    page_size: self.cfg.page_size,
                    kubeconfig: self.kubeconfig.clone(),
                    context: self.cfg.context.clone(),
                    passphrase: self.passphrase.clone(),
                    state: w.state.clone(),
                };
                tasks.push(tokio::spawn(run(ctx)));
            }
        });
    }

    /// Watches that have neither listed nor failed yet.
    pub fn pending(&self) -> usize {
        self.watches
            .iter()
            .filter(|w| {
                let st = w.state.lock().unwrap_or_else(|e| e.into_inner());
                !st.synced && st.error.is_none()
            })
            .count()
    }
}

fn keys_of(s: &KubeSource) -> Vec<String> {
    if s.kind == KubeKind::TlsSecrets && s.keys.is_empty() {
        vec!["tls.crt".into(), "ca.crt".into()]
    } else {
        s.keys.clone()
    }
}

#[derive(Clone)]
struct WatchCtx {
    kind: KubeKind,
    scope: String,
    exclude: Vec<String>,
    keys: Vec<String>,
    label_selector: Option<String>,
    page_size: u32,
    kubeconfig: Option<std::path::PathBuf>,
    context: Option<String>,
    passphrase: Arc<Result<Option<String>, String>>,
    state: Arc<Mutex<WatchState>>,
}

impl WatchCtx {
    fn set_error(&self, f: WatchFailure) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.error.as_ref() != Some(&f) {
            tracing::warn!(
                monitor = "certificate_expiry",
                source = "kubernetes",
                kind = self.kind.as_str(),
                namespace = %self.scope,
                reason = f.reason,
                "{}; the last certificates read are kept (stale)",
                f.message
            );
        }
        st.error = Some(f);
    }

    fn describe(&self) -> String {
        if self.scope.is_empty() {
            format!("kubernetes {}", self.kind.as_str())
        } else {
            format!("kubernetes {} in namespace {}", self.kind.as_str(), self.scope)
        }
    }
}

async fn client(ctx: &WatchCtx) -> Result<Client, WatchFailure> {
    use crate::net::kube::KubeClientError as E;
    match crate::net::kube::client(ctx.kubeconfig.as_deref(), ctx.context.clone()).await {
        Ok((client, _)) => Ok(client),
        Err(e) => Err(WatchFailure {
            reason: "config",
            message: match e {
                E::Read { .. } => {
                    format!("{e}; check certificate_expiry.kubernetes.kubeconfig")
                }
                E::NotInCluster(_) => format!(
                    "{e}; set certificate_expiry.kubernetes.kubeconfig to run outside a cluster"
                ),
                E::Kubeconfig { .. } | E::Build(_) => e.to_string(),
            },
        }),
    }
}

async fn run(ctx: WatchCtx) {
    let client = loop {
        match client(&ctx).await {
            Ok(c) => break c,
            Err(f) => {
                ctx.set_error(f);
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        }
    };
    match ctx.kind {
        KubeKind::TlsSecrets | KubeKind::Secrets => {
            {
            let api = scoped::<Secret>(client, &ctx.scope);
            watch(ctx, api, secret_facts).await
        }
        }
        KubeKind::Configmaps => {
            let api = scoped::<ConfigMap>(client, &ctx.scope);
            watch(ctx, api, configmap_facts).await
        },
        KubeKind::ValidatingWebhooks => {
            watch::<ValidatingWebhookConfiguration>(ctx, Api::all(client), |o, c| {
                let hooks = o.webhooks.as_deref().unwrap_or_default();
                bundles(
                    c,
                    hooks
                        .iter()
                        .map(|h| (h.name.clone(), h.client_config.ca_bundle.as_ref())),
                )
            })
            .await
        }
        KubeKind::MutatingWebhooks => {
            watch::<MutatingWebhookConfiguration>(ctx, Api::all(client), |o, c| {
                let hooks = o.webhooks.as_deref().unwrap_or_default();
                bundles(
                    c,
                    hooks
                        .iter()
                        .map(|h| (h.name.clone(), h.client_config.ca_bundle.as_ref())),
                )
            })
            .await
        }
        KubeKind::ApiServices => {
            watch::<APIService>(ctx, Api::all(client), |o, c| {
                let ca = o.spec.as_ref().and_then(|s| s.ca_bundle.as_ref());
                bundles(c, [("caBundle".to_string(), ca)].into_iter())
            })
            .await
        }
        KubeKind::CrdConversions => {
            watch::<CustomResourceDefinition>(ctx, Api::all(client), |o, c| {
                let ca = o
                    .spec
                    .conversion
                    .as_ref()
                    .and_then(|c| c.webhook.as_ref())
                    .and_then(|w| w.client_config.as_ref())
                    .and_then(|cc| cc.ca_bundle.as_ref());
                bundles(c, [("conversion.webhook".to_string(), ca)].into_iter())
            })
            .await
        }
    }
}

/// The field selector sent with LIST and WATCH.
fn field_selector(ctx: &WatchCtx) -> Option<String> {
    let mut parts = Vec::new();
    if ctx.kind == KubeKind::TlsSecrets {
        parts.push("type=kubernetes.io/tls".to_string());
    }
    for n in &ctx.exclude {
        parts.push(format!("metadata.namespace!={n}"));
    }
    (!parts.is_empty()).then(|| parts.join(","))
}

fn classify(e: &watcher::Error) -> Option<WatchFailure> {
    let api = |e: &kube::Error| -> WatchFailure {
        match e {
            kube::Error::Api(s) => {
                let reason = match s.code {
                    403 => "forbidden",
                    401 => "unauthorized",
                    404 => "not_found",
                    _ => "api_error",
                };
                let hint = match s.code {
                    403 => "; grant list and watch on this resource to the exporter's service account (the Helm chart's RBAC does)",
                    401 => "; the credentials were refused",
                    _ => "",
                };
                WatchFailure {
                    reason,
                    message: format!(
                        "the API server answered {} {}: {}{hint}",
                        s.code, s.reason, s.message
                    ),
                }
            }
            kube::Error::HyperError(_) | kube::Error::Service(_) => WatchFailure {
                reason: "unreachable",
                message: format!("cannot reach the API server: {e}"),
            },
            other => WatchFailure {
                reason: "watch",
                message: other.to_string(),
            },
        }
    };
    match e {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => Some(api(e)),
        // 410 Gone: the watcher re-lists by itself; not a failure.
        watcher::Error::WatchError(s) if s.code == 410 => None,
        watcher::Error::WatchError(s) => Some(WatchFailure {
            reason: match s.code {
                403 => "forbidden",
                401 => "unauthorized",
                _ => "api_error",
            },
            message: format!(
                "the watch ended with {} {}: {}",
                s.code, s.reason, s.message
            ),
        }),
        watcher::Error::NoResourceVersion => Some(WatchFailure {
            reason: "api_error",
            message: "the API server's list has no resourceVersion".into(),
        }),
    }
}

type Extract<K> = fn(&K, &WatchCtx) -> Vec<KeyFacts>;

/// `Api` of a namespaced resource in the watch's scope (`""`: all namespaces).
fn scoped<K>(client: Client, scope: &str) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    if scope.is_empty() {
        Api::all(client)
    } else {
        Api::namespaced(client, scope)
    }
}

async fn watch<K>(ctx: WatchCtx, api: Api<K>, extract: Extract<K>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let mut wc = watcher::Config::default().page_size(ctx.page_size);
    if let Some(f) = field_selector(&ctx) {
        wc = wc.fields(&f);
    }
    if let Some(l) = &ctx.label_selector {
        wc = wc.labels(l);
    }
    let what = ctx.describe();
    let mut stream = watcher(api, wc).default_backoff().boxed();
    while let Some(ev) = stream.next().await {
        match ev {
            Err(e) => match classify(&e) {
                Some(f) => ctx.set_error(f),
                None => tracing::debug!(monitor = "certificate_expiry", "{what}: watch expired (410 Gone); re-listing"),
            },
            Ok(ev) => {
                let facts = |o: &K| -> Option<(String, ObjectFacts)> {
                    let ns = o.namespace().unwrap_or_default();
                    if ctx.exclude.contains(&ns) {
                        return None;
                    }
                    let keys = extract(o, &ctx);
                    if keys.is_empty() {
                        return None;
                    }
                    Some((
                        uid_of(o),
                        ObjectFacts {
                            namespace: ns,
                            name: o.name_any(),
                            keys,
                        },
                    ))
                };
                let mut st = ctx.state.lock().unwrap_or_else(|e| e.into_inner());
                match ev {
                    watcher::Event::Init => st.relist = Some(HashMap::new()),
                    watcher::Event::InitApply(o) => {
                        if let Some((uid, f)) = facts(&o) {
                            st.relist.get_or_insert_with(HashMap::new).insert(uid, f);
                        }
                    }
                    watcher::Event::InitDone => {
                        let fresh = st.relist.take().unwrap_or_default();
                        st.objects = fresh;
                        st.synced = true;
                        st.lists += 1;
                        if st.error.take().is_some() {
                            tracing::info!(monitor = "certificate_expiry", "{what}: listing works again");
                        }
                    }
                    watcher::Event::Apply(o) => {
                        let uid = uid_of(&o);
                        match facts(&o) {
                            Some((uid, f)) => {
                                st.objects.insert(uid, f);
                            }
                            None => {
                                st.objects.remove(&uid);
                            }
                        }
                        st.error = None;
                    }
                    watcher::Event::Delete(o) => {
                        st.objects.remove(&uid_of(&o));
                        st.error = None;
                    }
                }
            }
        }
    }
}

fn uid_of<K: Resource>(o: &K) -> String {
    o.meta().uid.clone().unwrap_or_else(|| {
        format!(
            "{}/{}",
            o.meta().namespace.as_deref().unwrap_or(""),
            o.meta().name.as_deref().unwrap_or("")
        )
    })
}

fn parse_key(key: &str, bytes: &[u8], pass: &Result<Option<String>, String>) -> KeyFacts {
    let ext = key
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase());
    let is_p12 = matches!(ext.as_deref(), Some("p12" | "pfx"));
    let pw = match (is_p12, pass) {
        (true, Err(why)) => {
            return KeyFacts {
                key: key.to_string(),
                outcome: Err(SourceFailure {
                    reason: "passphrase_unavailable",
                    message: format!("key {key}: {why}"),
                }),
            }
        }
        (_, Ok(p)) => p.as_deref(),
        (false, Err(_)) => None,
    };
    let outcome = parse::parse_file(bytes, ext.as_deref(), pw)
        .map(|p| SourceData {
            certs: p.certs,
            format: p.format.as_str().to_string(),
            verified: None,
            staple: None,
            revocation: Vec::new(),
        })
        .map_err(|e| SourceFailure {
            reason: e.metric_label(),
            message: format!("key {key}: {e}"),
        });
    KeyFacts {
        key: key.to_string(),
        outcome,
    }
}

fn secret_facts(s: &Secret, ctx: &WatchCtx) -> Vec<KeyFacts> {
    let Some(data) = &s.data else {
        return if ctx.kind == KubeKind::TlsSecrets {
            vec![missing("tls.crt")]
        } else {
            Vec::new()
        };
    };
    let mut out = Vec::new();
    for k in &ctx.keys {
        match data.get(k) {
            Some(v) => out.push(parse_key(k, &v.0, &ctx.passphrase)),
            // tls.crt is what a TLS Secret is for; every other key is optional.
            None if ctx.kind == KubeKind::TlsSecrets && k == "tls.crt" => out.push(missing(k)),
            None => {}
        }
    }
    out
}

fn missing(key: &str) -> KeyFacts {
    KeyFacts {
        key: key.to_string(),
        outcome: Err(SourceFailure {
            reason: "missing_key",
            message: format!("the Secret of type kubernetes.io/tls has no {key} key"),
        }),
    }
}

fn configmap_facts(c: &ConfigMap, ctx: &WatchCtx) -> Vec<KeyFacts> {
    let mut out = Vec::new();
    for k in &ctx.keys {
        if let Some(v) = c.data.as_ref().and_then(|d| d.get(k)) {
            out.push(parse_key(k, v.as_bytes(), &ctx.passphrase));
        } else if let Some(v) = c.binary_data.as_ref().and_then(|d| d.get(k)) {
            out.push(parse_key(k, &v.0, &ctx.passphrase));
        }
    }
    out
}

/// caBundle fields (PEM) by name; an empty or absent bundle is skipped.
fn bundles<'a>(
    ctx: &WatchCtx,
    items: impl Iterator<Item = (String, Option<&'a k8s_openapi::ByteString>)>,
) -> Vec<KeyFacts> {
    items
        .filter_map(|(name, ca)| {
            let ca = ca.filter(|b| !b.0.is_empty())?;
            Some(parse_key(&name, &ca.0, &ctx.passphrase))
        })
        .collect()
}
