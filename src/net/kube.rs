//! The one way to a Kubernetes API client: a kubeconfig file (with an
//! optional context) or the pod's in-cluster service account. Callers
//! (the certificate monitor's Kubernetes sources, sharding's StatefulSet
//! watch) word the failure for their own setting.

use std::path::Path;

/// Why no client could be built; each caller adds what to set.
#[derive(Debug, thiserror::Error)]
pub enum KubeClientError {
    /// The kubeconfig file could not be read or parsed.
    #[error("cannot read kubeconfig {path} ({error})")]
    Read { path: String, error: String },
    /// The kubeconfig was read but gives no usable cluster/user/context.
    #[error("kubeconfig {path}: {error}")]
    Kubeconfig { path: String, error: String },
    /// No kubeconfig and not in a pod with a service account token.
    #[error("not running in a Kubernetes pod with a service account ({0})")]
    NotInCluster(String),
    /// The configuration was read but the client could not be built.
    #[error("cannot build the Kubernetes client: {0}")]
    Build(String),
}

/// A client and its default namespace, from `kubeconfig` (and `context`)
/// or, without one, from the in-cluster service account.
pub async fn client(
    kubeconfig: Option<&Path>,
    context: Option<String>,
) -> Result<(kube::Client, String), KubeClientError> {
    let config = match kubeconfig {
        Some(path) => {
            let shown = || path.display().to_string();
            let kc =
                kube::config::Kubeconfig::read_from(path).map_err(|e| KubeClientError::Read {
                    path: shown(),
                    error: e.to_string(),
                })?;
            let opts = kube::config::KubeConfigOptions {
                context,
                ..Default::default()
            };
            kube::Config::from_custom_kubeconfig(kc, &opts)
                .await
                .map_err(|e| KubeClientError::Kubeconfig {
                    path: shown(),
                    error: e.to_string(),
                })?
        }
        None => {
            kube::Config::incluster().map_err(|e| KubeClientError::NotInCluster(e.to_string()))?
        }
    };
    let namespace = config.default_namespace.clone();
    let client =
        kube::Client::try_from(config).map_err(|e| KubeClientError::Build(e.to_string()))?;
    Ok((client, namespace))
}
