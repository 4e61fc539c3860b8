//! `mining_signature`, split: a farm spread over several neighbouring homes' meters so that
//! each carries a load under a home miner's size and inside its permit. Each part alone is a
//! household that draws a little more; together they are rigs switched on at the same hour.
//! A customer whose every hour has stood `min_part_kw` above its learned floor for a day is a
//! *part*; parts on the same feeder that began within `window_s` of each other and add up to
//! `min_total_kw` are one farm, and each part is a case naming the others.
//!
//! Per-meter state: when the run of raised hours began. Per-feeder state ([`Parts`]): the
//! feeder's current parts, kept by the engine beside the peer groups.

use super::{fmt_kw, positive, ConfigError, HourCx, SiteDetector};
use crate::case::Raised;
use crate::episode::Finding;
use crate::evidence::{round, ClassName, Evidence::Split as Piece, Split as Evidence};
use crate::series::HOUR;
use gridwatch_core::AlertKind;
use serde::{Deserialize, Serialize};

/// The most parts one farm is split over: more sites on one feeder raised at the same hour are
/// a common cause.
const MAX_PARTS: usize = 6;

/// Share of its 24-hour mean a part's floor carries: a household's peaks on top of rigs.
const FLOOR_SHARE: f64 = 0.6;

/// `[detector.split]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SplitConfig {
    /// The least a part adds to every hour of its site (kW)…
    pub min_part_kw: f64,
    /// …and the least the parts add together (kW): a home miner's size.
    pub min_total_kw: f64,
    /// Parts whose raised runs began this close together are one farm (s)…
    pub window_s: i64,
    /// …and stand this close to each other (m), where the register gives both sites'
    /// coordinates: one building's meters, or next-door homes.
    pub max_distance_m: f64,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig {
            min_part_kw: 1.5,
            min_total_kw: 4.5,
            window_s: 2 * 3600,
            max_distance_m: 300.0,
        }
    }
}

impl SplitConfig {
    pub(crate) fn build(&self) -> Result<SplitDetector, ConfigError> {
        positive("split.min_part_kw", self.min_part_kw)?;
        positive("split.min_total_kw", self.min_total_kw)?;
        super::in_range("split.window_s", self.window_s, 0, 24 * 3600)?;
        positive("split.max_distance_m", self.max_distance_m)?;
        Ok(SplitDetector { cfg: self.clone() })
    }
}

pub(crate) struct SplitDetector {
    cfg: SplitConfig,
}

/// Per-meter state: the hour (hours since the epoch) its current run of raised hours began,
/// and the least it stood above its floor over the run; 0 while no run holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct SplitTrack {
    since_h: i32,
    least_kw: f32,
}

/// A feeder customer that has held a raised floor for a day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Part {
    site_id: Box<str>,
    since_h: i32,
    /// The last hour it still held (hours since the epoch).
    last_h: i32,
    kw: f32,
    /// Where it stands (degrees), if the register says.
    at: Option<(f32, f32)>,
}

/// Distance between two points (m), flat-earth: parts stand metres apart.
fn distance_m(a: (f32, f32), b: (f32, f32)) -> f64 {
    let (lat, lon) = (f64::from(a.0), f64::from(a.1));
    let dy = (f64::from(b.0) - lat) * 110_574.0;
    let dx = (f64::from(b.1) - lon) * 111_320.0 * lat.to_radians().cos();
    dx.hypot(dy)
}

/// A feeder's current parts: per-feeder state of this detector.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Parts {
    parts: Vec<Part>,
}

