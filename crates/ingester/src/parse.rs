//! Streaming parsers for readings: CSV and JSON Lines (and JSON arrays for the HTTP API).
//! Each record becomes a [`Reading`] or a [`Reject`] naming the field and the reason; nothing
//! is dropped and nothing panics. Whole files are never loaded into memory.

use gridwatch_core::reading::MAX_INTERVAL_S;
use gridwatch_core::time::parse_rfc3339;
pub use gridwatch_core::Validation;
use gridwatch_core::{Quality, Reading};
use serde_json::{Map, Value};
use std::collections::VecDeque;
use std::io::BufRead;

/// A record that can't be a reading: where it was, why, and the text as received.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub line: u64,
    pub reason: String,
    pub raw: String,
}

/// The input formats the ingester reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    JsonLines,
    /// Green Button (NAESB ESPI) Atom XML.
    GreenButton,
    /// IEC 61968-9 `MeterReadings` XML.
    IecMeterReadings,
    /// AEMO's NEM12 interval data (CSV records `100`, `200`, `300`, `400`, `900`).
    Nem12,
}

impl Format {
    /// The format a file's name implies: `.jsonl`/`.ndjson`/`.json` JSON Lines, `.xml` XML
    /// (which kind: see [`Format::sniff`]), else CSV.
    pub fn from_path(path: &str) -> Format {
        if path.ends_with(".jsonl") || path.ends_with(".ndjson") || path.ends_with(".json") {
            Format::JsonLines
        } else if path.ends_with(".xml") {
            Format::GreenButton
        } else {
            Format::Csv
        }
    }

    /// The format of a stream named `name` (a path, or `-`): its content where the start shows
    /// one, else its name. Consumes nothing.
    pub fn detect(input: &mut impl BufRead, name: &str) -> std::io::Result<Format> {
        let head = input.fill_buf()?;
        Ok(Format::sniff(head, Format::from_path(name)))
    }

    /// The format the start of the content shows, where it shows one: XML that is an Atom
    /// feed or mentions ESPI is Green Button; XML with IEC 61968-9 `MeterReadings` is that. For
    /// anything else, `fallback` (from the file name).
    pub fn sniff(head: &[u8], fallback: Format) -> Format {
        let text = String::from_utf8_lossy(&head[..head.len().min(64 * 1024)]);
        let start = text.trim_start_matches('\u{feff}').trim_start();
        // NEM12 by its 100 header; a file that starts with its 200 record is NEM12 without one
        // (refused as such, rather than as a CSV with a strange header).
        let first = start.lines().next().unwrap_or("");
        let indicator = |i: &str| first.starts_with(&format!("{i},"));
        if (indicator("100") && first.to_ascii_uppercase().starts_with("100,NEM12"))
            || (indicator("200") && first.split(',').count() >= 9)
        {
            return Format::Nem12;
        }
        let xml = start.starts_with('<');
        if !xml {
            return fallback;
        }
        if text.contains("MeterReadings") || text.contains("iec.ch/TC57") {
            Format::IecMeterReadings
        } else {
            Format::GreenButton
        }
    }
}

/// Known reading fields, in their CSV contract order.
const FIELDS: [&str; 10] = [
    "meter_id",
    "ts",
    "interval_s",
    "kwh",
    "kvarh",
    "kwh_export",
    "voltage_v",
    "current_a",
    "feeder_id",
    "quality",
];
/// The first four fields are required, the rest optional.
const REQUIRED: &[&str] = FIELDS.split_at(4).0;
const OPTIONAL: &[&str] = FIELDS.split_at(4).1;

/// A fatal problem with the input as a whole (not one record).
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("line {line}: {msg}")]
    Header { line: u64, msg: String },
    #[error("read error after line {line}: {source}")]
    Io { line: u64, source: std::io::Error },
}

