//! `/probe?target=host:port&module=NAME`: the multi-target pattern of
//! blackbox_exporter for the certificate monitor. One probe per request (no
//! cache), bounded by the module's timeout and the scraper's own timeout; the
//! answer holds that target's certificate series plus `probe_success` and
//! `probe_duration_seconds`, never the exporter's own metrics (those stay on
//! `/metrics`). At most `probe.max_concurrent` probes run at once (503 beyond).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::StatusCode;
use tokio::sync::Semaphore;

use crate::core::clock::SharedClock;
use crate::core::compress::Encoding;
use crate::core::encoder::Format;
use crate::core::registry::ScrapeBody;
use crate::core::snapshot::{MetricDef, SnapshotBuilder};
use crate::monitors::certificates::modules::ProbeService;

use super::{exposition, scrape_budget, text, Resp};

pub const PROBE_SUCCESS: MetricDef = MetricDef::gauge(
    "probe_success",
    "1 if the target's certificate chain was read (TLS handshake, after STARTTLS if the module asks for it), else 0; trust is in certificate_verified.",
);
pub const PROBE_DURATION: MetricDef = MetricDef::gauge(
    "probe_duration_seconds",
    "How long the probe took, in seconds.",
);

/// The `/probe` endpoint: the configured modules and the concurrency cap.
pub struct ProbeHandler {
    service: Arc<ProbeService>,
    slots: Arc<Semaphore>,
    clock: SharedClock,
}

impl ProbeHandler {
    pub fn new(service: Arc<ProbeService>, clock: SharedClock) -> Self {
        let slots = Arc::new(Semaphore::new(service.max_concurrent));
        ProbeHandler {
            service,
            slots,
            clock,
        }
    }

    /// Answer one `/probe` request: `query` is the raw query string,
    /// `timeout_header` the scraper's `X-Prometheus-Scrape-Timeout-Seconds`.
    pub async fn handle(
        &self,
        query: Option<&str>,
        timeout_header: Option<&str>,
        format: Format,
        encoding: Encoding,
    ) -> Resp {
        let (target, module) = match parse_query(query.unwrap_or("")) {
            Ok(x) => x,
            Err(msg) => return text(StatusCode::BAD_REQUEST, format!("{msg}\n")),
        };
        // The scraper's timeout minus a margin, as /metrics' budget.
        let budget = timeout_header.map(|h| scrape_budget(Some(h), Duration::MAX));
        let ep = match self
            .service
            .endpoint(target.as_deref(), module.as_deref(), budget)
        {
            Ok(ep) => ep,
            Err(e) => {
                tracing::debug!(error = %e, "probe request refused");
                let status = match e {
                    crate::monitors::certificates::modules::ProbeRequestError::NotAllowed(_) => {
                        StatusCode::FORBIDDEN
                    }
                    _ => StatusCode::BAD_REQUEST,
                };
                return text(status, format!("{e}\n"));
            }
        };
        let Ok(_slot) = self.slots.clone().try_acquire_owned() else {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "too many probes at once (probe.max_concurrent = {}); retry later or raise the limit\n",
                    self.service.max_concurrent
                ),
            );
        };
        let began = Instant::now();
        let (snap, ok) = self.service.probe(&ep, self.clock.now()).await;
        let mut b = SnapshotBuilder::new();
        b.gauge(&PROBE_SUCCESS, &[], if ok { 1.0 } else { 0.0 });
        b.gauge(&PROBE_DURATION, &[], began.elapsed().as_secs_f64());
        let snaps = vec![Arc::new(snap), Arc::new(b.build())];
        let body = crate::core::encoder::encode(snaps, format).map(|text| match encoding {
            Encoding::Identity => ScrapeBody::whole(text, encoding),
            Encoding::Gzip => {
                ScrapeBody::whole(crate::core::compress::gzip(text.as_bytes()), encoding)
            }
        });
        exposition(body, format)
    }
}

