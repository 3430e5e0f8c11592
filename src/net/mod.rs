//! Networking shared by the monitors: the one rustls client configuration
//! ([`tls`]), the one HTTP client stack ([`http`], `reqwest`) and the
//! verifier of probes that record any chain ([`verify`]). Monitors
//! never import each other; they share this.

pub mod http;
pub mod kube;
pub mod tls;
pub mod verify;
