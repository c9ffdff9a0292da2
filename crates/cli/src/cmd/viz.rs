//! `weft viz`: golden metrics, edges, routes and live tap of the mesh, from the control plane's
//! viz API (`run/control-plane.json`'s `viz` address): `stat`, `edges`, `routes`, `tap`, `top`
//! and `check`. The numbers and where they come from are described in docs/viz.md.

use std::io::Write;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::context::Global;
use crate::duration::parse_duration;
use crate::output::{write_json, Format, OutputArgs};

pub mod client;
pub mod render;
pub mod tap;

use client::{url, VizClient};

/// `weft viz ...`.
#[derive(Debug, Args)]
#[command(after_help = "Examples (the demo application):\n  \
                        weft viz stat deploy -n emojivoto\n  \
                        weft viz stat deploy/web -n emojivoto --from deploy/vote-bot\n  \
                        weft viz edges deploy -n emojivoto\n  \
                        weft viz routes deploy/web -n emojivoto\n  \
                        weft viz tap deploy/web -n emojivoto --path /api\n  \
                        weft viz top deploy/web -n emojivoto")]
pub struct VizArgs {
    /// What to show.
    #[command(subcommand)]
    pub command: VizCommand,
}

/// The `weft viz` subcommands.
#[derive(Debug, Subcommand)]
pub enum VizCommand {
    /// Golden metrics (success rate, requests per second, latency percentiles, TCP
    /// connections) of deployments, pods, namespaces or services.
    ///
    /// Measured by the resource's own proxies on inbound traffic; with --from, by the source's
    /// proxies on the requests they sent to the resource. A service has no proxy of its own:
    /// its numbers are its clients'.
    Stat(StatArgs),
    /// Which workloads talk to which, and whether with mTLS (SECURED √) or not (the reason).
    Edges(EdgesArgs),
    /// Per-route success, requests per second, latency, retries and retry-budget exhaustion
    /// of the requests sent to a resource's services (measured by the clients' proxies).
    Routes(RoutesArgs),
    /// Stream the requests a resource's proxies handle, live, until Ctrl-C.
    Tap(TapArgs),
    /// A live table of the tap stream, by source, destination, method and path.
    Top(TopArgs),
    /// Check that the viz API answers and scrapes every proxy. Exit status 1 on failure.
    Check(CheckArgs),
}

/// A resource, as `KIND/NAME`, `KIND NAME` or `KIND`.
#[derive(Debug, Args)]
pub struct ResourceArgs {
    /// The resource: deployment (deploy), pod (po), namespace (ns) or service (svc), with or
    /// without a name: `deploy/web`, `deploy web`, `deploy`.
    #[arg(value_name = "KIND[/NAME]", num_args = 1..=2, required = true)]
    pub resource: Vec<String>,

    /// The resource's namespace.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
}

impl ResourceArgs {
    /// `kind/name` or `kind`.
    pub fn resource(&self) -> String {
        self.resource.join("/")
    }
}

/// `weft viz stat`.
#[derive(Debug, Args)]
pub struct StatArgs {
    #[command(flatten)]
    pub target: ResourceArgs,

    /// Only the requests sent by this resource (KIND/NAME), measured by its proxies.
    #[arg(long, value_name = "KIND/NAME")]
    pub from: Option<String>,

    /// The namespace of --from (default: --namespace).
    #[arg(long, value_name = "NS")]
    pub from_namespace: Option<String>,

    /// The time window the numbers are computed over.
    #[arg(short = 't', long = "time-window", default_value = "1m", value_parser = parse_duration)]
    pub window: Duration,

    #[command(flatten)]
    pub output: OutputArgs,
}

/// `weft viz edges`.
#[derive(Debug, Args)]
pub struct EdgesArgs {
    /// deployment (deploy), pod (po) or namespace (ns).
    #[arg(value_name = "KIND")]
    pub kind: String,

    /// The namespace whose edges (in or out) to show.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,

    /// The time window with traffic.
    #[arg(short = 't', long = "time-window", default_value = "1m", value_parser = parse_duration)]
    pub window: Duration,

    #[command(flatten)]
    pub output: OutputArgs,
}

