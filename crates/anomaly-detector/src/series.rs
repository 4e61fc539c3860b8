//! A meter's demand series in event time, which every detector reads: a small ring of open
//! hours (energy, coverage, duplicate masks), the last 48 closed hours by hour of day, and slow
//! baselines of demand and of its floor. The detectors' own state lives with each detector.

use gridwatch_core::events::ReadingUse as Use;
use serde::{Deserialize, Serialize};

/// Open (not yet closed) hours held per meter; bounds the allowed lateness.
pub(crate) const OPEN_RING: usize = 8;
pub(crate) const HOUR: i64 = 3600;

/// The hour a reading belongs to: readings are stamped with the END of their interval, so
/// a reading at 01:00:00 belongs to the hour 00:00–01:00.
pub(crate) fn hour_of(ts: i64) -> i64 {
    (ts - 1).div_euclid(HOUR)
}

/// An hour (of a meter, or of a feeder's balance) that closed: with data to judge, or without.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Closed<T> {
    Data(T),
    /// No readings (a meter's comms gap), or too few to judge (a feeder's incomplete hour):
    /// it neither confirms nor clears a case.
    Empty,
}

/// A closed hour, ready for the hourly detectors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClosedHour {
    /// End of the hour, epoch seconds.
    pub end: i64,
    /// Mean demand over the covered part of the hour (kW).
    pub kw: f64,
    /// Mean exported power over the covered part of the hour (kW).
    pub export_kw: f64,
    /// Share of the covered hour whose voltage and current contradict its energy, and the
    /// power those intervals carried but didn't register (kW over the hour).
    pub vi_bad_share: f64,
    pub vi_missing_kw: f64,
}

/// The longest flat block of hours seen two days running ([`Series::recurring_block`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RecurringBlock {
    /// Start of its first hour, epoch seconds.
    pub start: i64,
    pub hours: u32,
    /// Mean demand in the block and outside it (kW).
    pub block_kw: f64,
    pub outside_kw: f64,
}

/// Hours at a high level today and the day before ([`Series::high_hours`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct HighHours {
    pub today: u32,
    pub before: u32,
    /// Mean demand of today's high hours and of its other hours (kW).
    pub high_kw: f64,
    pub low_kw: f64,
}

/// Demand statistics over the last few closed hours.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Window {
    pub hours: u32,
    pub min_kw: f64,
    pub mean_kw: f64,
    pub max_kw: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Series {
    /// The first hour not yet closed; `i64::MIN` before any reading.
    next_hour: i64,
    max_ts: i64,
    kwh: [f32; OPEN_RING],
    export_kwh: [f32; OPEN_RING],
    /// Seconds of each open hour whose voltage/current contradict the energy, and the energy
    /// they carried beyond what was registered.
    vi_bad_s: [u16; OPEN_RING],
    vi_missing_kwh: [f32; OPEN_RING],
    covered: [u16; OPEN_RING],
    seen: [u64; OPEN_RING],
    /// Demand of the last 24 closed hours, by UTC hour of day, and which of them had data.
    day_kw: [f32; 24],
    day_mask: u32,
    /// The same hours one day earlier (the 24 closed hours before those).
    prev_kw: [f32; 24],
    prev_mask: u32,
    /// Slow moving averages of hourly demand and of the 24-hour floor (kW), learned only
    /// while no episode is active.
    pub baseline_kw: f64,
    pub baseline_floor_kw: f64,
    /// Hours the floor baseline has learned from.
    pub floor_hours: u32,
    pub baseline_hours: u32,
    /// Hours from UTC to the site's local solar / standard time.
    pub local_shift_h: i8,
}

impl Series {
    pub fn new() -> Self {
        Series {
            next_hour: i64::MIN,
            max_ts: i64::MIN,
            kwh: [0.0; OPEN_RING],
            export_kwh: [0.0; OPEN_RING],
            vi_bad_s: [0; OPEN_RING],
            vi_missing_kwh: [0.0; OPEN_RING],
            covered: [0; OPEN_RING],
            seen: [0; OPEN_RING],
            day_kw: [0.0; 24],
            day_mask: 0,
            prev_kw: [0.0; 24],
            prev_mask: 0,
            baseline_kw: 0.0,
            baseline_floor_kw: 0.0,
            floor_hours: 0,
            baseline_hours: 0,
            local_shift_h: 0,
        }
    }

    pub fn max_ts(&self) -> i64 {
        self.max_ts
    }

    /// True when the reading's hour lies beyond the open ring: the oldest open hours must be
    /// closed (see [`Series::pop_closed`]) before it can be admitted.
    pub fn must_close_before(&self, ts: i64) -> Option<i64> {
        let h = hour_of(ts);
        (self.next_hour != i64::MIN && h >= self.next_hour + OPEN_RING as i64)
            .then_some(h - OPEN_RING as i64 + 1)
    }

