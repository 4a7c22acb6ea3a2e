//! The contract: the chart's alerts, its dashboard and the table in the rule file's opening
//! comment only name metrics this binary exports, with the types and labels it exports.

use std::collections::{BTreeMap, BTreeSet};

use super::*;

const RULE: &str = include_str!("../../charts/syncroot/templates/prometheusrule.yaml");
const DASHBOARD: &str = include_str!("../../charts/syncroot/dashboards/syncroot.json");

/// Every `syncroot_…` metric name a text mentions.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("syncroot_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// Records one sample of every family into a recorder of its own (not the process's) and
/// renders it: the series names (`_bucket`, `_sum`, `_count` of histograms included) and the
/// families' `# TYPE`s the binary exports.
fn exported() -> (BTreeSet<String>, BTreeMap<String, String>) {
    let recorder = builder().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        for f in FAMILIES {
            let labels: Vec<metrics::Label> = f
                .labels
                .iter()
                .map(|l| metrics::Label::new(*l, "x"))
                .collect();
            match f.kind {
                Kind::Counter => metrics::counter!(f.name, labels).increment(1),
                Kind::Gauge => metrics::gauge!(f.name, labels).set(1.0),
                Kind::Histogram(_) => metrics::histogram!(f.name, labels).record(1.0),
            }
        }
    });
    let text = handle.render();
    let series = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l[..l.find(['{', ' ']).unwrap_or(l.len())].to_owned())
        .collect();
    let types = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, t)| (n.to_owned(), t.to_owned()))
        .collect();
    (series, types)
}

#[test]
fn every_family_renders_with_its_type_and_histograms_have_buckets() {
    let (series, types) = exported();
    for f in FAMILIES {
        let want = match f.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram(_) => "histogram",
        };
        assert_eq!(
            types.get(f.name).map(String::as_str),
            Some(want),
            "{}",
            f.name
        );
        if matches!(f.kind, Kind::Histogram(_)) {
            assert!(series.contains(&format!("{}_bucket", f.name)), "{}", f.name);
        }
    }
}

#[test]
fn alerts_and_dashboard_only_use_exported_metrics() {
    let (series, types) = exported();
    let used: BTreeSet<String> = names_in(RULE)
        .into_iter()
        .chain(names_in(DASHBOARD))
        .collect();
    assert!(used.len() > 10, "the chart names its metrics: {used:?}");
    let unknown: Vec<&String> = used
        .iter()
        .filter(|n| !series.contains(*n) && !types.contains_key(*n))
        .collect();
    assert!(
        unknown.is_empty(),
        "the chart uses metrics the binary does not export: {unknown:?}"
    );
}

#[test]
fn the_rule_files_table_lists_every_family_with_its_labels_and_type() {
    let comment = &RULE[..RULE.find("*/").expect("the rule file opens with a comment")];
    let table: BTreeMap<String, (Vec<String>, String)> = comment
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("syncroot_"))
        .filter_map(|l| {
            let (name, rest) = l.split_once('{')?;
            let (labels, rest) = rest.split_once('}')?;
            let kind = rest.split_whitespace().next()?.to_owned();
            let labels = labels.split(',').map(|s| s.trim().to_owned()).collect();
            Some((name.to_owned(), (labels, kind)))
        })
        .collect();
    let ours: BTreeMap<String, (Vec<String>, String)> = FAMILIES
        .iter()
        .map(|f| {
            let kind = match f.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram(_) => "histogram",
            };
            let labels = f.labels.iter().map(|l| (*l).to_owned()).collect();
            (f.name.to_owned(), (labels, kind.to_owned()))
        })
        .collect();
    assert_eq!(table, ours);
}

#[test]
fn the_scanner_finds_names_and_stops_at_punctuation() {
    let found = names_in(r#"rate(syncroot_a_total{x="1"}[5m]) / syncroot_b_bucket"#);
    let want: BTreeSet<String> = ["syncroot_a_total", "syncroot_b_bucket"]
        .map(str::to_owned)
        .into();
    assert_eq!(found, want);
}
