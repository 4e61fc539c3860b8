//! `gridwatch demo` and `gridwatch simulate`.

use crate::config::Config;
use crate::{create, embedded, eval};
use anyhow::Result;
use gridwatch_core::time::format_rfc3339;
use gridwatch_simulator::{Scenarios, SimConfig, Utility};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Instant;

/// Parses a reading interval: `15m`, `1h`, `900s` or `900`.
pub fn parse_interval(s: &str) -> Result<u32> {
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: u32 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("--interval {s:?}: expected e.g. 15m, 1h or 900"))?;
    let mult = match unit {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        _ => anyhow::bail!("--interval {s:?}: unit must be s, m or h"),
    };
    Ok(n * mult)
}

/// Writes registry.csv, labels.csv, simulation.json, holidays.csv (and, in winter,
/// weather.csv) of a simulated utility to `dir`.
pub fn write_truth(dir: &Path, utility: &Utility) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut reg = create(&dir.join("registry.csv"))?;
    utility.write_registry(&mut reg)?;
    reg.flush()?;
    let mut labels = create(&dir.join("labels.csv"))?;
    utility.write_labels(&mut labels)?;
    labels.flush()?;
    let c = &utility.cfg;
    let meta = serde_json::json!({
        "sites": c.sites, "days": c.days, "seed": c.seed, "start": format_rfc3339(c.start),
        "interval_s": c.interval_s, "tz": c.tz, "scenarios": format!("{:?}", c.scenarios),
        "winter": c.winter, "summer": c.summer, "batched_share": c.batched_share, "backfill_share": c.backfill_share,
    });
    std::fs::write(
        dir.join("simulation.json"),
        serde_json::to_string_pretty(&meta)? + "\n",
    )?;
    let mut weather = Vec::new();
    if let Some(written) = utility.write_weather(&mut weather) {
        written?;
        std::fs::write(dir.join("weather.csv"), weather)?;
    }
    let mut holidays = create(&dir.join("holidays.csv"))?;
    utility.write_holidays(&mut holidays)?;
    holidays.flush()?;
    Ok(())
}

/// Writes registry.csv, readings.csv, labels.csv and simulation.json of a simulated utility.
pub fn simulate(dir: &Path, cfg: SimConfig, progress: bool) -> Result<u64> {
    let utility = Utility::generate(cfg).map_err(anyhow::Error::msg)?;
    write_truth(dir, &utility)?;
    let bar = if progress && std::io::stderr().is_terminal() {
        ProgressBar::new(0)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("simulating [{bar:40}] {pos}/{len} intervals")
            .expect("valid")
            .progress_chars("=> "),
    );
    let mut readings = create(&dir.join("readings.csv"))?;
    let rows = utility.write_readings(&mut readings, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })?;
    readings.flush()?;
    bar.finish_and_clear();
    Ok(rows)
}

pub fn run(out: &Path, sites: usize, days: u32, seed: u64, config: &Config) -> Result<()> {
    let started = Instant::now();
    let data = out.join("data");
    println!("Simulating a utility: {sites} sites on {} feeders, {days} days of 15-minute readings (seed {seed})…", sites.div_ceil(50));
    let cfg = SimConfig {
        sites,
        days,
        seed,
        scenarios: Scenarios::Demo,
        ..Default::default()
    };
    let rows = simulate(&data, cfg, true)?;
    println!(
        "  {rows} readings in {}",
        data.join("readings.csv").display()
    );
    println!("Running the embedded pipeline…");
    let readings = data.join("readings.csv").display().to_string();
    let summary = embedded::run(embedded::RunArgs {
        registry: &data.join("registry.csv"),
        weather: Some(data.join("weather.csv"))
            .filter(|p| p.exists())
            .as_deref(),
        holidays: Some(data.join("holidays.csv"))
            .filter(|p| p.exists())
            .as_deref(),
        outcomes: None,
        readings: &readings,
        meter_id: None,
        out,
        detector: config.detector.engine.clone(),
        roll_rows: config.sink.roll_rows,
        format: config.sink.format,
        max_future_s: config.ingester.max_future_s,
        partitions: config.kafka.partitions,
        progress: true,
    })?;
    summary.print(&mut std::io::stdout())?;

    let report = eval::load(&data, &summary.alerts_path)?;
    println!("\nHidden cases, and what gridwatch found:");
    println!(
        "  {:<26} {:<8} {:<21} {:<26} {:>8}",
        "scenario", "target", "onset", "found as", "delay"
    );
    for o in &report.outcomes {
        let (found, delay) = match o.found {
            Some((kind, _)) => (
                format!("✔ {kind}"),
                format!("{:.1} h", o.delay_s().unwrap_or(0) as f64 / 3600.0),
            ),
            None => ("✘ missed".to_string(), "-".to_string()),
        };
        println!(
            "  {:<26} {:<8} {:<21} {:<26} {:>8}",
            o.label.scenario,
            o.label.target_id,
            format_rfc3339(o.label.onset),
            found,
            delay
        );
    }
    let found = report.outcomes.iter().filter(|o| o.found.is_some()).count();
    println!("\nFound {found} of {} hidden cases.", report.outcomes.len());
    if report.false_alerts.is_empty() {
        println!("No false alerts: the licensed farm, cold store, hospital, bakery and {} other sites were left alone.", sites.saturating_sub(report.outcomes.len()));
    } else {
        println!("False alerts ({}):", report.false_alerts.len());
        for a in &report.false_alerts {
            println!("  {} {}: {}", a.kind, a.target_id(), a.summary);
        }
    }
    let suspects = crate::suspects::rank(&eval::read_alerts(&summary.alerts_path)?);
    println!("\nInspectors: the open cases, most unauthorized energy × likelihood first (gridwatch suspects):");
    for s in suspects.iter().filter(|s| s.open).take(5) {
        println!(
            "  {}. {:<8} {:>7.2} MWh  score {:.2}  {}",
            s.rank, s.target, s.est_excess_mwh, s.score, s.summary
        );
    }
    println!("\nAnalysts: load the flagged sites with");
    println!(
        "  python -c \"import pyarrow.dataset as ds; print(ds.dataset('{}', format='ipc', partitioning='hive').to_table())\"",
        summary.flagged_path.display()
    );
    println!("Done in {:.1} s.", started.elapsed().as_secs_f64());
    Ok(())
}
