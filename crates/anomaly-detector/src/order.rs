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
//! window's readings are held (56 bytes each, in buckets by interval end). Off (0) by default.
//! See docs/ARCHITECTURE.md, "Arrival order".

use gridwatch_core::reading::CompactString;
use gridwatch_core::{Quality, Reading};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// A held reading without its interval end (its bucket's key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Held {
    meter_id: CompactString,
    kwh: f64,
    /// The caller's tag (a line, an offset).
    tag: u64,
    interval_s: u32,
    quality: Quality,
    /// The optional fields, when any is set (rare).
    extra: Option<Box<Extra>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Extra {
    kvarh: Option<f64>,
    kwh_export: Option<f64>,
    voltage_v: Option<f64>,
    current_a: Option<f64>,
    feeder_id: Option<CompactString>,
}

impl Held {
    fn of(r: &Reading, tag: u64) -> Held {
        let any = r.kvarh.is_some()
            || r.kwh_export.is_some()
            || r.voltage_v.is_some()
            || r.current_a.is_some()
            || r.feeder_id.is_some();
        Held {
            meter_id: r.meter_id.clone(),
            kwh: r.kwh,
            tag,
            interval_s: r.interval_s,
            quality: r.quality,
            extra: any.then(|| {
                Box::new(Extra {
                    kvarh: r.kvarh,
                    kwh_export: r.kwh_export,
                    voltage_v: r.voltage_v,
                    current_a: r.current_a,
                    feeder_id: r.feeder_id.clone(),
                })
            }),
        }
    }

    fn into_reading(self, ts: i64) -> (u64, Reading) {
        let x = self.extra.map(|x| *x).unwrap_or_default();
        let r = Reading {
            meter_id: self.meter_id,
            ts,
            interval_s: self.interval_s,
            kwh: self.kwh,
            kvarh: x.kvarh,
            kwh_export: x.kwh_export,
            voltage_v: x.voltage_v,
            current_a: x.current_a,
            feeder_id: x.feeder_id,
            quality: self.quality,
        };
        (self.tag, r)
    }
}

/// The window's state: the clock, and the held readings by interval end. Its length is a
/// setting, not state.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Order {
    #[serde(skip)]
    window: i64,
    /// The newest reading time offered.
    clock: Option<i64>,
    /// Each bucket in arrival order.
    held: BTreeMap<i64, Vec<Held>>,
    /// The longest bucket's length: a new bucket starts with room for as many (meters deliver
    /// at the same intervals), not with a doubling vector's spare half.
    #[serde(skip)]
    usual: usize,
    /// The bucket being released, in order (empty between two offers).
    #[serde(skip)]
    ready: VecDeque<(u64, Reading)>,
}

impl Order {
    pub fn new(window: i64) -> Order {
        Order {
            window,
            ..Order::default()
        }
    }

    /// This state under a window of `window` (after a restore).
    pub fn with_window(self, window: i64) -> Order {
        Order { window, ..self }
    }

    /// Holds `r` (with the caller's `tag`) if it is within the window; `false`: judge it now.
    pub fn hold(&mut self, r: &Reading, tag: u64) -> bool {
        if self.window == 0 || self.clock.is_some_and(|c| r.ts < c - self.window) {
            return false;
        }
        self.clock = Some(self.clock.map_or(r.ts, |c| c.max(r.ts)));
        let usual = self.usual;
        let bucket = self
            .held
            .entry(r.ts)
            .or_insert_with(|| Vec::with_capacity(usual));
        bucket.push(Held::of(r, tag));
        self.usual = self.usual.max(bucket.len());
        true
    }

    /// The next held reading the clock has passed by more than the window.
    pub fn due(&mut self) -> Option<(u64, Reading)> {
        if self.ready.is_empty() {
            let clock = self.clock?;
            let (&ts, _) = self.held.first_key_value()?;
            if ts >= clock - self.window {
                return None;
            }
            self.open_first();
        }
        self.ready.pop_front()
    }

    /// The next held reading, due or not (the end of the input).
    pub fn next(&mut self) -> Option<(u64, Reading)> {
        if self.ready.is_empty() {
            self.open_first();
        }
        self.ready.pop_front()
    }

    /// Moves the earliest bucket to `ready`, in the order of meter id, estimates before
    /// actuals, arrival.
    fn open_first(&mut self) {
        let Some((ts, mut bucket)) = self.held.pop_first() else {
            return;
        };
        // Stable: copies of one interval keep their arrival order.
        bucket.sort_by(|a, b| {
            (&a.meter_id, a.quality == Quality::Actual)
                .cmp(&(&b.meter_id, b.quality == Quality::Actual))
        });
        self.ready
            .extend(bucket.into_iter().map(|h| h.into_reading(ts)));
    }

    /// Readings held.
    pub fn len(&self) -> usize {
        self.held.values().map(Vec::len).sum::<usize>() + self.ready.len()
    }

    /// Bytes the held readings take, about.
    pub fn heap_bytes(&self) -> usize {
        let per = std::mem::size_of::<Held>();
        let buckets = self.held.len() * (std::mem::size_of::<(i64, Vec<Held>)>() + 16);
        let extras = self
            .held
            .values()
            .flatten()
            .filter(|h| h.extra.is_some())
            .count()
            * std::mem::size_of::<Extra>();
        let capacity: usize = self.held.values().map(Vec::capacity).sum();
        buckets + capacity * per + extras
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(meter: &str, ts: i64, quality: Quality) -> Reading {
        Reading {
            quality,
            ..Reading::new(meter, ts, 900, 1.0)
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
    }

    #[test]
    fn a_held_reading_comes_back_whole_through_a_checkpoint() {
        let mut o = Order::new(3600);
        let full = Reading {
            kvarh: Some(0.5),
            kwh_export: Some(0.25),
            voltage_v: Some(231.0),
            current_a: Some(4.5),
            feeder_id: Some("F1".into()),
            quality: Quality::Estimated,
            ..Reading::new("A", 900, 300, 1.5)
        };
        assert!(o.hold(&full, 7));
        assert!(o.hold(&reading("B", 1800, Quality::Actual), 8));
        let bytes = postcard::to_stdvec(&o).unwrap();
        let mut back = postcard::from_bytes::<Order>(&bytes)
            .unwrap()
            .with_window(3600);
        assert!(
            !back.hold(&reading("D", 1800 - 3601, Quality::Actual), 10),
            "the clock came back: this one is behind the window"
        );
        assert!(back.hold(&reading("C", 5401, Quality::Actual), 9));
        assert_eq!(back.due(), Some((7, full)));
        assert_eq!(back.due().map(|(tag, r)| (tag, r.ts)), Some((8, 1800)));
        assert_eq!(back.due(), None);
        assert_eq!(back.len(), 1);
    }

    #[test]
    fn a_window_of_zero_holds_nothing() {
        assert!(!Order::new(0).hold(&reading("A", 900, Quality::Actual), 0));
    }
}
