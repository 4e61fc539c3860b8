//! The standard XML formats utilities exchange interval data in, read with `quick-xml` as a
//! stream of events (never string matching):
//!
//! - **Green Button** (NAESB REQ.21 ESPI, an Atom feed): `UsagePoint` → `MeterReading` →
//!   `ReadingType` (`uom` 72 = Wh, `powerOfTenMultiplier`, `flowDirection` 1 forward → `kwh`,
//!   19 reverse → `kwh_export`) and `IntervalBlock`s of `IntervalReading`s (`timePeriod` start +
//!   duration: the reading's `ts` is the interval END). Entries link by `href`: a block belongs
//!   to the `MeterReading` its own href sits under, which names its `ReadingType`. The meter id
//!   is the usage point's id in those hrefs (`…/UsagePoint/5446AF3F/…` → `5446AF3F`), unless
//!   the caller overrides it (a customer's download holds one meter the utility knows by
//!   another id). Entries may come in any order, so a feed is gathered whole before its
//!   readings are emitted (feeds are per customer; split a bulk export by usage point).
//! - **IEC 61968-9 `MeterReadings`** (namespace `http://iec.ch/TC57/2011/MeterReadings#`,
//!   bare or inside a `MeterReadingsMessage`/`EventMessage` envelope): `MeterReading` →
//!   `Meter/Names/name` (the meter id) and `IntervalBlocks` of `IntervalReadings` (`timeStamp`,
//!   the interval end; `value`; `ReadingQualities`) with a `ReadingType ref`, the 18-field CIM
//!   code: interval energy (`accumulation` 4 deltaData, `measurementKind` 12 energy, unit 72 Wh
//!   with its power-of-ten `multiplier`), forward or reverse, at a known `measuringPeriod`. Each
//!   `MeterReading` is emitted as it closes.
//!
//! Import and export of the same meter and interval become one reading. Everything else — a
//! reading type that is not interval energy, a quality the head-end flagged as failed, a value
//! that isn't a number — is a reject naming why, with the line it is on.

use crate::parse::{Item, Reject};
use gridwatch_core::{Quality, Reading, Validation};
use quick_xml::events::{BytesStart, Event};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::BufRead;

/// One interval value as read, before its reading type is known to apply.
#[derive(Debug, Clone)]
struct Raw {
    meter: String,
    /// End of the interval, epoch seconds.
    ts: i64,
    interval_s: i64,
    value: f64,
    line: u64,
    /// The head-end estimated the value (IEC quality category 8): a later actual replaces it.
    estimated: bool,
}

/// What a reading type makes of a value: kWh = value × `kwh_per_unit`, imported or exported.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Energy {
    kwh_per_unit: f64,
    export: bool,
}

/// Import and export of one meter and interval, merged.
#[derive(Debug, Default)]
struct Merged {
    interval_s: i64,
    kwh: Option<f64>,
    kwh_export: Option<f64>,
    line: u64,
    estimated: bool,
}

/// Merges values into readings, validates them and queues them, in time order.
fn emit(values: Vec<(Raw, Energy)>, validation: Validation, out: &mut VecDeque<Item>) {
    let mut merged: BTreeMap<(i64, String), Merged> = BTreeMap::new();
    for (raw, energy) in values {
        let m = merged.entry((raw.ts, raw.meter)).or_default();
        let kwh = raw.value * energy.kwh_per_unit;
        let slot = if energy.export {
            &mut m.kwh_export
        } else {
            &mut m.kwh
        };
        *slot = Some(slot.unwrap_or(0.0) + kwh);
        m.interval_s = raw.interval_s;
        m.line = m.line.max(raw.line);
        m.estimated |= raw.estimated;
    }
    for ((ts, meter_id), m) in merged {
        let raw = format!(
            "meter {meter_id}, interval ending {}, {} s, import {:?} kWh, export {:?} kWh",
            gridwatch_core::time::format_rfc3339(ts),
            m.interval_s,
            m.kwh,
            m.kwh_export
        );
        let reading = u32::try_from(m.interval_s)
            .map_err(|_| format!("field interval_s: {} is not a duration", m.interval_s))
            .map(|interval_s| Reading {
                meter_id: meter_id.into(),
                ts,
                interval_s,
                kwh: m.kwh.unwrap_or(0.0),
                kvarh: None,
                kwh_export: m.kwh_export,
                voltage_v: None,
                current_a: None,
                feeder_id: None,
                quality: if m.estimated {
                    Quality::Estimated
                } else {
                    Quality::Actual
                },
            })
            .and_then(|r| r.validate(validation).map(|()| r));
        out.push_back(Ok(reading.map_err(|reason| Reject {
            line: m.line,
            reason,
            raw,
        })));
    }
}

