//! `generation`: a site exporting with no registered generation, or more than its registered
//! `generation_kw` — an unpermitted generator (rooftop PV nobody registered, panels added past
//! the permit, a back-feeding generator) that sends power into lines crews take as dead.
//!
//! Export counts when it comes by day (local 6–20 h), judged as each night ends: a meter that
//! exports at night as well is running backwards, which is [`super::tamper`]'s. An estimated hour never counts: estimates
//! are dropped before hours close ([`crate::series`]).

use super::{a_site, fmt_kw, in_range, positive, ConfigError, HourCx, SiteDetector};
use crate::case::Raised;
use crate::episode::Finding;
use crate::evidence::{round, ClassName, Evidence::Generation as Piece, Generation as Evidence};
use crate::series::HOUR;
use gridwatch_core::{AlertKind, MeterRecord};
use serde::{Deserialize, Serialize};

/// `[detector.generation]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerationConfig {
    /// Exported power (kW) in an hour beyond what is registered that counts: below it, a
    /// meter's creep or an inverter's start-up.
    pub min_kw: f64,
    /// Export up to `generation_kw × (1 + margin)` is within the registration (inverters are
    /// rated a little above the panels' nominal power).
    pub margin: f64,
    /// Daylight hours exporting beyond the registration, within the last 48 closed hours,
    /// that make the finding.
    pub hours: u32,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        GenerationConfig {
            min_kw: 0.3,
            margin: 0.1,
            hours: 3,
        }
    }
}

impl GenerationConfig {
    pub(crate) fn build(&self) -> Result<GenerationDetector, ConfigError> {
        positive("generation.min_kw", self.min_kw)?;
        in_range("generation.margin", self.margin, 0.0, 1.0)?;
        in_range("generation.hours", self.hours, 1, 48)?;
        Ok(GenerationDetector { cfg: self.clone() })
    }
}

pub(crate) struct GenerationDetector {
    cfg: GenerationConfig,
}

impl GenerationDetector {
    /// The export (kW) a registration allows.
    fn allowed_kw(&self, reg: Option<&MeterRecord>) -> f64 {
        reg.and_then(|r| r.generation_kw)
            .map_or(0.0, |g| g * (1.0 + self.cfg.margin))
    }
}

/// The last 48 closed hours (bit 0 the newest): which exported beyond the registration by day,
/// which exported at night; and the most exported in such an hour (kW, all of it), and the
/// energy beyond the registration, since the current run of such hours began.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct GenerationState {
    pub excess: u64,
    pub night: u64,
    pub peak_kw: f32,
    pub kwh: f32,
    /// The finding stands (judged as each night ends).
    pub raised: bool,
}

const LAST_48: u64 = (1 << 48) - 1;

impl SiteDetector for GenerationDetector {
    const KIND: AlertKind = AlertKind::UnregisteredGeneration;
    type State = GenerationState;

    fn on_hour(&self, cx: &mut HourCx<'_>, st: &mut GenerationState) -> Option<Raised> {
        let (cfg, reg, hour, series) = (&self.cfg, cx.reg, cx.hour, cx.series);
        let local = series.local_hour(hour.end - HOUR);
        let allowed = self.allowed_kw(Some(reg));
        let beyond = hour.export_kw - allowed;
        let daylight = (6..20).contains(&local);
        let counts = daylight && beyond >= cfg.min_kw;
        let night = !(4..22).contains(&local) && hour.export_kw >= cfg.min_kw;
        st.excess = ((st.excess << 1) | u64::from(counts)) & LAST_48;
        st.night = ((st.night << 1) | u64::from(night)) & LAST_48;
        if st.excess == 0 {
            *st = GenerationState::default();
            return None;
        }
        if counts {
            st.peak_kw = st.peak_kw.max(hour.export_kw as f32);
            st.kwh += beyond as f32;
        }
        // Judged once a day, as the night ends (the hour from 4 h local closes): a whole day's
        // export and the night after it seen, so a meter that starts running backwards in the
        // morning is tamper (it exports that night too), not a generator.
        if local == 4 {
            st.raised = st.excess.count_ones() >= cfg.hours && st.night == 0;
        }
        if !st.raised {
            return None;
        }
        let hours = st.excess.count_ones();
        let peak = f64::from(st.peak_kw);
        let excess = (peak - allowed).max(0.0);
        let summary = match reg.generation_kw {
            Some(g) => format!(
                "Exports up to {} kW by day, {} kW over its registered {} kW generation ({} h in 48): unpermitted generation back-feeds the line",
                fmt_kw(peak),
                fmt_kw(excess),
                fmt_kw(g),
                hours
            ),
            None => format!(
                "Exports up to {} kW by day ({} h in 48) at {} with no registered generation: an unpermitted generator back-feeds the line",
                fmt_kw(peak),
                hours,
                a_site(reg)
            ),
        };
        let f = Finding::new(
            0.85,
            excess,
            f64::from(st.kwh),
            Piece(Evidence {
                exported_kwh: round(f64::from(st.kwh), 1),
                export_hours: f64::from(hours),
                peak_export_kw: round(peak, 2),
                generation_kw: reg.generation_kw.unwrap_or(0.0),
                midday: true,
                customer_class: ClassName(reg.customer_class),
            }),
            summary,
        );
        let start = hour.end - HOUR * i64::from(64 - st.excess.leading_zeros());
        Some(Raised::new(Self::KIND, start, f, true))
    }

    fn on_register(
        &self,
        _old: Option<&MeterRecord>,
        new: Option<&MeterRecord>,
        st: &mut GenerationState,
    ) -> Option<&'static str> {
        let covered = st.peak_kw > 0.0
            && new.is_some_and(|r| {
                r.generation_kw
                    .is_some_and(|g| f64::from(st.peak_kw) <= g * (1.0 + self.cfg.margin))
            });
        covered.then(|| {
            *st = GenerationState::default();
            "the register now covers its generation"
        })
    }
}
