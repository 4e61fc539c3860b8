//! One interval meter reading, as it travels on `gridwatch.readings`.

pub use compact_str::CompactString;
use serde::{Deserialize, Serialize};

/// A validated interval reading. `ts` is the END of the interval, in epoch seconds (UTC). On the
/// topic, fields this version doesn't know are ignored: a producer that adds one is read by
/// older detectors (the ingester's own parsers still name an unknown field in a file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// Inline up to 24 bytes (every id seen in practice): no allocation per reading.
    pub meter_id: CompactString,
    #[serde(with = "crate::time::serde_rfc3339")]
    pub ts: i64,
    pub interval_s: u32,
    /// Active energy imported during the interval.
    pub kwh: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kvarh: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kwh_export: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voltage_v: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_a: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feeder_id: Option<CompactString>,
    /// `actual` (the default) or `estimated`: a head-end's estimate for an interval it could
    /// not read, which a later `actual` for the same interval replaces.
    #[serde(default, skip_serializing_if = "Quality::is_actual")]
    pub quality: Quality,
}

/// Whether a reading was measured or estimated by the head-end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quality {
    #[default]
    Actual,
    Estimated,
}

impl Quality {
    pub fn is_actual(&self) -> bool {
        *self == Quality::Actual
    }

    /// Parses a `quality` field: `actual` or `estimated`, in any case.
    pub fn parse(s: &str) -> Result<Quality, String> {
        if s.eq_ignore_ascii_case("actual") {
            Ok(Quality::Actual)
        } else if s.eq_ignore_ascii_case("estimated") {
            Ok(Quality::Estimated)
        } else {
            Err(format!("field quality: {s:?} is not actual or estimated"))
        }
    }
}

/// Largest plausible mean demand of one meter (kW): 100 MW. Beyond it a value is a unit or
/// transmission error, not a load.
pub const MAX_KW: f64 = 100_000.0;
/// Longest interval accepted (one day).
pub const MAX_INTERVAL_S: u32 = 86_400;
/// Longest meter or feeder id.
pub const MAX_ID_LEN: usize = 128;

/// Limits that need a clock or configuration; a reading's own checks need neither.
#[derive(Debug, Clone, Copy, Default)]
pub struct Validation {
    /// Readings stamped after this (epoch seconds) are rejected as from the future.
    pub max_ts: Option<i64>,
}

/// An id is 1–128 printable characters. The reason quotes a long one only in part.
pub fn check_id(name: &str, v: &str) -> Result<(), String> {
    if v.is_empty() || v.len() > MAX_ID_LEN || v.chars().any(char::is_control) {
        let shown: String = v.chars().take(40).collect();
        let more = if shown.len() < v.len() {
            format!("… ({} bytes)", v.len())
        } else {
            String::new()
        };
        return Err(format!(
            "field {name}: {shown:?}{more} is not a valid id (1–{MAX_ID_LEN} printable characters)"
        ));
    }
    Ok(())
}

impl Reading {
    /// A reading of `kwh` over `interval_s` seconds ending at `ts`, with no optional field set
    /// (an `actual` reading): set the others after, where known.
    pub fn new(meter_id: &str, ts: i64, interval_s: u32, kwh: f64) -> Reading {
        Reading {
            meter_id: meter_id.into(),
            ts,
            interval_s,
            kwh,
            kvarh: None,
            kwh_export: None,
            voltage_v: None,
            current_a: None,
            feeder_id: None,
            quality: Quality::Actual,
        }
    }

    /// The one validation of a reading: the ingester's parsers apply it to every record they
    /// read, and the detector again to every record it consumes from the topic (which anyone
    /// with access may write). The reason names the field.
    pub fn validate(&self, v: Validation) -> Result<(), String> {
        check_id("meter_id", &self.meter_id)?;
        if let Some(max) = v.max_ts {
            if self.ts > max {
                return Err(format!(
                    "field ts: {} is in the future",
                    crate::time::format_rfc3339(self.ts)
                ));
            }
        }
        if !(1..=MAX_INTERVAL_S).contains(&self.interval_s) {
            return Err(format!(
                "field interval_s: {} is outside 1..={MAX_INTERVAL_S}",
                self.interval_s
            ));
        }
        let per_hour = 3600.0 / f64::from(self.interval_s);
        for (name, x) in [
            ("kwh", Some(self.kwh)),
            ("kvarh", self.kvarh),
            ("kwh_export", self.kwh_export),
            ("voltage_v", self.voltage_v),
            ("current_a", self.current_a),
        ] {
            if x.is_some_and(|x| !x.is_finite()) {
                return Err(format!("field {name}: not a finite number"));
            }
        }
        if self.kwh < 0.0 {
            return Err(format!(
                "field kwh: {} is negative (exported energy belongs in kwh_export)",
                self.kwh
            ));
        }
        let kw = self.kwh * per_hour;
        if kw > MAX_KW {
            return Err(format!(
                "field kwh: {} kWh in {} s is {kw:.0} kW, beyond any meter ({MAX_KW} kW)",
                self.kwh, self.interval_s
            ));
        }
        for (name, val) in [("kvarh", self.kvarh), ("kwh_export", self.kwh_export)] {
            if let Some(x) = val {
                if x.abs() * per_hour > MAX_KW {
                    return Err(format!("field {name}: {x} is beyond any meter"));
                }
            }
        }
        if self.kwh_export.is_some_and(|x| x < 0.0) {
            return Err("field kwh_export: negative".into());
        }
        if self
            .voltage_v
            .is_some_and(|x| !(0.0..=1_000_000.0).contains(&x))
        {
            return Err("field voltage_v: outside 0–1,000,000 V".into());
        }
        if self
            .current_a
            .is_some_and(|x| !(0.0..=1_000_000.0).contains(&x))
        {
            return Err("field current_a: outside 0–1,000,000 A".into());
        }
        if let Some(f) = &self.feeder_id {
            check_id("feeder_id", f)?;
        }
        Ok(())
    }

