//! The season, per region and customer class: hour by hour, how many customers' last 24 hours
//! drew well above their own usual day. Many at once is the weather — a cold snap running every heated home's
//! heating, a heat wave the air conditioning —, not rigs: while it holds, residences' new load
//! patterns are not judged as mining and peer standings hold still
//! ([`super::peer::PeerDetector::common_rise`]). Per-region state, kept by the engine.

use gridwatch_core::CustomerClass;
use serde::{Deserialize, Serialize};

/// One hour's count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Tally {
    hour: i64,
    seen: u32,
    risen: u32,
    /// Sum of the risen customers' rise, `ln(last 24 h ÷ usual day)`.
    rise_sum: f32,
}

/// A region in a season: the share of its customers that stand risen, and how far they rose
/// on average (`ln` of last 24 h ÷ usual day).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Risen {
    pub share: f64,
    pub typical_rise: f64,
}

/// Hours kept: two days, so a meter whose day comes in a batch the next night still reads the
/// season of its hours (and one whose clock runs ahead doesn't wipe the hour others read).
const HOURS: usize = 48;

/// A region's last hours, per customer class.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Season {
    groups: Vec<(CustomerClass, Vec<Tally>)>,
}

impl Season {
    /// Counts a customer's closed `hour`, risen by `ln(last 24 h ÷ usual day)` or not. An hour older than the one its slot
    /// holds (data that came late, a day's batch) is not counted: it must not wipe the newer
    /// hour; the customers that deliver as they go are the sample.
    pub fn record(&mut self, class: CustomerClass, hour: i64, risen: Option<f64>) {
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
            t.rise_sum += rise as f32;
        }
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
            });
        }
        Some(Risen {
            share: f64::from(t.risen) / f64::from(t.seen),
            typical_rise: f64::from(t.rise_sum) / f64::from(t.risen),
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
        for k in 0..20 {
            s.record(c, 10, (k < 6).then_some(0.5));
        }
        s.record(c, 8, Some(2.0));
        let share = |h, min| s.risen_share(c, h, min).map(|r| r.share);
        assert_eq!(share(10, (8, 4)), Some(0.3));
        assert_eq!(share(11, (8, 4)), Some(0.3), "the hour before");
        assert_eq!(share(10, (8, 7)), Some(0.0), "too few rose");
        assert_eq!(
            s.risen_share(c, 10, (8, 4)).map(|r| r.typical_rise),
            Some(0.5)
        );
    }
}
