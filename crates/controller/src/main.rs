//! `weft-controller`: Weft's control plane. One subcommand per component; the logic lives in the
//! `weft_controller` library.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::{filter::Targets, layer::SubscriberExt, util::SubscriberInitExt};
use weft_controller::cli::{Cli, Command};
use weft_controller::{all, destination, identity};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let targets: Targets = match cli.log.parse() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("weft-controller: invalid --log/WEFT_LOG {:?}: {e}", cli.log);
            return ExitCode::from(identity::EX_USAGE);
        }
    };
    tracing_subscriber::registry()
        .with(targets)
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(std::io::stderr),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("weft-controller: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::All(args) => {
                let running = match all::start(&args).await {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("weft-controller all: {e}");
                        return ExitCode::from(e.exit_code());
                    }
                };
                match running.run_until(shutdown_signal()).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("weft-controller all: {e:#}");
                        ExitCode::FAILURE
                    }
                }
            }
            Command::Identity(args) => {
                let running = match identity::start(&args).await {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("weft-controller identity: {e}");
                        return ExitCode::from(e.exit_code());
                    }
                };
                match running.run_until(shutdown_signal()).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("weft-controller identity: {e:#}");
                        ExitCode::FAILURE
                    }
                }
            }
            Command::Destination(args) => {
                let running = match destination::start(&args).await {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("weft-controller destination: {e}");
                        return ExitCode::from(e.exit_code());
                    }
                };
                match running.run_until(shutdown_signal()).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("weft-controller destination: {e:#}");
                        ExitCode::FAILURE
                    }
                }
            }
        }
    })
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
