//! `step_change`: a load that switched on and stayed at a business, while the rest of the
//! site's pattern (shifts, opening hours) may carry on above it — rigs installed at a shop or a
//! factory, inside its permit. Two ways to see it: the 24-hour floor at least doubled against
//! the floor the site learned, by at least `min_kw` (named within a day); or, for smaller
//! steps, a daily one-sided CUSUM of `ln(floor ÷ learned floor)` beyond `allowance` reaching
//! `cusum_limit` (a floor up by half, in about three days). The floor is the robust baseline:
//! the quietest hour of the day carries neither shifts nor weekends.

use super::mining::{licensed_now, Flat, LICENSED};
use super::{a_site, fmt_kw, positive, ConfigError, HourCx, SiteDetector};
use crate::case::Raised;
use crate::episode::Finding;
use crate::evidence::{round, ClassName, Evidence::Step as Piece, Step as Evidence};
use crate::series::{Window, HOUR};
use gridwatch_core::{AlertKind, MeterRecord};
use serde::{Deserialize, Serialize};

/// `[detector.step]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StepConfig {
    /// Smallest added always-on load worth a case (kW).
    pub min_kw: f64,
    /// The daily CUSUM's allowance and limit, in `ln(floor ÷ learned floor)` units.
    pub allowance: f64,
    pub cusum_limit: f64,
}

impl Default for StepConfig {
    fn default() -> Self {
        StepConfig {
            min_kw: 5.0,
            allowance: 0.2,
            cusum_limit: 0.6,
        }
    }
}

impl StepConfig {
    pub(crate) fn build(&self) -> Result<StepDetector, ConfigError> {
        positive("step.min_kw", self.min_kw)?;
        positive("step.allowance", self.allowance)?;
        positive("step.cusum_limit", self.cusum_limit)?;
        Ok(StepDetector { cfg: self.clone() })
    }
}

pub(crate) struct StepDetector {
    cfg: StepConfig,
}

/// The daily CUSUM of the 24-hour floor's rise (ln units) against `from_kw`, the floor learned
/// when the rise began, and the load it added while the CUSUM stands over its limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct StepState {
    pub cusum: f32,
    pub from_kw: f32,
    pub added_kw: f32,
}

impl StepDetector {
    /// The daily CUSUM, run as each UTC day closes at every business (whatever else the day
    /// showed, weekends included), with the floor before frozen when the sum leaves zero.
    fn track(&self, cx: &HourCx<'_>, st: &mut StepState) {
        let (hour, series) = (cx.hour, cx.series);
        if hour.end % 86_400 != 0 || series.floor_hours < 24 {
            return;
        }
        let Some(w) = cx.day else {
            return;
        };
        let from = if st.cusum > 0.0 {
            f64::from(st.from_kw)
        } else {
            series.baseline_floor_kw
        };
        let rise = ((w.min_kw + 1.0) / (from + 1.0)).ln();
        let cusum = (f64::from(st.cusum) + rise - self.cfg.allowance).max(0.0);
        if st.cusum == 0.0 {
            st.from_kw = from as f32;
        }
        st.cusum = cusum as f32;
        let added = w.min_kw - from;
        st.added_kw = if cusum >= self.cfg.cusum_limit && added >= self.cfg.min_kw {
            added as f32
        } else {
            0.0
        };
    }

    /// The day this detector judges: a business's full day (with history) that the mining
    /// detector left to it.
    fn day(cx: &HourCx<'_>) -> Option<Window> {
        if cx.series.floor_hours < 24 {
            return None;
        }
        match cx.flat {
            Flat::None => cx.day,
            Flat::Ordinary(w) => Some(w),
            Flat::Licensed | Flat::Mining { .. } => None,
        }
    }
}

impl SiteDetector for StepDetector {
    const KIND: AlertKind = AlertKind::StepChange;
    type State = StepState;

    fn on_hour(&self, cx: &mut HourCx<'_>, st: &mut StepState) -> Option<Raised> {
        if cx.residential() {
            return None;
        }
        self.track(cx, st);
        let w = Self::day(cx)?;
        let (reg, series) = (cx.reg, cx.series);
        let learned = series.baseline_floor_kw;
        let doubled = w.min_kw - learned >= self.cfg.min_kw.max(learned);
        let (before, added) = if doubled {
            (learned, w.min_kw - learned)
        } else if st.added_kw > 0.0 {
            (f64::from(st.from_kw), f64::from(st.added_kw))
        } else {
            return None;
        };
        if cx.licensed_within_permit(w.mean_kw) {
            return None;
        }
        let f = Finding::new(
            (0.55
                + 0.3 * (added / before.max(1.0) / 4.0).min(1.0)
                + 0.15 * (added / 100.0).min(1.0))
            .min(1.0),
            added,
            added,
            Piece(Evidence {
                floor_kw: round(w.min_kw, 2),
                baseline_floor_kw: round(before, 2),
                added_kw: round(added, 2),
                mean_kw: round(w.mean_kw, 2),
                baseline_kw: round(series.baseline_kw, 2),
                cusum: round(f64::from(st.cusum), 2),
                customer_class: ClassName(reg.customer_class),
            }),
            format!(
                "Always-on load rose from {} kW to {} kW (+{} kW) and stayed at {}",
                fmt_kw(before),
                fmt_kw(w.min_kw),
                fmt_kw(added),
                a_site(reg)
            ),
        );
        Some(Raised::new(Self::KIND, cx.hour.end - 24 * HOUR, f, true))
    }

    fn on_register(
        &self,
        old: Option<&MeterRecord>,
        new: Option<&MeterRecord>,
        _: &mut StepState,
    ) -> Option<&'static str> {
        licensed_now(old, new).then_some(LICENSED)
    }
}
