//! Networking shared by the monitors: the one rustls client configuration
//! ([`tls`]) and the one HTTP client stack ([`http`], `reqwest`). Monitors
//! never import each other; they share this.

pub mod http;
pub mod tls;
