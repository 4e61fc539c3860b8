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
use gridwatch_core::{
    partition, Alert, AlertKind, DlqRecord, MeterRecord, OutputFormat, Reading, RegistryUpdate,
};
use gridwatch_ingester::{read_registry, Format, Records, Validation};
use gridwatch_sink::{Batches, FlaggedFiles, Row};
use indicatif::{ProgressBar, ProgressStyle};
use rustc_hash::FxHashMap;
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
    /// Inspection outcomes (`target_id,verdict,visited_at,…`), each applied when the readings
    /// reach its `visited_at`.
    pub outcomes: Option<&'a Path>,
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
    /// Engines, one per partition of the readings topic (`kafka.partitions`): the services'
    /// alerts come from that many, each seeing its partition's meters.
    pub partitions: i32,
    pub progress: bool,
}

/// What a run saw and produced: its counts (from the events it emitted), alerts by kind, and
/// where its files are.
#[derive(Debug, Default)]
pub struct Summary {
    pub registry_rows: usize,
    pub weather_rows: usize,
    pub holiday_rows: usize,
    pub outcome_rows: usize,
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
            // Lines are looked at in the reader's own buffer (copying each out cost more than
            // the rest of the pass); only a line cut by the buffer's end is put together.
            let mut picked = header.clone();
            let mut cut: Vec<u8> = Vec::new();
            loop {
                let buf = input.fill_buf().with_context(cannot)?;
                if buf.is_empty() {
                    pick(report, &mut picked, &cut);
                    break;
                }
                let mut start = 0;
                for end in memchr::memchr_iter(b'\n', buf) {
                    let line = &buf[start..=end];
                    if cut.is_empty() {
                        pick(report, &mut picked, line);
                    } else {
                        cut.extend_from_slice(line);
                        pick(report, &mut picked, &cut);
                        cut.clear();
                    }
                    start = end + 1;
                }
                cut.extend_from_slice(&buf[start..]);
                let read = buf.len();
                input.consume(read);
                if picked.len() >= 8 << 20 {
                    parse(report, &picked);
                    picked.truncate(header.len());
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

/// Adds a CSV line to `picked` when the report plots its meter (its first field; a quoted
/// first field is taken and left to the parser).
fn pick(report: &Report, picked: &mut Vec<u8>, line: &[u8]) {
    if line.is_empty() {
        return;
    }
    let first = memchr::memchr3(b',', b'\n', b'\r', line).map_or(line, |at| &line[..at]);
    let wanted = first.first() == Some(&b'"')
        || std::str::from_utf8(first).is_ok_and(|m| report.wants(m.trim()));
    if wanted {
        picked.extend_from_slice(line);
        if !line.ends_with(b"\n") {
            picked.push(b'\n');
        }
    }
}

/// One partition's engine and the register rows that are its (a row belongs where its
/// meter's readings go: its feeder's partition).
struct Partitions {
    count: i32,
    /// Each registered meter's feeder (its last row's), for readings without `feeder_id`.
    feeder_of: FxHashMap<String, String>,
}

impl Partitions {
    fn new(count: i32, rows: &[MeterRecord]) -> Self {
        let feeder_of = rows
            .iter()
            .map(|r| (r.meter_id.clone(), r.feeder_id.clone()))
            .collect();
        Partitions {
            count: count.max(1),
            feeder_of,
        }
    }

    /// Where the topic puts a reading (`partition::reading_key`, Kafka's partitioner).
    fn of_reading(&self, r: &Reading) -> usize {
        self.of(&r.meter_id, r.feeder_id.as_deref())
    }

    /// Where the meter's readings go, so where its register rows apply.
    fn of_meter(&self, meter_id: &str) -> usize {
        self.of(meter_id, None)
    }

    fn of(&self, meter_id: &str, own_feeder: Option<&str>) -> usize {
        let key = partition::reading_key(meter_id, own_feeder, || {
            self.feeder_of.get(meter_id).map(|f| f.as_str().into())
        });
        partition::partition_for(key.as_bytes(), self.count) as usize
    }
}

/// A partition worker's answer for one chunk: its alerts and its late readings (line, JSON), in
/// the order it judged them.
#[derive(Default)]
struct Judged {
    alerts: Vec<Alert>,
    late: Vec<(u64, String)>,
}

/// What the parser saw in one chunk besides readings: rejected records (line, reason, raw), or
/// the error that ended the input.
enum Parsed {
    Chunk(Vec<(u64, String, String)>),
    Failed(String),
}

/// Runs the embedded pipeline end to end: a parser thread, one engine per partition on its own
/// thread (the detector's partitions: the same readings meet in each, so the same alerts), and
/// this thread writing the outputs in a fixed order.
pub fn run(args: RunArgs<'_>) -> Result<Summary> {
    let rows = read_register(args.registry)?;
    let parts = Partitions::new(args.partitions, &rows);
    let mut engines = (0..parts.count)
        .map(|_| Engine::new(args.detector.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut alerts = Vec::new();
    let mut emitted: Vec<Alert> = Vec::new();
    let registry_rows = rows.len();
    for r in &rows {
        let p = parts.of_meter(&r.meter_id);
        engines[p].apply_registry(RegistryUpdate::Upsert(r.clone()), &mut alerts);
    }
    let weather = args.weather.map(read_weather_file).transpose()?;
    let weather_rows = weather.as_ref().map_or(0, Vec::len);
    let holidays = args.holidays.map(read_holidays_file).transpose()?;
    let holiday_rows = holidays.as_ref().map_or(0, Vec::len);
    let outcomes = match args.outcomes {
        Some(path) => {
            let name = path.display().to_string();
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("{name}: cannot open outcomes"))?;
            gridwatch_core::outcome::read_outcomes(&text, &name).map_err(|e| anyhow::anyhow!(e))?
        }
        None => Vec::new(),
    };
    let outcome_rows = outcomes.len();
    for engine in &mut engines {
        for o in &outcomes {
            engine.add_outcome(o.clone());
        }
        for w in weather.iter().flatten() {
            engine.on_weather(w);
        }
        for h in holidays.iter().flatten() {
            engine.on_holiday(h);
        }
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
    let files = FlaggedFiles::open(args.out, args.format, "run")?;
    let mut batches = Batches::default();
    let mut summary = Summary {
        registry_rows,
        weather_rows,
        holiday_rows,
        outcome_rows,
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
    let counters = Counters::default();
    let mut by_kind = BTreeMap::new();
    let mut next_offset = 0i64;
    let mut emit = |alerts: &mut Vec<Alert>,
                    by_kind: &mut BTreeMap<AlertKind, (u64, u64)>,
                    batches: &mut Batches|
     -> Result<()> {
        for a in alerts.drain(..) {
            serde_json::to_writer(&mut alerts_out, &a)?;
            alerts_out.write_all(b"\n")?;
            AlertEmitted {
                kind: a.kind.as_str(),
                status: a.status.as_str(),
            }
            .emit(&counters);
            emitted.push(a.clone());
            let e = by_kind.entry(a.kind).or_default();
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
                flush_arrow(batches, &files, &counters)?;
            }
        }
        Ok(())
    };
    emit(&mut alerts, &mut by_kind, &mut batches)?;
    let format = Format::detect(&mut input, args.readings)
        .with_context(|| format!("{source}: cannot read"))?;
    let mut records = Records::new(input, format, validation).with_meter_id(args.meter_id.clone());
    // The parser splits each chunk of records by partition and hands each partition's share
    // to its engine's thread; this thread takes every engine's answer for a chunk in partition
    // order, then the next chunk's. Each engine sees its partition's readings in file order, as
    // a detector sees its partition's in topic order.
    let n = engines.len();
    let (to_writer, parsed) = std::sync::mpsc::sync_channel::<Parsed>(8);
    let outcome = std::thread::scope(|scope| -> Result<()> {
        let counters = &counters;
        // Owned here, so an error that ends this closure drops them and the threads stop.
        let mut to_engines = Vec::with_capacity(n);
        let mut from_engines = Vec::with_capacity(n);
        let mut returned = Vec::with_capacity(n);
        for mut engine in engines {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<(u64, Reading)>>(8);
            let (done, answers) = std::sync::mpsc::sync_channel::<Judged>(8);
            // Judged shares go back to the parser, which frees their readings: strings freed
            // by the thread that allocated them (glibc's cross-thread frees cost ~15 %).
            let (back, shares_back) = std::sync::mpsc::sync_channel::<Vec<(u64, Reading)>>(16);
            to_engines.push(tx);
            from_engines.push(answers);
            returned.push(shares_back);
            scope.spawn(move || {
                // Each reading judged (now, or released by the order window), by its line.
                let seen = |late: &mut Vec<(u64, String)>, line: u64, r: &Reading, used| {
                    ReadingProcessed(used).emit(counters);
                    if used == ReadingUse::Late {
                        late.push((line, serde_json::to_string(r).unwrap_or_default()));
                    }
                };
                for share in rx {
                    let mut judged = Judged::default();
                    let Judged { alerts, late } = &mut judged;
                    for (line, reading) in &share {
                        engine.offer(reading, *line, alerts, &mut |l, r, u| seen(late, l, r, u));
                    }
                    if done.send(judged).is_err() {
                        return;
                    }
                    let _ = back.try_send(share);
                }
                // The end of the input: what the order window holds is judged, as one more
                // answer.
                let mut judged = Judged::default();
                let Judged { alerts, late } = &mut judged;
                engine.release_held(alerts, &mut |l, r, u| seen(late, l, r, u));
                // Outcomes dated after the last reading apply at the end.
                engine.apply_outcomes_until(i64::MAX, alerts);
                let _ = done.send(judged);
            });
        }
        let parts = &parts;
        scope.spawn(move || {
            let mut shares: Vec<Vec<(u64, Reading)>> = vec![Vec::new(); n];
            let mut rejected = Vec::new();
            let mut in_chunk = 0;
            let send = |shares: &mut Vec<Vec<(u64, Reading)>>, rejected: Vec<_>| {
                for ((tx, share), back) in to_engines.iter().zip(shares.iter_mut()).zip(&returned) {
                    let fresh = match back.try_recv() {
                        Ok(mut used) => {
                            used.clear();
                            used
                        }
                        Err(_) => Vec::with_capacity(PARSE_CHUNK / n),
                    };
                    let share = std::mem::replace(share, fresh);
                    if tx.send(share).is_err() {
                        return false;
                    }
                }
                to_writer.send(Parsed::Chunk(rejected)).is_ok()
            };
            while let Some(item) = records.next() {
                let line = records.line();
                match item {
                    Ok(Ok(reading)) => shares[parts.of_reading(&reading)].push((line, reading)),
                    Ok(Err(rej)) => rejected.push((line, rej.reason, rej.raw)),
                    Err(e) => {
                        send(&mut shares, std::mem::take(&mut rejected));
                        let _ = to_writer.send(Parsed::Failed(format!("{source}: {e}")));
                        return;
                    }
                }
                in_chunk += 1;
                if in_chunk == PARSE_CHUNK {
                    in_chunk = 0;
                    if !send(&mut shares, std::mem::take(&mut rejected)) {
                        return;
                    }
                }
            }
            send(&mut shares, rejected);
        });
        let mut reject = |line: u64, reason: String, raw: String| -> Result<()> {
            let rec = DlqRecord::new(reason, format!("{source}:{line}"), raw);
            serde_json::to_writer(&mut rejects_out, &rec)?;
            rejects_out.write_all(b"\n")?;
            DlqWritten(1).emit(counters);
            Ok(())
        };
        // On an error, dropping the receivers stops the other threads. After the last chunk,
        // each engine answers once more: the readings its order window held.
        let last = std::iter::once(Parsed::Chunk(Vec::new()));
        for chunk in parsed.into_iter().chain(last) {
            let rejected = match chunk {
                Parsed::Chunk(rejected) => rejected,
                Parsed::Failed(e) => anyhow::bail!(e),
            };
            let mut late = Vec::new();
            for answers in &from_engines {
                let judged = answers
                    .recv()
                    .map_err(|_| anyhow::anyhow!("{source}: an engine thread failed"))?;
                alerts.extend(judged.alerts);
                late.extend(judged.late);
            }
            // Rejects in line order, as the file had them.
            let mut out: Vec<(u64, String, String)> = rejected
                .into_iter()
                .inspect(|(_, reason, _)| RecordRejected { reason, source }.emit(counters))
                .chain(
                    late.into_iter()
                        .map(|(l, j)| (l, LATE_REASON.to_string(), j)),
                )
                .collect();
            out.sort_by_key(|(line, _, _)| *line);
            for (line, reason, raw) in out {
                reject(line, reason, raw)?;
            }
            if !alerts.is_empty() {
                emit(&mut alerts, &mut by_kind, &mut batches)?;
            }
        }
        Ok(())
    });
    outcome?;
    bar.finish_and_clear();
    alerts_out.flush()?;
    rejects_out.flush()?;
    alerts_out.get_ref().sync_all()?;
    rejects_out.get_ref().sync_all()?;
    if !batches.is_empty() {
        flush_arrow(&mut batches, &files, &counters)?;
    }
    summary.counters = counters;
    summary.by_kind = by_kind;
    // The report's load curves come from a second pass over the readings file.
    let mut report = Report::new(&emitted, &rows);
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
        if self.outcome_rows > 0 {
            writeln!(w, "outcomes: {} inspection outcomes", self.outcome_rows)?;
        }
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
