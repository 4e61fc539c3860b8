//! A bypass seen from the feeder: while a feeder draws energy its meters don't explain, its
//! customers whose own demand dropped by a matching amount, and whose remaining readings move
//! with the unexplained load hour by hour, are named on the feeder's alert
//! (`evidence.suspect_sites`); a business among them with a drop held for
//! `drop_min_duration_s` is a `tamper` case of its own (`sudden_drop`). A weekend or a holiday
//! is a drop too, but it doesn't follow the feeder's residual; a household's vacation looks
//! the same as a bypass, so households are only named.

use super::{at_least, fmt_kw, in_range, positive, ConfigError};
use crate::case::Raised;
use crate::episode::Finding;
use crate::evidence::{round, Bypass, BypassPattern, ClassName, Evidence, SuspectSite};
use crate::series::{Series, Window, HOUR};
use gridwatch_core::{AlertKind, CustomerClass, MeterRecord};
use serde::{Deserialize, Serialize};

/// `[detector.bypass]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BypassConfig {
    /// A customer's 24-hour mean below `drop_share` of what it drew, by at least `drop_min_kw`,
    /// is a drop.
    pub drop_share: f64,
    pub drop_min_kw: f64,
    /// How long a business's drop must hold (after its 24-hour mean fell) before it is a
    /// `tamper` case: longer than a long weekend.
    pub drop_min_duration_s: i64,
}

impl Default for BypassConfig {
    fn default() -> Self {
        BypassConfig {
            drop_share: 0.6,
            drop_min_kw: 0.5,
            drop_min_duration_s: 96 * 3600,
        }
    }
}

impl BypassConfig {
    pub(crate) fn build(&self) -> Result<BypassDetector, ConfigError> {
        positive("bypass.drop_share", self.drop_share)?;
        in_range("bypass.drop_share", self.drop_share, 0.0, 1.0)?;
        positive("bypass.drop_min_kw", self.drop_min_kw)?;
        at_least("bypass.drop_min_duration_s", self.drop_min_duration_s, 0)?;
        Ok(BypassDetector { cfg: self.clone() })
    }
}

pub(crate) struct BypassDetector {
    cfg: BypassConfig,
}

/// A sustained drop: hours the 24-hour mean has stayed below `drop_share` of the demand the
/// site drew before (`from_kw`), and by how much (kW). Per-meter state of this detector.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct DropState {
    pub hours: u32,
    pub from_kw: f32,
    pub kw: f32,
    /// When the drop was first seen: the end of that hour, in hours since the epoch (4 bytes
    /// where a timestamp takes 8, a million meters over).
    pub seen_h: i32,
}

/// One of a feeder's customers, as the bypass search sees it.
pub(crate) struct Member<'a> {
    pub reg: Option<&'a MeterRecord>,
    pub series: &'a Series,
    pub drop: &'a DropState,
}

/// A feeder's unexplained load while it draws.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Unmetered<'a> {
    pub feeder_id: &'a str,
    pub kw: f64,
}

/// A customer whose drop matches the feeder's unmetered load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Suspect {
    /// Engine slot of its meter.
    pub slot: u32,
    /// Correlation of its hourly demand with the feeder's unexplained kW.
    pub correlation: f64,
}

impl BypassDetector {
    /// Follows a drop of the 24-hour mean (as each of a customer's hours closes), measured from
    /// the demand before the drop began (the baseline itself slowly learns the new level). A
    /// gap neither confirms nor clears it. `day` is the 24-hour window ending at `end`.
    pub fn track(&self, day: Option<Window>, series: &Series, end: i64, st: &mut DropState) {
        let Some(w) = day else {
            return;
        };
        let from = if st.hours > 0 {
            f64::from(st.from_kw)
        } else {
            series.baseline_kw
        };
        if series.baseline_hours >= 48
            && w.mean_kw <= self.cfg.drop_share * from
            && from - w.mean_kw >= self.cfg.drop_min_kw
        {
            if st.hours == 0 {
                st.seen_h = (end / HOUR) as i32;
            }
            st.from_kw = from as f32;
            st.kw = (from - w.mean_kw) as f32;
            st.hours += 1;
        } else {
            st.hours = 0;
            st.kw = 0.0;
        }
    }

