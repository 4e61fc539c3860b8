//! `gridwatch eval`: alerts against the truth of a simulated utility.

use anyhow::{Context, Result};
use gridwatch_core::{Alert, Role};
use gridwatch_ingester::read_registry;
use gridwatch_simulator::read_labels;
use gridwatch_simulator::score::{score, Evaluation, Fleet, Report};
use std::collections::HashSet;
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

/// Classes and size of the simulated fleet, from registry.csv and simulation.json.
pub fn fleet(data: &Path) -> Result<Fleet> {
    let reg_path = data.join("registry.csv");
    let name = reg_path.display().to_string();
    let f = File::open(&reg_path).with_context(|| format!("{name}: cannot open"))?;
    let rows = read_registry(BufReader::new(f), &name)?;
    let meta_path = data.join("simulation.json");
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&meta_path)
            .with_context(|| format!("{}: cannot read", meta_path.display()))?,
    )
    .with_context(|| format!("{}: not JSON", meta_path.display()))?;
    let days = meta["days"]
        .as_f64()
        .with_context(|| format!("{}: no days", meta_path.display()))?;
    let mut fleet = Fleet {
        days,
        ..Fleet::default()
    };
    let mut sites = HashSet::new();
    for r in rows.iter().filter(|r| r.role == Role::Customer) {
        let class = r
            .customer_class
            .map_or("unclassified", |c| c.as_str())
            .to_string();
        fleet.class_of.insert(r.site_id.clone(), class.clone());
        fleet.class_of.insert(r.meter_id.clone(), class.clone());
        if sites.insert(r.site_id.clone()) {
            *fleet.sites_by_class.entry(class).or_default() += 1;
        }
    }
    Ok(fleet)
}

pub fn evaluate(data: &Path, alerts: &Path) -> Result<Evaluation> {
    Ok(load(data, alerts)?.evaluate(&fleet(data)?))
}

fn opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.1}"))
}

pub fn print(e: &Evaluation) {
    println!(
        "{:<28} {:>5} {:>5} {:>6} {:>8} {:>8}  found as",
        "scenario", "cases", "found", "recall", "median h", "p90 h"
    );
    for s in &e.scenarios {
        let as_: Vec<String> = s.found_as.iter().map(|(k, n)| format!("{k}×{n}")).collect();
        let name = if s.required {
            s.scenario.to_string()
        } else {
            format!("{} (not required)", s.scenario)
        };
        println!(
            "{name:<28} {:>5} {:>5} {:>6.2} {:>8} {:>8}  {}",
            s.cases,
            s.found,
            s.recall,
            opt(s.median_delay_h),
            opt(s.p90_delay_h),
            as_.join(", ")
        );
    }
    println!(
        "\n{:<28} {:>7} {:>9} {:>9}",
        "alert kind", "opened", "on cases", "precision"
    );
    for k in &e.kinds {
        println!(
            "{:<28} {:>7} {:>9} {:>9.3}",
            k.kind, k.opened, k.on_cases, k.precision
        );
    }
    println!(
        "\n{:<16} {:>6} {:>6} {:>6} {:>7} {:>7} {:>14}",
        "class", "sites", "cases", "found", "recall", "false", "false/10k s-d"
    );
    for c in &e.classes {
        println!(
            "{:<16} {:>6} {:>6} {:>6} {:>7} {:>7} {:>14.2}",
            c.class,
            c.sites,
            c.cases,
            c.found,
            c.recall.map_or("-".into(), |r| format!("{r:.2}")),
            c.false_alerts,
            c.false_per_10k_site_days
        );
    }
    println!(
        "\n{} false alerts in {:.0} site-days = {:.2} per 10,000 site-days",
        e.false_alerts, e.site_days, e.false_per_10k_site_days
    );
    for m in &e.misses {
        println!(
            "missed: {} {} ({}, onset {})",
            m.target_type, m.target_id, m.scenario, m.onset
        );
    }
    for f in &e.false_alert_list {
        println!(
            "false:  {} {} {} ({}) {}: {}",
            f.alert_id, f.kind, f.target, f.class, f.detected_at, f.summary
        );
    }
}

pub fn run(data: &Path, alerts: &Path, as_json: bool) -> Result<()> {
    let e = evaluate(data, alerts)?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&e)?);
    } else {
        print(&e);
    }
    Ok(())
}
