//! The `weft-testapp demo <role>` command line: one subcommand per role, and [`run`], which
//! starts the role and returns (with `Ok`) on SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use tokio::net::TcpListener;

use super::bot::BotConfig;
use super::client::Upstream;
use super::web::WebConfig;
use crate::{knobs, load};

/// A demo role.
#[derive(Subcommand, Debug)]
pub enum Role {
    /// The emoji catalogue: `GET /api/list`, `GET /api/find?shortcode=:joy:`.
    Emoji(ServerArgs),
    /// Vote counts: `POST /api/vote?choice=:joy:`, `GET /api/leaderboard`.
    Voting(VotingArgs),
    /// The front end: `GET /`, `GET /api/list` (emoji + voting), `POST /api/vote`.
    Web(WebArgs),
    /// Drives the front end forever: `GET /api/list`, then `POST /api/vote` a random emoji.
    VoteBot(VoteBotArgs),
}

/// Flags every server role has.
#[derive(Args, Debug)]
pub struct ServerArgs {
    /// Address to listen on (port 0 picks a free port); `listening on ADDR` is printed once
    /// bound.
    #[arg(long, env = "WEFT_DEMO_LISTEN")]
    pub listen: SocketAddr,
    /// Name in logs and in the `x-testapp-name` response header (default: the role).
    #[arg(long, env = "WEFT_DEMO_NAME", value_parser = parse_name)]
    pub name: Option<String>,
}

/// Flags of the voting role.
#[derive(Args, Debug)]
pub struct VotingArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Share of all requests answered with 500 (0.0-1.0), spread evenly.
    #[arg(long, env = "WEFT_DEMO_ERROR_RATE", default_value_t = 0.0,
          value_parser = |s: &str| knobs::parse_error_rate("--error-rate", s))]
    pub error_rate: f64,
}

/// How a client role reaches other services.
#[derive(Args, Debug)]
pub struct ProxyArgs {
    /// Send requests to other services through this HTTP proxy (the sidecar's outbound
    /// listener in explicit mode), naming the service in `Host`; without it, connect directly.
    #[arg(long, env = "WEFT_DEMO_PROXY")]
    pub proxy: Option<SocketAddr>,
}

/// Flags of the web role.
#[derive(Args, Debug)]
pub struct WebArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub proxy: ProxyArgs,
    /// Authority (host:port) of the emoji service.
    #[arg(long, env = "WEFT_DEMO_EMOJI_AUTHORITY",
          default_value = "emoji-svc.emojivoto.svc.cluster.local:8080",
          value_parser = parse_authority)]
    pub emoji_authority: String,
    /// Authority (host:port) of the voting service.
    #[arg(long, env = "WEFT_DEMO_VOTING_AUTHORITY",
          default_value = "voting-svc.emojivoto.svc.cluster.local:8080",
          value_parser = parse_authority)]
    pub voting_authority: String,
}

/// Flags of the vote-bot role.
#[derive(Args, Debug)]
pub struct VoteBotArgs {
    /// Name in logs (default: vote-bot).
    #[arg(long, env = "WEFT_DEMO_NAME", value_parser = parse_name)]
    pub name: Option<String>,
    #[command(flatten)]
    pub proxy: ProxyArgs,
    /// Authority (host:port) of the web front end.
    #[arg(long, env = "WEFT_DEMO_WEB_AUTHORITY",
          default_value = "web-svc.emojivoto.svc.cluster.local:80",
          value_parser = parse_authority)]
    pub web_authority: String,
    /// Requests per second in total (each round is a list and a vote).
    #[arg(long, env = "WEFT_DEMO_RPS", default_value_t = 5.0)]
    pub rps: f64,
    /// How often to log the ok/failed summary, e.g. 10s or 500ms.
    #[arg(long, env = "WEFT_DEMO_SUMMARY_INTERVAL", default_value = "10s",
          value_parser = load::parse_duration)]
    pub summary_interval: Duration,
}

impl Role {
    /// The role's name on the command line, the default `--name`.
    pub fn role_name(&self) -> &'static str {
        match self {
            Role::Emoji(_) => "emoji",
            Role::Voting(_) => "voting",
            Role::Web(_) => "web",
            Role::VoteBot(_) => "vote-bot",
        }
    }
}

fn parse_name(s: &str) -> Result<String, String> {
    knobs::validate_name(s).map_err(|e| e.to_string())?;
    Ok(s.to_string())
}

/// Accepts `host:port` with a numeric port, the form the proxy routes on.
fn parse_authority(s: &str) -> Result<String, String> {
    let valid = s
        .parse::<http::uri::Authority>()
        .ok()
        .filter(|a| a.port_u16().is_some() && !a.host().is_empty() && !a.as_str().contains('@'));
    match valid {
        Some(_) => Ok(s.to_string()),
        None => Err(format!("{s:?} is not a host:port authority")),
    }
}

/// Binds `addr` and announces it on stdout as `listening on ADDR`.
async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    println!("listening on {}", listener.local_addr()?);
    Ok(listener)
}

/// Runs `role` until SIGINT or SIGTERM, then returns `Ok`. Fails only when the role cannot
/// start (invalid flags, address in use).
pub async fn run(role: Role) -> anyhow::Result<()> {
    let default_name = role.role_name();
    let name = |n: Option<String>| n.unwrap_or_else(|| default_name.to_string());
    let role_future: std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>>>> =
        match role {
            Role::Emoji(args) => {
                let listener = bind(args.listen).await?;
                let name = name(args.name);
                Box::pin(async move {
                    super::emoji::serve(listener, &name).await;
                    Ok(())
                })
            }
            Role::Voting(args) => {
                let listener = bind(args.server.listen).await?;
                let name = name(args.server.name);
                Box::pin(async move {
                    super::voting::serve(listener, &name, args.error_rate).await;
                    Ok(())
                })
            }
            Role::Web(args) => {
                let listener = bind(args.server.listen).await?;
                let name = name(args.server.name);
                let cfg = WebConfig {
                    emoji_authority: args.emoji_authority,
                    voting_authority: args.voting_authority,
                };
                tracing::info!(demo.name = %name, proxy = ?args.proxy.proxy, emoji = %cfg.emoji_authority, voting = %cfg.voting_authority, "web starting");
                let upstream = Upstream::new(args.proxy.proxy);
                Box::pin(async move {
                    super::web::serve(listener, &name, cfg, upstream).await;
                    Ok(())
                })
            }
            Role::VoteBot(args) => {
                let cfg = BotConfig {
                    web_authority: args.web_authority,
                    rps: args.rps,
                    summary_interval: args.summary_interval,
                };
                cfg.validate()?;
                let name = name(args.name);
                tracing::info!(demo.name = %name, proxy = ?args.proxy.proxy, "vote-bot configured");
                let upstream = Upstream::new(args.proxy.proxy);
                Box::pin(super::bot::run(cfg, upstream))
            }
        };
    tokio::select! {
        res = role_future => res,
        _ = super::shutdown_signal() => {
            tracing::info!(demo.role = default_name, "signal received; exiting");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities() {
        for ok in [
            "emoji-svc.emojivoto.svc.cluster.local:8080",
            "127.0.0.1:1",
            "[::1]:80",
        ] {
            assert_eq!(parse_authority(ok).as_deref(), Ok(ok));
        }
        for bad in [
            "emoji-svc",
            "",
            "a b:80",
            "user@host:80",
            ":80",
            "host:http",
        ] {
            assert!(parse_authority(bad).is_err(), "{bad}");
        }
    }
}