    /// The feeder's customers whose demand dropped (and stays down) by roughly the unmetered
    /// load, and whose readings move with it: best correlation first, ties by meter id (slots
    /// follow the order the register arrived in, which differs between a file and a topic).
    /// `residuals` are the feeder's unexplained kW of the last hours, the newest ending at `end`.
    pub fn coincident_drops<'a>(
        members: &[u32],
        member: impl Fn(u32) -> Member<'a>,
        residuals: &[f64],
        end: i64,
        unmetered_kw: f64,
    ) -> Vec<Suspect> {
        let window = residuals.len();
        let mut found: Vec<Suspect> = members
            .iter()
            .filter_map(|&slot| {
                let m = member(slot);
                let ratio = f64::from(m.drop.kw) / unmetered_kw.max(1e-6);
                if m.drop.hours == 0 || !(0.4..=2.5).contains(&ratio) {
                    return None;
                }
                let pairs: Vec<(f64, f64)> = residuals
                    .iter()
                    .enumerate()
                    .filter_map(|(k, &u)| {
                        let hour_end = end - (window - 1 - k) as i64 * HOUR;
                        m.series.hour_kw(hour_end).map(|kw| (kw, u))
                    })
                    .collect();
                let r = correlation(&pairs)?;
                (pairs.len() * 3 >= window * 2 && r >= 0.6).then_some(Suspect {
                    slot,
                    correlation: r,
                })
            })
            .collect();
        let id = |s: &Suspect| member(s.slot).reg.map(|r| r.meter_id.as_str());
        found.sort_by(|a, b| {
            b.correlation
                .total_cmp(&a.correlation)
                .then_with(|| id(a).cmp(&id(b)))
        });
        found
    }

    /// The feeder alert's `suspect_sites` and the words its summary adds.
    pub fn named<'a>(
        suspects: &[Suspect],
        member: impl Fn(u32) -> Member<'a>,
    ) -> (Evidence, String) {
        let listed: Vec<SuspectSite> = suspects
            .iter()
            .filter_map(|s| {
                let m = member(s.slot);
                m.reg.map(|reg| SuspectSite {
                    site_id: reg.site_id.clone(),
                    meter_id: reg.meter_id.clone(),
                    drop_kw: round(f64::from(m.drop.kw), 2),
                    dropped_from_kw: round(f64::from(m.drop.from_kw), 2),
                    drop_hours: m.drop.hours,
                    correlation: round(s.correlation, 2),
                })
            })
            .collect();
        let sites: Vec<&str> = listed.iter().take(3).map(|s| s.site_id.as_str()).collect();
        let words = format!("Demand dropped at the same time at {}", sites.join(", "));
        (Evidence::SuspectSites(listed), words)
    }

    /// A business whose demand dropped a day ago and stayed down by about what its feeder now
    /// draws unmetered, in step with it: energy going around its meter.
    pub fn case(
        &self,
        reg: &MeterRecord,
        drop: &DropState,
        feeder: Unmetered<'_>,
        correlation: f64,
        at: i64,
    ) -> Option<Raised> {
        let (feeder_id, unmetered_kw) = (feeder.feeder_id, feeder.kw);
        let kw = f64::from(drop.kw);
        let ratio = kw / unmetered_kw.max(1e-6);
        if reg.customer_class == Some(CustomerClass::Residential)
            || i64::from(drop.hours) * HOUR < self.cfg.drop_min_duration_s
            || correlation < 0.8
            || !(0.5..=2.0).contains(&ratio)
        {
            return None;
        }
        let from = f64::from(drop.from_kw);
        let f = Finding::new(
            (0.5 + 0.4 * correlation).min(1.0),
            kw,
            kw,
            Evidence::Bypass(Bypass {
                dropped_from_kw: round(from, 2),
                drop_kw: round(kw, 2),
                drop_hours: f64::from(drop.hours),
                feeder_unmetered_kw: round(unmetered_kw, 2),
                correlation: round(correlation, 2),
                drop_seen_at: i64::from(drop.seen_h) * HOUR,
                pattern: BypassPattern::SuddenDrop,
                customer_class: ClassName(reg.customer_class),
            }),
            format!(
                "Demand fell from {} kW to {} kW and stayed down for {} h while feeder {} began drawing {} kW its meters don't explain, hour by hour in step with this meter (r = {:.2}): a bypass around it",
                fmt_kw(from),
                fmt_kw(from - kw),
                drop.hours + 24,
                feeder_id,
                fmt_kw(unmetered_kw),
                correlation
            ),
        );
        let start = at - i64::from(drop.hours + 24) * HOUR;
        Some(Raised::new(AlertKind::Tamper, start, f, true))
    }
}

/// Pearson correlation; `None` when either side is (nearly) constant.
fn correlation(pairs: &[(f64, f64)]) -> Option<f64> {
    let n = pairs.len() as f64;
    let (mx, my) = pairs
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in pairs {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx).powi(2);
        syy += (y - my).powi(2);
    }
    let floor = 1e-6 * n;
    (sxx > floor * mx.abs().max(1.0) && syy > floor * my.abs().max(1.0))
        .then(|| sxy / (sxx * syy).sqrt())
}