    /// Mean demand over the interval, in kW.
    pub fn mean_kw(&self) -> f64 {
        self.kwh * 3600.0 / f64::from(self.interval_s)
    }

    /// Interval start, epoch seconds.
    pub fn start(&self) -> i64 {
        self.ts - i64::from(self.interval_s)
    }
}

/// A record that could not become a reading, with why, on `gridwatch.readings.dlq`
/// (and in `rejects.jsonl` in embedded mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DlqRecord {
    /// What is wrong, naming the field.
    pub reason: String,
    /// Where it came from: `file:line`, `http:<request id>#<record>` or
    /// `topic/partition/offset`.
    pub source: String,
    /// The record as received, up to [`MAX_DLQ_RAW`] bytes.
    pub raw: String,
}

/// The most of a rejected record a DLQ record keeps: a huge record must not make a DLQ record
/// larger than Kafka takes (which would fail the transaction carrying it, again and again).
pub const MAX_DLQ_RAW: usize = 16 * 1024;

impl DlqRecord {
    /// A DLQ record; a `raw` longer than [`MAX_DLQ_RAW`] is cut there (at a character
    /// boundary), and the reason says so and how long it was.
    pub fn new(reason: String, source: String, mut raw: String) -> DlqRecord {
        let mut reason = reason;
        if raw.len() > MAX_DLQ_RAW {
            let size = raw.len();
            let mut cut = MAX_DLQ_RAW;
            while !raw.is_char_boundary(cut) {
                cut -= 1;
            }
            raw.truncate(cut);
            reason = format!("{reason} (raw cut to its first {cut} of {size} bytes)");
        }
        DlqRecord {
            reason,
            source,
            raw,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading() -> Reading {
        Reading::new("M1", 1_767_225_600, 900, 0.5)
    }

    #[test]
    fn dlq_records_keep_at_most_16_kib_of_the_record_and_say_so() {
        let small = DlqRecord::new("bad".into(), "x:1".into(), "abc".into());
        assert_eq!((small.reason.as_str(), small.raw.as_str()), ("bad", "abc"));
        let huge = "é".repeat(500_000);
        let cut = DlqRecord::new("bad".into(), "x:1".into(), huge);
        assert!(cut.raw.len() <= MAX_DLQ_RAW && cut.raw.len() > MAX_DLQ_RAW - 2);
        assert!(cut.reason.contains("of 1000000 bytes"), "{}", cut.reason);
    }

    #[test]
    fn unknown_fields_on_the_topic_are_ignored() {
        let r: Reading = serde_json::from_str(
            r#"{"meter_id":"M1","ts":"2026-01-01T00:00:00Z","interval_s":900,"kwh":0.5,"firmware":"2.1"}"#,
        )
        .unwrap();
        assert_eq!(r, reading());
    }

    #[test]
    fn validation_names_the_field() {
        assert_eq!(reading().validate(Validation::default()), Ok(()));
        type Spoil = fn(&mut Reading);
        let cases: [(Spoil, &str); 9] = [
            (|r| r.meter_id = CompactString::default(), "field meter_id"),
            (|r| r.interval_s = 0, "field interval_s"),
            (|r| r.interval_s = 90_000, "field interval_s"),
            (|r| r.kwh = -1.0, "field kwh"),
            (|r| r.kwh = 1e9, "field kwh"),
            (|r| r.kwh_export = Some(-0.1), "field kwh_export"),
            (|r| r.voltage_v = Some(f64::NAN), "field voltage_v"),
            (|r| r.current_a = Some(-3.0), "field current_a"),
            (|r| r.feeder_id = Some("F\n1".into()), "field feeder_id"),
        ];
        for (spoil, field) in cases {
            let mut r = reading();
            spoil(&mut r);
            let err = r.validate(Validation::default()).unwrap_err();
            assert!(err.starts_with(field), "{err}");
        }
        let future = Validation {
            max_ts: Some(1_767_225_599),
        };
        assert!(reading().validate(future).unwrap_err().contains("future"));
    }
}
