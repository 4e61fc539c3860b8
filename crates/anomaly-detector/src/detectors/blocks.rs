//! `mining_signature` in blocks: a miner that runs only in a nightly window (the cheap tariff)
//! or another fixed block of hours, or one that switches on and off all day (duty-cycled), to
//! dodge a check for a flat 24/7 load. Judged at residences with no flat load standing, and
//! at public buildings (schools, mosques, state offices — all in the real crackdowns): rigs
//! that run while the building stands empty, nights and weekends, are a new block at hours it
//! usually draws little, however busy its days.

use super::mining::Flat;
use super::{a_site, at_least, fmt_kw, in_range, positive, ConfigError, HourCx, SiteDetector};
use crate::case::Raised;
use crate::episode::Finding;
use crate::evidence::{
    round, Block as Evidence, BlockPattern, ClassName, Evidence::Block as Piece,
};
use crate::series::{Series, HOUR};
use gridwatch_core::{AlertKind, CustomerClass};
use serde::{Deserialize, Serialize};

/// `[detector.blocks]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlocksConfig {
    /// The mining level of a block or a duty cycle's "on" hours (kW).
    pub min_kw: f64,
    /// A flat block at least this many hours long, at the same hours two days running…
    pub block_hours: u32,
    /// …whose hourly demand stays within this max/min ratio.
    pub flatness: f64,
    /// A duty cycle: at least this many hours a day at the mining level, two days running
    /// (real households show at most 9).
    pub duty_hours: u32,
}

impl Default for BlocksConfig {
    fn default() -> Self {
        BlocksConfig {
            min_kw: 4.5,
            block_hours: 7,
            flatness: 1.35,
            duty_hours: 14,
        }
    }
}

impl BlocksConfig {
    pub(crate) fn build(&self) -> Result<BlocksDetector, ConfigError> {
        positive("blocks.min_kw", self.min_kw)?;
        in_range("blocks.block_hours", self.block_hours, 1, 24)?;
        at_least("blocks.flatness", self.flatness, 1.0)?;
        in_range("blocks.duty_hours", self.duty_hours, 1, 24)?;
        Ok(BlocksDetector { cfg: self.clone() })
    }
}

pub(crate) struct BlocksDetector {
    cfg: BlocksConfig,
}

impl SiteDetector for BlocksDetector {
    const KIND: AlertKind = AlertKind::MiningSignature;
    type State = ();

    /// At a residence, a flat block of at least `min_kw` for at least `block_hours`, at the same
    /// hours on two consecutive days, far above the rest of the day (EV charging sessions are
    /// shorter) and new to the site: at least twice its usual demand at those hours, learned
    /// over a day or more before (a storage heater that charged every night of its history is
    /// heating, not rigs); or `duty_hours` at that level both days, twice what the site
    /// usually drew at those hours (a thermostat that has always cycled is not news).
    fn on_hour(&self, cx: &mut HourCx<'_>, _: &mut ()) -> Option<Raised> {
        if cx.reg.customer_class == Some(CustomerClass::Public) {
            return self.off_hours(cx);
        }
        // Every pattern below needs an hour of the last two days at half the mining level or
        // more (a block and a duty cycle at the level; a timer's cycle swinging by half of it):
        // most homes never come near it, and are passed over without reading their hours again.
        if !(cx.residential() && cx.flat == Flat::None)
            || cx.common_rise.is_some()
            || cx.rose_day_before
            || cx.series.peak_kw_48h() < 0.5 * self.cfg.min_kw
            // Rigs of `min_kw` running `block_hours` a day add this much to the household's
            // usual mean, which the fit on the weather keeps as its intercept.
            || cx.weather_explains(
                cx.series.baseline_kw + self.cfg.min_kw * f64::from(self.cfg.block_hours) / 24.0,
            )
        {
            return None;
        }
        let (cfg, reg, hour, series) = (&self.cfg, cx.reg, cx.hour, cx.series);
        let learned = series.baseline_hours >= 24 && !series.arriving(hour.end);
        let block = series
            .recurring_block(hour.end, cfg.min_kw, cfg.flatness)
            .filter(|b| {
                // A block that fills the day is a flat day, the mining detector's to judge.
                (cfg.block_hours..=20).contains(&b.hours)
                    && b.outside_kw * 2.0 <= b.block_kw
                    && learned
                    && b.block_kw >= 2.0 * series.usual_kw(b.start, b.hours)
            });
        let high = series.high_hours(cfg.min_kw);
        // A duty cycle switches off: some hours of each day are low, or — a cycle out of step
        // with the clock, every hour partly on — the demand jumps from hour to hour by a
        // quarter of its level (a thermostat's heating drifts, rigs switch).
        let switching = || {
            series
                .step_kw(hour.end, 24)
                .is_some_and(|step| step >= 0.25 * high.high_kw)
        };
        let cycles = |n: u32| n >= cfg.duty_hours && (n <= 20 || switching());
        let duty = cycles(high.today)
            && cycles(high.before)
            && high.low_kw * 2.0 <= high.high_kw
            && learned
            && high.high_kw >= 2.0 * usual_when_high(series, hour.end, cfg.min_kw);
        // Or a load on a timer two days running, however its cycles fall across the hours
        // (an hour half on reads as half the rigs): switching by a rig's power, and drawing
        // on average half the mining level more than the site's usual and at least twice it.
        // Judged only where neither of the above holds (it reads 48 hours).
        let timer = || {
            let usual_day = series.usual_kw(hour.end - 24 * HOUR, 24);
            series.timer_cycle(hour.end).filter(|c| {
                c.on_kw - c.off_kw >= 0.5 * cfg.min_kw
                    && c.mean_kw - usual_day >= 0.5 * cfg.min_kw
                    && c.mean_kw >= 2.0 * usual_day
            })
        };
        let (start, hours, block_kw, outside_kw, pattern) = match block {
            Some(b) => (
                b.start,
                b.hours,
                b.block_kw,
                b.outside_kw,
                BlockPattern::RecurringBlock,
            ),
            None if duty => (
                hour.end - 24 * HOUR,
                high.today,
                high.high_kw,
                high.low_kw,
                BlockPattern::DutyCycle,
            ),
            None => match learned.then(timer).flatten() {
                Some(c) => (
                    hour.end - 24 * HOUR,
                    c.on_hours,
                    c.on_kw,
                    c.off_kw,
                    BlockPattern::DutyCycle,
                ),
                None => return None,
            },
        };
        if cx.licensed_within_permit(block_kw) {
            return None;
        }
        let excess = (block_kw - outside_kw).max(0.0);
        let local_start = series.local_hour(start);
        let summary = match pattern {
            BlockPattern::DutyCycle => format!(
                "Flat {} kW switching on and off, {} h a day two days running, {} kW between, at {}",
                fmt_kw(block_kw),
                hours,
                fmt_kw(outside_kw),
                a_site(reg)
            ),
            BlockPattern::RecurringBlock | BlockPattern::OffHours => format!(
                "Flat {} kW for {} h from {:02}:00 (local standard time) two days running, {} kW the rest of the day, at {}",
                fmt_kw(block_kw),
                hours,
                local_start,
                fmt_kw(outside_kw),
                a_site(reg)
            ),
        };
        let f = Finding {
            score: (0.6 + 0.2 * (excess / 30.0).min(1.0) + 0.2 * f64::from(hours.min(12)) / 12.0)
                .min(1.0),
            est_excess_kw: excess,
            // Energy counts for the hours inside the block only.
            excess_kwh: if hour.end - HOUR >= start && hour.end <= start + i64::from(hours) * HOUR {
                excess
            } else {
                0.0
            },
            evidence: vec![Piece(Evidence {
                block_kw: round(block_kw, 2),
                outside_kw: round(outside_kw, 2),
                block_hours: f64::from(hours),
                block_start_local_hour: local_start as f64,
                permitted_kw: reg.permitted_kw,
                customer_class: ClassName(reg.customer_class),
                pattern,
            })],
            summary,
        };
        Some(Raised::new(Self::KIND, start, f, true))
    }
}

