//! The embedded pipeline: register and readings from files, the detection engine in-process,
//! alerts to `alerts.jsonl` and Arrow files, rejects to `rejects.jsonl`. No Kafka; the same
//! core and the same formats as the services.

use crate::report::Report;
use anyhow::{Context, Result};
use gridwatch_anomaly_detector::{Engine, EngineConfig, ReadingUse, LATE_REASON};
use gridwatch_core::events::{
    AlertEmitted, Counter, Counters, DlqWritten, FilesWritten, InternalEvent, ReadingProcessed,
    RecordRejected,
};
use gridwatch_core::{Alert, AlertKind, DlqRecord, OutputFormat, RegistryUpdate};
use gridwatch_ingester::parse::Item;
use gridwatch_ingester::{read_registry, Format, Records, Validation};
use gridwatch_sink::{Batches, FlaggedFiles, Row};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

/// What `gridwatch run` does.
pub struct RunArgs<'a> {
    pub registry: &'a Path,
    /// Hourly outdoor temperature per region (`region,ts,temp_c`), loaded before the readings.
    pub weather: Option<&'a Path>,
    /// Public holidays per region (`region,date,name`), loaded before the readings.
    pub holidays: Option<&'a Path>,
    /// A file path, or `-` for standard input.
    pub readings: &'a str,
    /// Green Button: the meter id for every reading.
    pub meter_id: Option<String>,
    pub out: &'a Path,
    pub detector: EngineConfig,
    pub roll_rows: usize,
    /// Arrow IPC or Parquet files under `flagged/`.
    pub format: OutputFormat,
    /// Readings stamped further ahead of the clock than this are rejected.
    pub max_future_s: i64,
    pub progress: bool,
}

/// What a run saw and produced: its counts (from the events it emitted), alerts by kind, and
/// where its files are.
#[derive(Debug, Default)]
pub struct Summary {
    pub registry_rows: usize,
    pub weather_rows: usize,
    pub holiday_rows: usize,
    pub counters: Counters,
    pub by_kind: BTreeMap<AlertKind, (u64, u64)>,
    pub alerts_path: PathBuf,
    pub rejects_path: PathBuf,
    pub report_path: PathBuf,
    pub flagged_path: PathBuf,
}

struct Counting<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

