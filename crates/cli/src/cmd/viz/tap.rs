//! `weft viz tap` (the live stream, one line per event) and `weft viz top` (the stream
//! aggregated by source, destination, method and path).

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use super::client::{expect_ok, LineReader, Next, VizClient};
use super::render::{self, TapLine};

/// Streams tap lines from `path_and_query` to `out` until the stream ends or `out` closes.
pub fn stream(
    client: &VizClient,
    path_and_query: &str,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    let (status, reader) = client.open(path_and_query, None)?;
    let reader = expect_ok(status, reader, client.addr)?;
    let mut lines = LineReader::new(reader);
    loop {
        let line = match lines.next_line() {
            Ok(Next::Line(l)) => l,
            Ok(Next::Idle) => continue,
            Ok(Next::End) => return Ok(()),
            Err(e) => anyhow::bail!(
                "the tap stream from the viz API at {} failed: {e}",
                client.addr
            ),
        };
        if line.trim().is_empty() {
            // The server's keep-alive: a chance to notice that our reader went away.
            out.flush()?;
            continue;
        }
        let Ok(event) = serde_json::from_str::<TapLine>(&line) else {
            continue;
        };
        if event.kind == "error" {
            let _ = writeln!(
                err,
                "warning: cannot tap {}/{}: {}",
                event.namespace,
                event.pod,
                event.error.as_deref().unwrap_or("unknown error")
            );
            continue;
        }
        if json {
            writeln!(out, "{line}")?;
        } else if let Some(text) = render::tap_text(&event) {
            writeln!(out, "{text}")?;
        }
        out.flush()?;
    }
}

/// One row of `top`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TopRow {
    pub source: String,
    pub destination: String,
    pub method: String,
    pub path: String,
    pub count: u64,
    pub best_us: u64,
    pub worst_us: u64,
    pub last_us: u64,
    pub successes: u64,
}

/// The `top` aggregation: requests are matched up from `req` to `end` by proxy and id.
#[derive(Debug, Default)]
pub struct Top {
    pending: HashMap<(String, String, String), Pending>,
    rows: HashMap<(String, String, String, String), TopRow>,
}

#[derive(Debug)]
struct Pending {
    key: (String, String, String, String),
    latency_us: Option<u64>,
    status: Option<u32>,
}

/// Requests waiting for their end; older ones are dropped beyond this.
const MAX_PENDING: usize = 10_000;

fn short_identity(id: &str) -> &str {
    id.split('.').next().unwrap_or(id)
}

fn host(addr: &str) -> &str {
    addr.rsplit_once(':').map_or(addr, |(h, _)| h)
}

impl Top {
    /// Adds one event.
    pub fn add(&mut self, l: &TapLine) {
        let id = (l.namespace.clone(), l.pod.clone(), l.id.clone());
        match l.kind.as_str() {
            "req" => {
                let (source, destination) = if l.proxy == "in" {
                    let src = l
                        .src_identity
                        .as_deref()
                        .map_or_else(|| host(&l.src).to_owned(), |i| short_identity(i).to_owned());
                    (src, l.pod.clone())
                } else {
                    let dst = ["pod", "deployment", "service"]
                        .iter()
                        .find_map(|k| l.dst_labels.get(*k).cloned())
                        .unwrap_or_else(|| host(&l.dst).to_owned());
                    (l.pod.clone(), dst)
                };
                if self.pending.len() >= MAX_PENDING {
                    self.pending.clear();
                }
                self.pending.insert(
                    id,
                    Pending {
                        key: (
                            source,
                            destination,
                            l.method.clone().unwrap_or_default(),
                            l.path.clone().unwrap_or_default(),
                        ),
                        latency_us: None,
                        status: None,
                    },
                );
            }
            "rsp" => {
                if let Some(p) = self.pending.get_mut(&id) {
                    p.latency_us = l.latency_us;
                    p.status = l.status;
                }
            }
            "end" => {
                let Some(p) = self.pending.remove(&id) else {
                    return;
                };
                let latency = p.latency_us.or(l.latency_us).unwrap_or(0);
                let ok = p.status.is_some_and(|s| s < 500)
                    && l.grpc_status.is_none_or(|g| g == 0)
                    && l.error.is_none();
                let row = self.rows.entry(p.key.clone()).or_insert_with(|| TopRow {
                    source: p.key.0.clone(),
                    destination: p.key.1.clone(),
                    method: p.key.2.clone(),
                    path: p.key.3.clone(),
                    best_us: u64::MAX,
                    ..TopRow::default()
                });
                row.count += 1;
                row.best_us = row.best_us.min(latency);
                row.worst_us = row.worst_us.max(latency);
                row.last_us = latency;
                row.successes += u64::from(ok);
            }
            _ => {}
        }
    }

