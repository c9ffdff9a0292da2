//! How `weft viz` prints: aligned tables with Linkerd's columns and number formats
//! (`100.00%`, `4.2rps`, `12ms`, `-` when there is no traffic), and tap lines in Linkerd's
//! format.

use serde::Deserialize;

/// Columns of `weft viz stat`.
pub const STAT_COLUMNS: [&str; 8] = [
    "NAME",
    "MESHED",
    "SUCCESS",
    "RPS",
    "LATENCY_P50",
    "LATENCY_P95",
    "LATENCY_P99",
    "TCP_CONN",
];

/// Columns of `weft viz edges`.
pub const EDGES_COLUMNS: [&str; 5] = ["SRC", "DST", "SRC_NS", "DST_NS", "SECURED"];

/// Columns of `weft viz routes`.
pub const ROUTES_COLUMNS: [&str; 9] = [
    "ROUTE",
    "SERVICE",
    "SUCCESS",
    "RPS",
    "LATENCY_P50",
    "LATENCY_P95",
    "LATENCY_P99",
    "RETRIES",
    "BUDGET_EXHAUSTED",
];

/// Columns of `weft viz top`.
pub const TOP_COLUMNS: [&str; 9] = [
    "SOURCE",
    "DESTINATION",
    "METHOD",
    "PATH",
    "COUNT",
    "BEST",
    "WORST",
    "LAST",
    "SUCCESS_RATE",
];

/// A `stat` row as the API sends it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct StatRow {
    pub name: String,
    pub namespace: String,
    pub meshed: u64,
    pub total: u64,
    pub requests: f64,
    pub success_rate: Option<f64>,
    pub rps: Option<f64>,
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p95: Option<f64>,
    pub latency_ms_p99: Option<f64>,
    pub tcp_connections: Option<f64>,
}

/// An `edges` row as the API sends it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct EdgeRow {
    pub src: String,
    pub dst: String,
    pub src_namespace: String,
    pub dst_namespace: String,
    pub secured: bool,
    pub no_tls_reason: Option<String>,
}

/// A `routes` row as the API sends it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct RouteRow {
    pub route: String,
    pub service: String,
    pub requests: f64,
    pub success_rate: Option<f64>,
    pub rps: Option<f64>,
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p95: Option<f64>,
    pub latency_ms_p99: Option<f64>,
    pub retries: f64,
    pub budget_exhausted: f64,
}

/// A tap line as the API sends it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct TapLine {
    pub kind: String,
    pub namespace: String,
    pub pod: String,
    pub id: String,
    pub proxy: String,
    pub src: String,
    pub dst: String,
    pub tls: String,
    pub src_identity: Option<String>,
    pub dst_identity: Option<String>,
    pub dst_labels: std::collections::BTreeMap<String, String>,
    pub method: Option<String>,
    pub authority: Option<String>,
    pub path: Option<String>,
    pub status: Option<u32>,
    pub latency_us: Option<u64>,
    pub duration_us: Option<u64>,
    pub response_bytes: Option<u64>,
    pub grpc_status: Option<u32>,
    pub error: Option<String>,
}

/// Aligned columns, two spaces apart, no trailing spaces.
pub fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(cell);
                let pad = widths[i] - cell.chars().count() + 2;
                s.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(&header);
    for row in rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&cells);
    }
    out
}

/// `98.50%`, or `-`.
pub fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{:.2}%", v * 100.0))
}

/// `4.2rps`, or `-`.
pub fn rps(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}rps"))
}

/// `12ms` (a tenth of a millisecond below 10 ms), or `-`.
pub fn millis(v: Option<f64>) -> String {
    match v {
        None => "-".to_owned(),
        Some(v) if v < 10.0 && v.fract() != 0.0 => format!("{v:.1}ms"),
        Some(v) => format!("{v:.0}ms"),
    }
}

/// A latency in microseconds: `532µs`, `12ms`, `1.5s`.
pub fn micros(us: u64) -> String {
    if us < 1_000 {
        format!("{us}µs")
    } else if us < 1_000_000 {
        format!("{}ms", (us + 500) / 1_000)
    } else {
        format!("{:.1}s", us as f64 / 1e6)
    }
}

/// The `stat` table.
pub fn stat_table(rows: &[StatRow]) -> String {
    let rows: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            let traffic = r.requests > 0.0;
            let when = |v: Option<f64>| v.filter(|_| traffic);
            [
                r.name.clone(),
                format!("{}/{}", r.meshed, r.total),
                percent(when(r.success_rate)),
                rps(when(r.rps)),
                millis(when(r.latency_ms_p50)),
                millis(when(r.latency_ms_p95)),
                millis(when(r.latency_ms_p99)),
                r.tcp_connections
                    .map_or_else(|| "-".to_owned(), |c| format!("{c:.0}")),
            ]
        })
        .collect();
    table(STAT_COLUMNS, &rows)
}

/// The `edges` table.
pub fn edges_table(rows: &[EdgeRow]) -> String {
    let rows: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            let dash = |s: &str| {
                if s.is_empty() {
                    "-".to_owned()
                } else {
                    s.to_owned()
                }
            };
            [
                r.src.clone(),
                r.dst.clone(),
                dash(&r.src_namespace),
                dash(&r.dst_namespace),
                if r.secured {
                    "√".to_owned()
                } else {
                    r.no_tls_reason.clone().unwrap_or_else(|| "×".to_owned())
                },
            ]
        })
        .collect();
    table(EDGES_COLUMNS, &rows)
}