    /// Adds a reading to its hour, unless it duplicates one already counted or arrives after
    /// its hour closed. The caller has made room with [`Series::must_close_before`].
    pub fn admit(&mut self, ts: i64, interval_s: u32, kwh: f64) -> Use {
        let h = hour_of(ts);
        if self.next_hour == i64::MIN {
            self.next_hour = h;
        }
        if h < self.next_hour {
            return Use::Late;
        }
        debug_assert!(h < self.next_hour + OPEN_RING as i64);
        let slot = h.rem_euclid(OPEN_RING as i64) as usize;
        let bit = 1u64 << ((ts - 1).rem_euclid(HOUR) / 60);
        if self.seen[slot] & bit != 0 {
            return Use::Duplicate;
        }
        self.seen[slot] |= bit;
        self.kwh[slot] += kwh as f32;
        self.covered[slot] = (u32::from(self.covered[slot]) + interval_s).min(3600) as u16;
        self.max_ts = self.max_ts.max(ts);
        Use::Counted
    }

    /// Adds exported energy of a reading just admitted to its hour.
    pub fn add_export(&mut self, ts: i64, kwh: f64) {
        self.export_kwh[hour_of(ts).rem_euclid(OPEN_RING as i64) as usize] += kwh as f32;
    }

    /// Checks a reading just admitted against its voltage and current, where the head-end sends
    /// them: an interval that carried at least `min_a` but registered less than `pf_floor` of
    /// the apparent power `V × I` (no real load runs at such a power factor for hours), or that
    /// registered energy with no voltage (below 20 V) — a shunted or bypassed measuring element.
    pub fn add_vi(
        &mut self,
        ts: i64,
        interval_s: u32,
        kwh: f64,
        (voltage_v, current_a): (f64, f64),
        (min_a, pf_floor): (f64, f64),
    ) {
        let kw = kwh * 3600.0 / f64::from(interval_s.max(1));
        let apparent_kw = voltage_v * current_a / 1000.0;
        let starved = current_a >= min_a && kw < pf_floor * apparent_kw;
        let no_voltage = voltage_v < 20.0 && kw > 0.05;
        if starved || no_voltage {
            let slot = hour_of(ts).rem_euclid(OPEN_RING as i64) as usize;
            self.vi_bad_s[slot] = (u32::from(self.vi_bad_s[slot]) + interval_s).min(3600) as u16;
            let missing = (0.9 * apparent_kw - kw).max(0.0) * f64::from(interval_s) / 3600.0;
            self.vi_missing_kwh[slot] += missing as f32;
        }
    }

    /// Closes the oldest open hour if it ends at or before `watermark`, or lies before hour
    /// `before`.
    pub fn pop_closed(&mut self, watermark: i64, before: i64) -> Option<Closed<ClosedHour>> {
        let h = self.next_hour;
        if h == i64::MIN || ((h + 1) * HOUR > watermark && h >= before) {
            return None;
        }
        let slot = h.rem_euclid(OPEN_RING as i64) as usize;
        let covered = u32::from(self.covered[slot]);
        let kwh = f64::from(self.kwh[slot]);
        let export = f64::from(self.export_kwh[slot]);
        let (vi_bad, vi_missing) = (
            f64::from(self.vi_bad_s[slot]),
            f64::from(self.vi_missing_kwh[slot]),
        );
        self.kwh[slot] = 0.0;
        self.export_kwh[slot] = 0.0;
        self.vi_bad_s[slot] = 0;
        self.vi_missing_kwh[slot] = 0.0;
        self.covered[slot] = 0;
        self.seen[slot] = 0;
        self.next_hour += 1;
        let day_slot = h.rem_euclid(24) as u32;
        // What this hour of day held 24 hours ago moves to yesterday's ring.
        self.prev_kw[day_slot as usize] = self.day_kw[day_slot as usize];
        self.prev_mask = (self.prev_mask & !(1 << day_slot)) | (self.day_mask & (1 << day_slot));
        if covered == 0 {
            self.day_mask &= !(1 << day_slot);
            return Some(Closed::Empty);
        }
        let kw = kwh * 3600.0 / f64::from(covered);
        self.day_kw[day_slot as usize] = kw as f32;
        self.day_mask |= 1 << day_slot;
        Some(Closed::Data(ClosedHour {
            end: (h + 1) * HOUR,
            kw,
            export_kw: export * 3600.0 / f64::from(covered),
            vi_bad_share: vi_bad / f64::from(covered),
            vi_missing_kw: vi_missing * 3600.0 / f64::from(covered),
        }))
    }

