//! The benchmark's results: printed as a table of measures and one of verdicts (a goal's
//! figure, target, PASS or MISS), saved as JSON.

use serde::Serialize;
use syncroot_testkit::goals::{Goal, missed};

use super::{Backfill, Burst, CrmCost, Opts, Quota, ScaleOut, TwoWay, goals};

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

/// One run's measurements (`None`: the scenario did not run) and its verdicts.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub cores: usize,
    pub date: String,
    pub opts: Option<Opts>,
    /// RabbitMQ confirmed publishes per second (≤256 in flight, quorum queue).
    pub ceiling: Stats,
    /// The same with no more confirms outstanding than the accept run has clients (64).
    pub ceiling_at_clients: Stats,
    /// Accepted POST /contacts per second at 64 clients, `syncroot api` alone.
    pub accept: Stats,
    /// The same with every worker in the same process (`syncroot all`).
    pub accept_all_in_one: Stats,
    /// 202 → held by both sandboxes, ms; infinite for a contact that never was.
    #[serde(skip)]
    pub latency_ms: Vec<f64>,
    pub latency_p50_ms: f64,
    pub latency_p95_ms: f64,
    pub latency_p99_ms: f64,
    pub burst: Option<Burst>,
    pub burst_unbatched: Option<Burst>,
    pub quota: Option<Quota>,
    pub two_way: Option<TwoWay>,
    /// Delivery of a backlog with slow CRM calls, at one call in flight per CRM and at two.
    pub scale_out: Option<(ScaleOut, ScaleOut)>,
    pub backfill: Option<Backfill>,
    pub peak_rss_mb: Option<f64>,
    pub goals: Vec<Goal>,
}

type Row<'a> = &'a dyn Fn(&str, String, String);

impl Report {
    pub fn new(opts: &Opts) -> Self {
        Self {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            opts: Some(opts.clone()),
            ..Default::default()
        }
    }

    /// Percentiles and verdicts from the measurements.
    pub fn finish(&mut self) {
        let mut l = self.latency_ms.clone();
        l.sort_by(f64::total_cmp);
        self.latency_p50_ms = percentile(&l, 50.0);
        self.latency_p95_ms = percentile(&l, 95.0);
        self.latency_p99_ms = percentile(&l, 99.0);
        self.goals = goals(self);
    }

    /// How many goals were missed.
    pub fn missed(&self) -> usize {
        missed(&self.goals)
    }

    /// The backfill left something wrong: not a missed goal but a failed run.
    pub fn failed(&self) -> bool {
        self.backfill
            .as_ref()
            .is_some_and(|b| !b.problems.is_empty())
    }

    pub fn print(&self) {
        println!(
            "\nSyncRoot benchmark — {} — {} cores",
            self.date, self.cores
        );
        println!("{:-<96}", "");
        println!("{:<58} {:>18} {:>18}", "measure", "value", "range / note");
        println!("{:-<96}", "");
        let row = |name: &str, v: String, r: String| println!("{name:<58} {v:>18} {r:>18}");
        if !self.accept.runs.is_empty() {
            self.print_accept(&row);
        }
        if !self.latency_ms.is_empty() {
            self.print_latency(&row);
        }
        if let Some(b) = &self.burst {
            print_burst(b, self.burst_unbatched.as_ref(), &row);
        }
        if let Some(q) = &self.quota {
            print_quota(q, &row);
        }
        if let Some(t) = &self.two_way {
            print_two_way(t, &row);
        }
        if let Some((one, two)) = &self.scale_out {
            for s in [one, two] {
                row(
                    &format!(
                        "Scale-out: backlog of {} at +{} ms per call, {} in flight, contacts/s",
                        s.backlog, s.latency_ms, s.concurrency
                    ),
                    format!("{:.0}", s.contacts_per_sec),
                    format!("{:.2} s", s.seconds),
                );
            }
        }
        if let Some(b) = &self.backfill {
            print_backfill(b, &row);
        }
        if let Some(mb) = self.peak_rss_mb {
            row(
                "SyncRoot process peak memory, MB",
                format!("{mb:.0}"),
                String::new(),
            );
        }
        println!("{:-<96}", "");
        self.print_verdicts();
    }

    fn print_accept(&self, row: Row) {
        let range = |s: &Stats| format!("{:.0}–{:.0}", s.min, s.max);
        row(
            "RabbitMQ confirmed publishes/s (ceiling, median)",
            format!("{:.0}", self.ceiling.median),
            range(&self.ceiling),
        );
        row(
            "… with at most 64 confirms outstanding (the clients')",
            format!("{:.0}", self.ceiling_at_clients.median),
            range(&self.ceiling_at_clients),
        );
        row(
            "API accepted creates/s at 64 clients (median)",
            format!("{:.0}", self.accept.median),
            range(&self.accept),
        );
        row(
            "API accepted creates/s, all-in-one beside every worker",
            format!("{:.0}", self.accept_all_in_one.median),
            range(&self.accept_all_in_one),
        );
    }

