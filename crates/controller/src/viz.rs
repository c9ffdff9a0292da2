//! The viz component: golden metrics, edges, routes and live tap for `weft viz`.
//!
//! - The **scraper** ([`scrape`]) reads every meshed workload proxy's `/metrics` each
//!   `--viz-scrape-interval` and keeps `--viz-retention` of samples in memory ([`window`]).
//! - **Queries** ([`query`]: stat, edges, routes) read through the [`MetricsSource`] trait; the
//!   in-memory [`Window`] is the local mesh's source, and a Prometheus one will serve Kubernetes.
//! - **Tap** ([`tap`]) fans a request out to the tap port of every proxy a resource selects,
//!   over mTLS with a short-lived leaf for the viz identity, and merges the streams.
//! - The **API** ([`api`]) serves all of it as JSON over HTTP/1.1 on `--viz-listen` (8085); the
//!   `weft viz` commands are its client.
//!
//! The component has no admin port of its own: [`Running::telemetry`] is added to the admin
//! server of the process that runs it (`weft-controller all`), with `viz_*` families.

pub mod api;
pub mod exposition;
pub mod query;
pub mod resource;
pub mod scrape;
pub mod source;
pub mod tap;
pub mod window;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;
use weft_store::Store;

use crate::admin::Telemetry;
use crate::duration::parse_duration;
use crate::grpc_task::{bind_one, BindError};
use crate::prom::Encoder;

pub use source::MetricsSource;
pub use tap::TapIdentity;
pub use window::Window;

/// The viz component's flags, flattened into `weft-controller all`.
#[derive(Clone, Debug, Args)]
pub struct VizArgs {
    /// Address of the viz API (HTTP/1.1, JSON), which `weft viz` queries.
    #[arg(long, env = "WEFT_VIZ_LISTEN", default_value = "127.0.0.1:8085")]
    pub viz_listen: SocketAddr,

    /// How often every proxy's /metrics is scraped.
    #[arg(long, env = "WEFT_VIZ_SCRAPE_INTERVAL", default_value = "2s", value_parser = parse_duration)]
    pub viz_scrape_interval: Duration,

    /// How long scraped samples are kept: the longest window `weft viz stat -t` can look at.
    #[arg(long, env = "WEFT_VIZ_RETENTION", default_value = "10m", value_parser = parse_duration)]
    pub viz_retention: Duration,
}

/// Why the viz component did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A duration is out of range.
    #[error("{flag} {value}: {problem}")]
    Config {
        /// The flag.
        flag: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// The listener could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
}

impl StartError {
    /// The process exit status: 64 for configuration, 1 for the rest.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Bind(_) => 1,
            Self::Config { .. } => crate::identity::EX_USAGE,
        }
    }
}

/// The viz component on the admin port: `viz_*` families; ready once it has scraped.
struct VizTelemetry {
    scrape: Arc<scrape::ScrapeMetrics>,
    api: Arc<api::ApiMetrics>,
}

impl Telemetry for VizTelemetry {
    fn encode_metrics(&self, enc: &mut Encoder) {
        self.scrape.encode(enc);
        self.api.encode(enc);
    }

    fn readiness(&self) -> Result<(), String> {
        // Queries answer (with no data) from the start; nothing to wait for.
        Ok(())
    }
}

/// A running viz component.
pub struct Running {
    addr: SocketAddr,
    window: Arc<Window>,
    telemetry: Arc<VizTelemetry>,
    drain: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    _store: Arc<dyn Store>,
}

impl Running {
    /// Where the API listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The scraped samples.
    pub fn window(&self) -> &Arc<Window> {
        &self.window
    }

    /// What to add to the process's admin server.
    pub fn telemetry(&self) -> Arc<dyn Telemetry> {
        self.telemetry.clone()
    }

    /// Runs until `signal` resolves, then stops.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        signal.await;
        self.shutdown().await;
    }

    /// Stops: the listener closes, tap streams end, the scraper stops. Tasks get 1 s.
    pub async fn shutdown(self) {
        let _ = self.drain.send(true);
        for t in self.tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(1), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

/// Starts the viz component: binds `--viz-listen`, starts the scraper over `store`'s
/// workloads and the API. `tap` gives the identity to tap proxies with; without it,
/// `/api/tap` answers 503.
pub async fn start(
    args: &VizArgs,
    store: Arc<dyn Store>,
    tap: Option<TapIdentity>,
) -> Result<Running, StartError> {
    if args.viz_scrape_interval < Duration::from_millis(10) {
        return Err(StartError::Config {
            flag: "--viz-scrape-interval",
            value: crate::duration::format_duration(args.viz_scrape_interval),
            problem: "must be at least 10ms",
        });
    }
    if args.viz_retention < args.viz_scrape_interval * 2 {
        return Err(StartError::Config {
            flag: "--viz-retention",
            value: crate::duration::format_duration(args.viz_retention),
            problem: "must be at least two scrape intervals",
        });
    }
    let (listener, addr) = bind_one("--viz-listen", args.viz_listen).await?;
    // A gauge is current for a few scrapes, so one slow scrape does not blank TCP_CONN.
    let stale_after = (args.viz_scrape_interval * 3).max(Duration::from_secs(5));
    let window = Arc::new(Window::new(args.viz_retention, stale_after));
    let scrape_metrics = Arc::new(scrape::ScrapeMetrics::default());
    let api_metrics = Arc::new(api::ApiMetrics::default());
    let (drain_tx, drain_rx) = watch::channel(false);

    let scraper = tokio::spawn(
        scrape::run(
            window.clone(),
            store.watch(),
            args.viz_scrape_interval,
            scrape_metrics.clone(),
            drain_rx.clone(),
        )
        .instrument(tracing::info_span!("viz_scraper")),
    );
    let state = Arc::new(api::State {
        source: window.clone(),
        window: window.clone(),
        store: store.watch(),
        tap: Arc::new(tap::TapTls::new(tap)),
        scrape_interval: args.viz_scrape_interval,
        metrics: api_metrics.clone(),
        drain: drain_rx.clone(),
    });
    let server = tokio::spawn(
        api::serve(listener, state, drain_rx)
            .instrument(tracing::info_span!("viz_api", server.addr = %addr)),
    );
    tracing::info!(
        %addr,
        scrape_interval = %crate::duration::format_duration(args.viz_scrape_interval),
        retention = %crate::duration::format_duration(args.viz_retention),
        "viz API listening"
    );
    Ok(Running {
        addr,
        window,
        telemetry: Arc::new(VizTelemetry {
            scrape: scrape_metrics,
            api: api_metrics,
        }),
        drain: drain_tx,
        tasks: vec![scraper, server],
        _store: store,
    })
}
