//! AWS credentials for the s3 backend from AWS's own standard chain
//! (`aws-config`'s providers, chained as its `DefaultCredentialsChain` does),
//! in the SDKs' order:
//! environment (`AWS_ACCESS_KEY_ID`…), the selected profile of the shared files
//! (`profile` of the entry, else `AWS_PROFILE`, else `default`; static keys,
//! `role_arn` + `source_profile` / `credential_source` / `web_identity_token_file`,
//! `credential_process`, SSO), web identity (`AWS_ROLE_ARN` +
//! `AWS_WEB_IDENTITY_TOKEN_FILE`), container credentials (ECS, EKS Pod
//! Identity) and EC2 instance metadata (IMDSv2). No provider is written here:
//! this module only adapts the async chain to the blocking s3 backend and
//! caches what it hands out.
//!
//! The environment comes from the caller ([`Env`]): the static keys
//! (`AWS_ACCESS_KEY_ID`…, given to the SDK's static provider), the profile
//! name (`AWS_PROFILE`), the shared files (`AWS_CONFIG_FILE`,
//! `AWS_SHARED_CREDENTIALS_FILE`, `HOME`), web identity (`AWS_ROLE_ARN`,
//! `AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_ROLE_SESSION_NAME`) and IMDS
//! (`AWS_EC2_METADATA_DISABLED`, `AWS_EC2_METADATA_SERVICE_ENDPOINT[_MODE]`)
//! are fed to aws-config's builders from it. aws-config still reads some
//! variables from the process itself (its `Env` injection is not public):
//! see [`PROCESS_ONLY`].
//!
//! The chain runs on one small runtime of its own (its HTTP client and
//! connection pool live there, whatever runtime or thread the caller is on).
//! One chain is kept per entry setup (profile, region, `ca_file`, the `AWS_*`
//! environment and the shared files' size and time, so an edit or a rotated
//! file is picked up); temporary credentials are reused until 5 minutes before
//! they expire. Messages name the providers and aws-config's reason, never a
//! key, secret or token.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime};

use aws_config::ecs::EcsCredentialsProvider;
use aws_config::imds::credentials::ImdsCredentialsProvider;
use aws_config::meta::credentials::CredentialsProviderChain;
// aws-config's own names of aws-runtime's types (which is not a direct
// dependency); its `profile_files` takes them.
#[allow(deprecated)]
use aws_config::profile::profile_file::{ProfileFileKind, ProfileFiles};
use aws_config::profile::ProfileFileCredentialsProvider;
use aws_config::provider_config::ProviderConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::web_identity_token::{StaticConfiguration, WebIdentityTokenCredentialsProvider};
use aws_config::Region;
use aws_credential_types::provider::error::CredentialsError as SdkError;
use aws_credential_types::provider::{future, ProvideCredentials, SharedCredentialsProvider};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};

use super::client::Budget;
use super::env::Env;

/// Variables aws-config 1.13 reads from the process environment itself,
/// whatever [`Env`] is given (its `Env` injection is `pub(crate)`, or behind
/// its `test-util` feature); documented in docs/remote-state.md. Besides
/// these, when [`Env`] does not set them: `AWS_EC2_METADATA_SERVICE_ENDPOINT`
/// and `_MODE` (IMDS address), and the keys of `credential_source =
/// Environment` in a profile.
pub const PROCESS_ONLY: &[&str] = &[
    // Container credentials (ECS, EKS Pod Identity), also `credential_source = EcsContainer`.
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    // Endpoints of the STS, SSO and SSO-OIDC clients inside the providers.
    "AWS_ENDPOINT_URL_STS",
    "AWS_ENDPOINT_URL_SSO",
    "AWS_ENDPOINT_URL_SSO_OIDC",
    "AWS_ENDPOINT_URL",
    // Honoured from the process too: `true` there turns IMDS off.
    "AWS_EC2_METADATA_DISABLED",
    // The SSO token cache (`~/.aws/sso/cache`).
    "HOME",
];

