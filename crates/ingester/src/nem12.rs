//! NEM12, AEMO's Meter Data File Format, as Australian networks send interval data: a `100`
//! header, then per meter channel a `200` record (NMI, its suffix `E1`/`B1`/`Q1`…, the unit and
//! the interval length) followed by one `300` record per day (every interval's value and the
//! day's quality), `400` records giving a `V` (variable) day its quality run by run, and `900`
//! at the end.
//!
//! Mapped as DESIGN.md's fourth round says: a reading per NMI and interval, `meter_id` the NMI;
//! the `E` (import) channels of the NMI — of every meter serial — summed into `kwh`, its `B`
//! (export) channels into `kwh_export`; `Wh`, `kWh` or `MWh` in any case; interval ends in the
//! market's time, UTC+10 all year. Quality `A` is actual; `E`, `S` and `F` estimated (an
//! interval summed from several channels is estimated if any part is); `N` (null) intervals
//! carry no value. Other channels (`Q`, `K`: reactive) are read and left out, never rejected.
//!
//! Streamed an NMI at a time: an NMI's channels are summed once its records end (the next NMI,
//! `900`, or the end), so memory holds one NMI's intervals. A file whose structure is wrong (no
//! `100` header, a `300` with more or fewer values than its interval length gives, a `400` run
//! outside the day, an energy channel in another unit, no interval data) is refused, naming the
//! line, the record and the field; a value that is not a number rejects that day's record.

use crate::parse::{InputError, Item, Reject};
use gridwatch_core::{Quality, Reading, Validation};
use std::collections::{BTreeMap, VecDeque};
use std::io::BufRead;

/// NEM12's market time: AEST, UTC+10, all year.
const MARKET_OFFSET_S: i64 = 10 * 3600;

/// What a channel's values count toward.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Flow {
    Import,
    Export,
    Other,
}

#[derive(Debug, Clone)]
struct Channel {
    flow: Flow,
    /// kWh per unit of the file's values.
    scale: f64,
    interval_min: u32,
}

/// One interval of an NMI, summed over its channels.
#[derive(Debug, Default, Clone)]
struct Sum {
    kwh: f64,
    export: Option<f64>,
    estimated: bool,
    /// The `300` record's line that first gave it a value (for a reject's place).
    line: u64,
}

/// A day whose values wait for its `400` records (a `V` day), or are applied at once.
struct Day {
    line: u64,
    start: i64,
    values: Vec<f64>,
    quality: Vec<char>,
}

pub(crate) struct Nem12<R> {
    input: R,
    validation: Validation,
    pub(crate) line: u64,
    header: bool,
    ended: bool,
    any_data: bool,
    nmi: Option<String>,
    channel: Option<Channel>,
    day: Option<Day>,
    sums: BTreeMap<(i64, u32), Sum>,
    /// The NMI's `300` records as received, by line (a reject quotes its record).
    raws: BTreeMap<u64, String>,
    queue: VecDeque<Item>,
    buf: String,
}

fn fatal(line: u64, msg: String) -> InputError {
    InputError::Header { line, msg }
}

/// A `QualityMethod` field: its flag (`A`, `E`, `F`, `N`, `S`, `V`), then an optional method
/// number.
fn quality_flag(field: &str) -> Option<char> {
    let mut chars = field.trim().chars();
    let flag = chars.next()?.to_ascii_uppercase();
    ("AEFNSV".contains(flag) && chars.all(|c| c.is_ascii_digit())).then_some(flag)
}

/// `YYYYMMDD` as the Unix time of that day's midnight in market time.
fn day_start(field: &str) -> Option<i64> {
    let f = field.trim();
    if f.len() != 8 || !f.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let midnight = format!("{}-{}-{}T00:00:00Z", &f[..4], &f[4..6], &f[6..]);
    Some(gridwatch_core::time::parse_rfc3339(&midnight).ok()? - MARKET_OFFSET_S)
}

impl<R: BufRead> Nem12<R> {
    pub(crate) fn new(input: R, validation: Validation) -> Nem12<R> {
        Nem12 {
            input,
            validation,
            line: 0,
            header: false,
            ended: false,
            any_data: false,
            nmi: None,
            channel: None,
            day: None,
            sums: BTreeMap::new(),
            raws: BTreeMap::new(),
            queue: VecDeque::new(),
            buf: String::new(),
        }
    }

    pub(crate) fn next_item(&mut self) -> Option<Item> {
        loop {
            if let Some(item) = self.queue.pop_front() {
                return Some(item);
            }
            if self.ended {
                return None;
            }
            if let Err(e) = self.step() {
                self.ended = true;
                self.sums.clear();
                self.queue.push_back(Err(e));
            }
        }
    }

