//! `peer_outlier`: each day, a customer's energy is compared with that of the customers of its class
//! on its feeder, on the same day. The comparison is in log units: `ratio = ln(own) −
//! median(ln peers)`. The peers carry the season, the weather and the day of the week, so
//! what is left is the site's own standing among them, which for a real customer drifts little.
//! A one-sided CUSUM on that standing, against the site's own learned usual ratio, finds a
//! load that was added and stayed — a small miner well below any fixed threshold — without
//! flagging the customers who are simply large (they always were).

use super::season::{Rise, Risen, Season};
use super::{at_least, class_name, fmt_kw, in_range, positive, ConfigError, HourCx, SiteDetector};
use crate::case::Raised;
use crate::episode::Finding;
use crate::evidence::{round, ClassName, Evidence::Peer as Piece, Peer as Evidence};
use crate::series::HOUR;
use gridwatch_core::{AlertKind, CustomerClass, MeterRecord};
use serde::{Deserialize, Serialize};

/// `[detector.peer]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PeerConfig {
    /// A customer's daily energy is compared (in log units) with the median of the customers
    /// of its class on its feeder that day, when at least `min_peers` have closed it. After
    /// `learn_days` days of its usual standing, a one-sided CUSUM of its rises above that
    /// standing, less `allowance` a day, must reach `cusum_limit`…
    pub min_peers: usize,
    pub learn_days: u16,
    pub allowance: f64,
    pub cusum_limit: f64,
    /// …adding at least `min_kw` above what its peers say it would draw, of which the site's
    /// 24-hour floor carries at least `flat_share` (a load that stays on), for `min_days` days
    /// running: real households hold a flat few kW for up to four days.
    pub min_kw: f64,
    pub flat_share: f64,
    pub min_days: u16,
    /// The most a site's usual standing may be (times its peers' median) and still excuse it.
    pub max_usual: f64,
    /// While at least this share of the customers of a class in a region (and at least half
    /// `min_peers` of them) draw above their usual day (1.2 × and 0.3 kW more) over the same
    /// 24 hours — a cold snap running every heated home's heating, a heat wave the air
    /// conditioning —, residences' new load patterns (flat days, night blocks, duty cycles)
    /// are the season's, not rigs', and peer standings hold still.
    pub common_share: f64,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            min_peers: 8,
            learn_days: 2,
            allowance: 0.4,
            cusum_limit: 2.0,
            min_kw: 1.0,
            flat_share: 0.5,
            min_days: 6,
            max_usual: 3.0,
            common_share: 0.15,
        }
    }
}

impl PeerConfig {
    pub(crate) fn build(&self) -> Result<PeerDetector, ConfigError> {
        at_least("peer.min_peers", self.min_peers, 2)?;
        at_least("peer.learn_days", self.learn_days, 1)?;
        at_least("peer.min_days", self.min_days, 1)?;
        positive("peer.allowance", self.allowance)?;
        positive("peer.cusum_limit", self.cusum_limit)?;
        positive("peer.min_kw", self.min_kw)?;
        in_range("peer.flat_share", self.flat_share, 0.0, 1.0)?;
        at_least("peer.max_usual", self.max_usual, 1.0)?;
        in_range("peer.common_share", self.common_share, 0.0, 1.0)?;
        Ok(PeerDetector { cfg: self.clone() })
    }
}

pub(crate) struct PeerDetector {
    cfg: PeerConfig,
}

impl PeerDetector {
    /// Many of the class's customers in the region drew well above their usual together over
    /// the 24 hours to the hour before the one ending at `end` (closed by those that deliver as
    /// they go), or to the hour before that while too few have closed it.
    /// Returns how far its risen customers typically rose and how much they draw.
    pub fn common_rise(
        &self,
        season: Option<&Season>,
        reg: &MeterRecord,
        end: i64,
    ) -> Option<Risen> {
        let (Some(s), Some(class)) = (season, reg.customer_class) else {
            return None;
        };
        let min_seen = self.cfg.min_peers as u32;
        s.risen_share(
            class,
            end.div_euclid(HOUR) - 2,
            (min_seen, min_seen.div_ceil(2)),
        )
        .filter(|r| r.share >= self.cfg.common_share)
    }
}

