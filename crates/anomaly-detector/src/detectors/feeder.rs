//! `feeder_imbalance`, the feeder balance: the feeder-head meter measures everything that flows into a feeder — its
//! customers' metered energy, technical losses, and anything unmetered. Per closed hour, the
//! loss ratio `(head − customers) ÷ head` is compared with what this feeder's own history says
//! it should be at this load (a linear model in load against a scale held after the first
//! week, refitted continuously with a two-week memory, learned only while nothing is flagged
//! and the hour looks normal). A sustained rise
//! is an unmetered tap. Hours where customer readings are missing are held back: a comms
//! outage must not look like a tap.

use super::{positive, ConfigError};
use crate::episode::Finding;
use crate::evidence::{round, Evidence::Feeder as Piece, Feeder as Evidence, LoadShape};
use crate::series::{hour_of, open_hour, pieces, Closed, HOUR};
use gridwatch_core::Quality;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Residuals remembered for the decision window.
pub(crate) const WINDOW: usize = 12;

/// Most hours a feeder's balance holds open: beyond the longest lateness horizon (14 days)
/// and a day's interval, with room to spare. Normal data never comes near it.
const MAX_OPEN: usize = 512;

/// `[detector.feeder]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeederConfig {
    /// Unexplained share of a feeder's energy (beyond its learned losses), sustained over 12
    /// balanced hours, that raises a case.
    pub min_share: f64,
    /// A smaller, steady excess: a one-sided CUSUM of the hourly unexplained share beyond
    /// `cusum_allowance` reaching `cusum_limit` (share × hours) also raises it.
    pub cusum_allowance: f64,
    pub cusum_limit: f64,
}

impl Default for FeederConfig {
    fn default() -> Self {
        FeederConfig {
            min_share: 0.03,
            cusum_allowance: 0.01,
            cusum_limit: 0.3,
        }
    }
}

impl FeederConfig {
    pub(crate) fn build(&self) -> Result<FeederDetector, ConfigError> {
        positive("feeder.min_share", self.min_share)?;
        positive("feeder.cusum_allowance", self.cusum_allowance)?;
        positive("feeder.cusum_limit", self.cusum_limit)?;
        Ok(FeederDetector { cfg: self.clone() })
    }
}

pub(crate) struct FeederDetector {
    cfg: FeederConfig,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Fit {
    s1: f64,
    sx: f64,
    sy: f64,
    sxx: f64,
    sxy: f64,
}

impl Fit {
    fn add(&mut self, x: f64, y: f64, decay: f64) {
        self.s1 = self.s1 * decay + 1.0;
        self.sx = self.sx * decay + x;
        self.sy = self.sy * decay + y;
        self.sxx = self.sxx * decay + x * x;
        self.sxy = self.sxy * decay + x * y;
    }

    fn predict(&self, x: f64) -> f64 {
        let den = self.s1 * self.sxx - self.sx * self.sx;
        let b = if den.abs() > 1e-9 * self.s1 * self.s1 {
            (self.s1 * self.sxy - self.sx * self.sy) / den
        } else {
            0.0
        };
        let a = (self.sy - b * self.sx) / self.s1.max(1e-9);
        a + b * x
    }
}

/// Which side of a feeder's balance a meter is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Head,
    Customers,
}

/// One open hour of a feeder's balance: energy and covered seconds of its head and of its
/// customers, and how many of those seconds are estimates a later actual may replace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct OpenHour {
    head_kwh: f64,
    cust_kwh: f64,
    head_cov: u32,
    head_est: u32,
    cust_cov: u32,
    cust_est: u32,
    /// The customers' estimated energy in `cust_kwh`: left out when the hour is judged.
    cust_est_kwh: f64,
}

/// One feeder's balance: the open hours of its head and customers, the learned loss model, and
/// the recent residuals. Per-feeder state of this detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct BalanceState {
    next_hour: i64,
    /// Newest reading of any of its meters.
    max_ts: i64,
    open: VecDeque<OpenHour>,
    /// An hour has closed: until then readings may open hours before the first one seen, and
    /// hours close only as the horizon passes them.
    settled: bool,
    fit: Fit,
    avg_head_kw: f64,
    learned_hours: u32,
    residual_kw: [f32; WINDOW],
    residual_ratio: [f32; WINDOW],
    filled: usize,
    pos: usize,
    /// One-sided CUSUM of the residual ratio beyond `feeder_cusum_allowance`, and the
    /// unexplained energy and ratio summed since it last stood at zero (for the estimate).
    cusum: f64,
    rise_kw: f64,
    rise_ratio: f64,
    rise_hours: u32,
}

