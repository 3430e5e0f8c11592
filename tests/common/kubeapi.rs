//! A small test API server on 127.0.0.1 that answers like the Kubernetes API
//! (shapes from the API reference's "API Concepts": list responses with
//! `metadata.resourceVersion` and `metadata.continue`, items without
//! kind/apiVersion; watch streams of `{"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR,
//! "object": ...}` lines; an expired resourceVersion as an ERROR event carrying a
//! 410 `Status` (reason `Expired`); RBAC refusals as a 403 `Status` (reason
//! `Forbidden`)). Used by tests/kubernetes.rs (and tests/stack.rs) through
//! `#[path = "common/kubeapi.rs"] mod kubeapi;`, so the other test binaries
//! that include `common` do not compile it.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame};
use hyper::{Request, Response};
use serde_json::{json, Value};

pub const TOKEN: &str = "test-token";

pub fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

pub enum Live {
    Event(String, String, Value),
    /// End every open watch stream (as an API server restart or a timeout does).
    Close,
}

#[derive(Default)]
pub struct State {
    pub rv: u64,
    pub next_uid: u64,
    /// (resource, namespace, name) -> object (with metadata).
    pub objects: BTreeMap<(String, String, String), Value>,
    /// (resourceVersion, resource, event type, object).
    pub history: Vec<(u64, String, String, Value)>,
    /// Watches from a resourceVersion older than this get 410 Gone.
    pub compacted_before: u64,
    pub forbidden: HashSet<String>,
    /// Every request's path and query.
    pub requests: Vec<String>,
}

#[derive(Clone)]
pub struct FakeApi {
    pub state: Arc<Mutex<State>>,
    pub live: tokio::sync::broadcast::Sender<Arc<Live>>,
    pub port: u16,
}

pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

pub type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

pub fn full(code: u16, v: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())).boxed())
        .unwrap()
}

pub fn kind_of(resource: &str) -> &'static str {
    match resource {
        "secrets" => "Secret",
        "configmaps" => "ConfigMap",
        "validatingwebhookconfigurations" => "ValidatingWebhookConfiguration",
        "pods" => "Pod",
        "statefulsets" => "StatefulSet",
        _ => "Unknown",
    }
}

pub fn api_version_of(resource: &str) -> &'static str {
    match resource {
        "validatingwebhookconfigurations" => "admissionregistration.k8s.io/v1",
        "statefulsets" => "apps/v1",
        _ => "v1",
    }
}

/// (resource, namespace) from a request path.
pub fn route(path: &str) -> Option<(String, Option<String>)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["api", "v1", r] => Some((r.to_string(), None)),
        ["api", "v1", "namespaces", ns, r] => Some((r.to_string(), Some(ns.to_string()))),
        ["apis", "admissionregistration.k8s.io", "v1", r] => Some((r.to_string(), None)),
        ["apis", "apps", "v1", "namespaces", ns, r] => Some((r.to_string(), Some(ns.to_string()))),
        _ => None,
    }
}

/// (resource, namespace, name) from the path of a GET of one namespaced object.
pub fn route_named(path: &str) -> Option<(String, String, String)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["api", "v1", "namespaces", ns, r, name]
        | ["apis", "apps", "v1", "namespaces", ns, r, name] => {
            Some((r.to_string(), ns.to_string(), name.to_string()))
        }
        _ => None,
    }
}

/// Field selectors (`type=`, `metadata.namespace=`/`!=`) and equality label selectors.
pub fn matches(
    obj: &Value,
    ns: &Option<String>,
    fields: Option<&str>,
    labels: Option<&str>,
) -> bool {
    let meta = &obj["metadata"];
    let obj_ns = meta["namespace"].as_str().unwrap_or("");
    if ns.as_deref().is_some_and(|n| n != obj_ns) {
        return false;
    }
    for term in fields.unwrap_or("").split(',').filter(|t| !t.is_empty()) {
        let (key, want, neg) = match term.split_once("!=") {
            Some((k, v)) => (k, v, true),
            None => match term.split_once('=') {
                Some((k, v)) => (k, v.trim_start_matches('='), false),
                None => return false,
            },
        };
        let have = match key {
            "type" => obj["type"].as_str().unwrap_or(""),
            "metadata.namespace" => obj_ns,
            "metadata.name" => meta["name"].as_str().unwrap_or(""),
            _ => return false,
        };
        if (have == want) == neg {
            return false;
        }
    }
    for term in labels.unwrap_or("").split(',').filter(|t| !t.is_empty()) {
        let Some((k, v)) = term.split_once('=') else {
            return false;
        };
        if meta["labels"][k].as_str() != Some(v) {
            return false;
        }
    }
    true
}