/// Fetch temporary credentials again this long before they expire.
pub const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);
/// Cached credentials still used (when a refresh fails) if valid this much longer.
const MIN_VALIDITY: Duration = Duration::from_secs(60);
/// Timeouts of each instance metadata request (one attempt).
pub const IMDS_TIMEOUT: Duration = Duration::from_secs(1);
/// Chains kept at most (one per entry setup); past it the cache starts anew.
const MAX_CHAINS: usize = 64;

/// A set of AWS credentials. `Debug` shows none of them.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    /// When temporary credentials expire.
    pub expiration: Option<SystemTime>,
}

impl AwsCredentials {
    pub fn new(
        key: impl Into<String>,
        secret: impl Into<String>,
        token: Option<String>,
        expiration: Option<SystemTime>,
    ) -> Self {
        AwsCredentials {
            access_key_id: key.into(),
            secret_access_key: secret.into(),
            session_token: token.filter(|t| !t.is_empty()),
            expiration,
        }
    }
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &"<redacted>")
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("expiration", &self.expiration)
            .finish()
    }
}

/// Why no credentials could be had. Both map to the `credentials` reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("no AWS credentials found (tried: environment (AWS_ACCESS_KEY_ID), profile {profile} of the shared files, web identity (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE), container credentials (AWS_CONTAINER_CREDENTIALS_*), EC2 instance metadata): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile in ~/.aws/credentials or ~/.aws/config (AWS_PROFILE or `profile`), AWS_ROLE_ARN with AWS_WEB_IDENTITY_TOKEN_FILE, a container credentials endpoint, or run on EC2 with an instance role ({detail})")]
    NotFound { profile: String, detail: String },
    #[error("AWS credentials from the standard chain (profile {profile}) failed: {message}")]
    Provider { profile: String, message: String },
}

/// What one entry asks of the chain.
#[derive(Debug, Clone)]
pub struct ChainRequest<'a> {
    /// `profile` of the entry (else `AWS_PROFILE`, else `default`).
    pub profile: Option<&'a str>,
    /// Region of the entry: the STS and SSO endpoints' region.
    pub region: &'a str,
    /// CA roots for STS, SSO and https container endpoints (the entry's
    /// `ca_file`); else the system's roots.
    pub ca_file: Option<&'a Path>,
}

/// Resolve credentials through the standard chain (see the module doc).
/// Blocking; bounded by `budget` (the time left of the collection).
pub fn resolve(
    req: &ChainRequest<'_>,
    env: &Env,
    budget: &Budget,
    now: SystemTime,
) -> Result<AwsCredentials, CredentialsError> {
    let settings = ChainSettings::of(req.profile, env);
    let profile = settings.profile.clone();
    let entry = chain_for(req, &settings, env)?;
    // One resolution per chain at a time: a credential_process runs once.
    let mut cached = entry.cached.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = cached.as_ref().filter(|c| fresh(c.expiration, now)) {
        return Ok(c.clone());
    }
    let chain = entry.chain.clone();
    let limit = budget.remaining();
    let got = run(async move {
        match tokio::time::timeout(limit, chain.provide_credentials()).await {
            Ok(r) => r.map_err(Some),
            Err(_) => Err(None),
        }
    });
    match got {
        Some(Ok(c)) => {
            let creds = AwsCredentials::new(
                c.access_key_id(),
                c.secret_access_key(),
                c.session_token().map(str::to_string),
                c.expiry(),
            );
            // Static credentials are asked for again (files may change);
            // temporary ones are kept until shortly before they expire.
            *cached = creds.expiration.map(|_| creds.clone());
            Ok(creds)
        }
        failed => {
            // A failed refresh: credentials still valid a while longer serve.
            if let Some(c) = cached.as_ref().filter(|c| {
                c.expiration
                    .is_some_and(|e| e.duration_since(now).is_ok_and(|d| d > MIN_VALIDITY))
            }) {
                tracing::warn!(profile = %profile, "refreshing AWS credentials failed; using the cached ones until they expire");
                return Ok(c.clone());
            }
            Err(describe(failed, &profile, limit))
        }
    }
}