    /// The longest block of consecutive hours, among the last 24 closed ones ending at `end`,
    /// in which demand was at least `level` kW both on that day and at the same hours the day
    /// before, with max/min within `flatness` over both days.
    pub fn recurring_block(&self, end: i64, level: f64, flatness: f64) -> Option<RecurringBlock> {
        let last = end / HOUR - 1;
        let first = last - 23;
        let at = |h: i64, prev: bool| -> Option<f64> {
            let slot = h.rem_euclid(24) as usize;
            let (mask, v) = if prev {
                (self.prev_mask, self.prev_kw[slot])
            } else {
                (self.day_mask, self.day_kw[slot])
            };
            (h < self.next_hour && mask & (1 << slot) != 0).then_some(f64::from(v))
        };
        let mut best: Option<(i64, u32)> = None;
        let mut run_start = None;
        for h in first..=last + 1 {
            let on = h <= last
                && matches!((at(h, false), at(h, true)), (Some(a), Some(b)) if a >= level && b >= level);
            match (on, run_start) {
                (true, None) => run_start = Some(h),
                (false, Some(s)) => {
                    let len = (h - s) as u32;
                    if best.is_none_or(|(_, l)| len > l) {
                        best = Some((s, len));
                    }
                    run_start = None;
                }
                _ => {}
            }
        }
        let (start, hours) = best?;
        let block: Vec<f64> = (start..start + i64::from(hours))
            .flat_map(|h| [at(h, false), at(h, true)])
            .flatten()
            .collect();
        let (lo, hi) = block.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
        if hi > lo * flatness {
            return None;
        }
        let outside: Vec<f64> = (first..=last)
            .filter(|h| *h < start || *h >= start + i64::from(hours))
            .filter_map(|h| at(h, false))
            .collect();
        let mean = |v: &[f64]| {
            if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        Some(RecurringBlock {
            start: start * HOUR,
            hours,
            block_kw: mean(&block),
            outside_kw: mean(&outside),
        })
    }

    /// Hours at or above `level` kW among the last 24 closed ones and among the 24 before,
    /// with the mean demand of today's such hours and of the rest: a load that switches on and
    /// off all day long.
    pub fn high_hours(&self, level: f64) -> HighHours {
        let (mut today, mut before, mut high, mut low, mut n_low) = (0u32, 0u32, 0.0, 0.0, 0u32);
        for slot in 0..24 {
            if self.day_mask & (1 << slot) != 0 {
                let v = f64::from(self.day_kw[slot]);
                if v >= level {
                    today += 1;
                    high += v;
                } else {
                    low += v;
                    n_low += 1;
                }
            }
            if self.prev_mask & (1 << slot) != 0 && f64::from(self.prev_kw[slot]) >= level {
                before += 1;
            }
        }
        let mean = |sum: f64, n: u32| if n == 0 { 0.0 } else { sum / f64::from(n) };
        HighHours {
            today,
            before,
            high_kw: mean(high, today),
            low_kw: mean(low, n_low),
        }
    }

    /// Skips a long stretch of empty hours at once (they hold no data to evaluate).
    pub fn skip_empty_to(&mut self, h: i64) {
        if h - self.next_hour >= 24 && self.covered.iter().all(|&c| c == 0) {
            self.day_mask = 0;
            self.next_hour = h;
        }
    }

    /// Demand over the `k` (≤ 24) closed hours ending at `end`, if at least five sixths of
    /// them have readings.
    pub fn window(&self, end: i64, k: u32) -> Option<Window> {
        let last = end / HOUR - 1;
        let (mut n, mut sum, mut lo, mut hi) = (0u32, 0.0, f64::INFINITY, 0.0f64);
        for h in (last + 1 - i64::from(k.min(24)))..=last {
            let slot = h.rem_euclid(24) as u32;
            if h >= self.next_hour || self.day_mask & (1 << slot) == 0 {
                continue;
            }
            let kw = f64::from(self.day_kw[slot as usize]);
            n += 1;
            sum += kw;
            lo = lo.min(kw);
            hi = hi.max(kw);
        }
        (n > 0 && n * 6 >= k * 5).then(|| Window {
            hours: n,
            min_kw: lo,
            mean_kw: sum / f64::from(n),
            max_kw: hi,
        })
    }

    /// Demand (kW) of the closed hour ending at `end`, if it is among the last 24 and had data.
    pub fn hour_kw(&self, end: i64) -> Option<f64> {
        let h = end / HOUR - 1;
        let slot = h.rem_euclid(24) as u32;
        (h < self.next_hour && h >= self.next_hour - 24 && self.day_mask & (1 << slot) != 0)
            .then(|| f64::from(self.day_kw[slot as usize]))
    }

    /// Median hourly demand over the `k` (≤ 24) closed hours ending at `end`.
    pub fn median_kw(&self, end: i64, k: u32) -> f64 {
        let last = end / HOUR - 1;
        let mut v: Vec<f32> = ((last + 1 - i64::from(k.min(24)))..=last)
            .filter(|&h| h < self.next_hour && self.day_mask & (1 << h.rem_euclid(24)) != 0)
            .map(|h| self.day_kw[h.rem_euclid(24) as usize])
            .collect();
        if v.is_empty() {
            return 0.0;
        }
        v.sort_by(f32::total_cmp);
        f64::from(v[v.len() / 2])
    }

    /// The local hour of day (0–23) of the hour that starts at `start`.
    pub fn local_hour(&self, start: i64) -> i64 {
        (start + i64::from(self.local_shift_h) * HOUR).rem_euclid(86_400) / HOUR
    }

    /// Folds an hour into the slow baselines (week-long moving averages).
    pub fn learn_baseline(&mut self, end: i64, kw: f64) {
        self.baseline_hours = self.baseline_hours.saturating_add(1);
        let alpha = 1.0 / f64::from(self.baseline_hours.min(168));
        self.baseline_kw += alpha * (kw - self.baseline_kw);
        // The floor is learned from full days only: a partial day's "floor" is just its hours.
        if let Some(w) = self.window(end, 24) {
            // Robust to a rise: once learned, each hour's floor counts for at most a quarter
            // above the baseline, so rigs switched on don't teach it their level before the
            // step detectors have judged them.
            let floor = if self.floor_hours >= 24 {
                w.min_kw.min(1.25 * self.baseline_floor_kw + 0.5)
            } else {
                w.min_kw
            };
            self.floor_hours = self.floor_hours.saturating_add(1);
            let a = 1.0 / f64::from(self.floor_hours.min(168));
            self.baseline_floor_kw += a * (floor - self.baseline_floor_kw);
        }
    }

    /// Mean demand (kW) at night (00–06) and by day (10–18) of local solar time over the
    /// last 24 closed hours, in the site's local time. `None` without data in both.
    pub fn night_day_kw(&self) -> Option<(f64, f64)> {
        let shift = i64::from(self.local_shift_h);
        let (mut night, mut nn, mut day, mut dn) = (0.0, 0u32, 0.0, 0u32);
        for utc in 0..24i64 {
            if self.day_mask & (1 << utc) == 0 {
                continue;
            }
            let kw = f64::from(self.day_kw[utc as usize]);
            match (utc + shift).rem_euclid(24) {
                0..=5 => {
                    night += kw;
                    nn += 1;
                }
                10..=17 => {
                    day += kw;
                    dn += 1;
                }
                _ => {}
            }
        }
        (nn >= 3 && dn >= 4).then(|| (night / f64::from(nn), day / f64::from(dn)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_and_late_readings_are_recognised() {
        let mut m = Series::new();
        let t0 = 1_767_225_600; // 2026-01-01T00:00:00Z
        assert_eq!(m.admit(t0 + 900, 900, 1.0), Use::Counted);
        assert_eq!(m.admit(t0 + 900, 900, 1.0), Use::Duplicate);
        assert_eq!(m.admit(t0 + 1800, 900, 1.0), Use::Counted);
        assert_eq!(m.admit(t0 + 3600, 900, 1.0), Use::Counted);
        assert_eq!(
            m.admit(t0 + 2700, 900, 1.0),
            Use::Counted,
            "out of order but in time"
        );
        // Close hour 0 via the watermark, then a reading for it is late.
        assert_eq!(m.admit(t0 + 2 * 3600, 900, 1.0), Use::Counted);
        let Some(Closed::Data(closed)) = m.pop_closed(t0 + 3600, i64::MIN) else {
            panic!("hour 0 closes with data");
        };
        assert_eq!(closed.end, t0 + 3600);
        assert!(
            (closed.kw - 4.0).abs() < 1e-9,
            "4 kWh in the hour = 4 kW, got {}",
            closed.kw
        );
        assert!(m.pop_closed(t0 + 3600, i64::MIN).is_none());
        assert_eq!(m.admit(t0 + 900, 900, 1.0), Use::Late);
    }

    #[test]
    fn windows_cover_the_last_closed_hours() {
        let mut m = Series::new();
        let t0 = 1_767_225_600;
        for i in 1..=30 * 4 {
            let ts = t0 + i * 900;
            let kw = if i > 26 * 4 { 20.0 } else { 2.0 };
            assert_eq!(m.admit(ts, 900, kw / 4.0), Use::Counted);
            while m.pop_closed(ts, i64::MIN).is_some() {}
        }
        let end = t0 + 30 * 3600;
        let w6 = m.window(end, 6).unwrap();
        assert_eq!((w6.hours, w6.min_kw, w6.max_kw), (6, 2.0, 20.0));
        let w4 = m.window(end, 4).unwrap();
        assert_eq!((w4.min_kw, w4.mean_kw), (20.0, 20.0));
        assert_eq!(m.window(end, 24).unwrap().hours, 24);
    }
}
