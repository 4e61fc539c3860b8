//! Helpers the end-to-end suites share: the small register and load shapes, simulated
//! utilities with their embedded alerts, reading alerts and Arrow rows back, and waiting on
//! services and the group.

use crate::{free_port, python_check, repo_root, Env};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const REGISTRY: &str = "site_id,meter_id,feeder_id,role,customer_class,permitted_kw,status,licensed_mining,lat,lon,region\n\
F1,H1,F1,feeder_head,,,active,false,,,\n\
S1,M1,F1,customer,residential,12,active,false,52.3,77.0,Pavlodar\n\
S2,M2,F1,customer,residential,12,disconnected,false,52.3,77.1,Pavlodar\n\
S3,M3,F1,customer,residential,12,active,false,52.2,77.0,Pavlodar\n\
S4,M4,F1,customer,mining,600,active,true,52.2,77.2,Pavlodar\n";

pub const T0: i64 = 1_767_571_200; // 2026-01-05T00:00:00Z

/// Demand (kW) of one meter by 15-minute step.
pub type Load = Box<dyn Fn(i64) -> f64>;

pub fn household(i: i64) -> f64 {
    let h = (i / 4) % 24;
    0.3 + if (17..22).contains(&h) { 1.5 } else { 0.0 } + ((i * 7919) % 11) as f64 * 0.02
}

/// Two days of 15-minute readings as CSV lines for one meter.
pub fn csv_lines(meter: &str, kw: impl Fn(i64) -> f64) -> Vec<String> {
    (1..=2 * 96)
        .map(|i| {
            let ts = gridwatch_core::time::format_rfc3339(T0 + i * 900);
            format!("{meter},{ts},900,{:.4},F1", kw(i) / 4.0)
        })
        .collect()
}

pub fn alert_counts(alerts: &[Value]) -> BTreeMap<(String, String), usize> {
    let mut m = BTreeMap::new();
    for a in alerts {
        *m.entry((
            a["alert_id"].as_str().unwrap().to_string(),
            a["status"].as_str().unwrap().to_string(),
        ))
        .or_default() += 1;
    }
    m
}