/// The local name of an element, without its namespace prefix.
fn local(e: &BytesStart<'_>) -> String {
    String::from_utf8_lossy(e.local_name().as_ref()).into_owned()
}

fn attr(e: &BytesStart<'_>, name: &str) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == name.as_bytes())
        .map(|a| String::from_utf8_lossy(&a.value).into_owned())
}

/// A pull parser over XML events that keeps the element path and the line.
struct Walker<R> {
    reader: quick_xml::Reader<R>,
    buf: Vec<u8>,
    /// Local names of the open elements.
    path: Vec<String>,
    line: u64,
}

/// One step of the walk.
enum Step {
    Open(BytesStart<'static>),
    /// An element with no content (`<link … />`): opened and closed at once.
    Empty(BytesStart<'static>),
    Text(String),
    Close(String),
    End,
}

impl<R: BufRead> Walker<R> {
    fn new(input: R) -> Walker<R> {
        let mut reader = quick_xml::Reader::from_reader(input);
        reader.config_mut().trim_text(false);
        Walker {
            reader,
            buf: Vec::new(),
            path: Vec::new(),
            line: 1,
        }
    }

    fn next(&mut self) -> Result<Step, String> {
        loop {
            self.buf.clear();
            let event = self
                .reader
                .read_event_into(&mut self.buf)
                .map_err(|e| format!("line {}: not well-formed XML: {e}", self.line))?;
            let newlines = |b: &[u8]| b.iter().filter(|&&c| c == b'\n').count() as u64;
            match event {
                Event::Start(e) => {
                    self.line += newlines(&e);
                    self.path.push(local(&e));
                    return Ok(Step::Open(e.into_owned()));
                }
                Event::Empty(e) => {
                    self.line += newlines(&e);
                    return Ok(Step::Empty(e.into_owned()));
                }
                Event::End(e) => {
                    self.line += newlines(&e);
                    let name = self.path.pop().unwrap_or_default();
                    return Ok(Step::Close(name));
                }
                Event::Text(t) => {
                    self.line += newlines(&t);
                    let text = t.decode().map_err(|e| format!("line {}: {e}", self.line))?;
                    let text = text.trim();
                    if !text.is_empty() {
                        return Ok(Step::Text(text.to_string()));
                    }
                }
                Event::CData(t) => {
                    self.line += newlines(&t);
                    return Ok(Step::Text(String::from_utf8_lossy(&t).trim().to_string()));
                }
                Event::Comment(t) => self.line += newlines(&t),
                Event::Eof => return Ok(Step::End),
                _ => {}
            }
        }
    }

    /// The element the text belongs to, and its parent.
    fn at(&self) -> (&str, &str) {
        let n = self.path.len();
        let get = |i: usize| self.path.get(i).map_or("", String::as_str);
        (get(n.wrapping_sub(1)), get(n.wrapping_sub(2)))
    }
}

fn number(text: &str, what: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| format!("{what}: {text:?} is not a number"))
}

/// Green Button's ReadingType, as far as it says what a value means.
#[derive(Debug, Default, Clone)]
struct EspiReadingType {
    uom: Option<String>,
    multiplier: i32,
    flow: Option<String>,
}

impl EspiReadingType {
    fn energy(&self) -> Result<Energy, String> {
        if self.uom.as_deref() != Some("72") {
            return Err(format!(
                "ReadingType uom {} is not energy in Wh (72): not used",
                self.uom.as_deref().unwrap_or("missing")
            ));
        }
        let export = match self.flow.as_deref() {
            None | Some("1") => false,
            Some("19") => true,
            Some(f) => {
                return Err(format!(
                "ReadingType flowDirection {f} is neither forward (1) nor reverse (19): not used"
            ))
            }
        };
        Ok(Energy {
            kwh_per_unit: 10f64.powi(self.multiplier) / 1000.0,
            export,
        })
    }
}

/// The usage point id in an ESPI href: `…/UsagePoint/5446AF3F/MeterReading/01/…` → `5446AF3F`.
fn usage_point(href: &str) -> Option<&str> {
    let rest = &href[href.find("/UsagePoint/")? + "/UsagePoint/".len()..];
    rest.split('/').next().filter(|s| !s.is_empty())
}

/// Reads a whole Green Button feed; queues its readings and rejects.
pub(crate) fn green_button<R: BufRead>(
    input: R,
    meter_override: Option<&str>,
    validation: Validation,
    out: &mut VecDeque<Item>,
) -> Result<(), String> {
    let mut w = Walker::new(input);
    let mut reading_types: HashMap<String, EspiReadingType> = HashMap::new();
    // MeterReading href → its ReadingType href.
    let mut meter_readings: HashMap<String, String> = HashMap::new();
    // (MeterReading href, raw value) of every interval reading.
    let mut values: Vec<(String, Raw)> = Vec::new();
    // The entry being read: its self and related links, what its content is.
    let (mut self_href, mut related): (String, Vec<String>) = (String::new(), Vec::new());
    let mut rt = EspiReadingType::default();
    // The local name of the entry's content (`UsagePoint`, `MeterReading`, …).
    let mut content = String::new();
    let (mut start, mut duration, mut value): (Option<i64>, Option<i64>, Option<String>) =
        (None, None, None);
    let mut reading_line = 0;
    loop {
        let step = w.next()?;
        if let Step::Open(e) | Step::Empty(e) = &step {
            let name = local(e);
            let parent = match step {
                Step::Open(_) => w.at().1,
                _ => w.at().0,
            };
            if parent == "content" {
                content = name.clone();
            }
            match name.as_str() {
                "link" => {
                    let href = attr(e, "href").unwrap_or_default();
                    match attr(e, "rel").as_deref() {
                        Some("self") => self_href = href,
                        Some("related") => related.push(href),
                        _ => {}
                    }
                }
                "entry" => {
                    (self_href, related, content) = (String::new(), Vec::new(), String::new());
                    rt = EspiReadingType::default();
                }
                "IntervalReading" => {
                    (start, duration, value) = (None, None, None);
                    reading_line = w.line;
                }
                _ => {}
            }
            continue;
        }
        match step {
            Step::End => break,
            Step::Text(t) => match w.at() {
                ("uom", "ReadingType") => rt.uom = Some(t),
                ("flowDirection", "ReadingType") => rt.flow = Some(t),
                ("powerOfTenMultiplier", "ReadingType") => {
                    rt.multiplier = t.parse().map_err(|_| {
                        format!(
                            "line {}: powerOfTenMultiplier {t:?} is not a whole number",
                            w.line
                        )
                    })?
                }
                ("start", "timePeriod") => start = t.parse().ok(),
                ("duration", "timePeriod") => duration = t.parse().ok(),
                ("value", "IntervalReading") => value = Some(t),
                _ => {}
            },
            Step::Close(name) if name == "entry" => match content.as_str() {
                "ReadingType" => {
                    reading_types.insert(self_href.clone(), rt.clone());
                }
                "MeterReading" => {
                    if let Some(rt_href) = related.iter().find(|h| h.contains("/ReadingType/")) {
                        meter_readings.insert(self_href.clone(), rt_href.clone());
                    }
                }
                _ => {}
            },
            Step::Close(name) if name == "IntervalReading" => {
                let owner = self_href
                    .rfind("/IntervalBlock")
                    .map_or(String::new(), |i| self_href[..i].to_string());
                let parsed = (|| {
                    let (start, duration) = start
                        .zip(duration)
                        .ok_or("IntervalReading: timePeriod start or duration missing")?;
                    let value = value.as_deref().ok_or("IntervalReading: value missing")?;
                    Ok::<_, String>((start, duration, number(value, "IntervalReading value")?))
                })();
                match parsed {
                    Ok((start, duration, value)) => values.push((
                        owner,
                        Raw {
                            meter: String::new(),
                            ts: start + duration,
                            interval_s: duration,
                            value,
                            line: reading_line,
                            estimated: false,
                        },
                    )),
                    Err(reason) => out.push_back(Ok(Err(Reject {
                        line: reading_line,
                        reason,
                        raw: format!("IntervalReading in {self_href}"),
                    }))),
                }
            }
            _ => {}
        }
    }
    let mut energies = Vec::with_capacity(values.len());
    for (owner, mut raw) in values {
        let energy = meter_readings
            .get(&owner)
            .ok_or_else(|| format!("no MeterReading entry {owner} names this block's ReadingType"))
            .and_then(|rt| {
                reading_types
                    .get(rt)
                    .ok_or_else(|| format!("ReadingType {rt} is not in the feed"))
            })
            .and_then(EspiReadingType::energy);
        let meter = meter_override
            .map(str::to_string)
            .or_else(|| usage_point(&owner).map(str::to_string))
            .ok_or_else(|| format!("no UsagePoint id in {owner:?}: give the meter id"));
        match energy.and_then(|e| meter.map(|m| (e, m))) {
            Ok((energy, meter)) => {
                raw.meter = meter;
                energies.push((raw, energy));
            }
            Err(reason) => out.push_back(Ok(Err(Reject {
                line: raw.line,
                reason,
                raw: format!("IntervalReading value {} in {owner}", raw.value),
            }))),
        }
    }
    emit(energies, validation, out);
    Ok(())
}

/// The 18-field CIM ReadingType code, as far as it says what a value means.
fn cim_energy(code: &str) -> Result<(Energy, i64), String> {
    let f: Vec<&str> = code.split('.').collect();
    if f.len() != 18 {
        return Err(format!(
            "ReadingType {code:?} is not an 18-field CIM code: not used"
        ));
    }
    let n = |i: usize| f[i].parse::<i64>().unwrap_or(-999);
    let (period, accumulation, flow, kind, multiplier, unit) =
        (n(2), n(3), n(4), n(6), n(15), n(16));
    let interval_s = match period {
        1 => 600,
        2 => 900,
        3 => 60,
        4 => 86_400,
        5 => 1800,
        6 => 300,
        7 => 3600,
        10 => 120,
        14 => 180,
        31 => 1200,
        _ => 0,
    };
    if accumulation != 4 || kind != 12 || unit != 72 || interval_s == 0 {
        return Err(format!(
            "ReadingType {code}: not interval energy in Wh (accumulation {accumulation}, measurementKind {kind}, unit {unit}, measuringPeriod {period}): not used"
        ));
    }
    let export = match flow {
        1 => false,
        19 => true,
        other => {
            return Err(format!(
                "ReadingType {code}: flowDirection {other} is neither forward (1) nor reverse (19): not used"
            ))
        }
    };
    let e = Energy {
        kwh_per_unit: 10f64.powi(multiplier as i32) / 1000.0,
        export,
    };
    Ok((e, interval_s))
}

/// A reading quality the head-end flagged as failed (`system.category.index`; categories 5
/// reasonability, 6 validation and 10 questionable): the value is not used. Valid (0),
/// edited (7) and estimated (8) values are, and so are diagnostics, power quality, tamper and
/// data-collection flags (1–4), which describe the meter, not the value.
fn failed_quality(code: &str) -> Option<String> {
    let category = code.split('.').nth(1)?;
    matches!(category, "5" | "6" | "10")
        .then(|| format!("ReadingQuality {code}: the head-end flagged the value as failed"))
}

/// Reads IEC 61968-9 `MeterReadings`; queues each `MeterReading`'s readings and rejects as it
/// closes.
pub(crate) fn iec_meter_readings<R: BufRead>(
    input: R,
    validation: Validation,
    out: &mut VecDeque<Item>,
) -> Result<(), String> {
    let mut w = Walker::new(input);
    let mut meter: Option<String> = None;
    // The meter reading being read: its blocks, the block being read, the value being read.
    let mut blocks: Vec<IecBlock> = Vec::new();
    let mut block = IecBlock::default();
    let mut current = IecValue::default();
    loop {
        let step = w.next()?;
        let opened = match &step {
            Step::Open(e) | Step::Empty(e) => Some((local(e), attr(e, "ref"))),
            _ => None,
        };
        if let Some((name, reference)) = opened {
            let parent = w.at().1.to_string();
            match name.as_str() {
                "MeterReading" => {
                    (meter, blocks) = (None, Vec::new());
                }
                "IntervalBlocks" => block = IecBlock::default(),
                "IntervalReadings" => {
                    current = IecValue {
                        line: w.line,
                        ..IecValue::default()
                    }
                }
                "ReadingType" if parent == "IntervalBlocks" || w.at().0 == "IntervalBlocks" => {
                    block.reading_type = reference.unwrap_or_default()
                }
                "ReadingQualities" | "ReadingQualityType" if reference.is_some() => {
                    current.quality = reference
                }
                _ => {}
            }
            if matches!(step, Step::Empty(_)) {
                continue;
            }
        }
        match step {
            Step::End => break,
            Step::Text(t) => match w.at() {
                ("timeStamp", "IntervalReadings") => current.ts = Some(t),
                ("value", "IntervalReadings") => current.value = Some(t),
                ("name", "Names") if w.path.iter().any(|p| p == "Meter") => meter = Some(t),
                _ => {}
            },
            Step::Close(name) => match name.as_str() {
                "IntervalReadings" => block.values.push(std::mem::take(&mut current)),
                "IntervalBlocks" => blocks.push(std::mem::take(&mut block)),
                "MeterReading" => {
                    let values = meter_reading(meter.take(), std::mem::take(&mut blocks), out);
                    emit(values, validation, out);
                }
                _ => {}
            },
            _ => {}
        }
    }
    Ok(())
}

/// One `IntervalReadings` as read: its text, its quality code, the line it opens on.
#[derive(Debug, Default)]
struct IecValue {
    ts: Option<String>,
    value: Option<String>,
    quality: Option<String>,
    line: u64,
}

/// One `IntervalBlocks`: its values and their reading type's code.
#[derive(Debug, Default)]
struct IecBlock {
    reading_type: String,
    values: Vec<IecValue>,
}

/// One closed `MeterReading`: its values with what they mean, and a reject for each it can't use.
fn meter_reading(
    meter: Option<String>,
    blocks: Vec<IecBlock>,
    out: &mut VecDeque<Item>,
) -> Vec<(Raw, Energy)> {
    let mut values = Vec::new();
    for IecBlock {
        reading_type,
        values: readings,
    } in blocks
    {
        let kind = cim_energy(&reading_type);
        for IecValue {
            ts,
            value,
            quality,
            line,
        } in readings
        {
            let raw = format!(
                "meter {}, {} = {} ({reading_type}{})",
                meter.as_deref().unwrap_or("?"),
                ts.as_deref().unwrap_or("?"),
                value.as_deref().unwrap_or("?"),
                quality
                    .as_deref()
                    .map_or(String::new(), |q| format!(", quality {q}"))
            );
            let parsed = (|| {
                let meter = meter
                    .clone()
                    .ok_or("MeterReading: Meter/Names/name missing")?;
                let (energy, interval_s) = kind.clone()?;
                if let Some(failed) = quality.as_deref().and_then(failed_quality) {
                    return Err(failed);
                }
                let ts = ts.as_deref().ok_or("IntervalReadings: timeStamp missing")?;
                let ts = gridwatch_core::time::parse_rfc3339(ts)
                    .map_err(|e| format!("IntervalReadings timeStamp: {e}"))?;
                let value = number(
                    value.as_deref().ok_or("IntervalReadings: value missing")?,
                    "IntervalReadings value",
                )?;
                Ok::<_, String>((
                    Raw {
                        meter,
                        ts,
                        interval_s,
                        value,
                        line,
                        estimated: quality
                            .as_deref()
                            .is_some_and(|q| q.split('.').nth(1) == Some("8")),
                    },
                    energy,
                ))
            })();
            match parsed {
                Ok(v) => values.push(v),
                Err(reason) => out.push_back(Ok(Err(Reject { line, reason, raw }))),
            }
        }
    }
    values
}
