//! Peers: each day, a customer's energy is compared with that of the customers of its class
//! on its feeder, on the same day. The comparison is in log units: `ratio = ln(own) −
//! median(ln peers)`. The peers carry the season, the weather and the day of the week, so
//! what is left is the site's own standing among them, which for a real customer drifts little.
//! A one-sided CUSUM on that standing, against the site's own learned usual ratio, finds a
//! load that was added and stayed — a small miner well below any fixed threshold — without
//! flagging the customers who are simply large (they always were).

use gridwatch_core::{CustomerClass, DetectorConfig};

/// Days of peer values kept per group: the day being closed and the one before.
const DAYS: usize = 2;
/// A meter's daily mean demand is `ln(kw + OFFSET)`: a vacation's zeros stay finite.
const OFFSET: f64 = 0.05;

/// The peers' standing on one day.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PeerStats {
    /// Median of the peers' `ln(kW)`.
    pub median: f64,
    /// Robust spread (1.4826 × MAD) of the peers' `ln(kW)`.
    pub spread: f64,
    pub peers: usize,
}

#[derive(Debug, Clone, Default)]
struct Day {
    day: i64,
    values: Vec<f32>,
}

/// The daily values of one feeder's customers of one class.
#[derive(Debug, Clone)]
struct Group {
    class: CustomerClass,
    days: [Day; DAYS],
}

/// A feeder's peer groups, one per customer class.
#[derive(Debug, Clone, Default)]
pub(crate) struct Peers {
    groups: Vec<Group>,
    scratch: Vec<f32>,
}

impl Peers {
    /// Adds a meter's mean demand over `day` (days since the epoch) and returns its peers'
    /// standing that day, as it is before this meter's own value — or, while fewer than
    /// `min_peers` have closed the day, the day before.
    pub fn observe(
        &mut self,
        class: CustomerClass,
        day: i64,
        kw: f64,
        min_peers: usize,
    ) -> Option<PeerStats> {
        let g = match self.groups.iter().position(|g| g.class == class) {
            Some(p) => &mut self.groups[p],
            None => {
                self.groups.push(Group {
                    class,
                    days: Default::default(),
                });
                self.groups.last_mut().expect("just pushed")
            }
        };
        let slot = day.rem_euclid(DAYS as i64) as usize;
        if g.days[slot].day != day {
            g.days[slot] = Day {
                day,
                values: Vec::new(),
            };
        }
        let prev = &g.days[(day - 1).rem_euclid(DAYS as i64) as usize];
        let basis = if g.days[slot].values.len() >= min_peers {
            &g.days[slot].values
        } else if prev.day == day - 1 && prev.values.len() >= min_peers {
            &prev.values
        } else {
            &g.days[slot].values
        };
        let stats = (basis.len() >= min_peers).then(|| {
            self.scratch.clear();
            self.scratch.extend_from_slice(basis);
            let median = median_of(&mut self.scratch);
            for v in &mut self.scratch {
                *v = (*v - median as f32).abs();
            }
            let spread = 1.4826 * median_of(&mut self.scratch);
            PeerStats {
                median,
                spread,
                peers: basis.len(),
            }
        });
        g.days[slot].values.push(ln_kw(kw) as f32);
        stats
    }
}

pub(crate) fn ln_kw(kw: f64) -> f64 {
    (kw.max(0.0) + OFFSET).ln()
}

fn median_of(v: &mut [f32]) -> f64 {
    let mid = v.len() / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, f32::total_cmp);
    f64::from(*m)
}

/// One meter's standing among its peers, and the CUSUM of its rises.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PeerTrack {
    /// The usual `ln(own) − median(ln peers)`.
    pub usual: f32,
    pub learned_days: u16,
    pub cusum: f32,
    /// Consecutive days the site stood above its usual standing with an added, always-on load.
    pub rise_days: u16,
    /// The site's learned 24-hour floor when the rise began: the floor baseline itself slowly
    /// learns the new level.
    floor_before: f32,
    /// The load added above what the peers say the site would draw, while the alarm holds.
    pub added_kw: f32,
    /// The last judged day's ratio to the peers' median, and theirs (kW), for the evidence.
    pub ratio: f32,
    pub peer_kw: f32,
    pub peers: u16,
    /// The last judged day's distance from the peers' median in robust standard deviations.
    pub z: f32,
}

/// What one closed day showed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct DayView {
    pub mean_kw: f64,
    /// The day's lowest hour and the 24-hour floor the site had learned (kW).
    pub floor_kw: f64,
    pub usual_floor_kw: f64,
    /// The site may learn its usual standing from this day (no case open).
    pub may_learn: bool,
}

impl PeerTrack {
    /// Judges a closed day against the peers; afterwards `added_kw > 0` while an added,
    /// always-on load holds.
    pub fn judge(&mut self, d: DayView, peers: PeerStats, cfg: &DetectorConfig) {
        let ratio = ln_kw(d.mean_kw) - peers.median;
        // A site is measured against its own usual standing, but no usual excuses more than
        // `peer_max_usual` times its peers: a site that has drawn that much, flat, from its
        // first day stands out as surely as one that rose.
        let usual = f64::from(self.usual).min(cfg.peer_max_usual.ln());
        let expected_kw = ((peers.median + usual).exp() - OFFSET).max(0.0);
        self.ratio = ratio.exp() as f32;
        self.z = (ratio / peers.spread.max(0.05)) as f32;
        self.peer_kw = ((peers.median.exp() - OFFSET).max(0.0)) as f32;
        self.peers = peers.peers.min(usize::from(u16::MAX)) as u16;
        if self.learned_days < cfg.peer_learn_days {
            self.learn(ratio, f64::INFINITY);
            return;
        }
        let shift = ratio - usual;
        let cusum = (f64::from(self.cusum) + shift - cfg.peer_allowance).max(0.0);
        self.cusum = cusum as f32;
        let added = d.mean_kw - expected_kw;
        // The rise must be a load that stays on (the floor carries it), not more of the
        // same day-time use: an EV or a cold week raise the energy, not the night.
        if self.rise_days == 0 {
            self.floor_before = d.usual_floor_kw as f32;
        }
        let flat = d.floor_kw - f64::from(self.floor_before) >= cfg.peer_flat_share * added;
        let risen = shift > cfg.peer_allowance && added >= cfg.peer_min_kw && flat;
        self.rise_days = if risen {
            self.rise_days.saturating_add(1)
        } else {
            0
        };
        self.added_kw = if cusum >= cfg.peer_cusum_limit && self.rise_days >= cfg.peer_min_days {
            added as f32
        } else {
            0.0
        };
        if cusum == 0.0 && d.may_learn {
            self.learn(ratio, 2.0 * cfg.peer_allowance);
        }
    }

    /// Folds a day into the usual standing: its upper envelope, so that a vacation (or a quiet
    /// first day) doesn't make the site's ordinary days look like a rise. Upward it follows at
    /// once while learning and by half a step after; downward by a bounded two-week step.
    fn learn(&mut self, ratio: f64, bound: f64) {
        let usual = f64::from(self.usual);
        self.usual = if self.learned_days == 0 {
            ratio
        } else if ratio > usual {
            if bound.is_infinite() {
                ratio
            } else {
                usual + 0.5 * (ratio - usual)
            }
        } else {
            usual - (usual - ratio).min(bound) / 14.0
        } as f32;
        self.learned_days = self.learned_days.saturating_add(1);
    }
}