/// `target` and `module` from a query string (percent-decoded); each at most once.
fn parse_query(query: &str) -> Result<(Option<String>, Option<String>), String> {
    let mut target = None;
    let mut module = None;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        let slot = match k.as_ref() {
            "target" => &mut target,
            "module" => &mut module,
            _ => continue,
        };
        if slot.is_some() {
            return Err(format!("`{k}` is given more than once; give it once"));
        }
        *slot = Some(v.into_owned());
    }
    Ok((target, module))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_decoded_and_repeats_are_refused() {
        assert_eq!(
            parse_query("target=%5B%3A%3A1%5D%3A443&module=smtp&debug=true").unwrap(),
            (Some("[::1]:443".into()), Some("smtp".into()))
        );
        assert_eq!(parse_query("").unwrap(), (None, None));
        assert!(parse_query("target=a:1&target=b:2")
            .unwrap_err()
            .contains("more than once"));
    }

    fn handler(yaml: &str) -> ProbeHandler {
        let cfg: crate::core::config::CertificateConfig = serde_yaml_ng::from_str(yaml).unwrap();
        let svc = ProbeService::from_config(&cfg, std::path::Path::new(".")).unwrap();
        ProbeHandler::new(Arc::new(svc), Arc::new(crate::core::clock::SystemClock))
    }

    async fn body(r: Resp) -> (StatusCode, String) {
        use http_body_util::BodyExt;
        let status = r.status();
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).to_string())
    }

    #[tokio::test]
    async fn bad_requests_are_400_and_disallowed_targets_403() {
        let h = handler("modules: {}\nprobe:\n  allowed_targets: [\"10.0.0.0/8\"]\n");
        let (s, b) = body(
            h.handle(None, None, Format::Classic, Encoding::Identity)
                .await,
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(b.contains("missing target"), "{b}");
        let (s, b) = body(
            h.handle(
                Some("target=10.0.0.1"),
                None,
                Format::Classic,
                Encoding::Identity,
            )
            .await,
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(b.contains("host:port"), "{b}");
        let (s, b) = body(
            h.handle(
                Some("target=10.0.0.1:443&module=nope"),
                None,
                Format::Classic,
                Encoding::Identity,
            )
            .await,
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(b.contains("unknown module \"nope\""), "{b}");
        let (s, b) = body(
            h.handle(
                Some("target=127.0.0.1:443"),
                None,
                Format::Classic,
                Encoding::Identity,
            )
            .await,
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert!(b.contains("allowed_targets"), "{b}");
    }

    #[tokio::test]
    async fn a_full_house_is_503() {
        let h = handler("modules: {}\nprobe:\n  max_concurrent: 1\n");
        let _held = h.slots.clone().try_acquire_owned().unwrap();
        let (s, b) = body(
            h.handle(
                Some("target=127.0.0.1:1"),
                None,
                Format::Classic,
                Encoding::Identity,
            )
            .await,
        )
        .await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert!(b.contains("max_concurrent = 1"), "{b}");
    }

    #[tokio::test]
    async fn the_scrapers_timeout_bounds_a_probe_of_a_silent_server() {
        // Accepts and never speaks: only a deadline ends the probe.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = silent.accept().await {
                held.push(s);
            }
        });
        // The module allows an hour; the scraper gives 1.5 s (1 s after the margin).
        let h = handler("modules:\n  slow: { timeout: 1h }\n");
        let q = format!("target={addr}&module=slow");
        let guard = Duration::from_secs(120);
        let r = tokio::time::timeout(
            guard,
            h.handle(Some(&q), Some("1.5"), Format::Classic, Encoding::Identity),
        )
        .await
        .expect("the probe ignored the scrape timeout");
        let (s, b) = body(r).await;
        assert_eq!(s, StatusCode::OK);
        assert!(b.contains("\nprobe_success 0.0\n"), "{b}");
        assert!(b.contains("reason=\"timeout\""), "{b}");
        hold.abort();
    }

    #[tokio::test]
    async fn a_refused_target_is_200_with_probe_success_0() {
        // A port that was free a moment ago: connection refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let h = handler("modules: {}\n");
        let q = format!("target=127.0.0.1:{port}");
        let (s, b) = body(
            h.handle(
                Some(&q),
                Some("10"),
                Format::OpenMetrics,
                Encoding::Identity,
            )
            .await,
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        let value = |series: &str| {
            b.lines().find_map(|l| {
                l.strip_prefix(series)?
                    .strip_prefix(' ')?
                    .parse::<f64>()
                    .ok()
            })
        };
        assert_eq!(value("probe_success"), Some(0.0), "{b}");
        let up = format!(
            "certificate_source_up{{source=\"endpoint\",endpoint=\"127.0.0.1:{port}\",server_name=\"127.0.0.1\"}}"
        );
        assert_eq!(value(&up), Some(0.0), "{b}");
        assert!(value("probe_duration_seconds").is_some(), "{b}");
        assert!(b.ends_with("# EOF\n"), "{b}");
        assert!(!b.contains("homelab_monitor_"), "{b}");
    }

    #[tokio::test]
    async fn a_probe_answer_is_gzip_when_asked_and_decodes_to_the_same_series() {
        use std::io::Read;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let h = handler("modules: {}\n");
        let q = format!("target=127.0.0.1:{port}");
        let r = h
            .handle(Some(&q), Some("10"), Format::Classic, Encoding::Gzip)
            .await;
        assert_eq!(r.headers()["content-encoding"], "gzip");
        assert_eq!(r.headers()["vary"], "Accept-Encoding");
        use http_body_util::BodyExt;
        let z = r.into_body().collect().await.unwrap().to_bytes();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&z[..])
            .read_to_string(&mut text)
            .unwrap();
        assert!(text.contains("\nprobe_success 0.0\n"), "{text}");
        let r = h
            .handle(Some(&q), Some("10"), Format::Classic, Encoding::Identity)
            .await;
        assert!(r.headers().get("content-encoding").is_none());
        assert_eq!(r.headers()["vary"], "Accept-Encoding");
    }
}