/// [`resolve`] for async callers: runs on the blocking pool of the caller's
/// runtime.
pub async fn resolve_async(
    profile: Option<String>,
    region: String,
    ca_file: Option<PathBuf>,
    budget: Budget,
    env: Env,
) -> Result<AwsCredentials, CredentialsError> {
    let what = profile.clone().unwrap_or_else(|| "default".into());
    tokio::task::spawn_blocking(move || {
        resolve(
            &ChainRequest {
                profile: profile.as_deref(),
                region: &region,
                ca_file: ca_file.as_deref(),
            },
            &env,
            &budget,
            SystemTime::now(),
        )
    })
    .await
    .unwrap_or_else(|_| {
        Err(CredentialsError::Provider {
            profile: what,
            message: "the credential lookup stopped".into(),
        })
    })
}

/// Temporary credentials are fresh until [`REFRESH_BEFORE`] their expiry.
pub fn fresh(expiration: Option<SystemTime>, now: SystemTime) -> bool {
    expiration.is_some_and(|e| e.duration_since(now).is_ok_and(|d| d > REFRESH_BEFORE))
}

/// The error of a failed resolution (`None` inside: the budget ran out; the
/// outer `None`: the chain's runtime is gone).
fn describe(
    failed: Option<Result<aws_credential_types::Credentials, Option<SdkError>>>,
    profile: &str,
    limit: Duration,
) -> CredentialsError {
    let profile = profile.to_string();
    match failed {
        Some(Err(Some(e @ SdkError::CredentialsNotLoaded(_)))) => CredentialsError::NotFound {
            profile,
            detail: reasons(&e),
        },
        Some(Err(Some(e))) => {
            let mut message = reasons(&e);
            if message.contains("SSO token") {
                message.push_str(&format!(
                    " (log in again: `aws sso login --profile {profile}`)"
                ));
            }
            CredentialsError::Provider { profile, message }
        }
        Some(Err(None)) => CredentialsError::Provider {
            profile,
            message: format!(
                "no answer within the time left of the collection ({} ms)",
                limit.as_millis()
            ),
        },
        Some(Ok(_)) | None => CredentialsError::Provider {
            profile,
            message: "the credential chain stopped (aws-config panicked; see the log)".into(),
        },
    }
}

/// An error and its sources, by their `Display` only: aws-config's `Debug`
/// (and `DisplayErrorContext`) show raw HTTP responses, which may hold
/// credentials.
fn reasons(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

// ---------------------------------------------------------------- the runtime

/// The chains' own runtime: their HTTP client and sleeps live here, so a
/// cached chain outlives whichever runtime asked first.
static RUNTIME: LazyLock<Option<tokio::runtime::Runtime>> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("aws-credentials")
        .enable_all()
        .build()
        .map_err(|e| tracing::error!(error = %e, "cannot start the AWS credentials runtime"))
        .ok()
});

/// Run `fut` on the chains' runtime and wait for it (from a blocking thread;
/// works whether or not the caller is inside another runtime). `None` if the
/// runtime could not start.
fn run<T: Send + 'static>(fut: impl std::future::Future<Output = T> + Send + 'static) -> Option<T> {
    let rt = RUNTIME.as_ref()?;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().ok()
}

// ---------------------------------------------------------------- the chains

struct Chain {
    chain: Arc<CredentialsProviderChain>,
    cached: Mutex<Option<AwsCredentials>>,
}

static CHAINS: LazyLock<Mutex<HashMap<String, Arc<Chain>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// What the chain takes from [`Env`] (a pure function of it, so that tests
/// check it on a map). Holds secrets: no `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ChainSettings {
    /// `profile` of the entry, else `AWS_PROFILE`, else `default`.
    pub profile: String,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (or `SECRET_ACCESS_KEY`),
    /// `AWS_SESSION_TOKEN`: the environment provider's keys.
    pub static_keys: Option<(String, String, Option<String>)>,
    /// The shared config and credentials files (`AWS_CONFIG_FILE`,
    /// `AWS_SHARED_CREDENTIALS_FILE`, else under `HOME`); `None`: no HOME.
    pub config_file: Option<PathBuf>,
    pub credentials_file: Option<PathBuf>,
    /// `AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_ROLE_ARN`, `AWS_ROLE_SESSION_NAME`.
    pub web_identity: Option<(PathBuf, String, Option<String>)>,
    /// `AWS_EC2_METADATA_DISABLED=true` (case-insensitive).
    pub imds_disabled: bool,
    /// `AWS_EC2_METADATA_SERVICE_ENDPOINT` and `_MODE`.
    pub imds_endpoint: Option<String>,
    pub imds_mode: Option<String>,
}

