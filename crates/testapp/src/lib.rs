//! `weft-testapp`: the HTTP/1.1, h2c, WebSocket and gRPC application that Weft's tests,
//! benchmarks and demo put behind the proxy, plus a small load generator.
//!
//! The server ([`serve`], [`spawn`]) answers HTTP/1.1 and HTTP/2 prior-knowledge (h2c) on the
//! same port. Its routes:
//!
//! | route | behaviour |
//! | --- | --- |
//! | anything else | the *knob* handler: status, latency, error rate and size from query parameters (`status`, `latency_ms`, `error_rate`, `size`), `x-testapp-*` headers or the start-up [`ServerConfig`] |
//! | `/echo` | streams the request body back as it arrives |
//! | `/sha256` | answers `<hex sha256> <byte count>\n` of the request body |
//! | `/bytes?size=N` | `N` bytes of [`pattern_byte`], generated on the fly |
//! | `/stream?chunks=N&interval_ms=M` | `N` lines `chunk i\n`, `M` ms apart |
//! | `/headers` | the request line and headers as text |
//! | `/ws` | WebSocket echo |
//! | `content-type: application/grpc*` | the `weft.testapp.Echo` gRPC service (see [`grpc`]) |
//!
//! Every response carries `x-testapp-name` and `x-testapp-version` (the HTTP version the app
//! itself saw), so tests can prove which backend answered and which protocol reached it.
//!
//! The [`load`] module is a bounded, open-loop-ish load generator used by benchmarks; the
//! [`demo`] module is the emojivoto-like demo application (`weft-testapp demo <role>`).

mod body;
pub mod demo;
pub mod grpc;
pub mod knobs;
pub mod load;
mod routes;
mod server;
pub mod testing;
mod ws;

use std::net::SocketAddr;
use std::time::Duration;

pub use body::pattern_byte;
pub use knobs::KnobError;
pub use load::{LoadConfig, LoadReport};
pub use server::serve;

/// Start-up configuration of the test server: the defaults of the knob handler.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Name reported in `x-testapp-name` and in the default body `hello from NAME`.
    pub name: String,
    /// Default response status of the knob handler (200–599).
    pub status: u16,
    /// Default latency added before the knob handler answers.
    pub latency: Duration,
    /// Default fraction of knob-handler requests answered with 500 (0.0–1.0).
    pub error_rate: f64,
    /// Default body size of the knob handler; `None` answers `hello from NAME\n`.
    pub size: Option<usize>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            name: "testapp".to_string(),
            status: 200,
            latency: Duration::ZERO,
            error_rate: 0.0,
            size: None,
        }
    }
}

impl ServerConfig {
    /// Checks every field against the ranges the knobs accept, so a bad default is reported
    /// before the port is bound rather than on the first request.
    pub fn validate(&self) -> Result<(), KnobError> {
        knobs::validate_name(&self.name)?;
        knobs::parse_status("--status", &self.status.to_string())?;
        knobs::check_latency("--latency-ms", self.latency)?;
        knobs::check_error_rate("--error-rate", self.error_rate)?;
        if let Some(size) = self.size {
            knobs::parse_size("--size", &size.to_string())?;
        }
        Ok(())
    }
}

/// Binds `127.0.0.1:0`, spawns [`serve`] on the current Tokio runtime and returns the bound
/// address. Meant for in-process tests; the server runs until the runtime shuts down.
pub async fn spawn(cfg: ServerConfig) -> anyhow::Result<SocketAddr> {
    cfg.validate()?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let name = cfg.name.clone();
    tokio::spawn(async move {
        if let Err(error) = serve(listener, cfg).await {
            tracing::error!(%error, testapp.name = %name, "test server stopped");
        }
    });
    Ok(addr)
}
