//! Unregistered meters, bounded. Each unregistered meter normally gets its own slot and its own
//! `unregistered_meter` case, but anyone who can write readings can invent meter ids: a flood of
//! random ids would grow the state (and the alerts) without bound. So unregistered meters are
//! counted per *crowd* — the registered feeder their readings name, and that feeder's region
//! (or, for readings naming no registered feeder, one crowd of their own) — and past
//! `max_unregistered_per_feeder` / `max_unregistered_per_region` a new id gets no slot: its
//! readings fold into the crowd's one aggregated case, which counts the distinct meters (a
//! fixed-size sketch), their readings and their energy.
//!
//! The bound: at most `(regions + 1) × max_unregistered_per_region` unregistered slots, plus
//! one crowd (a few hundred bytes) per registered feeder and region.

use crate::case::episode;
use crate::episode::{Episode, Finding, Target};
use crate::evidence::{round, Crowded, Evidence};
use gridwatch_core::time::format_rfc3339;
use gridwatch_core::{Alert, AlertKind, Reading};
use serde::{Deserialize, Serialize};

/// Registers of the distinct-meter sketch (HyperLogLog): about 6.5 % standard error.
const REGISTERS: usize = 256;

/// A group of unregistered meters: those naming one registered feeder, or one region's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Crowd {
    /// `feeder <id>`, `region <id>`, or `unknown feeder` (what the case's alert id is made of).
    pub key: String,
    /// Unregistered meters holding their own slot in this crowd.
    pub held: u32,
    /// Meters folded into the aggregated case, as a HyperLogLog sketch of their ids: the
    /// estimate is the same whatever order the ids arrive in.
    sketch: Vec<u8>,
    readings: u64,
    kwh: f64,
    episodes: Vec<Episode>,
}

/// splitmix64's finalizer over FNV-1a: a fixed, well-mixed hash (the same on every run and
/// machine, so the estimate is deterministic).
fn hash(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in id.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

impl Crowd {
    pub fn new(key: String) -> Crowd {
        Crowd {
            key,
            held: 0,
            sketch: vec![0; REGISTERS],
            readings: 0,
            kwh: 0.0,
            episodes: Vec::new(),
        }
    }

    /// Whether a crowd read from a checkpoint has the shape this binary builds.
    pub fn is_sound(&self) -> bool {
        self.sketch.len() == REGISTERS && self.sketch.iter().all(|&r| r <= 65)
    }

    /// Distinct meters folded in (estimated; exact while few).
    pub fn meters(&self) -> u64 {
        let m = REGISTERS as f64;
        let zeros = self.sketch.iter().filter(|&&r| r == 0).count();
        let sum: f64 = self.sketch.iter().map(|&r| 2f64.powi(-i32::from(r))).sum();
        let raw = 0.7213 / (1.0 + 1.079 / m) * m * m / sum;
        let est = if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        };
        est.round() as u64
    }

    /// Folds a reading of a meter past the caps into the crowd's case; returns the alert it
    /// raises (the case opens on its first reading, then updates at most every
    /// `update_interval_s`). `feeder` is the registered feeder the crowd stands for, if any.
    pub fn fold(
        &mut self,
        r: &Reading,
        feeder: Option<&str>,
        region: Option<&str>,
        cap: u32,
        update_interval_s: i64,
    ) -> Option<Alert> {
        let h = hash(&r.meter_id);
        let slot = (h as usize) % REGISTERS;
        let rank = ((h >> 8) | (1 << 56)).trailing_zeros() as u8 + 1;
        self.sketch[slot] = self.sketch[slot].max(rank);
        self.readings += 1;
        self.kwh += r.kwh;
        let meters = self.meters().max(1);
        let (readings, kwh) = (self.readings, self.kwh);
        let where_ = match (feeder, region) {
            (Some(f), _) => format!("naming feeder {f}"),
            (None, Some(g)) => format!("in region {g}"),
            (None, None) => "naming no registered feeder".to_string(),
        };
        let ep = episode(
            &mut self.episodes,
            AlertKind::UnregisteredMeter,
            &self.key,
            r.start(),
        );
        let mean_kw = (ep.excess_kwh + r.kwh) * 3600.0 / ((r.ts - ep.start) as f64).max(1.0);
        let f = Finding::new(
            (0.6 + 0.4 * (meters as f64 / 100.0).min(1.0)).min(1.0),
            mean_kw,
            r.kwh,
            Evidence::Crowded(Crowded {
                unregistered_meters: meters,
                readings,
                kwh: round(kwh, 2),
                tracked_one_by_one: cap,
            }),
            format!(
                "About {meters} more unregistered meters {where_} than the {cap} tracked one by one; \
                 {kwh:.1} kWh in {readings} readings since {}",
                format_rfc3339(ep.start)
            ),
        );
        let t = Target {
            meter_id: None,
            reg: None,
            feeder_hint: feeder,
        };
        let mut a = ep.activate(f, r.ts, true, update_interval_s, &t)?;
        a.region = region.map(str::to_string);
        Some(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(id: &str) -> Reading {
        Reading::new(id, 1_780_000_000, 900, 0.5)
    }

    #[test]
    fn the_sketch_counts_distinct_meters_in_any_order() {
        for n in [1u64, 10, 200, 5_000, 100_000] {
            let ids: Vec<String> = (0..n).map(|k| format!("X{k:07}")).collect();
            let mut a = Crowd::new("feeder F1".into());
            let mut b = Crowd::new("feeder F1".into());
            for id in &ids {
                a.fold(&reading(id), Some("F1"), None, 5, 21_600);
                a.fold(&reading(id), Some("F1"), None, 5, 21_600);
            }
            for id in ids.iter().rev() {
                b.fold(&reading(id), Some("F1"), None, 5, 21_600);
            }
            assert_eq!(a.meters(), b.meters(), "order and repeats change nothing");
            let err = (a.meters() as f64 - n as f64).abs() / n as f64;
            assert!(err < 0.2, "{n} meters estimated as {}", a.meters());
        }
    }

    #[test]
    fn a_crowd_opens_one_case_and_updates_it_sparingly() {
        let mut c = Crowd::new("region North".into());
        let mut alerts = Vec::new();
        for k in 0..300 {
            let mut r = reading(&format!("Z{k}"));
            r.ts += k * 60;
            alerts.extend(c.fold(&r, None, Some("North"), 7, 6 * 3600));
        }
        assert_eq!(
            alerts.len(),
            1,
            "300 readings over 5 h: one open, no update due yet"
        );
        let a = &alerts[0];
        assert_eq!(a.kind, AlertKind::UnregisteredMeter);
        assert_eq!(
            (a.meter_id.as_deref(), a.region.as_deref()),
            (None, Some("North"))
        );
        assert_eq!(a.evidence["tracked_one_by_one"], 7);
        let mut r = reading("Z1");
        r.ts += 7 * 3600;
        let update = c
            .fold(&r, None, Some("North"), 7, 6 * 3600)
            .expect("update due");
        assert_eq!(update.alert_id, a.alert_id);
        let meters = update.evidence["unregistered_meters"].as_u64().unwrap();
        assert!(
            (240..=360).contains(&meters),
            "{meters} (±20 %: three standard errors)"
        );
    }
}
