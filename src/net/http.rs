//! The one HTTP client stack: `reqwest` (HTTP/1.1, rustls with ring) over a
//! TLS configuration from [`super::tls`]. The remote-state client and the
//! `http` health check both start from [`client_builder`] and add their own
//! timeouts, proxy and pool settings.

/// The user agent of every request.
pub const USER_AGENT: &str = concat!("homelab-monitor/", env!("CARGO_PKG_VERSION"));

/// A `reqwest` builder with this TLS configuration, following at most
/// `max_redirects` redirects (0: none), with our user agent.
pub fn client_builder(tls: rustls::ClientConfig, max_redirects: u32) -> reqwest::ClientBuilder {
    let redirects = match max_redirects {
        0 => reqwest::redirect::Policy::none(),
        n => reqwest::redirect::Policy::limited(n as usize),
    };
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(redirects)
        .user_agent(USER_AGENT)
}

/// Every cause of an error, outermost first, including the errors that
/// `std::io::Error` wraps (its `source()` skips them).
pub fn causes<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut out = Vec::new();
    let mut next = Some(e);
    while let Some(c) = next {
        if out.len() > 32 {
            break;
        }
        out.push(c);
        next = match c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => c.source(),
        };
    }
    out
}