impl BlocksDetector {
    /// At a public building: a block of at least `block_hours` hours, at the same hours two days
    /// running, drawing `min_kw` more than the building usually draws then and at least twice
    /// it, learned over two days or more. Not in a season (every building heats in a snap).
    fn off_hours(&self, cx: &HourCx<'_>) -> Option<Raised> {
        let (cfg, reg, hour, series) = (&self.cfg, cx.reg, cx.hour, cx.series);
        if series.baseline_hours < 48 || cx.common_rise.is_some() {
            return None;
        }
        let (start, hours, added) = series
            .new_block(hour.end, cfg.min_kw)
            .filter(|b| b.1 >= cfg.block_hours)?;
        let usual = series.usual_kw(start, hours);
        if cx.licensed_within_permit(usual + added) {
            return None;
        }
        let local_start = series.local_hour(start);
        let f = Finding::new(
            (0.6 + 0.2 * (added / 30.0).min(1.0) + 0.2 * f64::from(hours.min(12)) / 12.0).min(1.0),
            added,
            if hour.end - HOUR >= start && hour.end <= start + i64::from(hours) * HOUR {
                added
            } else {
                0.0
            },
            Piece(Evidence {
                block_kw: round(usual + added, 2),
                outside_kw: round(usual, 2),
                block_hours: f64::from(hours),
                block_start_local_hour: local_start as f64,
                permitted_kw: reg.permitted_kw,
                customer_class: ClassName(reg.customer_class),
                pattern: BlockPattern::OffHours,
            }),
            format!(
                "{} kW more than usual for {} h from {:02}:00 (local standard time) two days running, at hours {} usually draws {} kW",
                fmt_kw(added),
                hours,
                local_start,
                a_site(reg),
                fmt_kw(usual)
            ),
        );
        Some(Raised::new(Self::KIND, start, f, true))
    }
}

/// The site's usual demand, by its learned profile, at the hours of the last 24 that reached
/// `level` (kW).
fn usual_when_high(series: &Series, end: i64, level: f64) -> f64 {
    let (mut n, mut sum) = (0u32, 0.0);
    for k in 0..24 {
        let hour_end = end - k * HOUR;
        if series.hour_kw(hour_end).is_some_and(|kw| kw >= level) {
            n += 1;
            sum += series.usual_at(hour_end - HOUR);
        }
    }
    if n == 0 {
        0.0
    } else {
        sum / f64::from(n)
    }
}