/// Iterates over the records of a readings stream. Use [`Records::new`], then iterate;
/// a bad header or an I/O error ends the stream with an [`InputError`].
pub struct Records<R> {
    source: Source<R>,
    validation: Validation,
    line: u64,
    done: bool,
    /// Green Button: the meter id for every reading (else each usage point's id).
    meter_id: Option<String>,
}

enum Source<R> {
    /// RFC 4180 CSV (quoted fields may hold commas, quotes and line breaks), read by the `csv`
    /// crate into one reused record.
    Csv {
        reader: csv::Reader<R>,
        record: csv::ByteRecord,
        /// For each column, the field it holds (index into REQUIRED ++ OPTIONAL), if known;
        /// empty until the header is read.
        columns: Vec<Option<usize>>,
    },
    JsonLines {
        input: R,
        buf: String,
    },
    /// NEM12, an NMI at a time.
    Nem12(Box<crate::nem12::Nem12<R>>),
    /// An XML document, read whole at the first `next()` into a queue of items.
    Xml {
        input: Option<R>,
        format: Format,
        queue: VecDeque<Item>,
    },
}

pub type Item = Result<Result<Reading, Reject>, InputError>;

impl<R: BufRead> Records<R> {
    pub fn new(input: R, format: Format, validation: Validation) -> Self {
        let source = match format {
            Format::Csv => Source::Csv {
                reader: csv::ReaderBuilder::new()
                    .has_headers(false)
                    .flexible(true)
                    .from_reader(input),
                record: csv::ByteRecord::new(),
                columns: Vec::new(),
            },
            Format::JsonLines => Source::JsonLines {
                input,
                buf: String::new(),
            },
            Format::Nem12 => Source::Nem12(Box::new(crate::nem12::Nem12::new(input, validation))),
            Format::GreenButton | Format::IecMeterReadings => Source::Xml {
                input: Some(input),
                format,
                queue: VecDeque::new(),
            },
        };
        Records {
            source,
            validation,
            line: 0,
            done: false,
            meter_id: None,
        }
    }

    /// The meter id for every reading of a Green Button feed, instead of its usage point's id.
    pub fn with_meter_id(mut self, meter_id: Option<String>) -> Self {
        self.meter_id = meter_id;
        self
    }

    fn next_xml(&mut self) -> Option<Item> {
        let Source::Xml {
            input,
            format,
            queue,
        } = &mut self.source
        else {
            unreachable!("called for XML only")
        };
        if let Some(input) = input.take() {
            let read = match format {
                Format::IecMeterReadings => {
                    crate::xml::iec_meter_readings(input, self.validation, queue)
                }
                _ => crate::xml::green_button(
                    input,
                    self.meter_id.as_deref(),
                    self.validation,
                    queue,
                ),
            };
            // Whatever was read before a malformed part is kept; then the error ends the stream.
            if let Err(msg) = read {
                queue.push_back(Err(InputError::Header { line: 0, msg }));
            }
        }
        let item = queue.pop_front()?;
        if let Ok(Err(r)) = &item {
            self.line = r.line;
        }
        Some(item)
    }

    /// The line the last record started on (lines read so far, for JSON Lines).
    pub fn line(&self) -> u64 {
        self.line
    }

    fn next_json_line(&mut self) -> Option<Item> {
        let Source::JsonLines { input, buf } = &mut self.source else {
            unreachable!("called for JSON Lines only")
        };
        loop {
            let mut bytes = Vec::new();
            match input.read_until(b'\n', &mut bytes) {
                Err(source) => {
                    return Some(Err(InputError::Io {
                        line: self.line,
                        source,
                    }))
                }
                Ok(0) => return None,
                Ok(_) => {}
            }
            self.line += 1;
            *buf = match String::from_utf8(bytes) {
                Ok(s) => s,
                Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            };
            while buf.ends_with('\n') || buf.ends_with('\r') {
                buf.pop();
            }
            if buf.trim().is_empty() {
                continue;
            }
            let parsed = json_line(buf, self.validation);
            return Some(Ok(parsed.map_err(|reason| Reject {
                line: self.line,
                reason,
                raw: buf.clone(),
            })));
        }
    }