impl FakeApi {
    pub async fn start() -> FakeApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (live, _) = tokio::sync::broadcast::channel(1024);
        let api = FakeApi {
            state: Arc::new(Mutex::new(State {
                rv: 100,
                ..Default::default()
            })),
            live,
            port,
        };
        let server = api.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let api = server.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let api = api.clone();
                        async move { Ok::<_, Infallible>(api.handle(req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        api
    }

    pub fn kubeconfig(&self, dir: &Path) -> std::path::PathBuf {
        let p = dir.join("kubeconfig");
        std::fs::write(
            &p,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: http://127.0.0.1:{}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\ncurrent-context: test\nusers:\n- name: test\n  user:\n    token: {TOKEN}\n",
                self.port
            ),
        )
        .unwrap();
        p
    }

    pub fn handle(&self, req: Request<hyper::body::Incoming>) -> Response<Body> {
        let pq = req
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default();
        let mut st = self.state.lock().unwrap();
        st.requests.push(pq);
        let auth = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if auth != Some(&format!("Bearer {TOKEN}")) {
            return full(401, &status(401, "Unauthorized", "Unauthorized"));
        }
        if let Some((resource, ns, name)) = route_named(req.uri().path()) {
            if st.forbidden.contains(&resource) {
                return full(
                    403,
                    &status(403, "Forbidden", &format!("{resource} \"{name}\" is forbidden: User \"system:serviceaccount:{ns}:homelab-monitor\" cannot get resource \"{resource}\" in the namespace \"{ns}\"")),
                );
            }
            return match st.objects.get(&(resource.clone(), ns, name.clone())) {
                Some(o) => full(200, o),
                None => full(
                    404,
                    &status(404, "NotFound", &format!("{resource} \"{name}\" not found")),
                ),
            };
        }
        let Some((resource, ns)) = route(req.uri().path()) else {
            return full(
                404,
                &status(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                ),
            );
        };
        if st.forbidden.contains(&resource) {
            let scope = match &ns {
                Some(n) => format!("in the namespace \"{n}\""),
                None => "at the cluster scope".into(),
            };
            return full(
                403,
                &status(403, "Forbidden", &format!("{resource} is forbidden: User \"system:serviceaccount:monitoring:homelab-monitor\" cannot list resource \"{resource}\" in API group \"\" {scope}")),
            );
        }
        let q: BTreeMap<String, String> =
            url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let fields = q.get("fieldSelector").map(String::as_str);
        let labels = q.get("labelSelector").map(String::as_str);
        if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
            let from: u64 = q
                .get("resourceVersion")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut lines: Vec<String> = Vec::new();
            let rx = self.live.subscribe();
            if from < st.compacted_before {
                lines.push(
                    json!({"type": "ERROR", "object": status(410, "Expired", &format!("too old resource version: {from} ({})", st.compacted_before))})
                        .to_string(),
                );
                return stream_lines(lines, None);
            }
            for (rv, r, typ, obj) in &st.history {
                if *rv > from && *r == resource && matches(obj, &ns, fields, labels) {
                    lines.push(json!({"type": typ, "object": obj}).to_string());
                }
            }
            if q.get("allowWatchBookmarks").is_some_and(|b| b == "true") {
                lines.push(json!({"type": "BOOKMARK", "object": {"kind": kind_of(&resource), "apiVersion": api_version_of(&resource), "metadata": {"resourceVersion": st.rv.to_string()}}}).to_string());
            }
            let filter = Box::new(move |r: &str, obj: &Value| {
                r == resource
                    && matches(
                        obj,
                        &ns,
                        fields_owned(&q, "fieldSelector").as_deref(),
                        fields_owned(&q, "labelSelector").as_deref(),
                    )
            });
            return stream_lines(lines, Some((rx, filter)));
        }
        let offset: usize = q.get("continue").and_then(|c| c.parse().ok()).unwrap_or(0);
        let limit: usize = q
            .get("limit")
            .and_then(|l| l.parse().ok())
            .filter(|l| *l > 0)
            .unwrap_or(usize::MAX);
        let matching = || {
            st.objects
                .iter()
                .filter(|((r, _, _), o)| *r == resource && matches(o, &ns, fields, labels))
        };
        let total = matching().count();
        // Only the page is copied; list items carry no kind/apiVersion.
        let page: Vec<Value> = matching()
            .skip(offset)
            .take(limit)
            .map(|(_, o)| {
                let mut o = o.clone();
                if let Some(m) = o.as_object_mut() {
                    m.remove("kind");
                    m.remove("apiVersion");
                }
                o
            })
            .collect();
        let mut meta = json!({"resourceVersion": st.rv.to_string()});
        if offset + page.len() < total {
            meta["continue"] = json!((offset + page.len()).to_string());
            meta["remainingItemCount"] = json!(total - offset - page.len());
        }
        full(
            200,
            &json!({"kind": format!("{}List", kind_of(&resource)), "apiVersion": api_version_of(&resource), "metadata": meta, "items": page}),
        )
    }

