//! `gridwatch`: find unauthorized connections to the power grid in smart-meter data.

mod config;
mod demo;
mod embedded;
mod eval;
mod report;
mod services;
mod suspects;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use config::Config;
use gridwatch_core::OutputFormat;
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "gridwatch",
    version,
    about = "Find unauthorized connections to the power grid in smart-meter data",
    long_about = "gridwatch finds unauthorized connections in interval meter data: unregistered meters, \
consumption on disconnected sites, demand above permit, mining farms (flat loads around the clock, by night \
or duty-cycled), rigs added inside a permit (step changes, a customer drawing far more than its peers), \
unmetered taps on feeders (the head meter against its customers) and meters made to under-read (reversed, \
stopped, bypassed or shunted). A site's evidence forms one case with a risk score.\n\n\
Start with `gridwatch demo`. Run on your own files with `gridwatch run`. In production, run the three \
services against Kafka: `gridwatch ingester`, `gridwatch detect`, `gridwatch sink`.",
    after_help = "Configuration: built-in defaults, then --config FILE (TOML), then environment variables \
GRIDWATCH__SECTION__KEY (e.g. GRIDWATCH__KAFKA__BOOTSTRAP_SERVERS=broker:9092). Unknown keys are an error.\n\
Kafka client properties: [kafka.properties] in the file, or GRIDWATCH__KAFKA__PROPERTIES__SASL_PASSWORD \
(`_` for `.`); a mounted password file with kafka.sasl_password_file. Never a secret on the command line.\n\
Logs: GRIDWATCH_LOG sets the filter (info, debug, gridwatch_core::events=debug); GRIDWATCH_LOG_FORMAT=json \
writes one JSON object a line."
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
Reads the register (CSV) and readings (CSV, JSON Lines, Green Button or IEC 61968-9 XML, NEM12, or - for standard input), and writes:\n  \
DIR/alerts.jsonl     one alert JSON per line (open, update, resolved)\n  \
DIR/flagged/         the same alerts as zstd Arrow IPC (or --format parquet) files, partitioned by date=YYYY-MM-DD\n  \
DIR/rejects.jsonl    every record that could not be used, with its reason and file:line\n  \
DIR/report.html      the open cases ranked for inspection, with their load curves and a map (the curves take a second pass over the readings file)\n\n\
Example: gridwatch run --registry registry.csv --readings readings.csv --out results")]
    Run {
        /// Register CSV: site_id,meter_id,feeder_id,role,customer_class,permitted_kw,status,licensed_mining,lat,lon,region
        #[arg(long)]
        registry: PathBuf,
        /// Readings: CSV (meter_id,ts,interval_s,kwh[,...]), JSON Lines (.jsonl), Green Button
        /// (ESPI Atom XML), IEC 61968-9 MeterReadings XML or AEMO NEM12 (the NMI as the meter),
        /// told apart by content; - reads standard input.
        #[arg(long)]
        readings: String,
        /// Optional hourly outdoor temperature per region: CSV region,ts,temp_c (ts the hour's
        /// end, RFC 3339; region as in the register's region column, or the feeder id for sites
        /// without one) or the same as JSON Lines. Lets the detectors tell a home's heating (or
        /// air conditioning), which follows the weather, from rigs, which don't.
        #[arg(long)]
        weather: Option<PathBuf>,
        /// Optional public holidays per region: CSV region,date,name (date YYYY-MM-DD, local;
        /// region as for --weather). Businesses stand as on a Sunday: a holiday slump is not a
        /// drop behind a bypass, nor the business's normal.
        #[arg(long)]
        holidays: Option<PathBuf>,
        /// Optional inspection outcomes: CSV target_id,verdict,visited_at,explained_by,kw,
        /// inspector,note (verdict confirmed, legitimate or no_access; explained_by, for a
        /// legitimate load: heating, heat_pump, ev, pv, licensed, business or other). Each
        /// applies when the readings reach its visited_at, as in production: a confirmed case
        /// closes as `confirmed`, a legitimate one as `cleared` (and the site is not accused
        /// again of the same load), no_access keeps it open and ranks it higher.
        #[arg(long)]
        outcomes: Option<PathBuf>,
        /// Green Button: the meter id for every reading, instead of the usage point's id.
        #[arg(long)]
        meter_id: Option<String>,
        /// Flagged-site files: arrow (IPC, for pyarrow and polars) or parquet (for DuckDB,
        /// Spark and warehouses); default: sink.format.
        #[arg(long)]
        format: Option<OutputFormat>,
        /// Output folder (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Engines to judge the readings with, one per partition of the readings topic, each
        /// seeing the meters Kafka's partitioner puts there (a feeder's, with its head meter):
        /// the services' alerts come from that many. Default: kafka.partitions (3). Use your
        /// topic's partition count to reproduce the services' alerts exactly.
        #[arg(long, value_parser = clap::value_parser!(i32).range(1..=10_000))]
        partitions: Option<i32>,
        /// Judge the readings in event-time order (detector.order_window_s set to the lateness
        /// horizon, 48 h by default): the same alerts whatever order the file's meters come in
        /// (a head-end's batch before or after another's), as long as each reading is within the
        /// horizon of the newest before it. Holds that much of the readings in memory (about
        /// 12 KB per meter at 15-minute readings); without it, each reading is judged as it comes.
        #[arg(long)]
        in_event_order: bool,
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
        #[command(flatten)]
        size: Size,
    },
    /// Write a simulated utility: registry.csv, readings.csv and labels.csv (the truth).
    #[command(
        long_about = "Write a simulated utility with hidden unauthorized connections and the truth.\n\n\
Files: registry.csv (the register, in the contract format), readings.csv (meter_id,ts,interval_s,kwh,\
feeder_id,kwh_export,voltage_v,current_a), labels.csv (target_type,target_id,scenario,onset,required), holidays.csv \
(region,date,name: the public holidays in the run, on which businesses close) and simulation.json \
(the parameters). Households replay real half-hourly households; feeder heads measure their customers, \
technical losses that grow with load, and unmetered taps. Cases: mining farms from 1 kW to 5 MW at \
homes, shops and factories, home miners, night-only, duty-cycled and ramping miners, unregistered \
meters, consumption on disconnected or suspended sites, capacity creep, small rigs in factories, feeder taps \
(flat, duty-cycled, small, night-only), tampering (stopped, reversed, bypassed, shunted meters), farms split \
over neighbouring homes' meters, rigs in public buildings at nights and weekends, duty-cycled rigs \
inside a home's permit, rigs added one at a time. \
Negatives: licensed farms, cold stores, hospitals, bakeries, EV fleet depots, greenhouses, electric heating, \
EV chargers, vacations, families moving in, a glitching meter, a clock an hour off, seasonal pumps, public \
holidays (businesses closed); with --summer, air conditioning through a heat wave; with --winter, resistance heaters, night storage heaters and heat pumps through a cold \
snap. Faults: gaps, duplicates, out-of-order and late readings, skewed clocks, DST (with --tz); daily \
batches (--batched) and backfilled gaps (--backfill); a sunny utility's data (--pv: rooftop PV, \
net metered, with unregistered PV hidden; --estimates: MDM estimates corrected days later or never; \
--outages: multi-day outages backfilled after live reads resume).\n\n\
The same seed gives the same files. Output streams, so large fleets need time, not memory.\n\n\
Example: gridwatch simulate --out sim --sites 3000 --days 14 --seed 1"
    )]
    Simulate {
        /// Output folder (created if missing).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        size: Size,
        /// First interval start, RFC 3339.
        #[arg(long, default_value = "2026-01-05T00:00:00Z")]
        start: String,
        /// IANA time zone whose local clock the loads follow (DST included), e.g. Europe/Berlin.
        #[arg(long, default_value = "Asia/Almaty")]
        tz: String,
        /// Reading interval: 5m, 15m, 30m, 1h or seconds.
        #[arg(long, default_value = "15m")]
        interval: String,
        /// Plant only the demo's handful of cases instead of the whole library.
        #[arg(long)]
        demo_cases: bool,
        /// A winter with a four-day cold snap (about −25 °C): half the homes heat with
        /// electricity (resistance heaters, night storage heaters, heat pumps); writes
        /// weather.csv (region,ts,temp_c).
        #[arg(long, conflicts_with = "summer")]
        winter: bool,
        /// A summer with a four-day heat wave (about +39 °C): half the homes cool with air
        /// conditioning; writes weather.csv. Give a summer --start, e.g. 2026-07-06T00:00:00Z.
        #[arg(long)]
        summer: bool,
        /// Share of customer meters whose head-end delivers each day's intervals in one batch
        /// the next night (01:00–05:00), e.g. 0.4.
        #[arg(long, default_value_t = 0.0, value_parser = share)]
        batched: f64,
        /// Share of communication gaps the head-end backfills when the meter is back.
        #[arg(long, default_value_t = 0.0, value_parser = share)]
        backfill: f64,
        /// Share of ordinary homes with registered rooftop PV, net metered (e.g. 0.25); above 0
        /// it also hides PV nobody registered and PV added beyond its registration (labelled
        /// `unregistered_generation`, `generation_above_registered`), and feeder heads report
        /// the power their feeders send upstream as export.
        #[arg(long, default_value_t = 0.0, value_parser = share)]
        pv: f64,
        /// Share of meter-days the head-end sends as estimates (`quality` = `estimated`: a flat
        /// average, last week's copy, or an absurd figure), the actuals following 1–8 days
        /// later, or never for one in five (e.g. 0.02).
        #[arg(long, default_value_t = 0.0, value_parser = share)]
        estimates: f64,
        /// Share of customer meters with a 2–4 day comms outage, backfilled 6–24 h after their
        /// live reads resume (e.g. 0.03).
        #[arg(long, default_value_t = 0.0, value_parser = share)]
        outages: f64,
        /// Produce the readings straight to the readings topic (and the register to its topic)
        /// instead of readings.csv, and print the rate.
        #[arg(long)]
        to_kafka: bool,
    },
    /// Score alerts against the truth of a simulated utility.
    #[command(
        long_about = "Score alerts against the truth of a simulated utility.\n\n\
Reads DATA/labels.csv, DATA/registry.csv and DATA/simulation.json (as written by `gridwatch simulate`) \
and the alerts (alerts.jsonl). Prints, per scenario: cases, found, recall, median and p90 detection \
delay in event time (onset to the first alert opened on the target); per alert kind: precision; per \
customer class: recall and false alerts per 10,000 site-days; then every miss and every false alert \
with its id.\n\nExample: gridwatch eval --data sim --alerts results/alerts.jsonl --json"
    )]
    Eval {
        /// Folder written by `gridwatch simulate`.
        #[arg(long)]
        data: PathBuf,
        /// alerts.jsonl to score.
        #[arg(long)]
        alerts: PathBuf,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// The inspection report as one HTML file: ranked open cases with their load curves and a map.
    #[command(
        long_about = "The inspection report, made from saved output: one self-contained HTML file (no network, opens from disk) with the open cases ranked like `gridwatch suspects`, each with its summary, score, estimated energy, evidence and a plot of its load over the case and the days before it (permit and peers' median drawn; for a feeder, its head against its meters plus expected losses), and a map of the flagged sites. `gridwatch run` and `gridwatch demo` write OUT/report.html themselves.\n\nExample: gridwatch report --alerts results/alerts.jsonl --registry registry.csv --readings readings.csv --out report.html"
    )]
    Report {
        /// alerts.jsonl (an embedded run's, or alerts saved from the topic).
        #[arg(long)]
        alerts: PathBuf,
        /// The register CSV the alerts were made with (for sites' meters, permits, places).
        #[arg(long)]
        registry: PathBuf,
        /// The readings (any input format) to draw the load curves from.
        #[arg(long)]
        readings: PathBuf,
        /// Green Button: the meter id for every reading, as given to the run.
        #[arg(long)]
        meter_id: Option<String>,
        /// The HTML file to write.
        #[arg(long, default_value = "report.html")]
        out: PathBuf,
    },
    /// The ranked inspection list: sites (and feeders) by likelihood × estimated unauthorized energy.
    #[command(
        long_about = "The ranked inspection list: one row per site, meter or feeder, ranked by score × estimated unauthorized MWh, with the kinds of evidence against it and the total. Open cases only, unless --all.\n\nFrom an embedded run's alerts.jsonl (or alerts saved from the topic) with --alerts, or from Kafka with --kafka: the detector keeps the latest alert of every open case on the compacted topic gridwatch.suspects (a resolved case is deleted), so reading it to its end is the list as it stands now.\n\nExamples:\n  gridwatch suspects --alerts results/alerts.jsonl --top 20\n  gridwatch suspects --kafka --json"
    )]
    Suspects {
        /// alerts.jsonl to rank.
        #[arg(long, required_unless_present = "kafka", conflicts_with = "kafka")]
        alerts: Option<PathBuf>,
        /// Read the open cases from the compacted suspects topic instead.
        #[arg(long)]
        kafka: bool,
        /// Rows to print.
        #[arg(long, default_value_t = 25)]
        top: usize,
        /// Include resolved cases.
        #[arg(long)]
        all: bool,
        /// Print JSON (every row) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Send a readings file (CSV, JSON Lines, Green Button or IEC 61968-9 XML, NEM12, or - for stdin) to Kafka; rejects go to the DLQ.
    Ingest {
        #[arg(long)]
        readings: String,
        /// Green Button: the meter id for every reading, instead of the usage point's id.
        #[arg(long)]
        meter_id: Option<String>,
    },
    /// Manage the register on Kafka.
    Registry {
        #[command(subcommand)]
        command: RegistryCommand,
    },
    /// Publish weather to Kafka for the detectors.
    Weather {
        #[command(subcommand)]
        command: WeatherCommand,
    },
    /// Publish public holidays to Kafka for the detectors.
    Holidays {
        #[command(subcommand)]
        command: HolidaysCommand,
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
    /// Record what inspectors found: each outcome goes to the compacted outcomes topic (keyed
    /// by its target), where every detector takes it when the readings reach its visit.
    Outcome {
        #[command(subcommand)]
        command: OutcomeCommand,
    },
    /// Kafka helpers.
    Topics {
        #[command(subcommand)]
        command: TopicsCommand,
    },
    /// The detectors' state on the state topic (kafka.topics.state): what each partition would
    /// restore from, and forgetting it.
    State {
        #[command(subcommand)]
        command: StateCommand,
    },
    /// The configuration as every command reads it.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Load the configuration (defaults, --config FILE, GRIDWATCH__ variables) and check it as
    /// the services would at start — unknown keys, values out of range, the detector's
    /// settings, the Kafka settings, secret files readable — without connecting to anything.
    /// Prints the effective settings that most often differ between deployments. Exits 1,
    /// naming the key, on the first problem.
    Check,
}

#[derive(Subcommand)]
enum StateCommand {
    /// Per readings partition: the group's committed offset, the snapshot its commit names
    /// (the state topic's partition and offset), the readings offset the snapshot covers and so
    /// how many readings a restart replays, its size, age and formats. A partition without a
    /// snapshot is rebuilt from every retained reading when it next moves.
    Inspect,
    /// Forget one partition's saved state, after a damaged snapshot or a detector setting that
    /// must not carry old state: its next owner rebuilds it from every retained reading (about
    /// 1.7 s per million readings on a small machine). Stop every detector of the group first.
    Reset {
        /// The readings partition.
        #[arg(long)]
        partition: i32,
        /// Don't ask (for scripts).
        #[arg(long)]
        yes: bool,
    },
}

/// A share between 0 and 1.
fn share(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    (0.0..=1.0)
        .contains(&v)
        .then_some(v)
        .ok_or_else(|| format!("{v} is not a share between 0 and 1"))
}

/// How big a simulated utility is.
#[derive(clap::Args)]
struct Size {
    /// Number of customer sites (one meter each); 50 sites per feeder.
    #[arg(long, default_value_t = 300)]
    sites: usize,
    /// Days of readings.
    #[arg(long, default_value_t = 14)]
    days: u32,
    /// Random seed: the same seed gives the same utility.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

#[derive(Subcommand)]
enum RegistryCommand {
    /// Validate a register CSV and publish every row to the compacted register topic.
    #[command(
        long_about = "Validate a register CSV (every problem is listed with file, line and field; \
nothing is published unless the whole file is valid) and publish every row to the compacted register \
topic, keyed by meter. The detector applies changes as they arrive: a raised permit or a mining licence \
settles the cases it covers; a site no longer active starts flagging its consumption.\n\n\
A row may carry `effective_from` (RFC 3339): a change to a meter already registered then takes \
effect when that meter's readings reach that time, wherever the row falls among them, so a replay \
applies it where the live run did (a row without one holds from when the detector reads it). \
--effective-from stamps the rows that have none.\n\n\
With --delete-missing the file is the whole register: meters on the topic but not in the file are \
deleted (a null value), and their readings are then flagged as unregistered.\n\n\
Example: gridwatch registry load --registry registry.csv --delete-missing\n\
Example: gridwatch registry load --registry permits.csv --effective-from now"
    )]
    Load {
        #[arg(long)]
        registry: PathBuf,
        /// Delete meters that are on the register topic but not in this file.
        #[arg(long)]
        delete_missing: bool,
        /// The event time from which rows without an `effective_from` hold: RFC 3339, or `now`.
        #[arg(long, value_name = "TIME", value_parser = effective_time)]
        effective_from: Option<i64>,
    },
}