impl SiteDetector for PeerDetector {
    const KIND: AlertKind = AlertKind::PeerOutlier;
    type State = PeerTrack;

    /// Judged as each UTC day closes; raised every hour while it holds.
    fn on_hour(&self, cx: &mut HourCx<'_>, st: &mut PeerTrack) -> Option<Raised> {
        let cfg = &self.cfg;
        let (reg, hour) = (cx.reg, cx.hour);
        let class = reg.customer_class?;
        if let (Some(w), Some(season)) = (cx.day, cx.season.as_deref_mut()) {
            season.record(class, hour.end / HOUR - 1, st.rise(w.mean_kw));
        }
        if cx.moved_in {
            // A new household (or one back from a vacation): its standing among its peers
            // is learned anew, not measured against an empty home.
            *st = PeerTrack::default();
        }
        if hour.end % 86_400 == 0 {
            if let Some(w) = cx.day {
                st.learn_day(w.mean_kw, cx.common_rise.is_some());
            }
            let day = cx.day.map(|w| DayView {
                mean_kw: w.mean_kw,
                floor_kw: w.min_kw,
                usual_floor_kw: cx.series.baseline_floor_kw,
                may_learn: !cx.has_case,
            });
            let stats = day.zip(cx.peers.as_deref_mut()).and_then(|(d, p)| {
                p.observe(class, hour.end / 86_400 - 1, d.mean_kw, cfg.min_peers)
                    .map(|s| (d, s))
            });
            match stats {
                // A day many of the feeder's homes spent above their usual floor is the
                // season's: it neither raises nor clears a standing.
                Some(_) if cx.common_rise.is_some() => {}
                // A home whose demand follows the weather, and would stand within its
                // peers' without the heating, is heated, not tapped for rigs.
                Some((_, s))
                    if cx.residential() && cx.weather_explains(s.median.exp() + cfg.min_kw) => {}
                Some((d, s)) => st.judge(d, s, cfg),
                None => st.added_kw = 0.0,
            }
        }
        let added = f64::from(st.added_kw);
        if added <= 0.0 || cx.licensed_within_permit(hour.kw) {
            return None;
        }
        let usual = f64::from(st.usual).exp();
        let f = Finding::new(
            (0.5 + 0.25 * (f64::from(st.cusum) / (2.0 * cfg.cusum_limit)).min(1.0)
                + 0.2 * (added / 5.0).min(1.0))
            .min(1.0),
            added,
            added,
            Piece(Evidence {
                ratio_to_peers: round(f64::from(st.ratio), 2),
                usual_ratio_to_peers: round(usual, 2),
                peer_median_kw: round(f64::from(st.peer_kw), 2),
                peers: f64::from(st.peers),
                robust_z: round(f64::from(st.z), 1),
                cusum: round(f64::from(st.cusum), 2),
                added_kw: round(added, 2),
                customer_class: ClassName(reg.customer_class),
            }),
            format!(
                "Draws {:.1}× the median of its {} {} peers on feeder {} (usually {:.1}×): +{} kW that stays on, day and night",
                st.ratio,
                st.peers,
                class_name(reg),
                reg.feeder_id,
                usual,
                fmt_kw(added)
            ),
        );
        Some(Raised::new(Self::KIND, hour.end - 24 * HOUR, f, true))
    }
}

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

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Day {
    day: i64,
    values: Vec<f32>,
}

/// The daily values of one feeder's customers of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Group {
    class: CustomerClass,
    days: [Day; DAYS],
}

/// A feeder's peer groups, one per customer class: per-feeder state of this detector.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Peers {
    groups: Vec<Group>,
    #[serde(skip)]
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
        // A day older than the one the slot holds (a meter whose data came days late) is gone:
        // it must not wipe the newer day its peers are filling.
        if g.days[slot].day > day {
            return None;
        }
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