    /// Create or replace an object (ADDED or MODIFIED on open watches).
    pub fn put(&self, resource: &str, ns: &str, name: &str, mut obj: Value) {
        let mut st = self.state.lock().unwrap();
        st.rv += 1;
        let key = (resource.to_string(), ns.to_string(), name.to_string());
        let old_uid = st
            .objects
            .get(&key)
            .and_then(|o| o["metadata"]["uid"].as_str().map(String::from));
        let typ = if old_uid.is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        let uid = old_uid.unwrap_or_else(|| {
            st.next_uid += 1;
            format!("00000000-0000-4000-8000-{:012}", st.next_uid)
        });
        obj["kind"] = json!(kind_of(resource));
        obj["apiVersion"] = json!(api_version_of(resource));
        let meta = obj["metadata"]
            .as_object_mut()
            .map(|m| m.clone())
            .unwrap_or_default();
        let mut meta = Value::Object(meta);
        meta["name"] = json!(name);
        if !ns.is_empty() {
            meta["namespace"] = json!(ns);
        }
        meta["uid"] = json!(uid);
        meta["resourceVersion"] = json!(st.rv.to_string());
        obj["metadata"] = meta;
        st.objects.insert(key, obj.clone());
        let rv = st.rv;
        st.history
            .push((rv, resource.to_string(), typ.to_string(), obj.clone()));
        let _ = self.live.send(Arc::new(Live::Event(
            resource.to_string(),
            typ.to_string(),
            obj,
        )));
    }

    pub fn delete(&self, resource: &str, ns: &str, name: &str) {
        let mut st = self.state.lock().unwrap();
        let key = (resource.to_string(), ns.to_string(), name.to_string());
        let Some(mut obj) = st.objects.remove(&key) else {
            return;
        };
        st.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(st.rv.to_string());
        let rv = st.rv;
        st.history
            .push((rv, resource.to_string(), "DELETED".into(), obj.clone()));
        let _ = self.live.send(Arc::new(Live::Event(
            resource.to_string(),
            "DELETED".into(),
            obj,
        )));
    }

    /// Compact the history (every resourceVersion so far becomes too old to
    /// watch from), remove `gone` without an event, and end the open watches:
    /// the client's next watch gets 410 Gone and must re-list to see the removal.
    pub fn compact_and_drop(&self, resource: &str, ns: &str, gone: &str) {
        let mut st = self.state.lock().unwrap();
        st.objects
            .remove(&(resource.to_string(), ns.to_string(), gone.to_string()));
        st.rv += 1;
        st.compacted_before = st.rv + 1;
        st.history.clear();
        let _ = self.live.send(Arc::new(Live::Close));
    }

    pub fn forbid(&self, resource: &str) {
        self.state.lock().unwrap().forbidden.insert(resource.into());
        let _ = self.live.send(Arc::new(Live::Close));
    }

    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }
}

pub fn fields_owned(q: &BTreeMap<String, String>, k: &str) -> Option<String> {
    q.get(k).cloned()
}

pub type Filter = Box<dyn Fn(&str, &Value) -> bool + Send>;

/// A chunked watch body: `lines` first, then the live events that pass `filter`
/// until a Close (no live part: the stream ends after `lines`).
pub fn stream_lines(
    lines: Vec<String>,
    live: Option<(tokio::sync::broadcast::Receiver<Arc<Live>>, Filter)>,
) -> Response<Body> {
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(1024);
    tokio::spawn(async move {
        for l in lines {
            if tx.send(l).await.is_err() {
                return;
            }
        }
        let Some((mut live, filter)) = live else {
            return;
        };
        loop {
            match live.recv().await {
                Ok(ev) => match &*ev {
                    Live::Close => return,
                    Live::Event(r, typ, obj) => {
                        if filter(r, obj)
                            && tx
                                .send(json!({"type": typ, "object": obj}).to_string())
                                .await
                                .is_err()
                        {
                            return;
                        }
                    }
                },
                Err(_) => return,
            }
        }
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        let line = rx.recv().await?;
        Some((
            Ok::<_, Infallible>(Frame::data(Bytes::from(format!("{line}\n")))),
            rx,
        ))
    });
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(StreamBody::new(body).boxed())
        .unwrap()
}

pub fn tls_secret(cert_pem: &str, ca_pem: Option<&str>, labels: Value) -> Value {
    let mut data = json!({"tls.crt": b64(cert_pem.as_bytes()), "tls.key": b64(b"-----BEGIN PRIVATE KEY-----\nnot-a-real-key\n-----END PRIVATE KEY-----\n")});
    if let Some(ca) = ca_pem {
        data["ca.crt"] = json!(b64(ca.as_bytes()));
    }
    json!({"metadata": {"labels": labels}, "type": "kubernetes.io/tls", "data": data})
}
