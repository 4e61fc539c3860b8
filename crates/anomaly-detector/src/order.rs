//! The order window (`detector.order_window_s`): readings held back and handed to the engine
//! in event-time order, so that alerts do not depend on the order in which meters deliver.
//!
//! A reading is held while it is within the window of the newest reading time offered (the
//! clock), and released once the clock is more than the window past it, in the order of
//! (interval end, meter id, estimates before actuals, arrival). Any two arrival orders of the
//! same readings in which every reading arrives before the clock is more than the window past
//! it release the same sequence — up to two different estimates of one interval, which keep
//! their arrival order (the newer replaces the older) — and so give the same alerts: the
//! season, the peers, the split parts and the feeder balance read other meters' hours as the
//! same sequence left them. A reading further behind is handed over at once (it is not lost:
//! the engine counts it, or rejects it as late by its meter's horizon).
//!
//! The price is latency and memory: every judgement waits the window of stream time, and the
//! window's readings are held (about 200 bytes each). Off (0) by default. See
//! docs/ARCHITECTURE.md, "Arrival order".

use gridwatch_core::reading::CompactString;
use gridwatch_core::{Quality, Reading};
use std::collections::BTreeMap;

/// (interval end, meter id, 0 for an estimate and 1 for an actual, arrival number).
type Key = (i64, CompactString, u8, u64);

#[derive(Debug, Default)]
pub(crate) struct Order {
    window: i64,
    /// The newest reading time offered.
    clock: Option<i64>,
    seq: u64,
    held: BTreeMap<Key, (u64, Reading)>,
}

impl Order {
    pub fn new(window: i64) -> Order {
        Order {
            window,
            ..Order::default()
        }
    }

    /// Holds `r` (with the caller's `tag`) if it is within the window; `false`: judge it now.
    pub fn hold(&mut self, r: &Reading, tag: u64) -> bool {
        if self.window == 0 || self.clock.is_some_and(|c| r.ts < c - self.window) {
            return false;
        }
        self.clock = Some(self.clock.map_or(r.ts, |c| c.max(r.ts)));
        let actual = u8::from(r.quality == Quality::Actual);
        self.held.insert(
            (r.ts, r.meter_id.clone(), actual, self.seq),
            (tag, r.clone()),
        );
        self.seq += 1;
        true
    }

    /// The next held reading the clock has passed by more than the window.
    pub fn due(&mut self) -> Option<(u64, Reading)> {
        let clock = self.clock?;
        let entry = self.held.first_entry()?;
        (entry.key().0 < clock - self.window).then(|| entry.remove())
    }

    /// The next held reading, due or not (the end of the input).
    pub fn next(&mut self) -> Option<(u64, Reading)> {
        self.held.pop_first().map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// The clock and the held readings (tag, reading) in release order, for a checkpoint.
    pub fn parts(&self) -> (Option<i64>, impl Iterator<Item = &(u64, Reading)>) {
        (self.clock, self.held.values())
    }

    /// Back from [`Order::parts`].
    pub fn from_parts(window: i64, clock: Option<i64>, held: Vec<(u64, Reading)>) -> Order {
        let mut o = Order::new(window);
        for (tag, r) in held {
            let actual = u8::from(r.quality == Quality::Actual);
            o.held
                .insert((r.ts, r.meter_id.clone(), actual, o.seq), (tag, r));
            o.seq += 1;
        }
        o.clock = clock;
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(meter: &str, ts: i64, quality: Quality) -> Reading {
        Reading {
            meter_id: meter.into(),
            ts,
            interval_s: 900,
            kwh: 1.0,
            kvarh: None,
            kwh_export: None,
            voltage_v: None,
            current_a: None,
            feeder_id: None,
            quality,
        }
    }

    fn released(o: &mut Order, offered: &[Reading]) -> Vec<(String, i64, Quality)> {
        let mut out = Vec::new();
        for r in offered {
            assert!(o.hold(r, 0));
            while let Some((_, r)) = o.due() {
                out.push((r.meter_id.to_string(), r.ts, r.quality));
            }
        }
        while let Some((_, r)) = o.next() {
            out.push((r.meter_id.to_string(), r.ts, r.quality));
        }
        out
    }

    #[test]
    fn two_arrival_orders_within_the_window_release_one_sequence() {
        let a = [
            reading("B", 900, Quality::Actual),
            reading("A", 1800, Quality::Actual),
            reading("A", 900, Quality::Actual),
            reading("B", 900, Quality::Estimated),
            reading("B", 5400, Quality::Actual),
        ];
        let mut b = a.clone();
        b.reverse();
        let first = released(&mut Order::new(7200), &a);
        assert_eq!(first, released(&mut Order::new(7200), &b));
        assert_eq!(
            first,
            [
                ("A".into(), 900, Quality::Actual),
                ("B".into(), 900, Quality::Estimated),
                ("B".into(), 900, Quality::Actual),
                ("A".into(), 1800, Quality::Actual),
                ("B".into(), 5400, Quality::Actual),
            ]
        );
    }

    #[test]
    fn a_reading_is_released_once_the_clock_is_the_window_past_it_and_one_further_behind_is_not_held(
    ) {
        let mut o = Order::new(3600);
        assert!(o.hold(&reading("A", 900, Quality::Actual), 1));
        assert!(o.hold(&reading("A", 4500, Quality::Actual), 2));
        assert!(o.due().is_none(), "4500 - 900 is the window, not past it");
        assert!(o.hold(&reading("B", 4501, Quality::Actual), 3));
        assert_eq!(o.due().map(|(tag, r)| (tag, r.ts)), Some((1, 900)));
        assert!(o.due().is_none());
        assert!(
            !o.hold(&reading("C", 900, Quality::Actual), 4),
            "behind the window"
        );
        assert_eq!(o.len(), 2);
        let (clock, held) = o.parts();
        let held: Vec<_> = held.cloned().collect();
        let mut back = Order::from_parts(3600, clock, held);
        assert_eq!(back.next().map(|(tag, _)| tag), Some(2));
        assert_eq!(back.next().map(|(tag, _)| tag), Some(3));
    }

    #[test]
    fn a_window_of_zero_holds_nothing() {
        assert!(!Order::new(0).hold(&reading("A", 900, Quality::Actual), 0));
    }
}
