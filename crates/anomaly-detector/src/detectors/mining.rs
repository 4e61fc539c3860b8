//! `mining_signature`, around the clock: a mining rig is a large load that never switches off,
//! so the site's demand floor (its lowest hour) rises to the rigs' power and stays there.
//! Judged against the site's class, permit, licence and its own history.
//!
//! This detector also reads each day for the others ([`Flat`]): night blocks are looked for
//! only where no flat load stands, steps only where a flat load isn't mining by these rules.

use super::season::Risen;
use super::{a_site, fmt_kw, in_range, positive, ConfigError, HourCx, SiteDetector};
use crate::case::Raised;
use crate::episode::Finding;
use crate::evidence::{round, ClassName, Evidence::Mining as Piece, Mining as Evidence};
use crate::series::{Window, HOUR};
use gridwatch_core::{AlertKind, CustomerClass, MeterRecord};
use serde::{Deserialize, Serialize};

/// Typical always-on and mean demand of a household, for the excess at residences without
/// history of their own.
const HOUSEHOLD_FLOOR_KW: f64 = 0.3;
const HOUSEHOLD_KW: f64 = 0.6;

/// `[detector.mining]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MiningConfig {
    /// Smallest flat load worth a case at a residence (kW)…
    pub min_kw_residential: f64,
    /// …and elsewhere (kW).
    pub min_kw_other: f64,
    /// Share of the 24-hour mean that the 24-hour floor must reach to count as around the clock.
    pub floor_share: f64,
    /// A residence's floor this high around the clock is mining even where it is not new (from
    /// the first day of data): beyond what homes heat with, storage heaters aside, which
    /// charge for hours, not all day (kW).
    pub blatant_kw: f64,
}

impl Default for MiningConfig {
    fn default() -> Self {
        MiningConfig {
            min_kw_residential: 4.5,
            min_kw_other: 5.0,
            floor_share: 0.75,
            blatant_kw: 15.0,
        }
    }
}

impl MiningConfig {
    pub(crate) fn build(&self) -> Result<MiningDetector, ConfigError> {
        positive("mining.min_kw_residential", self.min_kw_residential)?;
        positive("mining.min_kw_other", self.min_kw_other)?;
        in_range("mining.floor_share", self.floor_share, 0.0, 1.0)?;
        positive("mining.blatant_kw", self.blatant_kw)?;
        Ok(MiningDetector { cfg: self.clone() })
    }
}

pub(crate) struct MiningDetector {
    cfg: MiningConfig,
}

/// What the last 24 hours say about a flat load at the site.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Flat {
    /// No flat load at a mining level (and none blatant yet).
    None,
    /// A licensed mining site's flat load inside its permit: authorized.
    Licensed,
    /// A flat day at a business that isn't mining by these rules (a factory's weekend): it may
    /// still carry a smaller step.
    Ordinary(Window),
    /// A flat load that is mining: around the clock.
    Mining { w: Window },
}

impl MiningDetector {
    /// Reads the day for a flat load. Pure: the engine calls it once an hour, before the
    /// detectors, and hands the answer to all of them.
    pub fn classify(&self, cx: &HourCx<'_>) -> Flat {
        let (cfg, reg, series) = (&self.cfg, cx.reg, cx.series);
        let residential = cx.residential();
        let min_kw = self.min_kw(reg);
        let learned = series.floor_hours >= 24 && !series.arriving(cx.hour.end);
        // Around the clock: the 24-hour floor carries most of the load. At a residence, it must
        // be new — a step from the floor the site has shown, and above any floor it has held
        // for a day in the last weeks (a heat pump that ran all winter, a home back from a
        // vacation) — or beyond any home's heating, hold for 25 hours, so that the day it filled is
        // judged once the region's homes have closed it too and a cold snap that lifted them
        // all is known (`common_rise`: then only a rise far beyond theirs is not the season's),
        // and not move from hour to hour as heating does.
        let floor_before = series.baseline_floor_kw;
        // Rigs added a few at a time never make one such step: a climb of the floor over the
        // last two weeks counts as one (`climbed`).
        let flat_day = |w: &Window| w.min_kw >= min_kw && w.min_kw >= cfg.floor_share * w.mean_kw;
        let always_on = cx.day.filter(flat_day).filter(|w| {
            let new = learned
                && (w.min_kw - floor_before >= min_kw.max(floor_before)
                    && w.min_kw >= 1.5 * f64::from(series.high_floor_kw) + 0.5
                    || cx.common_rise.is_none() && climbed(series, w.min_kw, min_kw));
            !residential
                || (new || w.min_kw >= cfg.blatant_kw)
                    && series
                        .day_before_kw(cx.hour.end - 24 * HOUR)
                        .is_some_and(|kw| kw >= min_kw && kw >= cfg.floor_share * w.mean_kw)
                    && cx
                        .common_rise
                        .is_none_or(|season| beyond_season(series, w, season))
                    && !restless(series, cx.hour.end, w)
                    && !cx.weather_explains(min_kw)
        });
        // It takes a full day at every class: a storage heater charges at 15–25 kW all night
        // and a thermostat holds a heater on for hours (real Swiss homes in winter), so hours
        // of a large load inside the permit say nothing; above the permit, the capacity
        // detector names a farm within hours.
        let Some(w) = always_on else {
            return Flat::None;
        };
        let within_permit = reg
            .permitted_kw
            .is_none_or(|p| w.mean_kw <= p * cx.tolerance);
        if reg.licensed_mining && within_permit {
            return Flat::Licensed;
        }
        let unlicensed_class = residential || reg.customer_class == Some(CustomerClass::Mining);
        let stepped = learned && w.min_kw - floor_before >= min_kw.max(floor_before);
        if unlicensed_class || !within_permit || stepped {
            Flat::Mining { w }
        } else {
            Flat::Ordinary(w)
        }
    }