/// `weft viz routes`.
#[derive(Debug, Args)]
pub struct RoutesArgs {
    #[command(flatten)]
    pub target: ResourceArgs,

    /// Show the routes of the requests RESOURCE sends to this resource's services
    /// (KIND/NAME), measured by RESOURCE's proxies.
    #[arg(long, value_name = "KIND/NAME")]
    pub to: Option<String>,

    /// The namespace of --to (default: --namespace).
    #[arg(long, value_name = "NS")]
    pub to_namespace: Option<String>,

    /// The time window the numbers are computed over.
    #[arg(short = 't', long = "time-window", default_value = "1m", value_parser = parse_duration)]
    pub window: Duration,

    #[command(flatten)]
    pub output: OutputArgs,
}

/// What `tap` and `top` filter on.
#[derive(Debug, Args)]
pub struct TapFilterArgs {
    #[command(flatten)]
    pub target: ResourceArgs,

    /// Only requests whose path starts with this.
    #[arg(long)]
    pub path: Option<String>,

    /// Only requests with this method.
    #[arg(long)]
    pub method: Option<String>,

    /// Only requests with this authority (`host:port`).
    #[arg(long)]
    pub authority: Option<String>,

    /// Only requests sent to this resource (KIND/NAME).
    #[arg(long, value_name = "KIND/NAME")]
    pub to: Option<String>,

    /// The namespace of --to (default: --namespace).
    #[arg(long, value_name = "NS")]
    pub to_namespace: Option<String>,

    /// At most this many requests per second from each proxy.
    #[arg(long, default_value = "100")]
    pub max_rps: f64,
}

impl TapFilterArgs {
    fn url(&self) -> String {
        let resource = self.target.resource();
        let max_rps = self.max_rps.to_string();
        url(
            "/api/tap",
            &[
                ("resource", Some(&resource)),
                ("namespace", Some(&self.target.namespace)),
                ("path", self.path.as_deref()),
                ("method", self.method.as_deref()),
                ("authority", self.authority.as_deref()),
                ("to", self.to.as_deref()),
                ("to_namespace", self.to_namespace.as_deref()),
                ("max_rps", Some(&max_rps)),
            ],
        )
    }
}

/// `weft viz tap`.
#[derive(Debug, Args)]
pub struct TapArgs {
    #[command(flatten)]
    pub filter: TapFilterArgs,

    /// Output format: Linkerd's text lines, or one JSON object per line.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `weft viz top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub filter: TapFilterArgs,

    /// Print one table after this long instead of a live view (what happens anyway when
    /// stdout is not a terminal, after 5s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub once: Option<Duration>,
}

/// `weft viz check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Runs `weft viz`.
pub fn run(args: VizArgs, global: &Global) -> anyhow::Result<()> {
    let client = client::for_cluster(global)?;
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    run_with(args, &client, &mut out, &mut err)
}

