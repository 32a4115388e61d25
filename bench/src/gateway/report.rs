//! Readings and the summary table: CPU time and RSS of processes from /proc, the machine's
//! load, and the rows the table is made of.

use super::LATENCY_RATE;
use super::runs::{Latency, Node, Publisher, Run};
use crate::rss_kib;

/// CPU time (user + system) of a process, or of its threads whose name starts with
/// `thread`, in seconds (clock ticks of 1/100 s, Linux's USER_HZ).
pub(crate) fn cpu_secs(pid: u32, thread: Option<&str>) -> f64 {
    fn ticks(stat: &str) -> u64 {
        // Fields after the command name: state is 3rd overall, utime 14th, stime 15th.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        get(11) + get(12)
    }
    let total = match thread {
        None => ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default()),
        Some(prefix) => std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(prefix))
            })
            .map(|t| ticks(&std::fs::read_to_string(t.path().join("stat")).unwrap_or_default()))
            .sum(),
    };
    total as f64 / 100.0
}

/// CPU time of every PostgreSQL process on the machine, in seconds.
pub(crate) fn postgres_cpu_secs() -> f64 {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .map(|pid| cpu_secs(pid, None))
        .sum()
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

/// `/proc/loadavg`'s first three fields: other work on the machine skews every figure.
pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn self_rss_mib() -> f64 {
    rss_kib(std::process::id(), "VmRSS:") as f64 / 1024.0
}

pub(crate) fn thousands(v: f64) -> String {
    let n = v.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One row of the summary table.
pub(crate) struct Row {
    measure: String,
    result: String,
    target: String,
    ratio: String,
}

pub(crate) fn row(
    measure: impl Into<String>,
    result: impl Into<String>,
    target: &str,
    ratio: String,
) -> Row {
    Row {
        measure: measure.into(),
        result: result.into(),
        target: target.into(),
        ratio,
    }
}

pub(crate) fn db_label(nodes: &[&Node]) -> &'static str {
    if nodes.iter().any(|n| n.postgres) {
        "PostgreSQL"
    } else {
        "SQLite reader"
    }
}

#[allow(
    clippy::too_many_arguments,
    reason = "one table row and its parameters"
)]
pub(crate) fn fanout_rows(
    rows: &mut Vec<Row>,
    label: &str,
    db: &str,
    runs: &[Run],
    conns: usize,
    events: u64,
    publisher: Publisher,
) {
    let what = format!(
        "{label}: deliveries/s to {conns} connections, {}",
        publisher.describe()
    );
    if runs.is_empty() {
        rows.push(row(what, "no run finished", "≥ 500,000/s", "—".into()));
        return;
    }
    let mut rates: Vec<f64> = runs.iter().map(|r| r.deliveries_per_s).collect();
    let list = rates
        .iter()
        .map(|r| thousands(*r))
        .collect::<Vec<_>>()
        .join(", ");
    let m = median(&mut rates);
    let mut waits: Vec<f64> = runs.iter().map(|r| r.window_wait * 100.0).collect();
    let mut server: Vec<f64> = runs.iter().map(|r| r.server_us).collect();
    let mut client: Vec<f64> = runs.iter().map(|r| r.client_us).collect();
    let mut reads: Vec<f64> = runs.iter().map(|r| r.db_cpu_s).collect();
    let many = if runs.len() > 1 {
        format!("median of {} runs ({list})", runs.len())
    } else {
        "1 run".to_owned()
    };
    rows.push(row(
        format!("{what}; {events} events per run"),
        format!(
            "{} = {} events/s, {many}; publisher waited for clients {:.0} % of the time; CPU/delivery server {:.2} µs, clients {:.2} µs; {db} CPU {:.2} s",
            thousands(m),
            thousands(m / conns as f64),
            median(&mut waits),
            median(&mut server),
            median(&mut client),
            median(&mut reads),
        ),
        "≥ 500,000/s",
        format!("{:.2}× target", m / 500_000.0),
    ));
}

pub(crate) fn latency_rows(
    rows: &mut Vec<Row>,
    label: &str,
    lat: &[Latency],
    names: &[&str],
    conns: usize,
) {
    for (l, name) in lat.iter().zip(names) {
        rows.push(row(
            format!("{label}: publish→receipt latency{name}, {LATENCY_RATE} events/s to {conns} connections"),
            format!(
                "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} deliveries)",
                l.p50, l.p99, l.max, l.samples
            ),
            "p99 ≤ 50 ms",
            format!("p99 = {:.2}× target", l.p99 / 50.0),
        ));
    }
}

pub(crate) fn print_table(rows: &[Row]) {
    println!("machine load after (1/5/15-min averages): {}", loadavg());
    println!();
    println!("| measure | result | target | ratio |");
    println!("| --- | --- | --- | --- |");
    for r in rows {
        println!(
            "| {} | {} | {} | {} |",
            r.measure, r.result, r.target, r.ratio
        );
    }
}