    fn next_csv_record(&mut self) -> Option<Item> {
        let Source::Csv {
            reader,
            record,
            columns,
        } = &mut self.source
        else {
            unreachable!("called for CSV only")
        };
        loop {
            match reader.read_byte_record(record) {
                // An empty input is no readings file: refused, not read as nothing.
                Ok(false) if columns.is_empty() => {
                    return Some(Err(InputError::Header {
                        line: self.line,
                        msg: "empty: no header line (meter_id,ts,interval_s,kwh,…) and no records"
                            .into(),
                    }))
                }
                Ok(false) => return None,
                Ok(true) => {}
                Err(e) => {
                    let line = e.position().map_or(self.line, |p| p.line());
                    return Some(Err(match e.into_kind() {
                        csv::ErrorKind::Io(source) => InputError::Io { line, source },
                        other => InputError::Header {
                            line,
                            msg: format!("unreadable CSV: {other:?}"),
                        },
                    }));
                }
            }
            self.line = record.position().map_or(self.line + 1, |p| p.line());
            if record.iter().all(|f| f.iter().all(u8::is_ascii_whitespace)) {
                continue;
            }
            if columns.is_empty() {
                match header(record, self.line) {
                    Ok(c) => *columns = c,
                    Err(e) => return Some(Err(e)),
                }
                continue;
            }
            let parsed = csv_record(record, columns, self.validation);
            return Some(Ok(parsed.map_err(|reason| Reject {
                line: self.line,
                reason,
                raw: raw_csv(record),
            })));
        }
    }
}

/// Reads the header: the contract's four columns first, then optional ones in any order
/// (unknown ones are ignored); no column twice.
fn header(record: &csv::ByteRecord, line: u64) -> Result<Vec<Option<usize>>, InputError> {
    let cols: Vec<String> = record
        .iter()
        .map(|c| {
            String::from_utf8_lossy(c)
                .trim()
                .trim_start_matches('\u{feff}')
                .to_string()
        })
        .collect();
    let head: Vec<&str> = cols.iter().take(4).map(String::as_str).collect();
    if head != REQUIRED {
        return Err(InputError::Header {
            line,
            msg: format!(
                "readings CSV header must start with meter_id,ts,interval_s,kwh; found {:?}",
                cols.join(",")
            ),
        });
    }
    let mut seen = std::collections::HashSet::new();
    for c in &cols {
        if !seen.insert(c.as_str()) {
            return Err(InputError::Header {
                line,
                msg: format!("column {c:?} appears twice"),
            });
        }
    }
    Ok(cols
        .iter()
        .map(|c| REQUIRED.iter().chain(OPTIONAL.iter()).position(|k| k == c))
        .collect())
}

