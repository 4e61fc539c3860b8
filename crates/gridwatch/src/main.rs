//! `gridwatch`: find unauthorized connections to the power grid in smart-meter data.

mod demo;
mod embedded;
mod eval;
mod services;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use gridwatch_core::Config;
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "gridwatch",
    version,
    about = "Find unauthorized connections to the power grid in smart-meter data",
    long_about = "gridwatch finds unauthorized connections in interval meter data: unregistered meters, \
consumption on disconnected sites, demand above permit, and mining farms (flat, around-the-clock loads).\n\n\
Start with `gridwatch demo`. Run on your own files with `gridwatch run`. In production, run the three \
services against Kafka: `gridwatch ingester`, `gridwatch detect`, `gridwatch sink`.",
    after_help = "Configuration: built-in defaults, then --config FILE (TOML), then environment variables \
GRIDWATCH__SECTION__KEY (e.g. GRIDWATCH__KAFKA__BOOTSTRAP_SERVERS=broker:9092). Unknown keys are an error."
)]
struct Cli {
    /// TOML configuration file (sections: kafka, detector, ingester, sink).
    #[arg(long, global = true, env = "GRIDWATCH_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole pipeline on files, without Kafka.
    #[command(long_about = "Run the whole pipeline on files, without Kafka.\n\n\
Reads the register (CSV) and readings (CSV or JSON Lines, or - for standard input), and writes:\n  \
DIR/alerts.jsonl     one alert JSON per line (open, update, resolved)\n  \
DIR/flagged/         the same alerts as zstd Arrow IPC files, partitioned by date=YYYY-MM-DD\n  \
DIR/rejects.jsonl    every record that could not be used, with its reason and file:line\n\n\
Example: gridwatch run --registry registry.csv --readings readings.csv --out results")]
    Run {
        /// Register CSV: site_id,meter_id,feeder_id,role,customer_class,permitted_kw,status,licensed_mining,lat,lon,region
        #[arg(long)]
        registry: PathBuf,
        /// Readings: CSV (meter_id,ts,interval_s,kwh[,...]) or JSON Lines (.jsonl); - reads standard input as CSV.
        #[arg(long)]
        readings: String,
        /// Output folder (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Hide the progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Simulate a small utility with hidden unauthorized connections, find them, and compare with the truth.
    #[command(
        long_about = "Simulate a small utility with hidden unauthorized connections, run the embedded \
pipeline on it, and print what was found against the truth.\n\n\
The simulated data (registry.csv, readings.csv, labels.csv) goes to OUT/data, the results to OUT \
(alerts.jsonl, flagged/ Arrow files, rejects.jsonl)."
    )]
    Demo {
        /// Output folder.
        #[arg(long, default_value = "gridwatch-demo")]
        out: PathBuf,
        /// Number of sites.
        #[arg(long, default_value_t = 300)]
        sites: usize,
        /// Days of 15-minute readings.
        #[arg(long, default_value_t = 14)]
        days: u32,
        /// Random seed: the same seed gives the same utility.
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Write a simulated utility: registry.csv, readings.csv and labels.csv (the truth).
    Simulate {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 300)]
        sites: usize,
        #[arg(long, default_value_t = 14)]
        days: u32,
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Send a readings file (CSV or JSON Lines, or - for stdin) to Kafka; rejects go to the DLQ.
    Ingest {
        #[arg(long)]
        readings: String,
    },
    /// Manage the register on Kafka.
    Registry {
        #[command(subcommand)]
        command: RegistryCommand,
    },
    /// Service: the HTTP ingest API (POST /v1/readings; GET /healthz, /readyz) in front of Kafka.
    Ingester,
    /// Service: the anomaly detector, from gridwatch.readings and gridwatch.registry to gridwatch.alerts, exactly once.
    Detect,
    /// Service: alerts from gridwatch.alerts to Arrow files under OUT/flagged/.
    Sink {
        /// Output folder (default: sink.out from the configuration).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Watch the alert topic.
    Alerts {
        #[command(subcommand)]
        command: AlertsCommand,
    },
    /// Look at the dead-letter queue: every rejected record with its reason and source.
    Dlq {
        #[command(subcommand)]
        command: AlertsCommand,
    },
    /// Kafka helpers.
    Topics {
        #[command(subcommand)]
        command: TopicsCommand,
    },
    /// Score alerts against the truth of a simulated utility: recall and delay per scenario, false alerts.
    Eval {
        /// Folder with labels.csv (as written by `gridwatch simulate`).
        #[arg(long)]
        data: PathBuf,
        /// alerts.jsonl to score.
        #[arg(long)]
        alerts: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum RegistryCommand {
    /// Validate a register CSV and publish every row to the compacted register topic.
    Load {
        #[arg(long)]
        registry: PathBuf,
    },
}

#[derive(Subcommand)]
enum AlertsCommand {
    /// Print records (committed only) as JSON lines as they arrive.
    Tail(services::Tail),
}

#[derive(Subcommand)]
enum TopicsCommand {
    /// Create the gridwatch topics that don't exist yet (the register topic compacted).
    Create,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = real_main(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main(cli: Cli) -> Result<()> {
    let config = Config::load(cli.config.as_deref())?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("GRIDWATCH_LOG")
        .unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Run {
            registry,
            readings,
            out,
            quiet,
        } => {
            let summary = embedded::run(embedded::RunArgs {
                registry: &registry,
                readings: &readings,
                out: &out,
                detector: config.detector,
                roll_rows: config.sink.roll_rows,
                progress: !quiet,
            })?;
            summary.print(&mut std::io::stdout())?;
        }
        Command::Demo {
            out,
            sites,
            days,
            seed,
        } => demo::run(&out, sites, days, seed, &config)?,
        Command::Simulate {
            out,
            sites,
            days,
            seed,
        } => {
            let cfg = gridwatch_simulator::SimConfig {
                sites,
                days,
                seed,
                ..Default::default()
            };
            let rows = demo::simulate(&out, cfg, true)?;
            println!(
                "wrote {} readings for {sites} sites over {days} days to {}/ (registry.csv, readings.csv, labels.csv)",
                rows,
                out.display()
            );
        }
        Command::Eval { data, alerts, json } => eval::run(&data, &alerts, json)?,
        Command::Ingest { readings } => services::ingest_file(&config, &readings)?,
        Command::Registry {
            command: RegistryCommand::Load { registry },
        } => services::registry_load(&config, &registry)?,
        Command::Ingester => services::ingester(&config)?,
        Command::Detect => services::detect(&config)?,
        Command::Sink { out } => {
            let out = out.unwrap_or_else(|| PathBuf::from(&config.sink.out));
            services::sink(&config, &out)?
        }
        Command::Alerts {
            command: AlertsCommand::Tail(t),
        } => services::tail(&config, &config.kafka.topics.alerts, t)?,
        Command::Dlq {
            command: AlertsCommand::Tail(t),
        } => services::tail(&config, &config.kafka.topics.dlq, t)?,
        Command::Topics {
            command: TopicsCommand::Create,
        } => services::topics_create(&config)?,
    }
    Ok(())
}

/// Creates a file for writing, naming it in the error.
pub(crate) fn create(path: &std::path::Path) -> Result<BufWriter<File>> {
    Ok(BufWriter::new(File::create(path).with_context(|| {
        format!("{}: cannot create", path.display())
    })?))
}