/// One meter's standing among its peers, and the CUSUM of its rises: per-meter state of this
/// detector.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
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
    /// The site's usual daily mean demand (kW; two weeks' memory) and the days it has learned
    /// from: held still while its group stands risen together, so a cold snap is measured
    /// against the weather before it.
    usual_day_kw: f32,
    days_learned: u16,
}

/// What one closed day showed.
#[derive(Debug, Clone, Copy, PartialEq)]
struct DayView {
    pub mean_kw: f64,
    /// The day's lowest hour and the 24-hour floor the site had learned (kW).
    pub floor_kw: f64,
    pub usual_floor_kw: f64,
    /// The site may learn its usual standing from this day (no case open).
    pub may_learn: bool,
}

impl PeerTrack {
    /// How far (`ln`) the last 24 hours' mean demand (kW) stands above the site's usual day, if
    /// it is risen (1.2 × and
    /// 0.3 kW more: heating through a cold snap).
    fn rise(&self, kw: f64) -> Option<Rise> {
        let usual = f64::from(self.usual_day_kw);
        (self.days_learned >= 3 && kw >= 1.2 * usual + 0.3).then(|| Rise {
            by: ln_kw(kw) - ln_kw(usual),
            level: ln_kw(kw),
        })
    }

    /// Folds a closed UTC day's mean demand into the usual day, unless its region stood risen
    /// together (`common`): the usual is what a cold snap is measured against.
    fn learn_day(&mut self, kw: f64, common: bool) {
        if common {
            return;
        }
        self.days_learned = self.days_learned.saturating_add(1);
        let a = 1.0 / f64::from(self.days_learned.min(14));
        let usual = f64::from(self.usual_day_kw);
        self.usual_day_kw = (usual + a * (kw - usual)) as f32;
    }

    /// Judges a closed day against the peers; afterwards `added_kw > 0` while an added,
    /// always-on load holds.
    fn judge(&mut self, d: DayView, peers: PeerStats, cfg: &PeerConfig) {
        let ratio = ln_kw(d.mean_kw) - peers.median;
        // A site is measured against its own usual standing, but no usual excuses more than
        // `peer_max_usual` times its peers: a site that has drawn that much, flat, from its
        // first day stands out as surely as one that rose.
        let usual = f64::from(self.usual).min(cfg.max_usual.ln());
        let expected_kw = ((peers.median + usual).exp() - OFFSET).max(0.0);
        self.ratio = ratio.exp() as f32;
        self.z = (ratio / peers.spread.max(0.05)) as f32;
        self.peer_kw = ((peers.median.exp() - OFFSET).max(0.0)) as f32;
        self.peers = peers.peers.min(usize::from(u16::MAX)) as u16;
        if self.learned_days < cfg.learn_days {
            self.learn(ratio, f64::INFINITY);
            return;
        }
        let shift = ratio - usual;
        let cusum = (f64::from(self.cusum) + shift - cfg.allowance).max(0.0);
        self.cusum = cusum as f32;
        let added = d.mean_kw - expected_kw;
        // The rise must be a load that stays on (the floor carries it), not more of the
        // same day-time use: an EV or a cold week raise the energy, not the night.
        if self.rise_days == 0 {
            self.floor_before = d.usual_floor_kw as f32;
        }
        let flat = d.floor_kw - f64::from(self.floor_before) >= cfg.flat_share * added;
        let risen = shift > cfg.allowance && added >= cfg.min_kw && flat;
        self.rise_days = if risen {
            self.rise_days.saturating_add(1)
        } else {
            0
        };
        self.added_kw = if cusum >= cfg.cusum_limit && self.rise_days >= cfg.min_days {
            added as f32
        } else {
            0.0
        };
        if cusum == 0.0 && d.may_learn {
            self.learn(ratio, 2.0 * cfg.allowance);
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
