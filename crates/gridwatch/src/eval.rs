//! `gridwatch eval`: alerts against the truth of a simulated utility.

use anyhow::{Context, Result};
use gridwatch_core::Alert;
use gridwatch_simulator::read_labels;
use gridwatch_simulator::score::{score, Report};
use serde_json::json;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// Reads `alerts.jsonl`; a bad line is an error naming it.
pub fn read_alerts(path: &Path) -> Result<Vec<Alert>> {
    let name = path.display().to_string();
    let f = File::open(path).with_context(|| format!("{name}: cannot open"))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("{name}:{}", i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(&line)
                .with_context(|| format!("{name}:{}: not an alert", i + 1))?,
        );
    }
    Ok(out)
}

pub fn load(data: &Path, alerts: &Path) -> Result<Report> {
    let labels_path = data.join("labels.csv");
    let f = File::open(&labels_path)
        .with_context(|| format!("{}: cannot open", labels_path.display()))?;
    let labels = read_labels(BufReader::new(f), &labels_path.display().to_string())
        .map_err(anyhow::Error::msg)?;
    Ok(score(&labels, &read_alerts(alerts)?))
}

fn median(v: &mut [i64]) -> Option<i64> {
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

pub fn run(data: &Path, alerts: &Path, as_json: bool) -> Result<()> {
    let report = load(data, alerts)?;
    let mut per: BTreeMap<&str, (usize, usize, Vec<i64>)> = BTreeMap::new();
    for o in &report.outcomes {
        let e = per.entry(o.label.scenario.as_str()).or_default();
        e.0 += 1;
        if let Some(d) = o.delay_s() {
            e.1 += 1;
            e.2.push(d);
        }
    }
    if as_json {
        let scenarios: serde_json::Map<_, _> = per
            .iter_mut()
            .map(|(s, (n, found, delays))| {
                let m = median(delays);
                (s.to_string(), json!({"cases": n, "found": found, "recall": *found as f64 / *n as f64, "median_delay_s": m}))
            })
            .collect();
        let misses: Vec<_> = report
            .outcomes
            .iter()
            .filter(|o| o.found.is_none())
            .map(|o| &o.label.target_id)
            .collect();
        let false_alerts: Vec<_> = report
            .false_alerts
            .iter()
            .map(|a| json!({"alert_id": a.alert_id, "kind": a.kind, "target": a.target_id()}))
            .collect();
        println!(
            "{}",
            json!({"scenarios": scenarios, "misses": misses, "false_alerts": false_alerts})
        );
        return Ok(());
    }
    println!(
        "{:<28} {:>6} {:>6} {:>7} {:>13}",
        "scenario", "cases", "found", "recall", "median delay"
    );
    for (s, (n, found, delays)) in per.iter_mut() {
        let m = median(delays).map_or("-".to_string(), |d| format!("{:.1} h", d as f64 / 3600.0));
        println!(
            "{s:<28} {n:>6} {found:>6} {:>7.2} {m:>13}",
            *found as f64 / *n as f64
        );
    }
    for o in report.outcomes.iter().filter(|o| o.found.is_none()) {
        println!(
            "missed: {} {} ({})",
            o.label.target_type, o.label.target_id, o.label.scenario
        );
    }
    println!("false alerts: {}", report.false_alerts.len());
    for a in &report.false_alerts {
        println!(
            "  {} {} {}: {}",
            a.kind,
            a.target_id(),
            a.alert_id,
            a.summary
        );
    }
    Ok(())
}