#[derive(Subcommand)]
enum WeatherCommand {
    /// Validate a weather file and publish every hour to the compacted weather topic.
    #[command(
        long_about = "Validate a weather file — hourly outdoor temperature per region, CSV region,ts,temp_c (ts the hour's end, RFC 3339; region as in the register's region column, or the feeder id for sites without one) or the same fields as JSON Lines — and publish every hour to the compacted topic gridwatch.weather, keyed region|ts (a later value for an hour replaces it). Every problem is listed with file, line and field; nothing is published unless the whole file is valid.

Detectors read the whole topic when they start and follow it: with weather, a home whose daily demand follows the heating (or cooling) degrees, and would stay under a rig's power without them, is not judged a mining farm. Load a day's weather before its readings are judged (within the lateness horizon: an hour is judged once complete).

Example: gridwatch weather load --weather weather.csv"
    )]
    Load {
        #[arg(long)]
        weather: PathBuf,
    },
}

#[derive(Subcommand)]
enum HolidaysCommand {
    /// Validate a holidays file and publish every holiday to the compacted holidays topic.
    #[command(
        long_about = "Validate a holidays file — CSV region,date,name (date YYYY-MM-DD in the region's \
local calendar; region as in the register's region column, or the feeder id for sites without one; \
names may be quoted) — and publish every holiday to the compacted topic gridwatch.holidays, keyed \
region|date. Every problem is listed with file, line and field; nothing is published unless the whole \
file is valid.\n\nDetectors read the whole topic when they start and follow it: on a holiday, shops, \
offices, schools and factories stand as on a Sunday — their slump does not start a bypass's drop \
clock, and is not learned as their normal.\n\nExample: gridwatch holidays load --holidays holidays.csv"
    )]
    Load {
        #[arg(long)]
        holidays: PathBuf,
    },
}

