//! A meter's demand series in event time, which every detector reads: its open hours (energy,
//! coverage, duplicate masks, and estimates a later actual may replace), the last 48 closed
//! hours by hour of day, and slow baselines of demand and of its floor. The detectors' own
//! state lives with each detector.
//!
//! An hour closes — and the detectors judge it — when it is complete (a full hour of actual
//! readings) and every hour before it has closed, or when the meter's newest reading is a
//! lateness horizon past its end. So the same readings give the same closed hours in any
//! arrival order within the horizon: batched, backfilled and shuffled delivery alike.

use crate::detectors::season::DayLoads;
use gridwatch_core::events::ReadingUse as Use;
use gridwatch_core::{Quality, Reading};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

pub(crate) const HOUR: i64 = 3600;

/// The hour a reading belongs to: readings are stamped with the END of their interval, so
/// a reading at 01:00:00 belongs to the hour 00:00–01:00.
pub(crate) fn hour_of(ts: i64) -> i64 {
    (ts - 1).div_euclid(HOUR)
}

/// The hours an interval ending at `ts` spans, with the seconds and share of its energy that
/// fall in each (one piece for intervals inside an hour; a daily reading spreads evenly).
pub(crate) fn pieces(ts: i64, interval_s: u32) -> impl Iterator<Item = (i64, u32, f64)> {
    let start = ts - i64::from(interval_s);
    let whole = f64::from(interval_s.max(1));
    (hour_of(start + 1)..=hour_of(ts)).map(move |h| {
        let secs = (ts.min((h + 1) * HOUR) - start.max(h * HOUR)) as u32;
        (h, secs, f64::from(secs) / whole)
    })
}

/// The open hour `h` of a ring of open hours starting at `next_hour`, opened (with the hours
/// before it) if needed; `None` for an hour already closed.
pub(crate) fn open_hour<T: Default + Clone>(
    open: &mut VecDeque<T>,
    next_hour: i64,
    h: i64,
) -> Option<&mut T> {
    let idx = usize::try_from(h - next_hour).ok()?;
    if open.len() <= idx {
        open.resize(idx + 1, T::default());
    }
    Some(&mut open[idx])
}

/// How many closed hours a meter remembers as incomplete: a backfill that comes within 48 + 128
/// hours (7.3 days) of its meter's newest reading is taken, not late.
const GAP_MEMORY_H: i64 = 64 * HOUR_BITS_WORDS as i64;
const HOUR_BITS_WORDS: usize = 5;

/// One bit per closed hour, the newest at bit 0, for the last [`GAP_MEMORY_H`] (320) hours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct HourBits([u64; HOUR_BITS_WORDS]);

impl HourBits {
    /// Moves every bit `n` hours older (those past the memory are forgotten), then sets the
    /// `n` newest if `set`.
    fn push(&mut self, n: i64, set: bool) {
        let n = n.clamp(0, GAP_MEMORY_H) as usize;
        let (words, bits) = (n / 64, n % 64);
        let old = self.0;
        for i in (0..HOUR_BITS_WORDS).rev() {
            let lo = i.checked_sub(words).map_or(0, |j| old[j]);
            let below = i.checked_sub(words + 1).map_or(0, |j| old[j]);
            self.0[i] = if bits == 0 {
                lo
            } else {
                (lo << bits) | (below >> (64 - bits))
            };
        }
        if set {
            for k in 0..n {
                self.0[k / 64] |= 1 << (k % 64);
            }
        }
    }

    fn get(&self, k: i64) -> bool {
        (0..GAP_MEMORY_H).contains(&k) && self.0[k as usize / 64] >> (k % 64) & 1 == 1
    }
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

/// A load switched on a timer over the last two days ([`Series::timer_cycle`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Cycle {
    /// Mean demand of the hours above the middle of its range, of the others, and of all (kW).
    pub on_kw: f64,
    pub off_kw: f64,
    pub mean_kw: f64,
    /// Hours a day above the middle of its range.
    pub on_hours: u32,
}

/// Demand statistics over the last few closed hours.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Window {
    pub hours: u32,
    pub min_kw: f64,
    pub mean_kw: f64,
    pub max_kw: f64,
}

/// One open hour of a meter: what its counted actual readings hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct OpenHour {
    /// Bit m: a counted reading ends in minute m of the hour (how duplicates are recognised).
    seen: u64,
    kwh: f32,
    export_kwh: f32,
    /// Energy that intervals whose voltage and current contradict it carried beyond what was
    /// registered, and the seconds they cover.
    vi_missing_kwh: f32,
    vi_bad_s: u16,
    /// Seconds of the hour that counted readings cover.
    covered: u16,
}

/// An estimated reading, held aside until its hours close: a later actual for the same
/// interval replaces it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct Estimate {
    pub ts: i64,
    pub interval_s: u32,
    pub kwh: f32,
    pub export_kwh: f32,
}

/// What [`Series::admit`] made of a reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Admitted {
    /// Counted in its hour(s).
    Counted,
    /// Replaced this estimate of the same interval.
    Corrected(Estimate),
    Duplicate,
    /// Stamped before the first hour the series judged (a new meter's first data delivered
    /// after later data): too late for the meter's own hourly detectors, but counted for the
    /// rest (the feeder balance, the register checks).
    BeforeStart,
    /// For an hour that closed incomplete, arriving after it closed (a backfill, an actual
    /// after its estimate's hour closed): taken, but its hour was judged without it.
    Backfilled,
    /// More than the lateness horizon behind the meter's newest reading.
    Late,
}