/// The alerts an embedded run wrote to `out/alerts.jsonl`.
pub fn alerts_in(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out.join("alerts.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn write_jsonl(path: &Path, rows: &[Value]) {
    let mut s = String::new();
    for r in rows {
        writeln!(s, "{r}").unwrap();
    }
    std::fs::write(path, s).unwrap();
}

/// Writes `alerts` (the topic's, as read) to a file and checks with pyarrow and polars that the
/// Arrow files under `<out>/flagged` hold exactly those rows.
pub fn check_rows(env: &Env, out: &Path, alerts: &[Value]) {
    let jsonl = env.dir.join("kafka-alerts.jsonl");
    write_jsonl(&jsonl, alerts);
    check_with_python(&out.join("flagged"), &jsonl);
}

/// Loads the Arrow output with the README's pyarrow and polars snippets and checks it holds
/// exactly the rows of `alerts` (a JSON Lines file).
pub fn check_with_python(flagged: &Path, alerts: &Path) {
    let readme = repo_root().join("README.md");
    python_check("check_arrow.py", &[flagged, alerts, &readme]);
}

/// A simulated utility of `sites` × `days` in `<dir>/data`, run through the embedded pipeline
/// into `<dir>/embedded`: the data folder, the output folder and its alerts.
pub fn simulated(env: &Env, sites: u32, days: u32, seed: u32) -> (PathBuf, PathBuf, Vec<Value>) {
    simulated_with(env, sites, days, seed, &[])
}

/// [`simulated`], with more `gridwatch simulate` flags.
pub fn simulated_with(
    env: &Env,
    sites: u32,
    days: u32,
    seed: u32,
    extra: &[&str],
) -> (PathBuf, PathBuf, Vec<Value>) {
    let data = env.dir.join("data");
    let d = data.to_str().unwrap();
    let (sites, days, seed) = (sites.to_string(), days.to_string(), seed.to_string());
    let mut args = vec![
        "simulate", "--out", d, "--sites", &sites, "--days", &days, "--seed", &seed,
    ];
    args.extend_from_slice(extra);
    env.run(&args);
    let emb = env.dir.join("embedded");
    env.run(&[
        "run",
        "--registry",
        &format!("{d}/registry.csv"),
        "--readings",
        &format!("{d}/readings.csv"),
        "--out",
        emb.to_str().unwrap(),
        "--quiet",
    ]);
    let embedded = alerts_in(&emb);
    (data, emb, embedded)
}

/// Rows a sink reports as written in its log.
pub fn logged_rows(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("alerts written"))
        .filter_map(|l| {
            l.split("rows=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum()
}

/// Gives a service up to 30 s to reach a state before it is stopped; whatever the outcome,
/// the checks after it are exact.
pub fn settle(mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !done() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The same test environment as another instance of each service: its own name in the groups
/// and its own metrics port.
pub fn instance(env: &Env, name: &str) -> Env {
    env.clone()
        .with("GRIDWATCH__DETECTOR__INSTANCE_ID", name)
        .with("GRIDWATCH__SINK__INSTANCE_ID", name)
        .with(
            "GRIDWATCH__DETECTOR__METRICS_LISTEN",
            &format!("127.0.0.1:{}", free_port()),
        )
        .with(
            "GRIDWATCH__SINK__METRICS_LISTEN",
            &format!("127.0.0.1:{}", free_port()),
        )
}

/// Register changes with an `effective_from`: each `(meter, time)` sets that meter
/// `disconnected` from that time. Writes `<dir>/history.csv` (the simulated register with the
/// column, and every change appended: the register's history, for the embedded run) and each
/// change alone as `<dir>/change-<k>.csv` (to load while the services run); returns those.
pub fn register_changes(registry: &Path, changes: &[(&str, &str)], dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(registry).unwrap();
    let mut lines = text.lines();
    let header = format!("{},effective_from", lines.next().unwrap());
    let rows: Vec<String> = lines.map(|l| format!("{l},")).collect();
    let changed: Vec<String> = changes
        .iter()
        .map(|(meter, at)| {
            let mut f: Vec<&str> = rows
                .iter()
                .find(|r| r.split(',').nth(1) == Some(meter))
                .unwrap()
                .split(',')
                .collect();
            f[6] = "disconnected";
            *f.last_mut().unwrap() = at;
            f.join(",")
        })
        .collect();
    let history = format!("{header}\n{}\n{}\n", rows.join("\n"), changed.join("\n"));
    std::fs::write(dir.join("history.csv"), history).unwrap();
    changed
        .iter()
        .enumerate()
        .map(|(k, row)| {
            let path = dir.join(format!("change-{k}.csv"));
            std::fs::write(&path, format!("{header}\n{row}\n")).unwrap();
            path
        })
        .collect()
}

/// The first `n` active customers of a register CSV.
pub fn active_customers(registry: &Path, n: usize) -> Vec<String> {
    std::fs::read_to_string(registry)
        .unwrap()
        .lines()
        .filter(|l| l.contains(",customer,") && l.contains(",active,"))
        .filter_map(|l| l.split(',').nth(1).map(str::to_string))
        .take(n)
        .collect()
}

/// The open `disconnected_consumption` alerts of `meter`: their `detected_at`.
pub fn disconnected_at(alerts: &[Value], meter: &str) -> Vec<i64> {
    alerts
        .iter()
        .filter(|a| {
            a["meter_id"] == meter
                && a["kind"] == "disconnected_consumption"
                && a["status"] == "open"
        })
        .map(|a| gridwatch_core::time::parse_rfc3339(a["detected_at"].as_str().unwrap()).unwrap())
        .collect()
}

/// `gridwatch topics lag` until every partition of the readings topic has an owner and the
/// group's commit is at its end (end offsets of every partition, not just those the group has
/// committed); panics with the last listing if that never comes.
pub fn every_partition_owned_and_caught_up(env: &Env, timeout: Duration) -> String {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let out = env.output(&["topics", "lag"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let rows: Vec<&str> = text.lines().filter(|l| l.contains(" partition=")).collect();
        let done = out.status.success()
            && !rows.is_empty()
            && rows
                .iter()
                .all(|l| l.ends_with(" lag=0") && !l.contains(" owner=- "));
        if done {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a partition left without an owner, or behind:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Each alert as "id status detected_at", sorted: two runs' messages compared as sets.
pub fn alert_ids(alerts: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = alerts
        .iter()
        .map(|a| format!("{} {} {}", a["alert_id"], a["status"], a["detected_at"]))
        .collect();
    v.sort();
    v
}

/// A number from the environment (a test run longer or otherwise), else `default`.
pub fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// A simulated utility's readings cut into `n` files of consecutive lines (`part0.csv`, …),
/// each with the header: the stream delivered in `n` goes.
pub fn readings_in_parts(data: &Path, n: usize) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(data.join("readings.csv")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let size = (lines.len() - 1).div_ceil(n);
    lines[1..]
        .chunks(size)
        .enumerate()
        .map(|(i, c)| {
            let path = data.join(format!("part{i}.csv"));
            std::fs::write(&path, format!("{}\n{}\n", lines[0], c.join("\n"))).unwrap();
            path
        })
        .collect()
}

/// The topics made and the simulated register loaded to Kafka.
pub fn topics_and_register(env: &Env, data: &Path) {
    env.run(&["topics", "create"]);
    env.run(&[
        "registry",
        "load",
        "--registry",
        data.join("registry.csv").to_str().unwrap(),
    ]);
}