fn csv_record(
    record: &csv::ByteRecord,
    columns: &[Option<usize>],
    validation: Validation,
) -> Result<Reading, String> {
    if record.len() != columns.len() {
        let spans_lines = record.iter().any(|f| f.contains(&b'\n'));
        return Err(if spans_lines {
            format!(
                "expected {} fields as in the header, found {}: a quoted field runs across lines (an unterminated quote?)",
                columns.len(),
                record.len()
            )
        } else {
            format!(
                "expected {} fields as in the header, found {}",
                columns.len(),
                record.len()
            )
        });
    }
    // The record's text is checked once (a check per field cost as much as the CSV reader);
    // where it isn't text, each field is checked to name the one at fault.
    let text = std::str::from_utf8(record.as_slice()).ok();
    let mut vals: [Option<&str>; 10] = [None; 10];
    for (i, col) in columns.iter().enumerate() {
        if let Some(k) = col {
            let field = match text {
                Some(t) => record.range(i).and_then(|r| t.get(r)),
                None => std::str::from_utf8(&record[i]).ok(),
            }
            .ok_or_else(|| format!("field {}: not UTF-8 text", FIELDS[*k]))?;
            vals[*k] = Some(trim(field)).filter(|s| !s.is_empty());
        }
    }
    let req = |i: usize| vals[i].ok_or_else(|| format!("field {}: missing", REQUIRED[i]));
    let num = |i: usize, name: &str| -> Result<Option<f64>, String> {
        vals[i]
            .map(|s| parse_f64(s).map_err(|e| format!("field {name}: {e}")))
            .transpose()
    };
    let interval = req(2)?;
    let interval_s = interval
        .parse::<i64>()
        .map_err(|_| format!("field interval_s: {interval:?} is not a whole number of seconds"))?;
    let kwh_text = req(3)?;
    let kwh = parse_f64(kwh_text).map_err(|e| format!("field kwh: {e}"))?;
    build(
        RawReading {
            meter_id: req(0)?,
            ts: req(1)?,
            interval_s,
            kwh,
            kvarh: num(4, "kvarh")?,
            kwh_export: num(5, "kwh_export")?,
            voltage_v: num(6, "voltage_v")?,
            current_a: num(7, "current_a")?,
            feeder_id: vals[8],
            quality: vals[9].map(Quality::parse).transpose()?.unwrap_or_default(),
        },
        validation,
    )
}

/// `str::trim`, without decoding characters when the field starts and ends in visible ASCII
/// (nearly every field).
fn trim(s: &str) -> &str {
    let b = s.as_bytes();
    let visible = |c: Option<&u8>| c.is_some_and(u8::is_ascii_graphic);
    if visible(b.first()) && visible(b.last()) {
        s
    } else {
        s.trim()
    }
}

/// A record as CSV text again, for a reject's `raw` (fields quoted where they must be).
fn raw_csv(record: &csv::ByteRecord) -> String {
    let fields: Vec<String> = record
        .iter()
        .map(|f| {
            let f = String::from_utf8_lossy(f);
            if f.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f.into_owned()
            }
        })
        .collect();
    fields.join(",")
}

impl<R: BufRead> Iterator for Records<R> {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        if self.done {
            return None;
        }
        let item = match self.source {
            Source::Csv { .. } => self.next_csv_record(),
            Source::JsonLines { .. } => self.next_json_line(),
            Source::Xml { .. } => self.next_xml(),
            Source::Nem12(ref mut n) => {
                let item = n.next_item();
                self.line = n.line;
                item
            }
        };
        // The end, a bad header or an I/O error ends the stream.
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }
}

fn parse_f64(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    if !v.is_finite() {
        return Err(format!("{s:?} is not a finite number"));
    }
    Ok(v)
}

struct RawReading<'a> {
    meter_id: &'a str,
    ts: &'a str,
    interval_s: i64,
    kwh: f64,
    kvarh: Option<f64>,
    kwh_export: Option<f64>,
    voltage_v: Option<f64>,
    current_a: Option<f64>,
    feeder_id: Option<&'a str>,
    quality: Quality,
}

/// Turns the parsed fields into a reading and validates it ([`Reading::validate`]).
fn build(r: RawReading<'_>, v: Validation) -> Result<Reading, String> {
    let ts = parse_rfc3339(r.ts).map_err(|e| format!("field ts: {e}: {:?}", r.ts))?;
    let interval_s = u32::try_from(r.interval_s)
        .ok()
        .filter(|i| (1..=MAX_INTERVAL_S).contains(i))
        .ok_or_else(|| {
            format!(
                "field interval_s: {} is outside 1..={MAX_INTERVAL_S}",
                r.interval_s
            )
        })?;
    let reading = Reading {
        meter_id: r.meter_id.into(),
        ts,
        interval_s,
        kwh: r.kwh,
        kvarh: r.kvarh,
        kwh_export: r.kwh_export,
        voltage_v: r.voltage_v,
        current_a: r.current_a,
        feeder_id: r.feeder_id.map(Into::into),
        quality: r.quality,
    };
    reading.validate(v)?;
    Ok(reading)
}

