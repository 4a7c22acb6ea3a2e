//! The benchmark's results: printed as a table, saved as JSON.

use serde::Serialize;

use super::{Burst, Opts, Quota, TwoWay};

/// Median and range of repeated measurements.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: Vec<f64>,
}

impl Stats {
    pub fn of(v: &[f64]) -> Self {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        Self {
            median: percentile(&s, 50.0),
            min: s.first().copied().unwrap_or(f64::NAN),
            max: s.last().copied().unwrap_or(f64::NAN),
            runs: v.to_vec(),
        }
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub cores: usize,
    pub date: String,
    pub opts: Option<Opts>,
    /// RabbitMQ confirmed publishes per second (≤256 in flight, quorum queue).
    pub ceiling: Stats,
    /// Accepted POST /contacts per second at 64 clients, `syncroot api` alone.
    pub accept: Stats,
    /// The same with every worker in the same process (`syncroot all`).
    pub accept_all_in_one: Stats,
    #[serde(skip)]
    pub latency_ms: Vec<f64>,
    pub latency_p50_ms: f64,
    pub latency_p95_ms: f64,
    pub latency_p99_ms: f64,
    pub burst: Burst,
    pub burst_unbatched: Burst,
    pub quota: Quota,
    pub two_way: TwoWay,
    pub peak_rss_mb: f64,
}

impl Report {
    pub fn new(opts: &Opts) -> Self {
        Self {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            opts: Some(opts.clone()),
            ..Default::default()
        }
    }

    fn finish(&mut self) {
        let mut l = self.latency_ms.clone();
        l.sort_by(f64::total_cmp);
        self.latency_p50_ms = percentile(&l, 50.0);
        self.latency_p95_ms = percentile(&l, 95.0);
        self.latency_p99_ms = percentile(&l, 99.0);
    }

    pub fn print(&mut self) {
        self.finish();
        if self.opts.as_ref().is_some_and(|o| o.only_two_way) {
            println!(
                "\nSyncRoot benchmark — {} — {} cores",
                self.date, self.cores
            );
            self.print_two_way();
            return;
        }
        let (b, u, q) = (&self.burst, &self.burst_unbatched, &self.quota);
        let both = |b: &Burst| b.hubspot_secs.max(b.salesforce_secs);
        let fill = |records: usize, calls: u64, cap: f64| {
            100.0 * records as f64 / (calls.max(1) as f64 * cap)
        };
        println!(
            "\nSyncRoot benchmark — {} — {} cores",
            self.date, self.cores
        );
        println!("{:-<96}", "");
        println!("{:<58} {:>18} {:>18}", "measure", "value", "range / target");
        println!("{:-<96}", "");
        let row = |name: &str, v: String, r: String| println!("{name:<58} {v:>18} {r:>18}");
        row(
            "RabbitMQ confirmed publishes/s (ceiling, median)",
            format!("{:.0}", self.ceiling.median),
            format!("{:.0}–{:.0}", self.ceiling.min, self.ceiling.max),
        );
        row(
            "API accepted creates/s at 64 clients (median)",
            format!("{:.0}", self.accept.median),
            format!("{:.0}–{:.0}", self.accept.min, self.accept.max),
        );
        row(
            "  accept rate / broker ceiling",
            format!("{:.2}", self.accept.median / self.ceiling.median),
            "≥ 0.50".into(),
        );
        row(
            "API accepted creates/s, all-in-one beside every worker",
            format!("{:.0}", self.accept_all_in_one.median),
            format!(
                "{:.0}–{:.0}",
                self.accept_all_in_one.min, self.accept_all_in_one.max
            ),
        );
        row(
            "light load: 202 → synced in both CRMs, p50 ms",
            format!("{:.1}", self.latency_p50_ms),
            "< 50".into(),
        );
        row(
            "  p95 ms",
            format!("{:.1}", self.latency_p95_ms),
            String::new(),
        );
        row(
            "  p99 ms",
            format!("{:.1}", self.latency_p99_ms),
            "< 200".into(),
        );
        row(
            &format!("burst {}: seconds until both CRMs hold all", b.contacts),
            format!("{:.2}", both(b)),
            "≤ 5".into(),
        );
        row(
            "  seconds to accept all",
            format!("{:.2}", b.accept_secs),
            String::new(),
        );
        row(
            "  HubSpot calls (minimum)",
            format!("{} ({})", b.hubspot_calls, b.hubspot_min_calls),
            format!("fill {:.0}%", fill(b.contacts, b.hubspot_calls, 100.0)),
        );
        row(
            "  Salesforce calls (minimum)",
            format!("{} ({})", b.salesforce_calls, b.salesforce_min_calls),
            format!("fill {:.0}%", fill(b.contacts, b.salesforce_calls, 200.0)),
        );
        row("  429s", b.rate_limited.to_string(), "0".into());
        row(
            "burst, batching off: seconds until both hold all",
            format!("{:.2}", both(u)),
            format!("×{:.1} slower", both(u) / both(b)),
        );
        row(
            "  HubSpot / Salesforce calls",
            format!("{} / {}", u.hubspot_calls, u.salesforce_calls),
            format!(
                "×{:.0} / ×{:.0}",
                u.hubspot_calls as f64 / b.hubspot_calls.max(1) as f64,
                u.salesforce_calls as f64 / b.salesforce_calls.max(1) as f64
            ),
        );
        row(
            &format!(
                "quota {} req/10 s: contacts/s delivered (ceiling)",
                q.burst_limit_per_10s
            ),
            format!(
                "{:.0} ({:.0})",
                q.contacts_per_sec, q.ceiling_contacts_per_sec
            ),
            format!(
                "{:.0}% ≥ 95%",
                100.0 * q.contacts_per_sec / q.ceiling_contacts_per_sec
            ),
        );
        row(
            "  sustained, after the first 10 s window (ceiling)",
            format!(
                "{:.0} ({:.0})",
                q.sustained_contacts_per_sec, q.ceiling_contacts_per_sec
            ),
            format!(
                "{:.0}% ≥ 95%",
                100.0 * q.sustained_contacts_per_sec / q.ceiling_contacts_per_sec
            ),
        );
        row(
            "  calls/s (allowance 10/s), 429s",
            format!("{:.2}, {}", q.calls_per_sec, q.rate_limited),
            "0 429s".into(),
        );
        self.print_two_way();
        row(
            "SyncRoot process peak memory, MB",
            format!("{:.0}", self.peak_rss_mb),
            "< 150".into(),
        );
        println!("{:-<96}", "");
    }

    fn print_two_way(&self) {
        let row = |name: &str, v: String, r: String| println!("{name:<58} {v:>18} {r:>18}");
        let t = &self.two_way;
        row(
            "two-way: UI edit in one CRM → in the other, p50 / p99 ms",
            format!("{:.0} / {:.0}", t.arrival_p50_ms, t.arrival_p99_ms),
            format!("{} edits", t.edits),
        );
        row(
            "  CRM calls per edit (reads included), echo writes",
            format!("{:.1}, {}", t.calls_per_edit, t.echo_writes),
            "0 echo writes".into(),
        );
    }

    pub fn save(&self) -> anyhow::Result<()> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench-results");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("latest.json");
        std::fs::write(&path, serde_json::to_string_pretty(self)?)?;
        println!("results written to {}", path.display());
        Ok(())
    }
}