impl Admitted {
    pub fn reading_use(self) -> Use {
        match self {
            Admitted::Counted | Admitted::BeforeStart => Use::Counted,
            Admitted::Corrected(_) => Use::Corrected,
            Admitted::Duplicate => Use::Duplicate,
            Admitted::Backfilled => Use::Backfilled,
            Admitted::Late => Use::Late,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Series {
    /// The first hour not yet closed; `i64::MIN` before any reading.
    next_hour: i64,
    max_ts: i64,
    /// The open hours, from `next_hour` on.
    open: VecDeque<OpenHour>,
    /// An hour has closed. Until then a reading earlier than any seen opens its hours.
    settled: bool,
    /// The first hour of the series once settled, and the ends of the readings counted before
    /// it (inside the horizon; for their duplicates).
    first_hour: i64,
    early: Vec<i64>,
    /// Estimated readings not yet replaced (rare: most meters hold none).
    estimates: Vec<Estimate>,
    /// The closed hours that closed incomplete (a gap, or estimates no actual replaced): bit
    /// `k` is hour `next_hour - 1 - k`, for the last [`GAP_MEMORY_H`] hours (13 days). A reading for such
    /// an hour that arrives after it closed — a head-end's backfill after a comms outage, an
    /// actual days after its estimate — is taken ([`Admitted::Backfilled`]), not late.
    gaps: HourBits,
    /// Of those, the hours that closed with nothing measured at all (same bits).
    voids: HourBits,
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
    /// Usual demand at each local hour of day, in units of 10 W (saturating at 655 kW): learned
    /// like the floor, from the first day as it is, then robust to a rise — what the site drew
    /// at these hours before, against which a block or a duty cycle is new.
    profile: [u16; 24],
    /// Usual change of demand from one hour to the next (kW): a household's own restlessness.
    pub usual_step_kw: f32,
    /// The highest daily floor the site has held (kW), fading by 1 % a day, learned a day
    /// late: a home back from a winter vacation returns to a floor it has held before.
    pub high_floor_kw: f32,
    /// Hours the floor baseline has learned from.
    pub floor_hours: u32,
    pub baseline_hours: u32,
    /// Hours from UTC to the site's local solar / standard time.
    pub local_shift_h: i8,
    /// Mean demand of its last closed UTC days, for a fit against the weather.
    pub days: DayLoads,
    /// Whole UTC days the site last stood empty in a row, and days since the last of them
    /// ([`Series::note_day`]).
    vacant_days: u8,
    since_vacant: u8,
    /// The floors of its last closed UTC days with most hours in (10 W units), oldest first:
    /// the first `floors_len` of them.
    floors: [u16; FLOOR_DAYS],
    floors_len: u8,
}

/// Days of floors a series keeps for [`Series::floor_climb_kw`]: two weeks, enough for rigs
/// added every other day to climb past the mining threshold in.
const FLOOR_DAYS: usize = 14;

/// A day whose mean demand stays under this (kW) and whose demand moves by `MOVE_KW` from one
/// hour to the next at most twice is an empty home's: a fridge, a standby or nothing (a small
/// household that draws as little still switches things on and off).
const VACANT_KW: f64 = 0.25;
const MOVE_KW: f64 = 0.1;
/// A day whose demand moves that much at least this often has people in it: a switched-on
/// load alone (rigs in an empty house) moves once.
const LIVED_IN_MOVES: u32 = 6;

impl Series {
    pub fn new() -> Self {
        Series {
            next_hour: i64::MIN,
            max_ts: i64::MIN,
            open: VecDeque::new(),
            settled: false,
            first_hour: i64::MIN,
            early: Vec::new(),
            estimates: Vec::new(),
            gaps: HourBits::default(),
            voids: HourBits::default(),
            day_kw: [0.0; 24],
            day_mask: 0,
            prev_kw: [0.0; 24],
            prev_mask: 0,
            baseline_kw: 0.0,
            baseline_floor_kw: 0.0,
            profile: [0; 24],
            usual_step_kw: 0.0,
            high_floor_kw: 0.0,
            floor_hours: 0,
            baseline_hours: 0,
            local_shift_h: 0,
            days: DayLoads::default(),
            vacant_days: 0,
            since_vacant: u8::MAX,
            floors: [0; FLOOR_DAYS],
            floors_len: 0,
        }
    }

    /// Notes a closed UTC day (ending at `end`) and its mean demand.
    /// A site lived in again after standing empty (back from a vacation, a family moved in;
    /// the day they arrive may be a partial one between) starts its history anew: its
    /// household's heating is not judged against an empty home. A constant load alone in an
    /// empty home (rigs in a rented house) is no household, and is judged against the empty
    /// home. Returns whether it started anew.
    pub fn note_day(&mut self, end: i64, w: Window) -> bool {
        let kw = w.mean_kw;
        self.days.note(end / 86_400 - 1, kw);
        if w.hours >= 20 {
            let floor = (w.min_kw * 100.0).round().clamp(0.0, 65_535.0) as u16;
            if usize::from(self.floors_len) == FLOOR_DAYS {
                self.floors.copy_within(1.., 0);
                self.floors[FLOOR_DAYS - 1] = floor;
            } else {
                self.floors[usize::from(self.floors_len)] = floor;
                self.floors_len += 1;
            }
        }
        if kw < VACANT_KW && self.moves(end, MOVE_KW) <= 2 {
            if self.since_vacant > 0 {
                self.vacant_days = 0;
            }
            self.vacant_days = self.vacant_days.saturating_add(1);
            self.since_vacant = 0;
            return false;
        }
        if self.household_moves(end) < LIVED_IN_MOVES {
            self.since_vacant = self.since_vacant.saturating_add(1);
            return false;
        }
        let moved_in = self.vacant_days >= 1 && self.since_vacant <= 1;
        self.vacant_days = 0;
        self.since_vacant = u8::MAX;
        if moved_in {
            self.baseline_kw = 0.0;
            self.baseline_floor_kw = 0.0;
            self.profile = [0; 24];
            self.usual_step_kw = 0.0;
            self.high_floor_kw = 0.0;
            self.floor_hours = 0;
            self.baseline_hours = 0;
            self.floors_len = 0;
        }
        moved_in
    }

    /// Rigs added one by one: how far (kW) the site's floor has climbed to `now_kw` from the
    /// lowest floor of its last two weeks, when it climbed for at least two days and never fell
    /// back on the way (no day's floor under the highest before it, less 0.2 kW and 5 %) —
    /// as rigs that stay on make it, and as heating, which follows the weather down as well as
    /// up, does not — and ends above any floor held before the low (a home back from a
    /// vacation returns to a floor it has held). 0 otherwise.
    pub fn floor_climb_kw(&self, now_kw: f64) -> f64 {
        let mut kw = [0.0; FLOOR_DAYS];
        let floors = &mut kw[..usize::from(self.floors_len)];
        for (k, &f) in floors.iter_mut().zip(&self.floors) {
            *k = f64::from(f) / 100.0;
        }
        let Some(low_at) =
            (0..floors.len()).min_by(|&a, &b| floors[a].total_cmp(&floors[b]).then(b.cmp(&a)))
        else {
            return 0.0;
        };
        let low = floors[low_at];
        let held_before = floors[..low_at].iter().copied().fold(0.0, f64::max);
        if floors.len() - low_at < 3 || now_kw < 1.5 * held_before + 0.5 {
            return 0.0;
        }
        let mut top = low;
        for &f in floors[low_at + 1..].iter().chain([&now_kw]) {
            if f < top - (0.2 + 0.05 * top) {
                return 0.0;
            }
            top = top.max(f);
        }
        now_kw - low
    }

    pub fn max_ts(&self) -> i64 {
        self.max_ts
    }

    /// Heap bytes this series holds beyond its own size (open hours and estimates).
    pub fn heap_bytes(&self) -> usize {
        self.open.capacity() * std::mem::size_of::<OpenHour>()
            + self.estimates.capacity() * std::mem::size_of::<Estimate>()
            + self.early.capacity() * std::mem::size_of::<i64>()
    }

    /// The first hour a reading stamped `max_ts` leaves open: hours before it are more than
    /// `horizon_s` behind.
    fn horizon_hour(max_ts: i64, horizon_s: i64) -> i64 {
        (max_ts - horizon_s).div_euclid(HOUR)
    }

    /// Moves the meter's newest time to `ts` if it is newer. Hours it puts beyond the horizon
    /// must then be closed ([`Series::pop_closed`]) before the reading is admitted.
    pub fn advance(&mut self, r: &Reading) {
        if self.next_hour == i64::MIN {
            self.next_hour = hour_of(r.start() + 1);
        }
        self.max_ts = self.max_ts.max(r.ts);
    }

    /// Counts a reading in its hour(s) — unless it is more than `horizon_s` behind the meter's
    /// newest reading ([`Admitted::Late`]), or its interval was already counted (an estimate
    /// after an actual is one too). An actual replaces an estimate of the same interval; a
    /// newer estimate replaces an older one. Call after [`Series::advance`] and closing.
    pub fn admit(&mut self, r: &Reading, horizon_s: i64) -> Admitted {
        let last = hour_of(r.ts);
        if !self.settled && last < self.next_hour {
            // Earlier than anything seen so far, and nothing judged yet: open its hours.
            let first = hour_of(r.start() + 1).max(Self::horizon_hour(self.max_ts, horizon_s));
            while self.next_hour > first {
                self.open.push_front(OpenHour::default());
                self.next_hour -= 1;
            }
        }
        if last < self.next_hour {
            if (last + 1) * HOUR + horizon_s <= self.max_ts {
                return match self.hours_ago(last) {
                    k if self.gaps.get(k) => Admitted::Backfilled,
                    // Before the series began (a meter whose outage began before its first
                    // live reads): never judged, nothing counted to copy.
                    _ if self.settled
                        && last < self.first_hour
                        && self.first_hour - last <= GAP_MEMORY_H =>
                    {
                        Admitted::Backfilled
                    }
                    // An estimate of an hour measured in full: the measurement stands.
                    _ if r.quality == Quality::Estimated => Admitted::Duplicate,
                    _ => Admitted::Late,
                };
            }
            if last < self.first_hour {
                let limit = self.max_ts - horizon_s;
                self.early.retain(|&ts| ts > limit);
                if self.early.contains(&r.ts) {
                    return Admitted::Duplicate;
                }
                self.early.push(r.ts);
                return Admitted::BeforeStart;
            }
            // Its hour closed complete: this interval was already counted.
            return Admitted::Duplicate;
        }
        let bit = 1u64 << ((r.ts - 1).rem_euclid(HOUR) / 60);
        let estimated = r.quality == Quality::Estimated;
        let idx = (last - self.next_hour) as usize;
        if self.open.get(idx).is_some_and(|o| o.seen & bit != 0) {
            return Admitted::Duplicate;
        }
        let export = r.kwh_export.unwrap_or(0.0) as f32;
        let prior = self.estimates.iter().position(|e| e.ts == r.ts);
        if estimated {
            let e = Estimate {
                ts: r.ts,
                interval_s: r.interval_s,
                kwh: r.kwh as f32,
                export_kwh: export,
            };
            return match prior {
                Some(k) if self.estimates[k] == e => Admitted::Duplicate,
                Some(k) => Admitted::Corrected(std::mem::replace(&mut self.estimates[k], e)),
                None => {
                    self.estimates.push(e);
                    Admitted::Counted
                }
            };
        }
        let replaced = prior.map(|k| self.estimates.swap_remove(k));
        self.add(r.ts, r.interval_s, r.kwh as f32, export);
        self.open[idx].seen |= bit;
        replaced.map_or(Admitted::Counted, Admitted::Corrected)
    }

    /// Records `n` hours closing from `next_hour` on: incomplete or not, and with nothing
    /// measured (`void`) or not.
    fn close_gaps(&mut self, n: i64, incomplete: bool, void: bool) {
        self.gaps.push(n, incomplete);
        self.voids.push(n, void);
    }

    /// How many closed hours back hour `h` is (0: the last closed).
    fn hours_ago(&self, h: i64) -> i64 {
        self.next_hour - 1 - h
    }

    /// Adds an interval's energy to the open hours it spans (parts in closed hours are gone).
    fn add(&mut self, ts: i64, interval_s: u32, kwh: f32, export: f32) {
        for (h, secs, share) in pieces(ts, interval_s) {
            let Some(o) = open_hour(&mut self.open, self.next_hour, h) else {
                continue;
            };
            o.kwh += kwh * share as f32;
            o.export_kwh += export * share as f32;
            o.covered = (u32::from(o.covered) + secs).min(3600) as u16;
        }
    }

    /// Checks an actual reading just counted against its voltage and current, where the
    /// head-end sends them: an interval that carried at least `min_a` but registered less than
    /// `pf_floor` of the apparent power `V × I` (no real load runs at such a power factor for
    /// hours), or that registered energy with no voltage (below 20 V) — a shunted or bypassed
    /// measuring element.
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
        if !(starved || no_voltage) {
            return;
        }
        let missing = (0.9 * apparent_kw - kw).max(0.0) * f64::from(interval_s) / 3600.0;
        for (h, secs, share) in pieces(ts, interval_s) {
            let Some(o) = usize::try_from(h - self.next_hour)
                .ok()
                .and_then(|i| self.open.get_mut(i))
            else {
                continue;
            };
            o.vi_bad_s = (u32::from(o.vi_bad_s) + secs).min(3600) as u16;
            o.vi_missing_kwh += (missing * share) as f32;
        }
    }

    /// Closes the oldest open hour if it is complete (a full hour of actual readings and no
    /// estimate pending), or if the meter's newest reading is `horizon_s` past its end — then
    /// with only its actual readings: an estimate no actual replaced is a gap.
    pub fn pop_closed(&mut self, horizon_s: i64) -> Option<Closed<ClosedHour>> {
        let h = self.next_hour;
        if h == i64::MIN {
            return None;
        }
        let limit = Self::horizon_hour(self.max_ts, horizon_s);
        let beyond = h < limit;
        if !beyond {
            let front = self.open.front()?;
            let pending = self
                .estimates
                .iter()
                .any(|e| hour_of(e.ts - i64::from(e.interval_s) + 1) <= h);
            if front.covered < 3600 || pending {
                return None;
            }
        }
        // A long silence closes at once: nothing in it to judge.
        if self.open.is_empty() && self.estimates.is_empty() && limit - h >= 48 {
            self.day_mask = 0;
            self.prev_mask = 0;
            self.close_gaps(limit - h, true, true);
            self.next_hour = limit;
            return Some(Closed::Empty);
        }
        // Estimates still standing for this hour are the utility's guesses, not what the meter
        // measured: no actual came in time, so their part of the hour is a gap (a flat-average
        // estimate is a perfectly flat day; an export average is a night of "reverse flow").
        // Nothing is judged on them: the hour holds only what was measured.
        self.estimates.retain(|e| hour_of(e.ts) > h);
        if !self.settled {
            self.settled = true;
            self.first_hour = h;
        }
        let o = self.open.pop_front().unwrap_or_default();
        let covered = u32::from(o.covered);
        self.close_gaps(1, covered < 3600, covered == 0);
        self.next_hour += 1;
        let day_slot = h.rem_euclid(24) as u32;
        // What this hour of day held 24 hours ago moves to yesterday's ring.
        self.prev_kw[day_slot as usize] = self.day_kw[day_slot as usize];
        self.prev_mask = (self.prev_mask & !(1 << day_slot)) | (self.day_mask & (1 << day_slot));
        if covered == 0 {
            self.day_mask &= !(1 << day_slot);
            return Some(Closed::Empty);
        }
        let per_hour = 3600.0 / f64::from(covered);
        let kw = f64::from(o.kwh) * per_hour;
        self.day_kw[day_slot as usize] = kw as f32;
        self.day_mask |= 1 << day_slot;
        Some(Closed::Data(ClosedHour {
            end: (h + 1) * HOUR,
            kw,
            export_kw: f64::from(o.export_kwh) * per_hour,
            vi_bad_share: f64::from(o.vi_bad_s) / f64::from(covered),
            vi_missing_kw: f64::from(o.vi_missing_kwh) * per_hour,
        }))
    }

    /// The longest block of consecutive hours, among the last 24 closed ones ending at `end`,
    /// in which demand was at least `level` kW both on that day and at the same hours the day
    /// before, and what it carried both days (each hour's lower value) stays within `flatness`
    /// (max/min).
    /// Demand (kW) of hour `h` (hours since the epoch) among the last 24 closed, or (`prev`)
    /// of the same hour a day earlier.
    fn at(&self, h: i64, prev: bool) -> Option<f64> {
        let slot = h.rem_euclid(24) as usize;
        let (mask, v) = if prev {
            (self.prev_mask, self.prev_kw[slot])
        } else {
            (self.day_mask, self.day_kw[slot])
        };
        (h < self.next_hour && mask & (1 << slot) != 0).then_some(f64::from(v))
    }

    /// The longest run of consecutive hours, among the last 24 closed ones ending at `end`, in
    /// which the site drew, on that day and at the same hours the day before, at least
    /// `min_kw` more than its profile says it usually draws then, and at least twice that: a
    /// new load at hours the site usually stands empty. Returns its first hour's start, its
    /// length and the least it added (kW).
    pub fn new_block(&self, end: i64, min_kw: f64) -> Option<(i64, u32, f64)> {
        let last = end / HOUR - 1;
        let added = |h: i64| -> Option<f64> {
            let both = self.at(h, false)?.min(self.at(h, true)?);
            let usual = self.usual_at(h * HOUR);
            let added = both - usual;
            (added >= min_kw.max(usual)).then_some(added)
        };
        let mut best: Option<(i64, u32, f64)> = None;
        // The current run: its first hour and the least it added so far.
        let mut run: Option<(i64, f64)> = None;
        for h in last - 23..=last + 1 {
            match (if h <= last { added(h) } else { None }, run) {
                (Some(a), None) => run = Some((h, a)),
                (Some(a), Some((s, least))) => run = Some((s, least.min(a))),
                (None, Some((s, least))) => {
                    let len = (h - s) as u32;
                    if best.is_none_or(|(_, l, _)| len > l) {
                        best = Some((s * HOUR, len, least));
                    }
                    run = None;
                }
                (None, None) => {}
            }
        }
        best
    }

    pub fn recurring_block(&self, end: i64, level: f64, flatness: f64) -> Option<RecurringBlock> {
        let last = end / HOUR - 1;
        let first = last - 23;
        let at = |h: i64, prev: bool| self.at(h, prev);
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
        // What the block carried both days, hour by hour: a kettle or an oven on one of
        // them is the household's, not the block's.
        let block: Vec<f64> = (start..start + i64::from(hours))
            .filter_map(|h| Some(at(h, false)?.min(at(h, true)?)))
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

    /// The highest hourly demand (kW) among the last 48 closed hours with data (0 without any):
    /// every value [`Series::recurring_block`], [`Series::high_hours`] and
    /// [`Series::timer_cycle`] read is at most this, so a site below a pattern's level is
    /// passed over without reading them.
    pub fn peak_kw_48h(&self) -> f64 {
        let mut peak = 0.0f32;
        for slot in 0..24 {
            // Without branches: a slot without data counts as 0.
            let day = f32::from(u8::from(self.day_mask >> slot & 1 == 1)) * self.day_kw[slot];
            let prev = f32::from(u8::from(self.prev_mask >> slot & 1 == 1)) * self.prev_kw[slot];
            peak = peak.max(day).max(prev);
        }
        f64::from(peak)
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

    /// Demand (kW) of the closed hour ending at `end`, if it is among the 24 before the last
    /// 24 and had data.
    pub fn day_before_kw(&self, end: i64) -> Option<f64> {
        let h = end / HOUR - 1;
        let slot = h.rem_euclid(24) as u32;
        (h < self.next_hour - 24 && h >= self.next_hour - 48 && self.prev_mask & (1 << slot) != 0)
            .then(|| f64::from(self.prev_kw[slot as usize]))
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

    /// The site's usual demand at the hour starting at `start`, from its learned profile (kW).
    /// The seconds of hour `h` (hours since the epoch) this meter has not measured: the rest of
    /// an open hour, or all of a closed hour that closed with nothing measured. 0 for a closed
    /// hour with data (a part missing from it is not known), or one too far back to remember.
    pub fn missing_s(&self, h: i64) -> u32 {
        if self.next_hour == i64::MIN {
            return 3600;
        }
        if h >= self.next_hour {
            let covered = usize::try_from(h - self.next_hour)
                .ok()
                .and_then(|i| self.open.get(i))
                .map_or(0, |o| u32::from(o.covered));
            return 3600 - covered.min(3600);
        }
        if self.voids.get(self.hours_ago(h)) {
            3600
        } else {
            0
        }
    }

    /// What the meter drew at the hour of day of the hour starting at `start` on the last day
    /// it reported it (its last 48 closed hours), else its usual then (kW): a silent
    /// customer's stand-in in its feeder's balance.
    pub fn last_day_kw_at(&self, start: i64) -> f64 {
        let slot = start.div_euclid(HOUR).rem_euclid(24) as usize;
        if self.day_mask & (1 << slot) != 0 {
            f64::from(self.day_kw[slot])
        } else if self.prev_mask & (1 << slot) != 0 {
            f64::from(self.prev_kw[slot])
        } else {
            self.usual_at(start)
        }
    }

    pub fn usual_at(&self, start: i64) -> f64 {
        f64::from(self.profile[self.local_hour(start) as usize]) / 100.0
    }

    /// The site's usual demand over `hours` hours from `start` (kW).
    pub fn usual_kw(&self, start: i64, hours: u32) -> f64 {
        let sum: f64 = (0..i64::from(hours))
            .map(|k| self.usual_at(start + k * HOUR))
            .sum();
        sum / f64::from(hours.max(1))
    }

    /// A household arriving: the site stood empty until a day or two ago and is lived in over
    /// the last 24 hours to `end` (its history, an empty home's, is about to start anew at the
    /// day's close, [`Series::note_day`]).
    pub fn arriving(&self, end: i64) -> bool {
        self.since_vacant <= 1 && self.household_moves(end) >= LIVED_IN_MOVES
    }

    /// [`Series::moves`] of at least `MOVE_KW`, as signs of people: the hours that repeat
    /// themselves every few hours up to `end` (a load switched on a timer — duty-cycled rigs
    /// in an empty house — moves all day, but is one machine, not a household arriving) don't
    /// count, only the moves before them.
    ///
    /// The stretch that repeats is the longest run of 8 to 24 closed hours ending at `end` in
    /// which, for one period of 2 to 6 hours, nine in ten hours are within 0.1 kW and 5 % of
    /// the hour one period before (three in four of them known). Every length is read from one
    /// pass per period over the day's hours, longest first as the pass goes back.
    fn household_moves(&self, end: i64) -> u32 {
        let last = end / HOUR - 1;
        let first = last - 23;
        let kw: Vec<Option<f64>> = (first..=last)
            .map(|h| self.hour_kw((h + 1) * HOUR))
            .collect();
        let at = |h: i64| kw[(h - first) as usize];
        let mut timed = 0;
        for p in 2..=6i64 {
            let (mut pairs, mut same) = (0i64, 0i64);
            // The hours h..=last, each against the hour p before: the stretch of length
            // last + 1 - h + p.
            for h in (first + p..=last).rev() {
                if let (Some(a), Some(b)) = (at(h), at(h - p)) {
                    pairs += 1;
                    if (a - b).abs() <= 0.1 + 0.05 * a.max(b) {
                        same += 1;
                    }
                }
                let len = last + 1 - h + p;
                if len >= 8 && pairs * 4 >= (len - p) * 3 && same * 10 >= pairs * 9 {
                    timed = timed.max(len);
                }
            }
        }
        self.moves_into(last - 22..=last - timed, MOVE_KW)
    }

    /// Hours of the last 24 to `end` whose demand moved by at least `kw` from the hour before:
    /// how many times something was switched.
    pub fn moves(&self, end: i64, kw: f64) -> u32 {
        let last = end / HOUR - 1;
        self.moves_into(last - 22..=last, kw)
    }

    /// How many of the hours `hours` (hour indices) moved by at least `kw` from the hour before.
    fn moves_into(&self, hours: std::ops::RangeInclusive<i64>, kw: f64) -> u32 {
        hours
            .filter(|&h| {
                matches!(
                    (self.hour_kw(h * HOUR), self.hour_kw((h + 1) * HOUR)),
                    (Some(a), Some(b)) if (b - a).abs() >= kw
                )
            })
            .count() as u32
    }

    /// The last 48 closed hours to `end` are a load switched on a timer: each hour moves
    /// against the one before (lag-1 autocorrelation at most 0), and the day repeats itself
    /// every 2 to 6 hours (autocorrelation at that lag 0.7 or more) — rigs cycled on and off
    /// around the clock, at the same rhythm however the cycles fall across the hours. A
    /// household's demand, a thermostat's or a heat pump's, averaged over hours, drifts
    /// smoothly from one hour to the next and follows the day, not a clock of a few hours.
    pub fn timer_cycle(&self, end: i64) -> Option<Cycle> {
        let mut hours = [None; 48];
        let (mut n, mut sum) = (0u32, 0.0);
        for (k, slot) in hours.iter_mut().enumerate() {
            let e = end - (47 - k as i64) * HOUR;
            *slot = self.hour_kw(e).or_else(|| self.day_before_kw(e));
            if let Some(v) = *slot {
                n += 1;
                sum += v;
            }
        }
        if n < 40 {
            return None;
        }
        let known = || hours.iter().flatten().copied();
        let n = f64::from(n);
        let mean = sum / n;
        let var = known().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        if var <= 0.0 {
            return None;
        }
        let r = |lag: usize| {
            let (mut m, mut sum) = (0u32, 0.0);
            for (a, b) in hours.iter().zip(&hours[lag..]) {
                if let (Some(a), Some(b)) = (a, b) {
                    m += 1;
                    sum += (a - mean) * (b - mean);
                }
            }
            (m >= 30).then(|| sum / f64::from(m) / var)
        };
        if r(1)? > 0.0 || !(2..=6).any(|p| r(p).is_some_and(|r| r >= 0.7)) {
            return None;
        }
        let (lo, hi) = known().fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        let mid = (lo + hi) / 2.0;
        let (mut on, mut off) = ((0u32, 0.0), (0u32, 0.0));
        for v in known() {
            let side = if v >= mid { &mut on } else { &mut off };
            side.0 += 1;
            side.1 += v;
        }
        let avg = |(k, sum): (u32, f64)| sum / f64::from(k.max(1));
        Some(Cycle {
            on_kw: avg(on),
            off_kw: avg(off),
            mean_kw: mean,
            on_hours: (f64::from(on.0) * 24.0 / n).round() as u32,
        })
    }

    /// Mean change of demand from one hour to the next over the `k` (≤ 24) closed hours
    /// ending at `end`, where both hours had data (kW).
    pub fn step_kw(&self, end: i64, k: u32) -> Option<f64> {
        let last = end / HOUR - 1;
        let (mut n, mut sum) = (0u32, 0.0);
        for h in (last + 2 - i64::from(k.min(24)))..=last {
            if let (Some(a), Some(b)) = (self.hour_kw(h * HOUR), self.hour_kw((h + 1) * HOUR)) {
                n += 1;
                sum += (b - a).abs();
            }
        }
        (n > 0).then(|| sum / f64::from(n))
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
        // The profile: each hour of day learns once a day, over a week's memory.
        let slot = self.local_hour(end - HOUR) as usize;
        let days = self.baseline_hours.div_ceil(24);
        let usual = f64::from(self.profile[slot]) / 100.0;
        let seen = if days > 1 {
            kw.min(1.25 * usual + 0.5)
        } else {
            kw
        };
        let learned = usual + (seen - usual) / f64::from(days.min(7));
        self.profile[slot] = (learned * 100.0).round().clamp(0.0, 65_535.0) as u16;
        if end % 86_400 == 0 {
            // The day before the one that just closed: its floor, if most of it had data.
            let held = (0..24u32)
                .filter(|slot| self.prev_mask & (1 << slot) != 0)
                .map(|slot| self.prev_kw[slot as usize]);
            if self.prev_mask.count_ones() >= 20 {
                let floor = held.fold(f32::INFINITY, f32::min);
                self.high_floor_kw = (self.high_floor_kw * 0.99).max(floor);
            }
        }
        if let Some(before) = self.hour_kw(end - HOUR) {
            let step = (kw - before)
                .abs()
                .min(1.25 * f64::from(self.usual_step_kw) + 0.5);
            let step = if self.baseline_hours <= 24 {
                (kw - before).abs()
            } else {
                step
            };
            self.usual_step_kw += (alpha * (step - f64::from(self.usual_step_kw))) as f32;
        }
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

    const T0: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z
    const H48: i64 = 48 * HOUR;

    fn r(ts: i64, interval_s: u32, kwh: f64, quality: Quality) -> Reading {
        Reading {
            quality,
            ..Reading::new("M1", ts, interval_s, kwh)
        }
    }

    /// Feeds a reading as the engine does; returns what it made of it and the hours it closed.
    fn feed(m: &mut Series, x: &Reading) -> (Use, Vec<Closed<ClosedHour>>) {
        let mut closed = Vec::new();
        m.advance(x);
        closed.extend(std::iter::from_fn(|| m.pop_closed(H48)));
        let used = m.admit(x, H48).reading_use();
        closed.extend(std::iter::from_fn(|| m.pop_closed(H48)));
        (used, closed)
    }

    /// Rigs added every other day climb without falling back; heating that follows the
    /// weather falls back; a home back from a vacation returns to a floor it held before.
    #[test]
    fn a_floor_climbs_step_upon_step_only_without_falling_back() {
        let days = |floors: &[f64]| {
            let mut m = Series::new();
            for (i, &min_kw) in floors.iter().enumerate() {
                let w = Window {
                    hours: 24,
                    min_kw,
                    mean_kw: min_kw + 0.5,
                    max_kw: min_kw + 2.0,
                };
                m.note_day(T0 + (i as i64 + 1) * 86_400, w);
            }
            m
        };
        let stepped = days(&[0.3, 0.3, 0.3, 1.8, 1.8, 3.3, 3.3, 4.8, 4.8]);
        assert!((stepped.floor_climb_kw(4.8) - 4.5).abs() < 1e-9);
        // A day's floor a little under the step before it still climbs.
        let noisy = days(&[0.3, 0.3, 1.8, 1.75, 3.3, 3.2, 4.8]);
        assert!((noisy.floor_climb_kw(6.3) - 6.0).abs() < 1e-9);
        // Two weeks of floors are kept: a low older than that is not the climb's start.
        let mut long = vec![0.3, 0.3];
        long.extend([3.0; 14]);
        assert_eq!(days(&long).floor_climb_kw(4.8), 0.0);
        long.truncate(15);
        assert!((days(&long).floor_climb_kw(4.8) - 4.5).abs() < 1e-9);
        // Heating: colder, warmer, colder.
        let heating = days(&[0.3, 1.5, 3.0, 1.2, 3.5, 5.0]);
        assert_eq!(heating.floor_climb_kw(5.0), 0.0);
        // Back from a vacation to the floor held before it.
        let vacation = days(&[4.0, 4.0, 0.2, 0.2, 4.0, 4.1]);
        assert_eq!(vacation.floor_climb_kw(4.1), 0.0);
        // One step a day ago is the usual rule's, not a climb.
        assert_eq!(days(&[0.3, 0.3, 5.0]).floor_climb_kw(5.0), 0.0);
        // Days with too few hours in are not floors.
        let mut m = Series::new();
        let w = Window {
            hours: 12,
            min_kw: 0.1,
            mean_kw: 0.5,
            max_kw: 1.0,
        };
        m.note_day(T0, w);
        assert_eq!(m.floor_climb_kw(6.0), 0.0);
    }

    /// A series that has judged its first hours: two days of zeros up to `T0`, all closed.
    fn settled() -> Series {
        let mut m = Series::new();
        for q in (-49 * 4 + 1)..=0 {
            assert_eq!(
                feed(&mut m, &r(T0 + q * 900, 900, 0.0, Quality::Actual)).0,
                Use::Counted
            );
        }
        assert!(m.settled && m.open.is_empty());
        m
    }

    #[test]
    fn until_an_hour_has_closed_earlier_readings_open_earlier_hours() {
        let mut m = Series::new();
        let a = Quality::Actual;
        assert_eq!(
            feed(&mut m, &r(T0 + 10 * 3600, 900, 1.0, a)).0,
            Use::Counted
        );
        let (used, first) = feed(&mut m, &r(T0 + 3600, 3600, 1.0, a));
        assert_eq!(
            (used, first.len()),
            (Use::Counted, 1),
            "hour 0 opened and complete"
        );
        let (used, second) = feed(&mut m, &r(T0 + 2 * 3600, 3600, 1.0, a));
        assert_eq!((used, second.len()), (Use::Counted, 1));
        // Once the series has judged its first hour, an earlier reading inside the horizon is
        // counted (for the feeder balance) but not judged by the meter's own detectors; its
        // copy is a duplicate.
        assert_eq!(
            m.admit(&r(T0 - 3600, 3600, 1.0, a), H48),
            Admitted::BeforeStart
        );
        assert_eq!(
            m.admit(&r(T0 - 3600, 3600, 1.0, a), H48),
            Admitted::Duplicate
        );
    }

    fn kw(c: &Closed<ClosedHour>) -> f64 {
        match c {
            Closed::Data(h) => h.kw,
            Closed::Empty => f64::NAN,
        }
    }

    #[test]
    fn an_hour_closes_when_complete_and_duplicates_count_once() {
        let mut m = settled();
        let a = Quality::Actual;
        assert_eq!(feed(&mut m, &r(T0 + 900, 900, 1.0, a)).0, Use::Counted);
        assert_eq!(feed(&mut m, &r(T0 + 900, 900, 1.0, a)).0, Use::Duplicate);
        assert_eq!(feed(&mut m, &r(T0 + 3600, 900, 1.0, a)).0, Use::Counted);
        assert!(feed(&mut m, &r(T0 + 1800, 900, 1.0, a)).1.is_empty());
        let (used, closed) = feed(&mut m, &r(T0 + 2700, 900, 1.0, a));
        assert_eq!(used, Use::Counted, "out of order inside the hour");
        assert_eq!(closed.len(), 1, "the fourth quarter completes the hour");
        assert!(
            (kw(&closed[0]) - 4.0).abs() < 1e-9,
            "4 kWh in the hour = 4 kW"
        );
        // A copy of a reading of the closed hour is a duplicate, not late: inside the horizon.
        assert_eq!(feed(&mut m, &r(T0 + 900, 900, 1.0, a)).0, Use::Duplicate);
    }

    #[test]
    fn an_incomplete_hour_waits_for_the_horizon_then_its_missing_readings_are_a_backfill() {
        let mut m = settled();
        let a = Quality::Actual;
        // Hour 0 misses a quarter; hours 1.. are complete but must wait behind it.
        for q in [1, 2, 3] {
            feed(&mut m, &r(T0 + q * 900, 900, 0.5, a));
        }
        for q in 5..=4 * 47 {
            assert!(feed(&mut m, &r(T0 + q * 900, 900, 0.5, a)).1.is_empty());
        }
        // The missing quarter arrives 47 h late: it counts, and 48 hours close at once.
        let (used, closed) = feed(&mut m, &r(T0 + 4 * 900, 900, 0.5, a));
        assert_eq!(used, Use::Counted);
        assert_eq!(closed.len(), 47);
        // An hour that stays incomplete closes when the newest reading is 48 h past it.
        let mut m = settled();
        feed(&mut m, &r(T0 + 900, 900, 0.5, a));
        let (_, closed) = feed(&mut m, &r(T0 + 3600 + H48, 900, 0.5, a));
        assert_eq!(closed.len(), 1);
        assert!(
            (kw(&closed[0]) - 2.0).abs() < 1e-9,
            "judged on what is there"
        );
        // Its missing quarters, arriving after it closed, are a backfill: taken, not late.
        assert_eq!(feed(&mut m, &r(T0 + 1800, 900, 0.5, a)).0, Use::Backfilled);
    }

    #[test]
    fn an_actual_replaces_an_estimate_and_estimates_alone_wait_for_the_horizon() {
        let mut m = settled();
        let (a, e) = (Quality::Actual, Quality::Estimated);
        for q in 1..=4 {
            let quality = if q == 2 { e } else { a };
            assert!(feed(&mut m, &r(T0 + q * 900, 900, 1.0, quality))
                .1
                .is_empty());
        }
        assert_eq!(feed(&mut m, &r(T0 + 1800, 900, 1.0, e)).0, Use::Duplicate);
        assert_eq!(feed(&mut m, &r(T0 + 1800, 900, 1.5, e)).0, Use::Corrected);
        let (used, closed) = feed(&mut m, &r(T0 + 1800, 900, 2.0, a));
        assert_eq!(used, Use::Corrected);
        assert!((kw(&closed[0]) - 5.0).abs() < 1e-6, "1 + 2 + 1 + 1 kWh");
        // An estimate after the actual is a duplicate.
        let mut m = settled();
        feed(&mut m, &r(T0 + 3600, 3600, 3.0, a));
        assert_eq!(feed(&mut m, &r(T0 + 3600, 3600, 9.0, e)).0, Use::Duplicate);
        // An estimate never replaced is a gap once the horizon passes: nothing measured.
        let mut m = settled();
        feed(&mut m, &r(T0 + 3600, 3600, 3.0, e));
        let (_, closed) = feed(&mut m, &r(T0 + 2 * 3600 + H48, 3600, 1.0, a));
        assert!(matches!(closed[0], Closed::Empty), "{closed:?}");
        // Beside actuals, the hour holds only what was measured: three quarters at 2 kW
        // and a standing 50 kWh estimate close as 2 kW, not 51.5.
        let mut m = settled();
        for q in 1..=4 {
            let (kwh, quality) = if q == 3 { (50.0, e) } else { (0.5, a) };
            feed(&mut m, &r(T0 + q * 900, 900, kwh, quality));
        }
        let (_, closed) = feed(&mut m, &r(T0 + 2 * 3600 + H48, 3600, 1.0, a));
        assert!((kw(&closed[0]) - 2.0).abs() < 1e-6, "{closed:?}");
    }

    #[test]
    fn hour_bits_shift_across_words_and_forget_past_their_memory() {
        let mut b = HourBits::default();
        b.push(1, true);
        b.push(70, false);
        assert!(b.get(70) && !b.get(69) && !b.get(71), "{b:?}");
        b.push(3, true);
        assert!(b.get(0) && b.get(2) && !b.get(3) && b.get(73));
        b.push(GAP_MEMORY_H - 74, false);
        assert!(b.get(GAP_MEMORY_H - 1) && !b.get(GAP_MEMORY_H));
        b.push(1, false);
        assert!(!b.get(GAP_MEMORY_H - 1), "the oldest hour forgotten");
        let held: Vec<i64> = (0..GAP_MEMORY_H).filter(|&k| b.get(k)).collect();
        assert_eq!(held, [247, 248, 249]);
        b.push(GAP_MEMORY_H + 5, true);
        assert!((0..GAP_MEMORY_H).all(|k| b.get(k)));
    }

    #[test]
    fn a_long_interval_spreads_over_its_hours() {
        let mut m = settled();
        let (_, closed) = feed(&mut m, &r(T0 + 3 * 3600, 3 * 3600, 6.0, Quality::Actual));
        let kws: Vec<f64> = closed.iter().map(kw).collect();
        assert_eq!(kws.len(), 3);
        assert!(kws.iter().all(|k| (k - 2.0).abs() < 1e-6), "{kws:?}");
    }

    #[test]
    fn windows_cover_the_last_closed_hours() {
        let mut m = settled();
        for i in 1..=30 * 4 {
            let kw = if i > 26 * 4 { 20.0 } else { 2.0 };
            assert_eq!(
                feed(&mut m, &r(T0 + i * 900, 900, kw / 4.0, Quality::Actual)).0,
                Use::Counted
            );
        }
        let end = T0 + 30 * 3600;
        let w6 = m.window(end, 6).unwrap();
        assert_eq!((w6.hours, w6.min_kw, w6.max_kw), (6, 2.0, 20.0));
        let w4 = m.window(end, 4).unwrap();
        assert_eq!((w4.min_kw, w4.mean_kw), (20.0, 20.0));
        assert_eq!(m.window(end, 24).unwrap().hours, 24);
    }
}