impl ChainSettings {
    pub(crate) fn of(explicit_profile: Option<&str>, env: &Env) -> Self {
        let set = |k: &str| env.get(k).filter(|v| !v.trim().is_empty());
        let home = set("HOME");
        // As aws-config: a leading `~/` is the home folder.
        let file = |var: &str, default: &str| match set(var) {
            Some(p) => Some(match (p.strip_prefix("~/"), home) {
                (Some(rest), Some(h)) => Path::new(h).join(rest),
                _ => PathBuf::from(p),
            }),
            None => home.map(|h| Path::new(h).join(default)),
        };
        let static_keys = match (
            set("AWS_ACCESS_KEY_ID"),
            set("AWS_SECRET_ACCESS_KEY").or_else(|| set("SECRET_ACCESS_KEY")),
        ) {
            (Some(k), Some(s)) => Some((
                k.to_string(),
                s.to_string(),
                set("AWS_SESSION_TOKEN").map(|t| t.trim().to_string()),
            )),
            _ => None,
        };
        let web_identity = match (set("AWS_WEB_IDENTITY_TOKEN_FILE"), set("AWS_ROLE_ARN")) {
            (Some(f), Some(arn)) => Some((
                PathBuf::from(f),
                arn.to_string(),
                set("AWS_ROLE_SESSION_NAME").map(str::to_string),
            )),
            _ => None,
        };
        ChainSettings {
            profile: explicit_profile
                .or_else(|| set("AWS_PROFILE"))
                .unwrap_or("default")
                .to_string(),
            static_keys,
            config_file: file("AWS_CONFIG_FILE", ".aws/config"),
            credentials_file: file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials"),
            web_identity,
            imds_disabled: set("AWS_EC2_METADATA_DISABLED")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
            imds_endpoint: set("AWS_EC2_METADATA_SERVICE_ENDPOINT").map(str::to_string),
            imds_mode: set("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE").map(str::to_string),
        }
    }

    /// The shared files that exist (aws-config refuses an explicit file that
    /// does not; a missing one is an empty one, as its default files are).
    #[allow(deprecated)]
    fn profile_files(&self) -> ProfileFiles {
        // aws-config wants at least one source: an empty config stands for
        // missing files.
        let mut files = ProfileFiles::builder().with_contents(ProfileFileKind::Config, "");
        for (kind, path, var) in [
            (
                ProfileFileKind::Config,
                &self.config_file,
                "AWS_CONFIG_FILE",
            ),
            (
                ProfileFileKind::Credentials,
                &self.credentials_file,
                "AWS_SHARED_CREDENTIALS_FILE",
            ),
        ] {
            match path {
                Some(p) if p.is_file() => files = files.with_file(kind, p),
                Some(p) => {
                    tracing::debug!(file = %p.display(), variable = var, "AWS shared file not found")
                }
                None => {}
            }
        }
        files.build()
    }
}

/// The chain of this setup, built on first use.
fn chain_for(
    req: &ChainRequest<'_>,
    settings: &ChainSettings,
    env: &Env,
) -> Result<Arc<Chain>, CredentialsError> {
    let profile = settings.profile.as_str();
    let key = setup_key(req, settings, env);
    let mut chains = CHAINS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = chains.get(&key) {
        return Ok(c.clone());
    }
    let ca_pem = match req.ca_file {
        Some(f) => Some(read_ca(f).map_err(|message| CredentialsError::Provider {
            profile: profile.to_string(),
            message,
        })?),
        None => None,
    };
    let region = req.region.to_string();
    let owned = settings.clone();
    let chain = run(async move { build_chain(owned, region, ca_pem).await })
        .ok_or_else(|| CredentialsError::Provider {
            profile: profile.to_string(),
            message: "the AWS credentials runtime could not start".into(),
        })?
        .map_err(|message| CredentialsError::Provider {
            profile: profile.to_string(),
            message,
        })?;
    let entry = Arc::new(Chain {
        chain: Arc::new(chain),
        cached: Mutex::new(None),
    });
    if chains.len() >= MAX_CHAINS {
        chains.clear();
    }
    chains.insert(key, entry.clone());
    Ok(entry)
}