#[derive(Subcommand)]
enum AlertsCommand {
    /// Print records (committed only) as JSON lines as they arrive.
    Tail(services::Tail),
}

#[derive(Subcommand)]
enum OutcomeCommand {
    /// Record one inspection outcome.
    #[command(
        long_about = "Record one inspection outcome on the compacted outcomes topic \
(gridwatch.outcomes, keyed by target).\n\n\
confirmed: unauthorized use found; the case closes as `confirmed` with the energy from its start \
to the visit (--kw, the load measured on site, sets it). legitimate: a legitimate load \
(--explained-by heating|heat_pump|ev|pv|licensed|business|other); the case closes as `cleared` \
and the site is not accused again of that load, only of more. no_access: the case stays open \
and ranks higher.\n\n\
Example: gridwatch outcome record --target S00021 --verdict legitimate --explained-by heat_pump \
--visited-at 2026-01-12T10:30:00+05:00 --inspector insp-7"
    )]
    Record {
        /// The case's target: the alert's site_id, meter_id or feeder_id.
        #[arg(long)]
        target: String,
        /// confirmed, legitimate or no_access.
        #[arg(long)]
        verdict: gridwatch_core::Verdict,
        /// When the inspector was there, RFC 3339.
        #[arg(long)]
        visited_at: String,
        /// For a legitimate load: heating, heat_pump, ev, pv, licensed, business or other.
        #[arg(long)]
        explained_by: Option<gridwatch_core::Explanation>,
        /// The load measured on site, kW.
        #[arg(long)]
        kw: Option<f64>,
        #[arg(long)]
        inspector: Option<String>,
        #[arg(long)]
        note: Option<String>,
    },
    /// Record every outcome of a CSV (target_id,verdict,visited_at,explained_by,kw,inspector,
    /// note), validated first: a file with any bad row is refused, naming line and field.
    Load {
        #[arg(long)]
        outcomes: PathBuf,
    },
}