/// The `routes` table.
pub fn routes_table(rows: &[RouteRow]) -> String {
    let rows: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            let traffic = r.requests > 0.0;
            let when = |v: Option<f64>| v.filter(|_| traffic);
            [
                r.route.clone(),
                r.service.clone(),
                percent(when(r.success_rate)),
                rps(when(r.rps)),
                millis(when(r.latency_ms_p50)),
                millis(when(r.latency_ms_p95)),
                millis(when(r.latency_ms_p99)),
                format!("{:.0}", r.retries),
                format!("{:.0}", r.budget_exhausted),
            ]
        })
        .collect();
    table(ROUTES_COLUMNS, &rows)
}

/// One tap line in Linkerd's format; `None` for lines that are not events.
pub fn tap_text(l: &TapLine) -> Option<String> {
    let proxy = match l.proxy.as_str() {
        "in" => "in ",
        "out" => "out",
        other => other,
    };
    let head = format!(
        "{} id={} proxy={proxy} src={} dst={} tls={}",
        l.kind, l.id, l.src, l.dst, l.tls
    );
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    Some(match l.kind.as_str() {
        "req" => format!(
            "{head} :method={} :authority={} :path={}",
            opt(&l.method),
            opt(&l.authority),
            opt(&l.path)
        ),
        "rsp" => format!(
            "{head} :status={} latency={}µs",
            l.status.unwrap_or(0),
            l.latency_us.unwrap_or(0)
        ),
        "end" => {
            let mut s = head;
            if let Some(g) = l.grpc_status {
                s.push_str(&format!(" grpc-status={g}"));
            }
            if let Some(e) = &l.error {
                s.push_str(&format!(" error={e:?}"));
            }
            s.push_str(&format!(
                " duration={}µs response-length={}B",
                l.duration_us.unwrap_or(0),
                l.response_bytes.unwrap_or(0)
            ));
            s
        }
        _ => return None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn stat_rows_in_linkerd_format() {
        let rows = [
            StatRow {
                name: "web".into(),
                meshed: 1,
                total: 1,
                requests: 120.0,
                success_rate: Some(0.9825),
                rps: Some(2.0),
                latency_ms_p50: Some(1.5),
                latency_ms_p95: Some(9.0),
                latency_ms_p99: Some(48.6),
                tcp_connections: Some(3.0),
                ..StatRow::default()
            },
            StatRow {
                name: "vote-bot".into(),
                meshed: 0,
                total: 1,
                success_rate: Some(1.0),
                ..StatRow::default()
            },
        ];
        assert_eq!(
            stat_table(&rows),
            "NAME      MESHED  SUCCESS  RPS     LATENCY_P50  LATENCY_P95  LATENCY_P99  TCP_CONN\n\
             web       1/1     98.25%   2.0rps  1.5ms        9ms          49ms         3\n\
             vote-bot  0/1     -        -       -            -            -            -\n"
        );
    }

    #[test]
    fn edges_show_the_reason() {
        let rows = [
            EdgeRow {
                src: "web".into(),
                dst: "emoji".into(),
                src_namespace: "e".into(),
                dst_namespace: "e".into(),
                secured: true,
                no_tls_reason: None,
            },
            EdgeRow {
                src: "unmeshed".into(),
                dst: "web".into(),
                dst_namespace: "e".into(),
                secured: false,
                no_tls_reason: Some("no_tls_from_remote".into()),
                ..EdgeRow::default()
            },
        ];
        assert_eq!(
            edges_table(&rows),
            "SRC       DST    SRC_NS  DST_NS  SECURED\n\
             web       emoji  e       e       √\n\
             unmeshed  web    -       e       no_tls_from_remote\n"
        );
    }

    #[test]
    fn tap_lines() {
        let mut l = TapLine {
            kind: "req".into(),
            id: "0:1".into(),
            proxy: "in".into(),
            src: "127.0.1.4:5000".into(),
            dst: "127.0.1.3:8080".into(),
            tls: "true".into(),
            method: Some("GET".into()),
            authority: Some("web-svc.emojivoto:80".into()),
            path: Some("/api/list".into()),
            ..TapLine::default()
        };
        assert_eq!(
            tap_text(&l).unwrap(),
            "req id=0:1 proxy=in  src=127.0.1.4:5000 dst=127.0.1.3:8080 tls=true :method=GET :authority=web-svc.emojivoto:80 :path=/api/list"
        );
        l.kind = "rsp".into();
        l.proxy = "out".into();
        l.status = Some(200);
        l.latency_us = Some(1234);
        assert!(tap_text(&l).unwrap().ends_with(
            "proxy=out src=127.0.1.4:5000 dst=127.0.1.3:8080 tls=true :status=200 latency=1234µs"
        ));
        l.kind = "end".into();
        l.duration_us = Some(56);
        l.response_bytes = Some(123);
        assert!(tap_text(&l)
            .unwrap()
            .ends_with("tls=true duration=56µs response-length=123B"));
        l.kind = "error".into();
        assert_eq!(tap_text(&l), None);
    }

    #[test]
    fn number_formats() {
        assert_eq!(percent(Some(1.0)), "100.00%");
        assert_eq!(rps(Some(4.25)), "4.2rps");
        assert_eq!(millis(Some(12.4)), "12ms");
        assert_eq!(millis(Some(5.0)), "5ms");
        assert_eq!(micros(532), "532µs");
        assert_eq!(micros(12_400), "12ms");
        assert_eq!(micros(1_500_000), "1.5s");
    }
}
