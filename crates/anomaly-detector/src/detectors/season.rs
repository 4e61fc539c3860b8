//! The season, per region and customer class: hour by hour, how many customers' last 24 hours
//! drew well above their own usual day. Many at once is the weather — a cold snap running every heated home's
//! heating, a heat wave the air conditioning —, not rigs: while it holds, residences' new load
//! patterns are not judged as mining and peer standings hold still
//! ([`super::peer::PeerDetector::common_rise`]). Per-region state, kept by the engine.

use gridwatch_core::CustomerClass;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One hour's count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Tally {
    hour: i64,
    seen: u32,
    risen: u32,
    /// Sum of the risen customers' rise, `ln(last 24 h ÷ usual day)`.
    rise_sum: f32,
    /// Sum and sum of squares of the risen customers' level, `ln(last 24 h mean kW)`.
    level_sum: f32,
    level_sq: f32,
}

/// A region in a season: the share of its customers that stand risen, how far they rose on
/// average (`ln` of last 24 h ÷ usual day), and how much the most of them draw now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Risen {
    pub share: f64,
    pub typical_rise: f64,
    /// The risen customers' 24-hour mean two standard deviations above their typical, in the
    /// log: what a home of the region draws in this season (kW). A home whose own usual says
    /// little — empty until its family came back or moved in — is measured against this.
    pub high_kw: f64,
}

/// A customer's last 24 hours, risen above its usual day.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rise {
    /// `ln(last 24 h ÷ usual day)`.
    pub by: f64,
    /// `ln(last 24 h mean kW)`.
    pub level: f64,
}

/// Hours kept: two days, so a meter whose day comes in a batch the next night still reads the
/// season of its hours (and one whose clock runs ahead doesn't wipe the hour others read).
const HOURS: usize = 48;

/// A region's last hours, per customer class; its residences' last days and its weather.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Season {
    groups: Vec<(CustomerClass, Vec<Tally>)>,
    /// Outdoor temperature (°C) by hour (`ts / 3600` of the hour's end), when weather is given:
    /// the whole file may come before the readings, so a year of it is kept (8,784 hours, about
    /// 100 KiB per region).
    temps: BTreeMap<i64, f32>,
    /// Public holidays, as local days since 1970-01-01.
    holidays: BTreeSet<i64>,
}

/// Days a region's (and a site's) daily demand is kept, to see whether the site follows the weather.
pub(crate) const DAYS: usize = 8;
const TEMP_HOURS: usize = 366 * 24;

/// Heating degrees count below this outdoor temperature, cooling degrees above the second (°C).
const HEAT_BELOW_C: f64 = 16.0;
const COOL_ABOVE_C: f64 = 24.0;

/// A site's mean demand over its last closed UTC days, in units of 10 W (0: no data, or none drawn).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct DayLoads {
    last: i64,
    kw: [u16; DAYS],
}

impl DayLoads {
    /// Records a closed UTC day's mean demand.
    pub fn note(&mut self, day: i64, kw: f64) {
        if day < self.last.saturating_sub(DAYS as i64 - 1) {
            return;
        }
        for d in (self.last + 1).max(day - DAYS as i64 + 1)..=day {
            self.kw[d.rem_euclid(DAYS as i64) as usize] = 0;
        }
        self.last = self.last.max(day);
        self.kw[day.rem_euclid(DAYS as i64) as usize] =
            (kw * 100.0).round().clamp(0.0, 65_535.0) as u16;
    }

    fn get(&self, day: i64) -> Option<f64> {
        (day <= self.last && day > self.last - DAYS as i64)
            .then(|| f64::from(self.kw[day.rem_euclid(DAYS as i64) as usize]) / 100.0)
            .filter(|&kw| kw > 0.0)
    }
}

impl Season {
    /// Counts a customer's closed `hour`, risen by `ln(last 24 h ÷ usual day)` or not. An hour older than the one its slot
    /// holds (data that came late, a day's batch) is not counted: it must not wipe the newer
    /// hour; the customers that deliver as they go are the sample.
    pub fn record(&mut self, class: CustomerClass, hour: i64, risen: Option<Rise>) {
        let days = match self.groups.iter().position(|(c, _)| *c == class) {
            Some(p) => &mut self.groups[p].1,
            None => {
                self.groups.push((class, vec![Tally::default(); HOURS]));
                &mut self.groups.last_mut().expect("just pushed").1
            }
        };
        let t = &mut days[hour.rem_euclid(HOURS as i64) as usize];
        if t.hour > hour {
            return;
        }
        if t.hour != hour {
            *t = Tally {
                hour,
                ..Tally::default()
            };
        }
        t.seen += 1;
        if let Some(rise) = risen {
            t.risen += 1;
            t.rise_sum += rise.by as f32;
            t.level_sum += rise.level as f32;
            t.level_sq += (rise.level * rise.level) as f32;
        }
    }

    /// A public holiday on local day `day` (days since 1970-01-01).
    pub fn holiday(&mut self, day: i64) {
        self.holidays.insert(day);
    }