async fn build_chain(
    settings: ChainSettings,
    region: String,
    ca_pem: Option<Vec<u8>>,
) -> Result<CredentialsProviderChain, String> {
    let trust = match ca_pem {
        Some(pem) => TrustStore::empty().with_pem_certificate(pem),
        None => TrustStore::default(),
    };
    let tls_context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| format!("the TLS set-up failed: {}", reasons(&e)))?;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(tls_context)
        .build_https();
    let conf = ProviderConfig::without_region()
        .with_region(Some(Region::new(region)))
        .with_http_client(http);
    let mut imds = aws_config::imds::Client::builder()
        .configure(&conf)
        .max_attempts(1)
        .connect_timeout(IMDS_TIMEOUT)
        .read_timeout(IMDS_TIMEOUT);
    let mut imds_usable = !settings.imds_disabled;
    if let Some(mode) = &settings.imds_mode {
        match mode.parse::<aws_config::imds::client::EndpointMode>() {
            Ok(m) => imds = imds.endpoint_mode(m),
            Err(_) => tracing::warn!(
                "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE is neither IPv4 nor IPv6: ignored"
            ),
        }
    }
    if let Some(endpoint) = &settings.imds_endpoint {
        match imds.endpoint(endpoint) {
            Ok(b) => imds = b,
            Err(_) => {
                tracing::warn!("AWS_EC2_METADATA_SERVICE_ENDPOINT is not a URL: EC2 instance metadata is not asked");
                imds_usable = false;
                imds = aws_config::imds::Client::builder();
            }
        }
    }
    let imds = imds.build();
    let conf = conf.with_timeout_config(
        TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(10))
            .build(),
    );
    // DefaultCredentialsChain's providers in its order, each named in errors;
    // those the environment does not configure are left out (aws-config's
    // own would report "not loaded" and pass on).
    let mut providers: Vec<(&'static str, SharedCredentialsProvider)> = Vec::new();
    if let Some((key, secret, token)) = settings.static_keys.clone() {
        // The SDK's static provider, fed from our environment.
        let creds =
            aws_credential_types::Credentials::new(key, secret, token, None, "EnvironmentVariable");
        providers.push((
            "Environment",
            SharedCredentialsProvider::new(named("environment", creds)),
        ));
    }
    let mut profile_provider = ProfileFileCredentialsProvider::builder()
        .configure(&conf)
        .profile_files(settings.profile_files())
        .profile_name(&settings.profile);
    if let Some((key, secret, token)) = settings.static_keys.clone() {
        // `credential_source = Environment` of a profile: the same keys.
        profile_provider = profile_provider.with_custom_provider(
            "Environment",
            aws_credential_types::Credentials::new(key, secret, token, None, "EnvironmentVariable"),
        );
    }
    let profile_provider = profile_provider.build();
    providers.push((
        "Profile",
        SharedCredentialsProvider::new(named("the shared files' profile", profile_provider)),
    ));
    if let Some((token_file, role_arn, session)) = settings.web_identity.clone() {
        let session_name = session.unwrap_or_else(|| {
            // aws-config's own default name for this provider.
            let ms = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0);
            format!("web-identity-token-{ms}")
        });
        let provider = WebIdentityTokenCredentialsProvider::builder()
            .configure(&conf)
            .static_configuration(StaticConfiguration {
                web_identity_token_file: token_file,
                role_arn,
                session_name,
            })
            .build();
        providers.push((
            "WebIdentityToken",
            SharedCredentialsProvider::new(named("web identity", provider)),
        ));
    }
    providers.push((
        "EcsContainer",
        SharedCredentialsProvider::new(named(
            "container credentials",
            EcsCredentialsProvider::builder().configure(&conf).build(),
        )),
    ));
    if imds_usable {
        providers.push((
            "Ec2InstanceMetadata",
            SharedCredentialsProvider::new(named(
                "EC2 instance metadata",
                ImdsCredentialsProvider::builder()
                    .configure(&conf)
                    .imds_client(imds)
                    .build(),
            )),
        ));
    }
    let mut providers = providers.into_iter();
    let Some((name, first)) = providers.next() else {
        return Err("no credential provider".into());
    };
    Ok(providers.fold(
        CredentialsProviderChain::first_try(name, first),
        |chain, (name, p)| chain.or_else(name, p),
    ))
}