    fn print_latency(&self, row: Row) {
        let lost = self.latency_ms.iter().filter(|l| l.is_infinite()).count();
        row(
            "light load: 202 → in both sandboxes, p50/p95/p99 ms",
            format!(
                "{:.1} / {:.1} / {:.1}",
                self.latency_p50_ms, self.latency_p95_ms, self.latency_p99_ms
            ),
            format!("{lost} never held"),
        );
        // The slowest, by the order they were sent in (a cold start shows as the first few).
        let mut slowest: Vec<(usize, f64)> = self.latency_ms.iter().copied().enumerate().collect();
        slowest.sort_by(|a, b| b.1.total_cmp(&a.1));
        let text: Vec<String> = slowest
            .iter()
            .take(3)
            .map(|(i, ms)| format!("#{i} {ms:.0}"))
            .collect();
        row(
            "  slowest three (sent as #n), ms",
            text.join(", "),
            String::new(),
        );
    }

    fn print_verdicts(&self) {
        println!("{:<66} {:>12} {:>12} {:>4}", "goal", "figure", "target", "");
        for g in &self.goals {
            let (figure, target) = (g.figure_text(), g.target_text());
            println!("{:<66} {figure:>12} {target:>12} {}", g.name, g.verdict);
        }
        println!("{:-<96}", "");
        match self.missed() {
            0 => println!("all {} goals met", self.goals.len()),
            m => println!("{m} of {} goals MISSED", self.goals.len()),
        }
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

fn print_burst(b: &Burst, unbatched: Option<&Burst>, row: Row) {
    row(
        &format!("burst {}: held by HubSpot / Salesforce / both", b.contacts),
        format!(
            "{} / {} / {}",
            b.hubspot_held, b.salesforce_held, b.held_by_both
        ),
        String::new(),
    );
    row(
        "  seconds until both hold all; to accept all",
        format!("{:.2}; {:.2}", b.both_secs(), b.accept_secs),
        String::new(),
    );
    row(
        "  HubSpot / Salesforce calls (minimum)",
        format!("{} / {}", b.hubspot_calls, b.salesforce_calls),
        format!("({} / {})", b.hubspot_min_calls, b.salesforce_min_calls),
    );
    if let Some(u) = unbatched {
        row(
            "burst, batching off: seconds until both hold all",
            format!("{:.2}", u.both_secs()),
            format!("×{:.1} slower", u.both_secs() / b.both_secs()),
        );
        row(
            "  HubSpot / Salesforce calls; held by both",
            format!("{} / {}", u.hubspot_calls, u.salesforce_calls),
            format!("{} of {}", u.held_by_both, u.contacts),
        );
    }
}

fn print_quota(q: &Quota, row: Row) {
    row(
        &format!(
            "quota {} req/10 s: contacts/s delivered, sustained (ceiling)",
            q.burst_limit_per_10s
        ),
        format!(
            "{:.0}, {:.0} ({:.0})",
            q.contacts_per_sec, q.sustained_contacts_per_sec, q.ceiling_contacts_per_sec
        ),
        format!("{} of {} held", q.held, q.backlog),
    );
    row(
        "  calls/s (allowance 10/s), 429s",
        format!("{:.2}, {}", q.calls_per_sec, q.rate_limited),
        String::new(),
    );
}

fn print_two_way(t: &TwoWay, row: Row) {
    row(
        "two-way: UI edit in one CRM → in the other, p50 / p99 ms",
        format!("{:.0} / {:.0}", t.arrival_p50_ms, t.arrival_p99_ms),
        format!("{} edits", t.edits),
    );
    row(
        "  CRM calls per edit (reads included), echo writes",
        format!("{:.1}, {}", t.calls_per_edit, t.echo_writes),
        String::new(),
    );
}

fn print_backfill(b: &Backfill, row: Row) {
    row(
        &format!(
            "backfill {} HubSpot + {} Salesforce: job s; until settled",
            b.hubspot_records, b.salesforce_records
        ),
        format!("{:.1}; {:.1}", b.job_secs, b.settled_secs),
        format!("{:.0} MB peak", b.peak_rss_mb),
    );
    row(
        "  in both; differing; Salesforce pairs sharing an address",
        format!("{}; {}; {}", b.shared, b.differing, b.duplicate_pairs),
        String::new(),
    );
    for (name, c) in [("HubSpot", &b.hubspot), ("Salesforce", &b.salesforce)] {
        let matching = c.calls.matching.map_or("?".to_owned(), |m| m.to_string());
        row(
            &format!("  {name} calls: pages / by id / writes / matching / other"),
            format!(
                "{} / {} / {} / {matching} / {}",
                c.calls.pages, c.calls.by_id, c.calls.writes, c.calls.other
            ),
            format!("total {}", c.calls.total),
        );
        print_minimum(name, c, row);
    }
    let n = |k: &str| b.counters.get(k).copied().unwrap_or(0);
    row(
        "  job: read / created / matched / linked / duplicates",
        format!(
            "{} / {} / {} / {} / {}",
            n("read"),
            n("created"),
            n("matched"),
            n("linked"),
            n("duplicates")
        ),
        format!("{} updated, {} conflicts", n("updated"), n("conflicts")),
    );
    for p in &b.problems {
        println!("  PROBLEM: {p}");
    }
}

fn print_minimum(name: &str, c: &CrmCost, row: Row) {
    let m = &c.minimum;
    row(
        &format!("  {name} minimum: pages + creates + updates"),
        format!(
            "{} + {} + {} = {}",
            m.pages,
            m.creates,
            m.updates,
            m.total()
        ),
        format!("×{:.2}", c.ratio()),
    );
    row(
        &format!("  {name} records written (needed)"),
        format!("{} ({})", c.records_written, c.records_needed),
        String::new(),
    );
}