    /// The rows, busiest first.
    pub fn rows(&self) -> Vec<TopRow> {
        let mut rows: Vec<TopRow> = self.rows.values().cloned().collect();
        rows.sort_by(|a, b| {
            b.count.cmp(&a.count).then_with(|| {
                (&a.source, &a.destination, &a.path).cmp(&(&b.source, &b.destination, &b.path))
            })
        });
        rows
    }

    /// The table.
    pub fn table(&self) -> String {
        let rows: Vec<[String; 9]> = self
            .rows()
            .into_iter()
            .map(|r| {
                [
                    r.source,
                    r.destination,
                    r.method,
                    r.path,
                    r.count.to_string(),
                    render::micros(r.best_us),
                    render::micros(r.worst_us),
                    render::micros(r.last_us),
                    render::percent(Some(r.successes as f64 / r.count.max(1) as f64)),
                ]
            })
            .collect();
        render::table(render::TOP_COLUMNS, &rows)
    }
}

/// Runs `top`: a live table on a terminal (until Ctrl-C), else (or with `once`) one table
/// after `once` (default 5 s).
pub fn top(
    client: &VizClient,
    path_and_query: &str,
    once: Option<Duration>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    let live = once.is_none() && std::io::stdout().is_terminal();
    let until = (!live).then(|| Instant::now() + once.unwrap_or(Duration::from_secs(5)));
    let (status, reader) = client.open(path_and_query, Some(Duration::from_millis(200)))?;
    let reader = expect_ok(status, reader, client.addr)?;
    let mut lines = LineReader::new(reader);
    let mut top = Top::default();
    let mut next_draw = Instant::now() + Duration::from_secs(1);
    loop {
        match lines.next_line() {
            Ok(Next::Line(l)) if !l.trim().is_empty() => {
                if let Ok(event) = serde_json::from_str::<TapLine>(&l) {
                    if event.kind == "error" {
                        let _ = writeln!(
                            err,
                            "warning: cannot tap {}/{}: {}",
                            event.namespace,
                            event.pod,
                            event.error.as_deref().unwrap_or("unknown error")
                        );
                    } else {
                        top.add(&event);
                    }
                }
            }
            Ok(Next::Line(_) | Next::Idle) => {}
            Ok(Next::End) => {
                write!(out, "{}", top.table())?;
                return Ok(());
            }
            Err(e) => anyhow::bail!(
                "the tap stream from the viz API at {} failed: {e}",
                client.addr
            ),
        }
        let now = Instant::now();
        if let Some(until) = until {
            if now >= until {
                write!(out, "{}", top.table())?;
                out.flush()?;
                return Ok(());
            }
        } else if now >= next_draw {
            // Clear the screen and redraw from the top-left corner.
            write!(out, "\x1b[2J\x1b[H{}", top.table())?;
            out.flush()?;
            next_draw = now + Duration::from_secs(1);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ev(kind: &str, id: &str, f: impl FnOnce(&mut TapLine)) -> TapLine {
        let mut l = TapLine {
            kind: kind.into(),
            namespace: "e".into(),
            pod: "web-0".into(),
            id: id.into(),
            proxy: "in".into(),
            src: "127.0.1.4:5000".into(),
            src_identity: Some("vote-bot.e.serviceaccount.identity.weft.cluster.local".into()),
            ..TapLine::default()
        };
        f(&mut l);
        l
    }

    #[test]
    fn top_aggregates_requests() {
        let mut top = Top::default();
        for (id, latency, status) in [("0:1", 900, 200), ("0:2", 3_000, 500), ("0:3", 2_000, 200)] {
            top.add(&ev("req", id, |l| {
                l.method = Some("GET".into());
                l.path = Some("/api/list".into());
            }));
            top.add(&ev("rsp", id, |l| {
                l.status = Some(status);
                l.latency_us = Some(latency);
            }));
            top.add(&ev("end", id, |_| {}));
        }
        let rows = top.rows();
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(
            (r.source.as_str(), r.destination.as_str()),
            ("vote-bot", "web-0")
        );
        assert_eq!(
            (r.count, r.best_us, r.worst_us, r.last_us, r.successes),
            (3, 900, 3_000, 2_000, 2)
        );
        assert_eq!(
            top.table(),
            "SOURCE    DESTINATION  METHOD  PATH       COUNT  BEST   WORST  LAST  SUCCESS_RATE\n\
             vote-bot  web-0        GET     /api/list  3      900µs  3ms    2ms   66.67%\n"
        );
        // An end without its request is ignored.
        top.add(&ev("end", "9:9", |_| {}));
        assert_eq!(top.rows()[0].count, 3);
    }
}