fn open_readings(path: &str, progress: bool) -> Result<(Box<dyn BufRead + Send>, ProgressBar)> {
    let show = progress && io::stderr().is_terminal();
    if path == "-" {
        let bar = if show {
            ProgressBar::new_spinner()
        } else {
            ProgressBar::hidden()
        };
        return Ok((
            Box::new(BufReader::with_capacity(
                1 << 20,
                Counting {
                    inner: io::stdin(),
                    bar: bar.clone(),
                },
            )),
            bar,
        ));
    }
    let file = File::open(path).with_context(|| format!("{path}: cannot open readings"))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = if show {
        ProgressBar::new(len)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} readings [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    Ok((
        Box::new(BufReader::with_capacity(
            1 << 20,
            Counting {
                inner: file,
                bar: bar.clone(),
            },
        )),
        bar,
    ))
}

/// Reads and validates a register CSV file.
pub fn read_register(path: &Path) -> Result<Vec<gridwatch_core::MeterRecord>> {
    let name = path.display().to_string();
    let file = File::open(path).with_context(|| format!("{name}: cannot open register"))?;
    Ok(read_registry(BufReader::new(file), &name)?)
}

/// Reads and validates a weather file (CSV or JSON Lines).
pub fn read_weather_file(path: &Path) -> Result<Vec<gridwatch_core::WeatherObs>> {
    let name = path.display().to_string();
    let file = File::open(path).with_context(|| format!("{name}: cannot open weather"))?;
    Ok(gridwatch_ingester::weather::read_weather(
        BufReader::new(file),
        &name,
    )?)
}

/// Reads and validates a holidays file (CSV).
pub fn read_holidays_file(path: &Path) -> Result<Vec<gridwatch_core::Holiday>> {
    let name = path.display().to_string();
    let file = File::open(path).with_context(|| format!("{name}: cannot open holidays"))?;
    Ok(gridwatch_ingester::calendar::read_holidays(
        BufReader::new(file),
        &name,
    )?)
}

/// Records the parser thread hands to the engine at a time.
const PARSE_CHUNK: usize = 4096;

/// Reads a readings file again for the report's load curves (its valid readings only). In a
/// CSV file whose first column is `meter_id`, only the lines of the meters the report plots are
/// parsed (picked by their first field); other files are parsed whole.
pub fn add_readings(report: &mut Report, path: &str, meter_id: Option<String>) -> Result<()> {
    let file = File::open(path).with_context(|| format!("{path}: cannot open readings"))?;
    let mut input = BufReader::with_capacity(1 << 20, file);
    let format =
        Format::detect(&mut input, path).with_context(|| format!("{path}: cannot read"))?;
    let cannot = || format!("{path}: cannot read");
    if format == Format::Csv && meter_id.is_none() {
        let mut header = Vec::new();
        input.read_until(b'\n', &mut header).with_context(cannot)?;
        let bare = header
            .strip_prefix("\u{feff}".as_bytes())
            .unwrap_or(&header);
        if bare.starts_with(b"meter_id,") {
            let parse = |report: &mut Report, picked: &[u8]| {
                let records = Records::new(picked, Format::Csv, Validation::default());
                report.add_readings(records.map_while(Result::ok).flatten());
            };
            let mut picked = header.clone();
            let mut line = Vec::new();
            loop {
                line.clear();
                if input.read_until(b'\n', &mut line).with_context(cannot)? == 0 {
                    break;
                }
                let first = line
                    .split(|&b| matches!(b, b',' | b'\n' | b'\r'))
                    .next()
                    .unwrap_or_default();
                let wanted = first.first() == Some(&b'"')
                    || std::str::from_utf8(first).is_ok_and(|m| report.wants(m.trim()));
                if wanted {
                    picked.extend_from_slice(&line);
                    if !line.ends_with(b"\n") {
                        picked.push(b'\n');
                    }
                    if picked.len() >= 8 << 20 {
                        parse(report, &picked);
                        picked.truncate(header.len());
                    }
                }
            }
            parse(report, &picked);
            return Ok(());
        }
        let rest = Records::new(
            header.as_slice().chain(input),
            format,
            Validation::default(),
        );
        report.add_readings(rest.map_while(Result::ok).flatten());
        return Ok(());
    }
    let records = Records::new(input, format, Validation::default()).with_meter_id(meter_id);
    report.add_readings(records.map_while(Result::ok).flatten());
    Ok(())
}

/// Runs the embedded pipeline end to end.
pub fn run(args: RunArgs<'_>) -> Result<Summary> {
    let rows = read_register(args.registry)?;
    let registry = rows.clone();
    let mut engine = Engine::new(args.detector)?;
    let mut alerts = Vec::new();
    let mut emitted: Vec<Alert> = Vec::new();
    let registry_rows = rows.len();
    for r in rows {
        engine.apply_registry(RegistryUpdate::Upsert(r), &mut alerts);
    }
    let weather = args.weather.map(read_weather_file).transpose()?;
    let weather_rows = weather.as_ref().map_or(0, Vec::len);
    for w in weather.iter().flatten() {
        engine.on_weather(w);
    }
    let holidays = args.holidays.map(read_holidays_file).transpose()?;
    let holiday_rows = holidays.as_ref().map_or(0, Vec::len);
    for h in holidays.iter().flatten() {
        engine.on_holiday(h);
    }

    std::fs::create_dir_all(args.out)
        .with_context(|| format!("{}: cannot create", args.out.display()))?;
    let alerts_path = args.out.join("alerts.jsonl");
    let rejects_path = args.out.join("rejects.jsonl");
    let mut alerts_out = BufWriter::new(
        File::create(&alerts_path).with_context(|| format!("{}", alerts_path.display()))?,
    );
    let mut rejects_out = BufWriter::new(
        File::create(&rejects_path).with_context(|| format!("{}", rejects_path.display()))?,
    );
    let files = FlaggedFiles::open(args.out, args.format)?;
    let mut batches = Batches::default();
    let mut summary = Summary {
        registry_rows,
        weather_rows,
        holiday_rows,
        alerts_path,
        rejects_path,
        report_path: args.out.join("report.html"),
        flagged_path: files.root().to_path_buf(),
        ..Summary::default()
    };

    let (mut input, bar) = open_readings(args.readings, args.progress)?;
    let source = if args.readings == "-" {
        "stdin"
    } else {
        args.readings
    };
    let validation = Validation {
        max_ts: Some(wall_clock_now() + args.max_future_s),
    };
    let mut next_offset = 0i64;
    let mut emit =
        |alerts: &mut Vec<Alert>, summary: &mut Summary, batches: &mut Batches| -> Result<()> {
            for a in alerts.drain(..) {
                serde_json::to_writer(&mut alerts_out, &a)?;
                alerts_out.write_all(b"\n")?;
                AlertEmitted {
                    kind: a.kind.as_str(),
                    status: a.status.as_str(),
                }
                .emit(&summary.counters);
                emitted.push(a.clone());
                let e = summary.by_kind.entry(a.kind).or_default();
                if a.status == gridwatch_core::AlertStatus::Open {
                    e.0 += 1;
                } else {
                    e.1 += 1;
                }
                batches.push(
                    0,
                    Row {
                        offset: next_offset,
                        alert: a,
                    },
                );
                next_offset += 1;
                if batches.len() >= args.roll_rows {
                    alerts_out.flush()?;
                    flush_arrow(batches, &files, &summary.counters)?;
                }
            }
            Ok(())
        };
    emit(&mut alerts, &mut summary, &mut batches)?;
    let format = Format::detect(&mut input, args.readings)
        .with_context(|| format!("{source}: cannot read"))?;
    let records = Records::new(input, format, validation).with_meter_id(args.meter_id.clone());
    // Parsing and the engine on two threads: the parser hands over chunks of records (with
    // their line numbers) in file order, and the engine takes them in that order, so the run
    // is the single-threaded run, faster. Chunks go back to the parser to be emptied there:
    // each reading's strings are freed by the thread that allocated them.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<(u64, Item)>>(8);
    let (back, returned) = std::sync::mpsc::sync_channel::<Vec<(u64, Item)>>(16);
    let parsed = std::thread::scope(|scope| -> Result<()> {
        let parser = scope.spawn(move || {
            let mut records = records;
            let fresh = || match returned.try_recv() {
                Ok(mut used) => {
                    used.clear();
                    used
                }
                Err(_) => Vec::with_capacity(PARSE_CHUNK),
            };
            let mut chunk = fresh();
            while let Some(item) = records.next() {
                let end = item.is_err();
                chunk.push((records.line(), item));
                if chunk.len() == PARSE_CHUNK || end {
                    let full = std::mem::replace(&mut chunk, fresh());
                    if tx.send(full).is_err() || end {
                        return;
                    }
                }
            }
            if !chunk.is_empty() {
                let _ = tx.send(chunk);
            }
        });
        for chunk in rx {
            for (line, item) in &chunk {
                let item = item
                    .as_ref()
                    .map_err(|e| anyhow::anyhow!("{source}: {e}"))?;
                let rejected = match item {
                    Ok(reading) => {
                        let used = engine.on_reading(reading, &mut alerts);
                        ReadingProcessed(used).emit(&summary.counters);
                        match used {
                            ReadingUse::Late => {
                                Some((LATE_REASON.to_string(), serde_json::to_string(reading)?))
                            }
                            ReadingUse::Counted | ReadingUse::Duplicate | ReadingUse::Corrected => {
                                None
                            }
                        }
                    }
                    Err(rej) => {
                        RecordRejected {
                            reason: &rej.reason,
                            source,
                        }
                        .emit(&summary.counters);
                        Some((rej.reason.clone(), rej.raw.clone()))
                    }
                };
                if let Some((reason, raw)) = rejected {
                    let rec = DlqRecord::new(reason, format!("{source}:{line}"), raw);
                    serde_json::to_writer(&mut rejects_out, &rec)?;
                    rejects_out.write_all(b"\n")?;
                    DlqWritten(1).emit(&summary.counters);
                }
                if !alerts.is_empty() {
                    emit(&mut alerts, &mut summary, &mut batches)?;
                }
            }
            // Back to the parser, which frees what it allocated; if it has finished, here.
            let _ = back.try_send(chunk);
        }
        parser
            .join()
            .map_err(|_| anyhow::anyhow!("{source}: the parser thread failed"))
    });
    parsed?;
    bar.finish_and_clear();
    alerts_out.flush()?;
    rejects_out.flush()?;
    alerts_out.get_ref().sync_all()?;
    rejects_out.get_ref().sync_all()?;
    if !batches.is_empty() {
        flush_arrow(&mut batches, &files, &summary.counters)?;
    }
    // The report's load curves come from a second pass over the readings file.
    let mut report = Report::new(&emitted, &registry);
    if args.readings != "-" {
        add_readings(&mut report, args.readings, args.meter_id)?;
    }
    report.write(&summary.report_path, &format!("from {source}"))?;
    Ok(summary)
}

fn flush_arrow(batches: &mut Batches, files: &FlaggedFiles, counters: &Counters) -> Result<()> {
    let rows = batches.len() as u64;
    let written = batches.flush(files)?;
    FilesWritten {
        files: written.len() as u64,
        rows,
    }
    .emit(counters);
    Ok(())
}

fn wall_clock_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Summary {
    /// The short human summary printed at the end of a run.
    pub fn print(&self, w: &mut impl Write) -> io::Result<()> {
        let n = |c| self.counters.get(c);
        let (late, rejects) = (n(Counter::Late), n(Counter::Dlq));
        let records = n(Counter::Readings) + n(Counter::Duplicates) + late + n(Counter::Rejected);
        writeln!(w, "register: {} meters", self.registry_rows)?;
        if self.weather_rows > 0 {
            writeln!(w, "weather:  {} region-hours", self.weather_rows)?;
        }
        if self.holiday_rows > 0 {
            writeln!(w, "holidays: {} region-days", self.holiday_rows)?;
        }
        writeln!(
            w,
            "readings: {records} records, {} used, {} duplicates counted once, {rejects} rejected ({late} of them too late){}",
            n(Counter::Readings),
            n(Counter::Duplicates),
            if rejects > 0 { format!(" (reasons in {})", self.rejects_path.display()) } else { String::new() }
        )?;
        writeln!(
            w,
            "alerts:   {} messages in {}",
            n(Counter::Alerts),
            self.alerts_path.display()
        )?;
        for (kind, (open, other)) in &self.by_kind {
            writeln!(
                w,
                "  {:<26} {open:>5} opened, {other:>5} updates/resolutions",
                kind.as_str()
            )?;
        }
        writeln!(
            w,
            "files:    {} file(s) under {}",
            n(Counter::FlaggedFiles),
            self.flagged_path.display()
        )?;
        writeln!(w, "report:   {}", self.report_path.display())
    }
}
