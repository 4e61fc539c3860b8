//! `gridwatch demo` and `gridwatch simulate`.

use crate::{create, embedded, eval};
use anyhow::Result;
use gridwatch_core::time::format_rfc3339;
use gridwatch_core::Config;
use gridwatch_simulator::{SimConfig, Utility};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Instant;

/// Writes registry.csv, readings.csv and labels.csv of a simulated utility to `dir`.
pub fn simulate(dir: &Path, cfg: SimConfig, progress: bool) -> Result<u64> {
    std::fs::create_dir_all(dir)?;
    let utility = Utility::generate(cfg);
    let mut reg = create(&dir.join("registry.csv"))?;
    utility.write_registry(&mut reg)?;
    reg.flush()?;
    let mut labels = create(&dir.join("labels.csv"))?;
    utility.write_labels(&mut labels)?;
    labels.flush()?;
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
    let rows = simulate(
        &data,
        SimConfig {
            sites,
            days,
            seed,
            ..Default::default()
        },
        true,
    )?;
    println!(
        "  {rows} readings in {}",
        data.join("readings.csv").display()
    );
    println!("Running the embedded pipeline…");
    let readings = data.join("readings.csv").display().to_string();
    let summary = embedded::run(embedded::RunArgs {
        registry: &data.join("registry.csv"),
        readings: &readings,
        out,
        detector: config.detector.clone(),
        roll_rows: config.sink.roll_rows,
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
    println!("\nAnalysts: load the flagged sites with");
    println!(
        "  python -c \"import pyarrow.dataset as ds; print(ds.dataset('{}', format='ipc', partitioning='hive').to_table().to_pandas())\"",
        summary.flagged_path.display()
    );
    println!("Done in {:.1} s.", started.elapsed().as_secs_f64());
    Ok(())
}