/// A closed, fully covered hour's balance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct BalancedHour {
    pub end: i64,
    pub head_kw: f64,
    pub customers_kw: f64,
}

impl BalanceState {
    pub fn new() -> BalanceState {
        BalanceState {
            next_hour: i64::MIN,
            max_ts: i64::MIN,
            open: VecDeque::new(),
            settled: false,
            fit: Fit::default(),
            avg_head_kw: 0.0,
            learned_hours: 0,
            residual_kw: [0.0; WINDOW],
            residual_ratio: [0.0; WINDOW],
            filled: 0,
            pos: 0,
            cusum: 0.0,
            rise_kw: 0.0,
            rise_ratio: 0.0,
            rise_hours: 0,
        }
    }

    /// Adds (`sign` 1) or takes back (`sign` -1) a counted reading's energy and coverage in
    /// the open hours it spans. Parts in closed hours are lost to the balance: those hours
    /// were judged complete, or had passed the horizon.
    fn apply(
        &mut self,
        side: Side,
        ts: i64,
        interval_s: u32,
        kwh: f64,
        estimated: bool,
        sign: i64,
    ) {
        let first = hour_of(ts - i64::from(interval_s) + 1);
        if self.next_hour == i64::MIN {
            self.next_hour = first;
        }
        while !self.settled && self.next_hour > first && self.open.len() < MAX_OPEN {
            self.open.push_front(OpenHour::default());
            self.next_hour -= 1;
        }
        for (h, secs, share) in pieces(ts, interval_s) {
            // An hour further from the open ones than any horizon reaches (a clock gone wrong,
            // a forged timestamp) is not opened, nor is every hour between: its energy is
            // lost to the balance, and its time still closes the hours behind it.
            if h - self.next_hour >= MAX_OPEN as i64 {
                continue;
            }
            let Some(o) = open_hour(&mut self.open, self.next_hour, h) else {
                continue;
            };
            if estimated && side == Side::Customers {
                o.cust_est_kwh += sign as f64 * kwh * share;
            }
            let (energy, cov, est) = match side {
                Side::Head => (&mut o.head_kwh, &mut o.head_cov, &mut o.head_est),
                Side::Customers => (&mut o.cust_kwh, &mut o.cust_cov, &mut o.cust_est),
            };
            *energy += sign as f64 * kwh * share;
            let step = |v: &mut u32| *v = (i64::from(*v) + sign * i64::from(secs)).max(0) as u32;
            step(cov);
            if estimated {
                step(est);
            }
        }
    }

    /// Adds a counted reading of the head or of a customer.
    pub fn add(&mut self, side: Side, ts: i64, interval_s: u32, kwh: f64, quality: Quality) {
        self.max_ts = self.max_ts.max(ts);
        self.apply(side, ts, interval_s, kwh, quality == Quality::Estimated, 1);
    }

    /// Takes back an estimate that a newer reading replaced.
    pub fn remove_estimate(&mut self, side: Side, ts: i64, interval_s: u32, kwh: f64) {
        self.apply(side, ts, interval_s, kwh, true, -1);
    }

    /// Closes the next hour once all its data are in — the head's full hour and every one of
    /// its `members`' hours, none of them estimates — or once the feeder's newest reading is
    /// `horizon_s` past it. Closed at the horizon, it is judged only if the head's hour and
    /// all but 1.5 % of the customers' data are in (the few missing filled in
    /// proportionally): a comms outage must not look like a tap. Estimates count as missing.
    pub fn pop_closed(
        &mut self,
        horizon_s: i64,
        members: usize,
        silent: impl Fn(i64) -> Silent,
    ) -> Option<Closed<BalancedHour>> {
        let h = self.next_hour;
        if h == i64::MIN {
            return None;
        }
        let limit = (self.max_ts - horizon_s).div_euclid(HOUR);
        let expected = members as u64 * 3600;
        if h >= limit {
            let o = self.open.front().filter(|_| self.settled)?;
            let all_in = o.head_cov >= 3600
                && expected > 0
                && u64::from(o.cust_cov) >= expected
                && o.head_est == 0
                && o.cust_est == 0;
            if !all_in {
                return None;
            }
        } else if self.open.is_empty() && limit - h >= 48 {
            // A long silence: nothing in it to judge.
            self.settled = true;
            self.next_hour = limit;
            return Some(Closed::Empty);
        }
        let o = self.open.pop_front().unwrap_or_default();
        self.next_hour += 1;
        self.settled = true;
        // Estimates are guesses: the head's hour must be measured, and the customers'
        // estimated data count as missing. What customers have not measured is filled in
        // with what each drew at that hour on the last day it reported; the rest, up to 1.5 %,
        // proportionally. A feeder hour is never judged as tapped because a customer's data
        // has not arrived: if the stand-ins are more than `SILENT_SHARE` of the head's energy,
        // the hour is not judged.
        let measured = o.cust_cov.saturating_sub(o.cust_est);
        let gone = silent(h * HOUR);
        let accounted = (u64::from(measured) + u64::from(gone.seconds)).min(expected.max(1));
        let head_kwh = o.head_kwh * 3600.0 / f64::from(o.head_cov.max(1));
        let complete = o.head_cov >= 3540
            && o.head_est == 0
            && expected > 0
            && accounted * 1000 >= expected * 985
            && gone.kwh <= SILENT_SHARE * head_kwh;
        if !complete || o.head_kwh <= 0.0 {
            return Some(Closed::Empty);
        }
        let fill = (expected as f64 / accounted as f64).max(1.0);
        Some(Closed::Data(BalancedHour {
            end: (h + 1) * HOUR,
            head_kw: head_kwh,
            customers_kw: ((o.cust_kwh - o.cust_est_kwh).max(0.0) + gone.kwh) * fill,
        }))
    }

