//! One interval meter reading, as it travels on `gridwatch.readings`.

use serde::{Deserialize, Serialize};

/// A validated interval reading. `ts` is the END of the interval, in epoch seconds (UTC).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reading {
    pub meter_id: String,
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
    pub feeder_id: Option<String>,
}

impl Reading {
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
    /// Where it came from: `file:line` or `http:<request id>#<record>`.
    pub source: String,
    /// The record as received.
    pub raw: String,
}