impl Parts {
    /// Records `site`'s part as held at `now_h` and returns the parts (itself first) that
    /// began within `window_h` of it and still hold. Parts not held for two days are dropped.
    fn hold(&mut self, me: Part, now_h: i32, cfg: &SplitConfig) -> Vec<Part> {
        self.parts.retain(|p| p.last_h >= now_h - 48);
        match self.parts.iter_mut().find(|p| p.site_id == me.site_id) {
            Some(p) => *p = me.clone(),
            None => self.parts.push(me.clone()),
        }
        let window_h = (cfg.window_s / HOUR) as i32;
        let near = |p: &Part| match (p.at, me.at) {
            (Some(a), Some(b)) => distance_m(a, b) <= cfg.max_distance_m,
            _ => true,
        };
        let site = &*me.site_id;
        let mut group: Vec<Part> = self
            .parts
            .iter()
            .filter(|p| {
                (p.since_h - me.since_h).abs() <= window_h && p.last_h >= now_h - 2 && near(p)
            })
            .cloned()
            .collect();
        // Itself first, then the others by site id: the evidence reads the same in any order.
        group.sort_by(|a, b| {
            (&*a.site_id != site)
                .cmp(&(&*b.site_id != site))
                .then_with(|| a.site_id.cmp(&b.site_id))
        });
        group
    }
}

impl SiteDetector for SplitDetector {
    const KIND: AlertKind = AlertKind::MiningSignature;
    type State = SplitTrack;

    fn on_hour(&self, cx: &mut HourCx<'_>, st: &mut SplitTrack) -> Option<Raised> {
        let cfg = &self.cfg;
        let (reg, hour, series) = (cx.reg, cx.hour, cx.series);
        let now_h = (hour.end / HOUR) as i32;
        // A season lifts every home's floor at once, and heating that follows the weather
        // is no rig: neither starts or holds a part.
        let raised = hour.kw - series.baseline_floor_kw;
        if !cx.residential()
            || series.floor_hours < 24
            || raised < cfg.min_part_kw
            || cx.common_rise.is_some()
            || cx.moved_in
        {
            *st = SplitTrack::default();
            return None;
        }
        if st.since_h == 0 {
            *st = SplitTrack {
                since_h: now_h - 1,
                least_kw: raised as f32,
            };
        }
        st.least_kw = st.least_kw.min(raised as f32);
        // A day of it, flat — rigs add the same power every hour and leave the household's
        // restlessness as it was, where heating modulates — and not the weather's.
        let flat = cx.day.is_some_and(|w| {
            w.min_kw >= FLOOR_SHARE * w.mean_kw && !super::mining::restless(series, hour.end, &w)
        });
        if now_h - st.since_h < 24 || !flat || cx.weather_explains(cfg.min_part_kw) {
            return None;
        }
        let me = Part {
            site_id: reg.site_id.as_str().into(),
            since_h: st.since_h,
            last_h: now_h,
            kw: st.least_kw,
            at: reg
                .lat
                .zip(reg.lon)
                .map(|(lat, lon)| (lat as f32, lon as f32)),
        };
        let parts = cx.split.as_deref_mut()?.hold(me, now_h, cfg);
        let total: f64 = parts.iter().map(|p| f64::from(p.kw)).sum();
        // More parts than a farm is split over, started together, are the weather or the
        // feeder's own event (a cold front, a supply restored), not rigs.
        if !(2..=MAX_PARTS).contains(&parts.len())
            || total < cfg.min_total_kw
            || cx.licensed_within_permit(hour.kw)
        {
            return None;
        }
        let part_kw = f64::from(st.least_kw);
        let others: Vec<String> = parts[1..].iter().map(|p| p.site_id.to_string()).collect();
        let f = Finding::new(
            (0.6 + 0.1 * (parts.len() as f64 - 1.0) + 0.2 * (total / 30.0).min(1.0)).min(1.0),
            part_kw,
            part_kw,
            Piece(Evidence {
                part_kw: round(part_kw, 2),
                total_kw: round(total, 2),
                parts: parts.len() as f64,
                other_sites: others.clone(),
                baseline_floor_kw: round(series.baseline_floor_kw, 2),
                customer_class: ClassName(reg.customer_class),
            }),
            format!(
                "{} kW added around the clock since the same hour as {} other site(s) on feeder {} ({}): {} kW together, a farm split over their meters",
                fmt_kw(part_kw),
                others.len(),
                reg.feeder_id,
                others.join(", "),
                fmt_kw(total)
            ),
        );
        Some(Raised::new(
            Self::KIND,
            i64::from(st.since_h) * HOUR,
            f,
            true,
        ))
    }
}