    /// Reads one record; at the end, the last NMI's readings and the end checks.
    fn step(&mut self) -> Result<(), InputError> {
        self.buf.clear();
        let n = self
            .input
            .read_line(&mut self.buf)
            .map_err(|source| InputError::Io {
                line: self.line,
                source,
            })?;
        if n == 0 {
            return self.end(None);
        }
        self.line += 1;
        let text = self.buf.trim_end_matches(['\n', '\r']).to_string();
        let text = text.trim_start_matches('\u{feff}');
        if text.trim().is_empty() {
            return Ok(());
        }
        let fields: Vec<&str> = text.split(',').collect();
        let line = self.line;
        if !self.header {
            return match (fields[0].trim(), fields.get(1).map(|f| f.trim())) {
                ("100", Some(v)) if v.eq_ignore_ascii_case("NEM12") => {
                    self.header = true;
                    Ok(())
                }
                ("100", other) => Err(fatal(
                    line,
                    format!("record 100: field VersionHeader: {other:?} is not NEM12"),
                )),
                (indicator, _) => Err(fatal(
                    line,
                    format!(
                        "a NEM12 {indicator} record before the 100 header: a NEM12 file starts \
                         with 100,NEM12,<DateTime>,<FromParticipant>,<ToParticipant>"
                    ),
                )),
            };
        }
        if self.day.is_some() && fields[0].trim() != "400" {
            self.apply_day()?;
        }
        match fields[0].trim() {
            "200" => self.nmi_details(&fields, line),
            "300" => self.interval_data(&fields, line, text),
            "400" => self.interval_event(&fields, line),
            "500" => Ok(()),
            "900" => self.end(Some(line)),
            "100" => Err(fatal(line, "a second 100 header".into())),
            "250" | "550" => Err(fatal(
                line,
                "NEM13 (accumulated meter readings) is not read: send interval data, NEM12".into(),
            )),
            other => Err(fatal(
                line,
                format!("{other:?} is not a NEM12 record indicator (100, 200, 300, 400, 500, 900)"),
            )),
        }
    }

    fn end(&mut self, at: Option<u64>) -> Result<(), InputError> {
        if self.day.is_some() {
            self.apply_day()?;
        }
        self.flush();
        self.ended = true;
        let line = at.unwrap_or(self.line);
        if !self.header {
            return Err(fatal(line, "empty: no NEM12 100 header".into()));
        }
        if !self.any_data {
            return Err(fatal(line, "no interval data: no 300 record".into()));
        }
        Ok(())
    }

    /// `200,NMI,NMIConfiguration,RegisterID,NMISuffix,MDMDataStreamIdentifier,MeterSerialNumber,UOM,IntervalLength,…`
    fn nmi_details(&mut self, f: &[&str], line: u64) -> Result<(), InputError> {
        let field = |i: usize| f.get(i).map(|s| s.trim()).unwrap_or("");
        let nmi = field(1);
        if nmi.is_empty() {
            return Err(fatal(line, "record 200: field NMI is empty".into()));
        }
        if self.nmi.as_deref() != Some(nmi) {
            self.flush();
            self.nmi = Some(nmi.to_string());
        }
        let suffix = field(4);
        let flow = match suffix.chars().next().map(|c| c.to_ascii_uppercase()) {
            Some('E') => Flow::Import,
            Some('B') => Flow::Export,
            Some(_) => Flow::Other,
            None => {
                return Err(fatal(line, "record 200: field NMISuffix is empty".into()));
            }
        };
        let unit = field(7);
        let scale = match unit.to_ascii_lowercase().as_str() {
            "wh" => 0.001,
            "kwh" => 1.0,
            "mwh" => 1000.0,
            _ if flow == Flow::Other => 1.0,
            _ => {
                return Err(fatal(
                    line,
                    format!(
                    "record 200: field UOM: {unit:?} for energy channel {suffix} (Wh, kWh or MWh)"
                ),
                ))
            }
        };
        let interval_min = field(8)
            .parse::<u32>()
            .ok()
            .filter(|m| (1..=60).contains(m) && 1440 % m == 0)
            .ok_or_else(|| {
                fatal(
                    line,
                    format!(
                        "record 200: field IntervalLength: {:?} is not minutes dividing a day (5, 15, 30)",
                        field(8)
                    ),
                )
            })?;
        self.channel = Some(Channel {
            flow,
            scale,
            interval_min,
        });
        Ok(())
    }