/// One JSON Lines record.
pub fn json_line(line: &str, v: Validation) -> Result<Reading, String> {
    match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(m)) => json_object(&m, v),
        Ok(_) => Err("not a JSON object".into()),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

/// One reading as a JSON object (JSON Lines, or an element of a JSON array).
pub fn json_object(m: &Map<String, Value>, v: Validation) -> Result<Reading, String> {
    for k in m.keys() {
        if !REQUIRED.contains(&k.as_str()) && !OPTIONAL.contains(&k.as_str()) {
            return Err(format!("field {k}: unknown field"));
        }
    }
    let text = |k: &str| -> Result<Option<&str>, String> {
        match m.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(format!("field {k}: expected a string, got {other}")),
        }
    };
    let num = |k: &str| -> Result<Option<f64>, String> {
        match m.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_f64()
                .map(Some)
                .ok_or_else(|| format!("field {k}: {n} is not a number")),
            Some(Value::String(s)) => parse_f64(s)
                .map(Some)
                .map_err(|e| format!("field {k}: {e}")),
            Some(other) => Err(format!("field {k}: expected a number, got {other}")),
        }
    };
    let req_text = |k: &str| text(k)?.ok_or_else(|| format!("field {k}: missing"));
    let (meter_id, ts) = (req_text("meter_id")?, req_text("ts")?);
    let interval_s = match m.get("interval_s") {
        None | Some(Value::Null) => return Err("field interval_s: missing".into()),
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| format!("field interval_s: {n} is not a whole number of seconds"))?,
        Some(Value::String(s)) => s
            .parse()
            .map_err(|_| format!("field interval_s: {s:?} is not a whole number of seconds"))?,
        Some(other) => return Err(format!("field interval_s: expected a number, got {other}")),
    };
    build(
        RawReading {
            meter_id,
            ts,
            interval_s,
            kwh: num("kwh")?.ok_or("field kwh: missing")?,
            kvarh: num("kvarh")?,
            kwh_export: num("kwh_export")?,
            voltage_v: num("voltage_v")?,
            current_a: num("current_a")?,
            feeder_id: text("feeder_id")?,
            quality: text("quality")?
                .map(Quality::parse)
                .transpose()?
                .unwrap_or_default(),
        },
        v,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(text: &str) -> Vec<Item> {
        Records::new(
            text.as_bytes(),
            Format::Csv,
            Validation {
                max_ts: Some(2_000_000_000),
            },
        )
        .collect()
    }

    fn reject_reason(text: &str) -> String {
        let items = csv(&format!(
            "meter_id,ts,interval_s,kwh,voltage_v,feeder_id\n{text}\n"
        ));
        match &items[0] {
            Ok(Err(r)) => {
                assert_eq!(r.line, 2);
                assert_eq!(r.raw, text);
                r.reason.clone()
            }
            other => panic!("expected a reject for {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn parses_csv_with_optional_columns_in_any_order() {
        let items = csv("meter_id,ts,interval_s,kwh,feeder_id,voltage_v,extra\n\
                         M1,2026-01-05T00:15:00Z,900,0.25,F02,231.5,x\n\
                         \"M,2\",2026-01-05T06:15:00+06:00,900,1e-1,,,\n");
        let r: Vec<Reading> = items.into_iter().map(|i| i.unwrap().unwrap()).collect();
        assert_eq!(r[0].meter_id, "M1");
        assert_eq!(r[0].feeder_id.as_deref(), Some("F02"));
        assert_eq!(r[0].voltage_v, Some(231.5));
        assert_eq!(r[0].ts, r[1].ts);
        assert_eq!(r[1].meter_id, "M,2");
        assert_eq!(r[1].feeder_id, None);
        assert!((r[0].mean_kw() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn a_quality_column_or_field_marks_estimates() {
        let items = csv("meter_id,ts,interval_s,kwh,quality\n\
                         M1,2026-01-05T00:15:00Z,900,0.25,Estimated\n\
                         M1,2026-01-05T00:30:00Z,900,0.25,\n\
                         M1,2026-01-05T00:45:00Z,900,0.25,guessed\n");
        let q: Vec<_> = items
            .into_iter()
            .map(|i| i.unwrap().map(|r| r.quality).map_err(|r| r.reason))
            .collect();
        assert_eq!(q[0], Ok(Quality::Estimated));
        assert_eq!(q[1], Ok(Quality::Actual), "empty is actual");
        assert!(
            q[2].as_ref().unwrap_err().starts_with("field quality"),
            "{q:?}"
        );
        let v = Validation::default();
        let line = r#"{"meter_id":"M1","ts":"2026-01-05T00:15:00Z","interval_s":900,"kwh":0.2,"quality":"actual"}"#;
        assert_eq!(json_line(line, v).unwrap().quality, Quality::Actual);
        let bad = line.replace("\"actual\"", "3");
        assert!(json_line(&bad, v).unwrap_err().starts_with("field quality"));
    }

    #[test]
    fn every_reject_reason_names_its_field() {
        let cases = [
            (",2026-01-05T00:15:00Z,900,0.25,,", "field meter_id"),
            ("M1,2026-01-05T00:15:00,900,0.25,,", "field ts"),
            ("M1,yesterday,900,0.25,,", "field ts"),
            ("M1,2035-01-05T00:15:00Z,900,0.25,,", "in the future"),
            ("M1,2026-01-05T00:15:00Z,0,0.25,,", "field interval_s"),
            ("M1,2026-01-05T00:15:00Z,-900,0.25,,", "field interval_s"),
            ("M1,2026-01-05T00:15:00Z,15m,0.25,,", "field interval_s"),
            ("M1,2026-01-05T00:15:00Z,900,,,", "field kwh: missing"),
            ("M1,2026-01-05T00:15:00Z,900,NaN,,", "field kwh"),
            ("M1,2026-01-05T00:15:00Z,900,inf,,", "field kwh"),
            ("M1,2026-01-05T00:15:00Z,900,1e300,,", "field kwh"),
            ("M1,2026-01-05T00:15:00Z,900,-1,,", "negative"),
            ("M1,2026-01-05T00:15:00Z,900,abc,,", "field kwh"),
            ("M1,2026-01-05T00:15:00Z,900,0.2,-5,", "field voltage_v"),
            ("M1,2026-01-05T00:15:00Z,900,0.2", "expected 6 fields"),
            (
                "M1,2026-01-05T00:15:00Z,900,0.2,230,F1,extra",
                "expected 6 fields",
            ),
        ];
        for (line, want) in cases {
            let reason = reject_reason(line);
            assert!(reason.contains(want), "{line:?}: {reason:?} lacks {want:?}");
        }
    }

    #[test]
    fn an_unterminated_quote_is_one_reject_that_keeps_the_text() {
        let items = csv("meter_id,ts,interval_s,kwh\n\"M1,2026-01-05T00:15:00Z,900,0.2\nM2,2026-01-05T00:15:00Z,900,0.2\n");
        assert_eq!(items.len(), 1, "{items:?}");
        let Ok(Err(r)) = &items[0] else {
            panic!("{items:?}")
        };
        assert_eq!(r.line, 2);
        assert!(r.reason.contains("unterminated quote"), "{}", r.reason);
        assert!(r.raw.contains("M2,2026-01-05T00:15:00Z"), "{}", r.raw);
    }

    #[test]
    fn bad_headers_and_truncation_are_reported() {
        let e = csv("meter,ts,interval_s,kwh\nM1,2026-01-05T00:15:00Z,900,1\n");
        assert!(
            matches!(&e[0], Err(InputError::Header { line: 1, .. })),
            "{e:?}"
        );
        assert_eq!(e.len(), 1);
        let e = csv("meter_id,ts,interval_s,kwh,kwh\n");
        assert!(format!("{:?}", e[0]).contains("twice"));
        // A file cut mid-line: the partial last line is a reject, not a panic or a loss.
        let items =
            csv("meter_id,ts,interval_s,kwh\nM1,2026-01-05T00:15:00Z,900,1\nM1,2026-01-05T00:3");
        assert!(items[0].as_ref().unwrap().is_ok());
        assert!(items[1].as_ref().unwrap().is_err());
        // Garbage bytes are not UTF-8: rejected with the line, lossily shown.
        let mut bytes = b"meter_id,ts,interval_s,kwh\n".to_vec();
        bytes.extend_from_slice(&[0xff, 0xfe, b',', b'\n']);
        let items: Vec<Item> =
            Records::new(&bytes[..], Format::Csv, Validation::default()).collect();
        assert!(items[0].as_ref().unwrap().is_err());
        // The field that isn't text is named: one with a bad byte, and one that ends inside a
        // character the next field completes (the record's bytes whole are text).
        for (row, field) in [
            (&b"M1,2026-01-05T00:15:00Z,900,0.\xff5\n"[..], "field kwh"),
            (
                &b"M1\xc3,\xa92026-01-05T00:15:00Z,900,0.5\n"[..],
                "field meter_id",
            ),
            (&b" M\xc3\xa91 ,2026-01-05T00:15:00Z,900, 0.5\n"[..], ""),
        ] {
            let mut bytes = b"meter_id,ts,interval_s,kwh\n".to_vec();
            bytes.extend_from_slice(row);
            let items: Vec<Item> =
                Records::new(&bytes[..], Format::Csv, Validation::default()).collect();
            match items[0].as_ref().unwrap() {
                Err(reject) => assert_eq!(reject.reason, format!("{field}: not UTF-8 text")),
                Ok(r) => assert!(field.is_empty() && r.meter_id == "M\u{e9}1" && r.kwh == 0.5),
            }
        }
    }

    #[test]
    fn parses_and_rejects_json_lines() {
        let v = Validation::default();
        let r = json_line(r#"{"meter_id":"M1","ts":"2026-01-05T00:15:00Z","interval_s":900,"kwh":0.5,"feeder_id":"F1"}"#, v)
            .unwrap();
        assert_eq!(r.kwh, 0.5);
        assert_eq!(r.feeder_id.as_deref(), Some("F1"));
        for (line, want) in [
            ("{", "invalid JSON"),
            ("[1,2]", "not a JSON object"),
            (
                r#"{"meter_id":"M1","ts":"2026-01-05T00:15:00Z","interval_s":900}"#,
                "field kwh: missing",
            ),
            (
                r#"{"meter_id":7,"ts":"2026-01-05T00:15:00Z","interval_s":900,"kwh":1}"#,
                "field meter_id",
            ),
            (
                r#"{"meter_id":"M1","ts":"2026-01-05T00:15:00Z","interval_s":900.5,"kwh":1}"#,
                "field interval_s",
            ),
            (
                r#"{"meter_id":"M1","ts":"2026-01-05T00:15:00Z","interval_s":900,"kwh":true}"#,
                "field kwh",
            ),
            (
                r#"{"meter_id":"M1","ts":"2026-01-05T00:15:00Z","interval_s":900,"kwh":1,"kw":3}"#,
                "field kw: unknown",
            ),
            (
                r#"{"meter_id":"M1","ts":"2026-01-05T00:15:00Z","interval_s":900,"kwh":1e999}"#,
                "invalid JSON",
            ),
        ] {
            let e = json_line(line, v).unwrap_err();
            assert!(e.contains(want), "{line}: {e}");
        }
    }
}
