//! `custom_monitors.certificate_expiry`: the certificate monitor's config
//! block, its defaults and checks.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::core::config::values::monitor_config;
use crate::core::config::values::{split_host_port, ByteSize, GlobPattern, HumanDuration};

monitor_config! {
    /// `custom_monitors.certificate_expiry`.
    pub struct CertificateConfig {
        default check_interval: Duration::from_secs(3600);
        #[serde(default = "CertificateConfig::default_warning")]
        pub warning_days: u32,
        #[serde(default = "CertificateConfig::default_critical")]
        pub critical_days: u32,
        /// Fraction of the lifetime (notAfter - notBefore) left under which a
        /// short-lived certificate (`short_lived_days`) is a warning: 0.2 = the
        /// last 20% (34 hours of a 7-day certificate).
        #[serde(default = "CertificateConfig::default_warning_ratio")]
        pub warning_ratio: f64,
        /// As `warning_ratio`, critical.
        #[serde(default = "CertificateConfig::default_critical_ratio")]
        pub critical_ratio: f64,
        /// Certificates whose whole lifetime is at most this many days are
        /// judged by `warning_ratio`/`critical_ratio` instead of `warning_days`/
        /// `critical_days` (which would hold them for their whole life). 0 (default): off.
        #[serde(default)]
        pub short_lived_days: u32,
        /// Files, globs and folders (recursive), relative to the config file's folder.
        #[serde(default)]
        pub paths: Vec<GlobPattern>,
        #[serde(default)]
        pub endpoints: Vec<EndpointSpec>,
        /// CRL files and globs (DER or PEM), relative to the config file's folder.
        #[serde(default)]
        pub crls: Vec<GlobPattern>,
        /// Default per-endpoint timeout (connect, STARTTLS and handshake together).
        #[serde(default = "CertificateConfig::default_endpoint_timeout")]
        pub endpoint_timeout: HumanDuration,
        /// How many endpoints are probed at the same time.
        #[serde(default = "CertificateConfig::default_concurrency")]
        pub endpoint_concurrency: usize,
        /// File holding the PKCS#12 passphrase (first line), relative to the config file's folder.
        #[serde(default)]
        pub pkcs12_passphrase_file: Option<String>,
        /// Name of an environment variable holding the PKCS#12 passphrase.
        #[serde(default)]
        pub pkcs12_passphrase_env: Option<String>,
        /// Largest certificate file read; larger files are reported as errors.
        #[serde(default = "CertificateConfig::default_max_file_size")]
        pub max_file_size: ByteSize,
        /// Deepest folder level searched below a configured folder.
        #[serde(default = "CertificateConfig::default_max_depth")]
        pub max_depth: usize,
        /// `/probe` modules by name (endpoint options without the address); see `modules.rs`.
        #[serde(default)]
        pub modules: Option<std::collections::BTreeMap<String, super::modules::ProbeModule>>,
        /// `/probe` settings: `allowed_targets`, `max_concurrent`.
        #[serde(default)]
        pub probe: Option<super::modules::ProbeSettings>,
        /// Certificates read through the Kubernetes API (`kubernetes.rs`).
        #[serde(default)]
        pub kubernetes: Option<super::kubernetes::KubernetesConfig>,
    }
}