    fn min_kw(&self, reg: &MeterRecord) -> f64 {
        if reg.customer_class == Some(CustomerClass::Residential) {
            self.cfg.min_kw_residential
        } else {
            self.cfg.min_kw_other
        }
    }
}

impl SiteDetector for MiningDetector {
    const KIND: AlertKind = AlertKind::MiningSignature;
    type State = ();

    fn on_hour(&self, cx: &mut HourCx<'_>, _: &mut ()) -> Option<Raised> {
        let Flat::Mining { w } = cx.flat else {
            return None;
        };
        let (reg, hour, series) = (cx.reg, cx.hour, cx.series);
        let floor_before = series.baseline_floor_kw;
        // The added load: the rise of the floor, or of the typical hour where the window still
        // holds the hour the rigs came on.
        let (floor_typical, mean_typical) = if series.floor_hours >= 24 {
            (floor_before, series.baseline_kw)
        } else if cx.residential() {
            (HOUSEHOLD_FLOOR_KW, HOUSEHOLD_KW)
        } else {
            let p = reg.permitted_kw.map_or(0.0, |p| p.min(w.min_kw));
            (p, p)
        };
        let median = series.median_kw(hour.end, w.hours);
        let excess = (w.min_kw - floor_typical)
            .max(median - mean_typical)
            .max(0.0);
        let load_factor = w.mean_kw / w.max_kw;
        let score = (0.6
            + 0.15 * ((load_factor - 0.5) / 0.5).clamp(0.0, 1.0)
            + 0.15 * (excess / 50.0).min(1.0)
            + 0.1)
            .min(1.0);
        let night_day_ratio = series
            .night_day_kw()
            .map(|(night, day)| round(night / day, 2));
        let permit = reg.permitted_kw.map_or("no permit limit".to_string(), |p| {
            format!("permitted {} kW", fmt_kw(p))
        });
        let f = Finding::new(
            score,
            excess,
            excess,
            Piece(Evidence {
                load_factor: round(load_factor, 3),
                mean_kw: round(w.mean_kw, 2),
                floor_kw: round(w.min_kw, 2),
                hours: f64::from(w.hours),
                baseline_floor_kw: round(floor_before, 2),
                night_day_ratio,
                permitted_kw: reg.permitted_kw,
                customer_class: ClassName(reg.customer_class),
            }),
            format!(
                "Constant {} kW load around the clock for {} h (mean {} kW, load factor {:.2}) at {}, {}",
                fmt_kw(w.min_kw),
                w.hours,
                fmt_kw(w.mean_kw),
                load_factor,
                a_site(reg),
                permit
            ),
        );
        let start = hour.end - i64::from(w.hours) * HOUR;
        Some(Raised::new(Self::KIND, start, f, true))
    }

    fn on_register(
        &self,
        old: Option<&MeterRecord>,
        new: Option<&MeterRecord>,
        _: &mut (),
    ) -> Option<&'static str> {
        licensed_now(old, new).then_some(LICENSED)
    }
}

/// Rigs added a few at a time: the floor climbed, step upon step with no fall between
/// ([`Series::floor_climb_kw`]), by at least `min_kw` and to four times the floor it climbed
/// from, while the region's homes show no common rise. Rigs add their power to the few hundred
/// watts a household keeps on; a home that heats electrically, whose winter floor is already a
/// few kW, climbs with a deepening cold by a factor of two or three (the simulated winter's
/// cold snap), and is left to the season and the weather.
///
/// [`Series::floor_climb_kw`]: crate::series::Series::floor_climb_kw
fn climbed(series: &crate::series::Series, now_kw: f64, min_kw: f64) -> bool {
    let climb = series.floor_climb_kw(now_kw);
    climb >= min_kw && climb >= 3.0 * (now_kw - climb)
}

/// In a season, a site whose demand rose, against its usual, by a factor at least twice the
/// region's risen homes' (geometric mean) — a home miner on a home that heats little, not the
/// cold — and draws more than the region's risen homes do: a home whose usual says little
/// (empty until its family came back from a vacation or moved in) heats like its neighbours.
fn beyond_season(series: &crate::series::Series, w: &Window, season: Risen) -> bool {
    let rise = super::peer::ln_kw(w.mean_kw) - super::peer::ln_kw(series.baseline_kw);
    rise >= season.typical_rise + std::f64::consts::LN_2 && w.mean_kw > season.high_kw
}

/// A residence's day that moves from hour to hour far more than the site usually does: the
/// added load modulates (a thermostat, a heat pump following the cold), where rigs add the same
/// power every hour and leave the household's own restlessness as it was.
pub(crate) fn restless(series: &crate::series::Series, end: i64, w: &Window) -> bool {
    series
        .step_kw(end, 24)
        .is_some_and(|step| step > 2.0 * f64::from(series.usual_step_kw) + 0.05 * w.min_kw)
}

pub(crate) const LICENSED: &str = "the site was licensed for mining";

/// The row now carries a mining licence it didn't before.
pub(crate) fn licensed_now(old: Option<&MeterRecord>, new: Option<&MeterRecord>) -> bool {
    !old.is_some_and(|r| r.licensed_mining) && new.is_some_and(|r| r.licensed_mining)
}
