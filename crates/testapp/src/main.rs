//! `weft-testapp`: run the test server (`serve`), the load generator (`load`) or a role of the
//! emojivoto-like demo (`demo <role>`).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use weft_testapp::{demo, knobs, load, LoadConfig, ServerConfig};

/// HTTP/1.1, h2c, WebSocket and gRPC test server and load generator for Weft.
#[derive(Parser, Debug)]
#[command(name = "weft-testapp", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve HTTP/1.1 and h2c on one port; prints `listening on ADDR` once bound.
    Serve(ServeArgs),
    /// Send GET requests to a URL for a while and print a summary.
    Load(LoadArgs),
    /// Run one role of the emojivoto-like demo application (emoji, voting, web, vote-bot).
    Demo {
        #[command(subcommand)]
        role: demo::Role,
    },
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "WEFT_TESTAPP_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Name reported in `x-testapp-name` and `hello from NAME`.
    #[arg(long, env = "WEFT_TESTAPP_NAME", default_value = "testapp")]
    name: String,
    /// Default response status of the knob handler (200-599).
    #[arg(long, env = "WEFT_TESTAPP_STATUS", default_value_t = 200,
          value_parser = |s: &str| knobs::parse_status("--status", s))]
    status: u16,
    /// Default latency added to knob-handler responses, in milliseconds.
    #[arg(long, env = "WEFT_TESTAPP_LATENCY_MS", default_value = "0",
          value_parser = |s: &str| knobs::parse_latency_ms("--latency-ms", s))]
    latency_ms: Duration,
    /// Default fraction of knob-handler requests answered with 500 (0.0-1.0).
    #[arg(long, env = "WEFT_TESTAPP_ERROR_RATE", default_value_t = 0.0,
          value_parser = |s: &str| knobs::parse_error_rate("--error-rate", s))]
    error_rate: f64,
    /// Default knob-handler body size in bytes (default: `hello from NAME`).
    #[arg(long, env = "WEFT_TESTAPP_SIZE")]
    size: Option<usize>,
}

#[derive(clap::Args, Debug)]
struct LoadArgs {
    /// Absolute http:// URL to request.
    #[arg(long, env = "WEFT_TESTAPP_TARGET")]
    target: http::Uri,
    /// Requests per second across all workers; 0 = as fast as possible.
    #[arg(long, env = "WEFT_TESTAPP_RPS", default_value_t = 0.0)]
    rps: f64,
    /// Number of concurrent workers, each with its own connection.
    #[arg(long, env = "WEFT_TESTAPP_CONCURRENCY", default_value_t = 4)]
    concurrency: usize,
    /// How long to run, e.g. 500ms, 10s, 2m.
    #[arg(long, env = "WEFT_TESTAPP_DURATION", default_value = "10s",
          value_parser = load::parse_duration)]
    duration: Duration,
    /// Send requests through this HTTP proxy (absolute-form).
    #[arg(long, env = "WEFT_TESTAPP_PROXY")]
    proxy: Option<SocketAddr>,
    /// Use HTTP/2 with prior knowledge (h2c).
    #[arg(long, env = "WEFT_TESTAPP_HTTP2")]
    http2: bool,
    /// Output format of the summary.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum Output {
    Text,
    Json,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        // Plain text when stderr is a file or pipe (the demo's log files, tests).
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match Cli::parse().command {
        Command::Serve(args) => serve(args).await,
        Command::Load(args) => run_load(args).await,
        Command::Demo { role } => demo::cli::run(role).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` prints the cause chain on one line, without a backtrace.
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let cfg = ServerConfig {
        name: args.name,
        status: args.status,
        latency: args.latency_ms,
        error_rate: args.error_rate,
        size: args.size,
    };
    cfg.validate()?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!("listening on {}", listener.local_addr()?);
    tokio::select! {
        res = weft_testapp::serve(listener, cfg) => res,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

async fn run_load(args: LoadArgs) -> anyhow::Result<()> {
    let cfg = LoadConfig {
        target: args.target,
        rps: args.rps,
        concurrency: args.concurrency,
        duration: args.duration,
        proxy: args.proxy,
        http2: args.http2,
    };
    cfg.validate()?;
    let report = load::run(cfg).await?;
    match args.output {
        Output::Text => println!("{report}"),
        Output::Json => println!("{}", report.to_json()),
    }
    Ok(())
}