impl CertificateConfig {
    fn default_warning() -> u32 {
        30
    }
    fn default_critical() -> u32 {
        7
    }
    fn default_warning_ratio() -> f64 {
        0.2
    }
    fn default_critical_ratio() -> f64 {
        0.1
    }
    fn default_endpoint_timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(10))
    }
    fn default_concurrency() -> usize {
        16
    }
    fn default_max_file_size() -> ByteSize {
        ByteSize(16 << 20)
    }
    fn default_max_depth() -> usize {
        16
    }

    /// Cross-field checks, run at load time. Returns (key below certificate_expiry, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.critical_days > self.warning_days {
            return Err((
                "critical_days".into(),
                format!(
                    "critical_days ({}) must not be larger than warning_days ({})",
                    self.critical_days, self.warning_days
                ),
            ));
        }
        for (key, r) in [
            ("warning_ratio", self.warning_ratio),
            ("critical_ratio", self.critical_ratio),
        ] {
            if !(0.0..=1.0).contains(&r) {
                return Err((
                    key.into(),
                    format!("{key} ({r}) must be between 0 and 1 (a fraction of the certificate's lifetime, 0.2 = the last 20%)"),
                ));
            }
        }
        if self.critical_ratio > self.warning_ratio {
            return Err((
                "critical_ratio".into(),
                format!(
                    "critical_ratio ({}) must not be larger than warning_ratio ({})",
                    self.critical_ratio, self.warning_ratio
                ),
            ));
        }
        if self.endpoint_concurrency == 0 {
            return Err((
                "endpoint_concurrency".into(),
                "endpoint_concurrency must be at least 1".into(),
            ));
        }
        if self.endpoint_timeout.0.is_zero() {
            return Err((
                "endpoint_timeout".into(),
                "endpoint_timeout must be longer than zero".into(),
            ));
        }
        if let Some(env) = &self.pkcs12_passphrase_env {
            if env.is_empty() || env.contains('=') || env.contains('\0') {
                return Err((
                    "pkcs12_passphrase_env".into(),
                    "pkcs12_passphrase_env must be the name of an environment variable".into(),
                ));
            }
        }
        if self.pkcs12_passphrase_file.is_some() && self.pkcs12_passphrase_env.is_some() {
            return Err((
                "pkcs12_passphrase_env".into(),
                "set pkcs12_passphrase_file or pkcs12_passphrase_env, not both".into(),
            ));
        }
        if self
            .pkcs12_passphrase_file
            .as_deref()
            .is_some_and(str::is_empty)
        {
            return Err((
                "pkcs12_passphrase_file".into(),
                "pkcs12_passphrase_file must not be empty".into(),
            ));
        }
        super::modules::validate(self)?;
        if let Some(k) = &self.kubernetes {
            k.validate()?;
        }
        let mut seen = std::collections::HashSet::new();
        for (i, e) in self.endpoints.iter().enumerate() {
            let d = e.details();
            // The key stays `endpoints` so that the error can name its line.
            let key = "endpoints".to_string();
            let at = |m: String| (key.clone(), format!("endpoints[{i}]: {m}"));
            split_host_port(&d.address).map_err(at)?;
            if d.timeout.is_some_and(|t| t.0.is_zero()) {
                return Err(at("timeout must be longer than zero".into()));
            }
            if d.server_name
                .as_deref()
                .is_some_and(|s| s.trim().is_empty())
            {
                return Err(at("server_name must not be empty".into()));
            }
            if d.ca_file.as_deref().is_some_and(str::is_empty) {
                return Err(at("ca_file must not be empty".into()));
            }
            if let Some(r) = &d.revocation {
                r.validate().map_err(at)?;
            }
            if !seen.insert((d.address.clone(), d.server_name.clone())) {
                return Err(at(format!(
                    "endpoint {} is listed twice with the same server_name; each endpoint/server_name pair must be unique",
                    d.address
                )));
            }
        }
        Ok(())
    }
}

/// A TLS endpoint: `"host:port"` or a map with options.
#[derive(Debug, Clone, PartialEq)]
pub enum EndpointSpec {
    Address(String),
    Detailed(EndpointDetails),
}

// Not `#[serde(untagged)]`: that would hide "unknown key" and "unknown starttls"
// behind "did not match any variant". A string or a map, each with its own errors.
impl<'de> Deserialize<'de> for EndpointSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = EndpointSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a host:port string or a map with `address` and options")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<EndpointSpec, E> {
                Ok(EndpointSpec::Address(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<EndpointSpec, A::Error> {
                EndpointDetails::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(EndpointSpec::Detailed)
            }
        }
        d.deserialize_any(V)
    }
}

impl EndpointSpec {
    /// The endpoint as a map (a plain address has no options).
    pub fn details(&self) -> EndpointDetails {
        match self {
            EndpointSpec::Address(a) => EndpointDetails {
                address: a.clone(),
                server_name: None,
                starttls: None,
                timeout: None,
                ca_file: None,
                revocation: None,
            },
            EndpointSpec::Detailed(d) => d.clone(),
        }
    }
}

/// Plain-text protocols upgraded to TLS before the handshake (dialogues in `starttls.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartTls {
    Smtp,
    Imap,
    Pop3,
    Ftp,
    Mysql,
    #[serde(alias = "postgresql")]
    Postgres,
    Ldap,
    Xmpp,
}

impl StartTls {
    pub fn as_str(self) -> &'static str {
        match self {
            StartTls::Smtp => "smtp",
            StartTls::Imap => "imap",
            StartTls::Pop3 => "pop3",
            StartTls::Ftp => "ftp",
            StartTls::Mysql => "mysql",
            StartTls::Postgres => "postgres",
            StartTls::Ldap => "ldap",
            StartTls::Xmpp => "xmpp",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointDetails {
    pub address: String,
    /// SNI and the name verified; defaults to the host of `address`.
    #[serde(default)]
    pub server_name: Option<String>,
    #[serde(default)]
    pub starttls: Option<StartTls>,
    /// Overrides `endpoint_timeout` for this endpoint.
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    /// PEM file of CA certificates to verify against instead of the built-in web roots.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Active OCSP / CRL checks of the leaf (off by default; see `revocation.rs`).
    #[serde(default)]
    pub revocation: Option<super::revocation::RevocationConfig>,
}