    pub fn is_holiday(&self, day: i64) -> bool {
        self.holidays.contains(&day)
    }

    /// The outdoor temperature over the hour ending at `ts`; a later value for the same hour
    /// replaces the first (a corrected observation, a compacted topic read again).
    pub fn weather(&mut self, ts: i64, temp_c: f64) {
        self.temps.insert(ts.div_euclid(3600), temp_c as f32);
        while self.temps.len() > TEMP_HOURS {
            self.temps.pop_first();
        }
    }

    /// The day's mean heating and cooling degrees, if its weather is (nearly) complete.
    fn degrees(&self, day: i64) -> Option<f64> {
        let (mut n, mut sum) = (0, 0.0);
        for (_, &t) in self.temps.range(day * 24 + 1..=day * 24 + 24) {
            let t = f64::from(t);
            n += 1;
            sum += (HEAT_BELOW_C - t).max(0.0) + (t - COOL_ABOVE_C).max(0.0);
        }
        (n >= 20).then(|| sum / f64::from(n))
    }

    /// Whether a residence's demand over its last days follows the weather — heating or
    /// cooling degrees — and would fall below `floor_kw` without it: heating, not rigs. A fit
    /// of the site's daily mean on the day's mean degrees over up to [`DAYS`] days before
    /// `today` (days it drew almost nothing are an empty home's, left out): at least four
    /// days, a driver that moved by 3 degrees, a correlation of 0.8 or more, a positive slope,
    /// and an intercept (the demand without heating or cooling) under `floor_kw`. A rig adds
    /// a constant the intercept keeps; a rig alone doesn't follow the weather at all. False
    /// without weather.
    pub fn explains(&self, site: &DayLoads, today: i64, floor_kw: f64) -> bool {
        let pts: Vec<(f64, f64)> = (today - DAYS as i64..today)
            .filter_map(|d| Some((self.degrees(d)?, site.get(d).filter(|&kw| kw >= 0.3)?)))
            .collect();
        if pts.len() < 4 {
            return false;
        }
        let n = pts.len() as f64;
        let (lo, hi) = pts
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &(x, _)| {
                (lo.min(x), hi.max(x))
            });
        if hi - lo < 3.0 {
            return false;
        }
        let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
        let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
        let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
        for &(x, y) in &pts {
            sxx += (x - mx) * (x - mx);
            sxy += (x - mx) * (y - my);
            syy += (y - my) * (y - my);
        }
        if sxy <= 0.0 || syy <= 0.0 {
            return false;
        }
        let slope = sxy / sxx;
        sxy / (sxx * syy).sqrt() >= 0.8 && my - slope * mx < floor_kw
    }

    /// The share of the class's customers whose last 24 hours drew well above their usual at
    /// `hour`, once `min_seen` have closed it — else at the hour before; 0 while fewer than
    /// `min_risen` rose (a few homes at once are coincidence, or rigs).
    pub fn risen_share(
        &self,
        class: CustomerClass,
        hour: i64,
        (min_seen, min_risen): (u32, u32),
    ) -> Option<Risen> {
        let (_, days) = self.groups.iter().find(|(c, _)| *c == class)?;
        let pick = |h: i64| days.iter().find(|t| t.hour == h && t.seen >= min_seen);
        let t = pick(hour).or_else(|| pick(hour - 1))?;
        if t.risen < min_risen {
            return Some(Risen {
                share: 0.0,
                typical_rise: 0.0,
                high_kw: 0.0,
            });
        }
        let n = f64::from(t.risen);
        let level = f64::from(t.level_sum) / n;
        let spread = (f64::from(t.level_sq) / n - level * level).max(0.0).sqrt();
        Some(Risen {
            share: n / f64::from(t.seen),
            typical_rise: f64::from(t.rise_sum) / n,
            high_kw: (level + 2.0 * spread).exp(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_hour_does_not_wipe_the_newer_one() {
        let mut s = Season::default();
        let c = CustomerClass::Residential;
        let rise = |by: f64, kw: f64| Rise { by, level: kw.ln() };
        for k in 0..20 {
            s.record(c, 10, (k < 6).then(|| rise(0.5, [2.0, 8.0][k % 2])));
        }
        s.record(c, 8, Some(rise(2.0, 1.0)));
        let share = |h, min| s.risen_share(c, h, min).map(|r| r.share);
        assert_eq!(share(10, (8, 4)), Some(0.3));
        assert_eq!(share(11, (8, 4)), Some(0.3), "the hour before");
        assert_eq!(share(10, (8, 7)), Some(0.0), "too few rose");
        let risen = s.risen_share(c, 10, (8, 4)).expect("seen");
        assert_eq!(risen.typical_rise, 0.5);
        // ln 2 and ln 8 in equal numbers: typical 4 kW, spread ln 2, so 4 × 2² = 16 kW.
        assert!((risen.high_kw - 16.0).abs() < 1e-3, "{}", risen.high_kw);
    }
}