    /// `300,IntervalDate,IntervalValue1…N,QualityMethod,ReasonCode,ReasonDescription,UpdateDateTime,MSATSLoadDateTime`
    fn interval_data(&mut self, f: &[&str], line: u64, raw: &str) -> Result<(), InputError> {
        let Some(ch) = &self.channel else {
            return Err(fatal(line, "a 300 record before any 200 record".into()));
        };
        let n = (1440 / ch.interval_min) as usize;
        let date = f.get(1).copied().unwrap_or("");
        let start = day_start(date).ok_or_else(|| {
            fatal(
                line,
                format!("record 300: field IntervalDate: {date:?} is not a YYYYMMDD date"),
            )
        })?;
        let numbers = f[2..]
            .iter()
            .take_while(|v| v.trim().parse::<f64>().is_ok_and(f64::is_finite))
            .count();
        let after = f.get(2 + numbers).copied();
        let count_wrong = || {
            fatal(
                line,
                format!(
                    "record 300: {numbers} interval values where the 200 record's IntervalLength \
                     of {} minutes means {n}",
                    ch.interval_min
                ),
            )
        };
        if numbers > n {
            return Err(count_wrong());
        }
        let flag = match after.map(|a| (a, quality_flag(a))) {
            Some((_, Some(flag))) if numbers == n => flag,
            Some((_, Some(_))) | None => return Err(count_wrong()),
            Some((bad, None)) => {
                // Not a quality and not a number: a damaged value. This day of this channel is
                // rejected; the file goes on.
                self.queue.push_back(Ok(Err(Reject {
                    line,
                    reason: format!(
                        "record 300: field IntervalValue{}: {bad:?} is not a number",
                        numbers + 1
                    ),
                    raw: raw.to_string(),
                })));
                return Ok(());
            }
        };
        let values: Vec<f64> = f[2..2 + n]
            .iter()
            .map(|v| v.trim().parse::<f64>().unwrap_or(0.0) * ch.scale)
            .collect();
        self.any_data = true;
        self.raws.insert(line, raw.to_string());
        self.day = Some(Day {
            line,
            start,
            values,
            quality: vec![flag; n],
        });
        Ok(())
    }

    /// `400,StartInterval,EndInterval,QualityMethod,ReasonCode,ReasonDescription`: the quality
    /// of a run of the day's intervals.
    fn interval_event(&mut self, f: &[&str], line: u64) -> Result<(), InputError> {
        let Some(day) = &mut self.day else {
            return Err(fatal(
                line,
                "a 400 record that follows no 300 record".into(),
            ));
        };
        let n = day.values.len();
        let field = |i: usize| f.get(i).map(|s| s.trim()).unwrap_or("");
        let bound = |i: usize, name: &str| {
            field(i)
                .parse::<usize>()
                .ok()
                .filter(|v| (1..=n).contains(v))
                .ok_or_else(|| {
                    fatal(
                        line,
                        format!(
                            "record 400: field {name}: {:?} is not an interval of the day's {n}",
                            field(i)
                        ),
                    )
                })
        };
        let (from, to) = (bound(1, "StartInterval")?, bound(2, "EndInterval")?);
        if from > to {
            return Err(fatal(
                line,
                format!("record 400: field EndInterval: {to} is before StartInterval {from}"),
            ));
        }
        let flag = quality_flag(field(3))
            .filter(|&q| q != 'V')
            .ok_or_else(|| {
                fatal(
                    line,
                    format!(
                        "record 400: field QualityMethod: {:?} is not A, E, F, N or S",
                        field(3)
                    ),
                )
            })?;
        day.quality[from - 1..to].fill(flag);
        Ok(())
    }

    /// Adds the day waiting for its `400` records to the NMI's sums: a `V` day's records must
    /// have given every interval its quality.
    fn apply_day(&mut self) -> Result<(), InputError> {
        let (Some(day), Some(ch)) = (self.day.take(), &self.channel) else {
            return Ok(());
        };
        if let Some(first) = day.quality.iter().position(|&q| q == 'V') {
            let last = day.quality.iter().rposition(|&q| q == 'V').unwrap_or(first);
            return Err(fatal(
                day.line,
                format!(
                    "record 300: QualityMethod V, but no 400 record gives intervals {}–{} of {} \
                     their quality",
                    first + 1,
                    last + 1,
                    day.quality.len()
                ),
            ));
        }
        let step = i64::from(ch.interval_min) * 60;
        for (i, (&v, &q)) in day.values.iter().zip(&day.quality).enumerate() {
            if q == 'N' || ch.flow == Flow::Other {
                continue;
            }
            let ts = day.start + (i as i64 + 1) * step;
            let s = self
                .sums
                .entry((ts, ch.interval_min * 60))
                .or_insert_with(|| Sum {
                    line: day.line,
                    ..Sum::default()
                });
            match ch.flow {
                Flow::Import => s.kwh += v,
                Flow::Export => *s.export.get_or_insert(0.0) += v,
                Flow::Other => {}
            }
            s.estimated |= q != 'A';
        }
        Ok(())
    }

    /// The NMI's readings, in time order, validated.
    fn flush(&mut self) {
        let raws = std::mem::take(&mut self.raws);
        let Some(nmi) = self.nmi.take() else {
            self.sums.clear();
            return;
        };
        for ((ts, interval_s), s) in std::mem::take(&mut self.sums) {
            let mut r = Reading::new(&nmi, ts, interval_s, s.kwh);
            r.kwh_export = s.export;
            r.quality = if s.estimated {
                Quality::Estimated
            } else {
                Quality::Actual
            };
            let item = match r.validate(self.validation) {
                Ok(()) => Ok(r),
                Err(reason) => Err(Reject {
                    line: s.line,
                    reason: format!(
                        "NMI {nmi} interval ending {}: {reason}",
                        gridwatch_core::time::format_rfc3339(ts)
                    ),
                    raw: raws.get(&s.line).cloned().unwrap_or_default(),
                }),
            };
            self.queue.push_back(Ok(item));
        }
    }
}