    /// The unexplained kW of the last judged hours, oldest first, the newest ending at `end`.
    pub fn residuals(&self) -> [f64; WINDOW] {
        std::array::from_fn(|k| f64::from(self.residual_kw[(self.pos + k) % WINDOW]))
    }
}

/// The parts of a feeder hour its customers have not measured (a comms outage whose backfill
/// has not come, or came after their own hours closed): what each drew at that hour of day on
/// the last day it reported (kWh), and the seconds they stand for.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Silent {
    pub kwh: f64,
    pub seconds: u32,
}

/// The most of a feeder hour's energy (a share of the head's) that silent customers' usual
/// draw may stand for in a judged hour: beyond it, their real draw is too uncertain to tell a
/// tap from a customer's data not yet arrived.
const SILENT_SHARE: f64 = 0.03;

/// A feeder hour whose head carries less than this share of its learned average flow is not
/// judged (two-way flows at noon on a PV feeder).
const MIN_HEAD_SHARE: f64 = 0.25;

/// Who the feeder is, for the finding's words.
pub(crate) struct FeederId<'a> {
    pub id: &'a str,
    pub customers: usize,
    /// Its case is open: the model must not learn the tap as losses.
    pub flagged: bool,
}

impl FeederDetector {
    /// Judges one balanced hour; returns a finding while the feeder shows an unmetered load:
    /// twelve hours averaging `min_share` above the model (a large tap, named within half a
    /// day), or a CUSUM of the excess over `cusum_allowance` reaching `cusum_limit` (a small
    /// tap, 2 % of the feeder, within about a day and a half).
    pub fn judge(
        &self,
        st: &mut BalanceState,
        b: BalancedHour,
        who: FeederId<'_>,
    ) -> Option<Finding> {
        let cfg = &self.cfg;
        let min_ratio = cfg.min_share;
        // With rooftop PV the head's net flow can fall near zero at noon (or reverse): a share of
        // almost nothing says nothing, and the losses then follow flows the head does not see.
        // Such hours are neither judged nor learned from.
        if st.learned_hours >= 24 && b.head_kw < MIN_HEAD_SHARE * st.avg_head_kw {
            return None;
        }
        let ratio = (b.head_kw - b.customers_kw) / b.head_kw;
        if st.avg_head_kw == 0.0 {
            st.avg_head_kw = b.head_kw;
        }
        let x = b.head_kw / st.avg_head_kw;
        let expected = if st.learned_hours >= 24 {
            st.fit.predict(x)
        } else {
            ratio
        };
        let residual = ratio - expected;
        let flagged = who.flagged;
        // Learn from normal hours only: not while flagged, not from outliers once learned.
        if !flagged && (st.learned_hours < 24 || residual.abs() < min_ratio / 2.0) {
            st.fit.add(x, ratio, 1.0 - 1.0 / 336.0);
            st.learned_hours += 1;
            // The load scale is learned over the first week, then held: losses grow with the
            // absolute current, so a scale that followed the load would drift the model.
            if st.learned_hours <= 168 {
                st.avg_head_kw += (b.head_kw - st.avg_head_kw) / f64::from(st.learned_hours);
            }
        }
        if st.learned_hours < 24 {
            return None;
        }
        st.residual_kw[st.pos] = (residual * b.head_kw) as f32;
        st.residual_ratio[st.pos] = residual as f32;
        st.pos = (st.pos + 1) % WINDOW;
        st.filled = (st.filled + 1).min(WINDOW);
        let limit = cfg.cusum_limit;
        // Each hour adds at most a sixth of the limit: one bad hour (a glitch, a meter's
        // catch-up) can't raise a case, six steady ones can.
        let step = (residual - cfg.cusum_allowance).min(limit / 6.0);
        st.cusum = (st.cusum + step).clamp(0.0, 2.0 * limit);
        if st.cusum == 0.0 {
            (st.rise_kw, st.rise_ratio, st.rise_hours) = (0.0, 0.0, 0);
        } else {
            st.rise_kw += residual * b.head_kw;
            st.rise_ratio += residual;
            st.rise_hours += 1;
        }
        let slow = st.cusum >= limit;
        if st.filled < WINDOW {
            return None;
        }
        let mean_ratio =
            st.residual_ratio.iter().map(|&r| f64::from(r)).sum::<f64>() / WINDOW as f64;
        let positive = st
            .residual_ratio
            .iter()
            .filter(|&&r| f64::from(r) > min_ratio / 3.0)
            .count();
        let fast = mean_ratio >= min_ratio && positive * 2 >= WINDOW;
        if !(fast || slow) {
            return None;
        }
        // The unmetered load while it draws: the hours that stand out (the window may still
        // hold hours from before it began).
        let kws: Vec<f64> = (0..WINDOW)
            .filter(|&k| f64::from(st.residual_ratio[k]) > min_ratio / 3.0)
            .map(|k| f64::from(st.residual_kw[k]))
            .collect();
        let n = kws.len().max(1) as f64;
        let mean_kw = kws.iter().sum::<f64>() / n;
        let spread = (kws.iter().map(|k| (k - mean_kw).powi(2)).sum::<f64>() / n).sqrt();
        // Flat: steady, and on in every hour since it first showed (a duty cycle has gaps).
        let elevated: Vec<bool> = (0..WINDOW)
            .map(|k| f64::from(st.residual_ratio[(st.pos + k) % WINDOW]) > min_ratio / 3.0)
            .collect();
        let since_first = elevated.iter().skip_while(|e| !**e).all(|e| *e);
        let shape = if !kws.is_empty() && spread < 0.35 * mean_kw.abs() && since_first {
            LoadShape::Flat
        } else {
            LoadShape::Variable
        };
        // A large tap is estimated over the window; a small one, found by its CUSUM, over the
        // hours since the sum began to rise.
        let (kw, share, hours, score) = if fast {
            let score = (0.6 + 0.4 * (mean_ratio / 0.15).min(1.0)).min(1.0);
            (mean_kw, mean_ratio, WINDOW as u32, score)
        } else {
            let h = f64::from(st.rise_hours.max(1));
            let share = st.rise_ratio / h;
            let score = (0.55 + 0.3 * (share / 0.05).min(1.0)).min(1.0);
            (st.rise_kw / h, share, st.rise_hours, score)
        };
        let evidence = Evidence {
            unmetered_kw: round(kw, 2),
            unmetered_share: round(share, 4),
            loss_ratio_expected: round(expected, 4),
            loss_ratio_observed: round(ratio, 4),
            head_kw: round(b.head_kw, 2),
            customers_kw: round(b.customers_kw, 2),
            customers: who.customers as f64,
            shape,
            cusum: round(st.cusum, 3),
        };
        Some(Finding::new(
            score,
            kw,
            residual * b.head_kw,
            Piece(evidence),
            format!(
                "Feeder {} draws {:.1} kW ({:.1} %) more than its {} meters and usual losses explain, for {} h; {} load",
                who.id,
                kw,
                share * 100.0,
                who.customers,
                hours,
                shape.as_str()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_decades_apart_open_a_bounded_number_of_hours() {
        // 1980, then 2026 (a head's clock gone wrong), then the year 9842 (a forged timestamp):
        // each would have opened every hour between (68 M hours, gigabytes, for the last).
        let (then, now, far) = (315_532_800, 1_767_225_600, 248_408_726_400);
        let mut b = BalanceState::new();
        for ts in [then, now, far] {
            b.add(Side::Head, ts, 900, 1.0, Quality::Actual);
            assert!(b.open.len() <= MAX_OPEN, "{} open hours", b.open.len());
            while b.pop_closed(48 * 3600, 1, |_| Silent::default()).is_some() {}
        }
        // Backwards, before the balance has judged an hour: bounded too.
        let mut b = BalanceState::new();
        b.add(Side::Head, now, 900, 1.0, Quality::Actual);
        b.add(Side::Head, then, 900, 1.0, Quality::Actual);
        assert!(b.open.len() <= MAX_OPEN, "{} open hours", b.open.len());
    }
}