fn window(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// Runs `weft viz` against `client`, writing to `out` and `err`.
pub fn run_with(
    args: VizArgs,
    client: &VizClient,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    match args.command {
        VizCommand::Stat(a) => {
            let resource = a.target.resource();
            let w = window(a.window);
            let doc = client.get_json(&url(
                "/api/stat",
                &[
                    ("resource", Some(&resource)),
                    ("namespace", Some(&a.target.namespace)),
                    ("from", a.from.as_deref()),
                    ("from_namespace", a.from_namespace.as_deref()),
                    ("window", Some(&w)),
                ],
            ))?;
            print(out, a.output.output, &doc, |rows| {
                Ok(render::stat_table(&serde_json::from_value::<Vec<_>>(rows)?))
            })
        }
        VizCommand::Edges(a) => {
            let w = window(a.window);
            let doc = client.get_json(&url(
                "/api/edges",
                &[
                    ("resource", Some(&a.kind)),
                    ("namespace", Some(&a.namespace)),
                    ("window", Some(&w)),
                ],
            ))?;
            print(out, a.output.output, &doc, |rows| {
                Ok(render::edges_table(&serde_json::from_value::<Vec<_>>(
                    rows,
                )?))
            })
        }
        VizCommand::Routes(a) => {
            let resource = a.target.resource();
            let w = window(a.window);
            let doc = client.get_json(&url(
                "/api/routes",
                &[
                    ("resource", Some(&resource)),
                    ("namespace", Some(&a.target.namespace)),
                    ("to", a.to.as_deref()),
                    ("to_namespace", a.to_namespace.as_deref()),
                    ("window", Some(&w)),
                ],
            ))?;
            print(out, a.output.output, &doc, |rows| {
                Ok(render::routes_table(&serde_json::from_value::<Vec<_>>(
                    rows,
                )?))
            })
        }
        VizCommand::Tap(a) => tap::stream(
            client,
            &a.filter.url(),
            a.output.output == Format::Json,
            out,
            err,
        ),
        VizCommand::Top(a) => tap::top(client, &a.filter.url(), a.once, out, err),
        VizCommand::Check(a) => check(client, a.output.output, out),
    }
}

/// Prints `doc` as JSON, or its `rows` through `table`; a note when there are no rows.
fn print(
    out: &mut dyn Write,
    format: Format,
    doc: &serde_json::Value,
    table: impl FnOnce(serde_json::Value) -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    if format == Format::Json {
        return write_json(out, doc);
    }
    let rows = doc.get("rows").cloned().unwrap_or_default();
    if rows.as_array().is_none_or(Vec::is_empty) {
        writeln!(out, "No traffic found.")?;
        return Ok(());
    }
    let text = table(rows).context("the viz API answered rows in an unexpected shape")?;
    out.write_all(text.as_bytes())?;
    Ok(())
}

fn check(client: &VizClient, format: Format, out: &mut dyn Write) -> anyhow::Result<()> {
    use super::check::report::{Category, Check, Report};
    let mut cat = Category::new("weft-viz");
    match client.get_json("/api/targets") {
        Err(e) => {
            cat.push(
                Check::error(
                    "weft-viz/api-reachable",
                    "viz API is reachable",
                    format!("{e:#}"),
                )
                .hint("start the control plane with `weft install` (or `weft demo`)"),
            );
            cat.push(Check::skipped(
                "weft-viz/scraping",
                "viz scrapes the proxies",
                "weft-viz/api-reachable",
            ));
        }
        Ok(doc) => {
            cat.push(Check::success(
                "weft-viz/api-reachable",
                format!("viz API is reachable at {}", client.addr),
            ));
            let targets: Vec<serde_json::Value> = doc
                .get("targets")
                .and_then(|t| t.as_array())
                .cloned()
                .unwrap_or_default();
            if targets.is_empty() {
                cat.push(Check::warning(
                    "weft-viz/scraping",
                    "viz scrapes the proxies",
                    "there are no meshed workloads to scrape",
                ));
            } else {
                cat.push(Check::success(
                    "weft-viz/scraping",
                    format!("viz scrapes {} proxies", targets.len()),
                ));
                let down: Vec<String> = targets
                    .iter()
                    .filter(|t| t.get("up").and_then(|u| u.as_bool()) != Some(true))
                    .map(|t| {
                        let s = |k: &str| t.get(k).and_then(|v| v.as_str()).unwrap_or("");
                        format!(
                            "{}/{} ({}): {}",
                            s("namespace"),
                            s("pod"),
                            s("url"),
                            t.get("last_error")
                                .and_then(|v| v.as_str())
                                .unwrap_or("not scraped yet")
                        )
                    })
                    .collect();
                if down.is_empty() {
                    cat.push(Check::success(
                        "weft-viz/targets-up",
                        "every proxy's metrics can be read",
                    ));
                } else {
                    cat.push(
                        Check::error(
                            "weft-viz/targets-up",
                            "every proxy's metrics can be read",
                            format!(
                                "{} of {} proxies cannot be scraped:\n{}",
                                down.len(),
                                targets.len(),
                                down.join("\n")
                            ),
                        )
                        .hint("weft check --proxy"),
                    );
                }
            }
        }
    }
    let report = Report::new(vec![cat]);
    match format {
        Format::Json => write_json(out, &report)?,
        Format::Table => out.write_all(report.to_text(false).as_bytes())?,
    }
    out.flush()?;
    if report.success {
        Ok(())
    } else {
        Err(super::check::ChecksFailed(report.failed_ids()).into())
    }
}