#[derive(Subcommand)]
enum TopicsCommand {
    /// Create the gridwatch topics that don't exist yet: readings, alerts and DLQ kept
    /// kafka.retention_s (7 days); the register, suspects, weather and holidays compacted; with
    /// kafka.partitions, kafka.replication_factor and kafka.min_insync_replicas (2 where the
    /// replication factor is 3 or more). Topics that exist are left as they are.
    Create,
    /// Every partition of the readings topic, as the detector group sees it: the member that
    /// holds it (`-` for none: its readings are not being judged), the group's committed
    /// offset, the topic's end offset and the lag between them. Unlike
    /// `kafka-consumer-groups --describe`, a partition the group never committed is listed
    /// too. Exits 2 if any partition has no owner.
    Lag,
}

fn main() {
    // Behave like a Unix filter: `gridwatch alerts tail | head` ends quietly.
    // SAFETY: restoring the default SIGPIPE action before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    if let Err(e) = real_main(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main(cli: Cli) -> Result<()> {
    let config = Config::load(cli.config.as_deref())?;
    // Services log their progress; one-shot commands print a summary of their own, so their
    // logs default to warnings.
    let default_level = match cli.command {
        Command::Ingester | Command::Detect | Command::Sink { .. } => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("GRIDWATCH_LOG")
        .unwrap_or_else(|_| default_level.into());
    // GRIDWATCH_LOG_FORMAT=json: one JSON object a line (for Loki, Elasticsearch, Cloud Logging).
    let json = std::env::var("GRIDWATCH_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    // Colours only on a terminal: a log file or journal gets plain text.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        logs.json().with_current_span(false).init();
    } else {
        logs.init();
    }
    match cli.command {
        Command::Run {
            registry,
            readings,
            weather,
            holidays,
            outcomes,
            meter_id,
            format,
            out,
            partitions,
            in_event_order,
            quiet,
        } => {
            let mut detector = config.detector.engine;
            if in_event_order && detector.order_window_s == 0 {
                detector.order_window_s = detector.lateness_horizon_s;
            }
            let summary = embedded::run(embedded::RunArgs {
                registry: &registry,
                weather: weather.as_deref(),
                holidays: holidays.as_deref(),
                outcomes: outcomes.as_deref(),
                readings: &readings,
                meter_id,
                out: &out,
                detector,
                roll_rows: config.sink.roll_rows,
                format: format.unwrap_or(config.sink.format),
                max_future_s: config.ingester.max_future_s,
                partitions: partitions.unwrap_or(config.kafka.partitions),
                progress: !quiet,
            })?;
            summary.print(&mut std::io::stdout())?;
        }
        Command::Demo {
            out,
            size: Size { sites, days, seed },
        } => demo::run(&out, sites, days, seed, &config)?,
        Command::Simulate {
            out,
            size: Size { sites, days, seed },
            start,
            tz,
            interval,
            demo_cases,
            winter,
            summer,
            batched,
            backfill,
            pv,
            estimates,
            outages,
            to_kafka,
        } => {
            let start = gridwatch_core::time::parse_rfc3339(&start)
                .map_err(|e| anyhow::anyhow!("--start {start:?}: {e}"))?;
            let interval_s = demo::parse_interval(&interval)?;
            let scenarios = if demo_cases {
                gridwatch_simulator::Scenarios::Demo
            } else {
                gridwatch_simulator::Scenarios::Full
            };
            let cfg = gridwatch_simulator::SimConfig {
                sites,
                days,
                seed,
                start,
                interval_s,
                tz,
                scenarios,
                winter,
                summer,
                batched_share: batched,
                backfill_share: backfill,
                pv_share: pv,
                estimate_rate: estimates,
                outage_share: outages,
                ..Default::default()
            };
            if to_kafka {
                services::simulate_to_kafka(&config, &out, cfg)?;
            } else {
                let rows = demo::simulate(&out, cfg, true)?;
                println!(
                    "wrote {rows} readings for {sites} sites over {days} days to {}/ (registry.csv, readings.csv, labels.csv, simulation.json, holidays.csv)",
                    out.display()
                );
            }
        }
        Command::Eval { data, alerts, json } => eval::run(&data, &alerts, json)?,
        Command::Report {
            alerts,
            registry,
            readings,
            meter_id,
            out,
        } => {
            let alerts = eval::read_alerts(&alerts)?;
            let registry = embedded::read_register(&registry)?;
            let mut report = report::Report::new(&alerts, &registry);
            embedded::add_readings(&mut report, &readings.display().to_string(), meter_id)?;
            report.write(&out, &format!("from {}", readings.display()))?;
            println!("report: {}", out.display());
        }
        Command::Suspects {
            alerts,
            kafka,
            top,
            all,
            json,
        } => {
            let cases = match alerts {
                Some(path) if !kafka => eval::read_alerts(&path)?,
                _ => services::read_suspects(&config)?,
            };
            suspects::run(&cases, top, all, json)?
        }
        Command::Ingest { readings, meter_id } => {
            services::ingest_file(&config, &readings, meter_id)?
        }
        Command::Registry {
            command:
                RegistryCommand::Load {
                    registry,
                    delete_missing,
                    effective_from,
                },
        } => services::registry_load(&config, &registry, delete_missing, effective_from)?,
        Command::Weather {
            command: WeatherCommand::Load { weather },
        } => services::weather_load(&config, &weather)?,
        Command::Holidays {
            command: HolidaysCommand::Load { holidays },
        } => services::holidays_load(&config, &holidays)?,
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
        Command::Outcome {
            command:
                OutcomeCommand::Record {
                    target,
                    verdict,
                    visited_at,
                    explained_by,
                    kw,
                    inspector,
                    note,
                },
        } => {
            let o = gridwatch_core::Outcome {
                target_id: target,
                verdict,
                visited_at: gridwatch_core::time::parse_rfc3339(&visited_at)
                    .map_err(|e| anyhow::anyhow!("--visited-at {visited_at:?}: {e}"))?,
                explained_by,
                kw,
                inspector,
                note,
            };
            o.validate().map_err(|e| anyhow::anyhow!(e))?;
            services::outcomes_send(&config, &[o])?;
        }
        Command::Outcome {
            command: OutcomeCommand::Load { outcomes },
        } => {
            let name = outcomes.display().to_string();
            let text = std::fs::read_to_string(&outcomes)
                .with_context(|| format!("{name}: cannot open outcomes"))?;
            let rows = gridwatch_core::outcome::read_outcomes(&text, &name)
                .map_err(|e| anyhow::anyhow!(e))?;
            services::outcomes_send(&config, &rows)?;
        }
        Command::Topics {
            command: TopicsCommand::Lag,
        } => {
            if !services::topics_lag(&config)? {
                std::process::exit(2);
            }
        }
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            config
                .kafka
                .validate()
                .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
            let (k, d) = (&config.kafka, &config.detector.service);
            println!(
                "configuration OK: kafka {} ({} partitions, replication {}), state topic {}, detector group {} (metrics {}), ingester {}, sink {} to {}",
                k.bootstrap_servers,
                k.partitions,
                k.replication_factor,
                if k.topics.state.is_empty() { "off" } else { &k.topics.state },
                d.group_id,
                d.metrics_listen,
                config.ingester.listen,
                config.sink.metrics_listen,
                config.sink.out
            );
        }
        Command::State {
            command: StateCommand::Inspect,
        } => services::state_inspect(&config)?,
        Command::State {
            command: StateCommand::Reset { partition, yes },
        } => services::state_reset(&config, partition, yes)?,
    }
    Ok(())
}

/// Creates a file for writing, naming it in the error.
pub(crate) fn create(path: &std::path::Path) -> Result<BufWriter<File>> {
    Ok(BufWriter::new(File::create(path).with_context(|| {
        format!("{}: cannot create", path.display())
    })?))
}

/// `--effective-from`: an RFC 3339 time, or `now` (this machine's clock).
fn effective_time(s: &str) -> Result<i64, String> {
    if s == "now" {
        return std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .map_err(|e| e.to_string());
    }
    gridwatch_core::time::parse_rfc3339(s)
}