/// A provider of the chain whose failures name it (aws-config's errors do not).
#[derive(Debug)]
struct Named<P> {
    name: &'static str,
    inner: P,
}

fn named<P: ProvideCredentials>(name: &'static str, inner: P) -> Named<P> {
    Named { name, inner }
}

impl<P: ProvideCredentials> ProvideCredentials for Named<P> {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            self.inner.provide_credentials().await.map_err(|e| match e {
                SdkError::CredentialsNotLoaded(_) => e,
                other => SdkError::provider_error(Failed {
                    provider: self.name,
                    source: other,
                }),
            })
        })
    }
}

#[derive(Debug)]
struct Failed {
    provider: &'static str,
    source: SdkError,
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.provider)
    }
}

impl std::error::Error for Failed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The PEM of `ca_file`, checked here: aws-smithy-http-client panics on a
/// PEM it cannot parse.
fn read_ca(f: &Path) -> Result<Vec<u8>, String> {
    use rustls_pki_types::pem::PemObject;
    let pem = std::fs::read(f)
        .map_err(|e| format!("cannot read ca_file {}: {}", f.display(), e.kind()))?;
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| format!("ca_file {} is not valid PEM", f.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in certs {
        roots.add(c).map_err(|_| {
            format!(
                "ca_file {} holds a certificate that cannot be parsed",
                f.display()
            )
        })?;
    }
    if roots.is_empty() {
        return Err(format!("ca_file {} holds no certificate", f.display()));
    }
    Ok(pem)
}

/// What a chain depends on: the entry's profile, region and `ca_file`, the
/// `AWS_*` variables and `HOME` of `env`, and the shared files' size and time.
fn setup_key(req: &ChainRequest<'_>, settings: &ChainSettings, env: &Env) -> String {
    let vars: Vec<(&str, &str)> = env
        .with_prefix("AWS_")
        .chain(env.get("HOME").map(|h| ("HOME", h)))
        .collect();
    let file = |p: &Option<PathBuf>| {
        let meta = p.as_ref().and_then(|p| std::fs::metadata(p).ok());
        format!(
            "{:?}:{:?}:{:?}",
            p,
            meta.as_ref().map(|m| m.len()),
            meta.and_then(|m| m.modified().ok())
        )
    };
    format!(
        "{}|{:?}|{}|{:?}|{}|{}|{:?}",
        settings.profile,
        req.profile,
        req.region,
        req.ca_file,
        file(&settings.config_file),
        file(&settings.credentials_file),
        vars
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn budget() -> Budget {
        Budget {
            deadline: Instant::now() + Duration::from_secs(10),
            request_timeout: Duration::from_secs(5),
            retries: 0,
            max_size: 1 << 20,
        }
    }

    #[test]
    fn freshness_refreshes_five_minutes_early() {
        let now = SystemTime::now();
        assert!(!fresh(None, now));
        assert!(fresh(Some(now + Duration::from_secs(3600)), now));
        assert!(!fresh(Some(now + Duration::from_secs(200)), now));
        assert!(!fresh(Some(now - Duration::from_secs(1)), now));
    }

    #[test]
    fn debug_shows_no_secret() {
        let c = AwsCredentials::new("AKIAKEY", "s3cr3t", Some("t0k".into()), None);
        let d = format!("{c:?}");
        assert!(!d.contains("AKIAKEY") && !d.contains("s3cr3t") && !d.contains("t0k"));
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused_before_aws_config_sees_it() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ca.pem");
        std::fs::write(&f, "not a certificate\n").unwrap();
        let e = read_ca(&f).unwrap_err();
        assert!(e.contains("holds no certificate"), "{e}");
        std::fs::write(
            &f,
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = read_ca(&f).unwrap_err();
        assert!(e.contains("not valid PEM"), "{e}");
    }

    #[test]
    fn an_unreadable_ca_file_is_a_credentials_error() {
        let e = resolve(
            &ChainRequest {
                profile: Some("x"),
                region: "us-east-1",
                ca_file: Some(Path::new("/nonexistent/ca.pem")),
            },
            &Env::default(),
            &budget(),
            SystemTime::now(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("ca_file /nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn chain_settings_come_from_the_injected_environment() {
        let none = ChainSettings::of(None, &Env::default());
        assert_eq!(none.profile, "default");
        assert!(none.static_keys.is_none() && none.web_identity.is_none());
        assert_eq!(
            (none.config_file, none.credentials_file),
            (None, None),
            "no HOME, no files"
        );
        assert!(!none.imds_disabled);

        let env = Env::from_pairs([
            ("HOME", "/home/mon"),
            ("AWS_PROFILE", "from-env"),
            ("AWS_ACCESS_KEY_ID", "AKIAENV"),
            ("SECRET_ACCESS_KEY", "legacy-name"),
            ("AWS_SESSION_TOKEN", "  tok  "),
            ("AWS_CONFIG_FILE", "~/cfg/aws"),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token"),
            ("AWS_EC2_METADATA_DISABLED", "TRUE"),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:1"),
        ]);
        let s = ChainSettings::of(None, &env);
        assert_eq!(s.profile, "from-env");
        assert_eq!(
            ChainSettings::of(Some("entry"), &env).profile,
            "entry",
            "the entry's profile wins"
        );
        assert_eq!(
            s.static_keys,
            Some(("AKIAENV".into(), "legacy-name".into(), Some("tok".into())))
        );
        assert_eq!(
            s.config_file,
            Some(PathBuf::from("/home/mon/cfg/aws")),
            "~/ expanded"
        );
        assert_eq!(
            s.credentials_file,
            Some(PathBuf::from("/home/mon/.aws/credentials"))
        );
        assert_eq!(
            s.web_identity,
            Some((
                PathBuf::from("/var/run/token"),
                "arn:aws:iam::1:role/r".into(),
                None
            ))
        );
        assert!(s.imds_disabled);
        assert_eq!(s.imds_endpoint.as_deref(), Some("http://127.0.0.1:1"));

        // Half a key pair or half a web identity is none (as aws-config's providers).
        let half = Env::from_pairs([
            ("AWS_ACCESS_KEY_ID", "AKIAENV"),
            ("AWS_SECRET_ACCESS_KEY", "  "),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
            ("AWS_EC2_METADATA_DISABLED", "false"),
        ]);
        let s = ChainSettings::of(None, &half);
        assert!(s.static_keys.is_none() && s.web_identity.is_none() && !s.imds_disabled);
    }

    #[test]
    fn static_keys_of_the_injected_environment_are_the_chains_first_answer() {
        // Not the process environment: an injected map only.
        let env = Env::from_pairs([
            ("AWS_ACCESS_KEY_ID", "AKIAINJECTED0001"),
            ("AWS_SECRET_ACCESS_KEY", "injected-secret"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]);
        let c = resolve(
            &ChainRequest {
                profile: None,
                region: "us-east-1",
                ca_file: None,
            },
            &env,
            &budget(),
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(
            (
                c.access_key_id.as_str(),
                c.secret_access_key.as_str(),
                c.session_token
            ),
            ("AKIAINJECTED0001", "injected-secret", None)
        );
    }

    #[test]
    fn a_profile_is_read_from_the_injected_home() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join(".aws")).unwrap();
        std::fs::write(
            home.path().join(".aws/credentials"),
            "[unit-p]\naws_access_key_id = AKIAFROMHOME0002\naws_secret_access_key = home-secret\n",
        )
        .unwrap();
        let env = Env::from_pairs([
            ("HOME", home.path().to_str().unwrap()),
            ("AWS_PROFILE", "unit-p"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]);
        let c = resolve(
            &ChainRequest {
                profile: None,
                region: "us-east-1",
                ca_file: None,
            },
            &env,
            &budget(),
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(c.access_key_id, "AKIAFROMHOME0002");
        assert_eq!(c.secret_access_key, "home-secret");
    }
}
