//! `weft-proxy`: runs the proxy (configured by `WEFT_PROXY_*` variables) or, as
//! `weft-proxy init`, installs the iptables rules of transparent mode.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::{filter::Targets, layer::SubscriberExt, reload, util::SubscriberInitExt};
use weft_proxy::{admin::LogLevel, app, config, init};

/// Exit status for invalid configuration (EX_USAGE).
const EX_USAGE: u8 = 64;

#[derive(Parser)]
#[command(
    name = "weft-proxy init",
    about = "Install iptables rules that redirect a network namespace's traffic through the proxy"
)]
struct InitCli {
    #[command(flatten)]
    args: init::InitArgs,
}

struct ReloadLevel {
    handle: reload::Handle<Targets, tracing_subscriber::Registry>,
    current: std::sync::Mutex<String>,
}

impl LogLevel for ReloadLevel {
    fn get(&self) -> String {
        self.current.lock().map(|c| c.clone()).unwrap_or_default()
    }
    fn set(&self, filter: &str) -> Result<(), String> {
        let targets: Targets = filter.parse().map_err(|e| format!("{e}"))?;
        self.handle.reload(targets).map_err(|e| e.to_string())?;
        if let Ok(mut c) = self.current.lock() {
            *c = filter.to_string();
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("init") => {
            let cli =
                InitCli::parse_from(std::iter::once("weft-proxy init".to_string()).chain(args));
            return match init::run(&cli.args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("weft-proxy init: {e}");
                    ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
                }
            };
        }
        Some("-h" | "--help" | "help") => {
            print!("{}", config::help_text());
            return ExitCode::SUCCESS;
        }
        Some("-V" | "--version") => {
            println!("weft-proxy {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("weft-proxy: unexpected argument {other:?}; the proxy is configured through WEFT_PROXY_* variables (see --help)");
            return ExitCode::from(EX_USAGE);
        }
        None => {}
    }

    let env = config::ProcessEnv;
    let config = match config::Config::from_env(&env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("weft-proxy: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let targets: Targets = match config.log.parse() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("weft-proxy: invalid {}={:?}: {e}", config::LOG, config.log);
            return ExitCode::from(EX_USAGE);
        }
    };
    let (filter, handle) = reload::Layer::new(targets);
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_writer(std::io::stderr),
        )
        .init();
    for var in config::Config::unknown_vars(&env) {
        tracing::warn!(%var, "unknown variable ignored (a typo?)");
    }
    tracing::info!(?config, "effective configuration");

    let runtime = if config.worker_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.worker_threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("weft-proxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let log_level = Box::new(ReloadLevel {
        handle,
        current: std::sync::Mutex::new(config.log.clone()),
    });
    runtime.block_on(async move {
        let bound = match app::Bound::bind(&config).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("weft-proxy: {e}");
                return ExitCode::FAILURE;
            }
        };
        app::run(config, bound, Some(log_level), app::shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}
