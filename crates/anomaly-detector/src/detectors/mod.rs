//! The detectors, one file each. Every detector owns three things:
//!
//! - its **config section** (`[detector.<name>]`), a struct with defaults and a `build()` that
//!   validates it and names the key it refuses;
//! - its **state**, per meter (or per feeder), a plain struct serde can serialize, which the
//!   engine keeps for it without looking inside;
//! - its **judgement**: a site detector implements [`SiteDetector`], which the engine calls as
//!   each of a registered customer's hours closes (daily detectors act on the hour that closes
//!   a UTC day). The per-reading register checks ([`register`]) and the feeder balance
//!   ([`feeder`], with [`bypass`] naming the customers behind a tap) run on other clocks and
//!   have their own entry points.
//!
//! A site detector raises at most one finding an hour; [`crate::case`] combines the findings
//! of all detectors into one case per site.

pub mod blocks;
pub mod bypass;
pub mod capacity;
pub mod feeder;
pub mod generation;
pub mod mining;
pub mod peer;
pub mod register;
pub mod season;
pub mod split;
pub mod step;
pub mod tamper;

use crate::case::Raised;
use crate::series::{ClosedHour, Series, Window};
use gridwatch_core::{AlertKind, CustomerClass, MeterRecord};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// What a site detector sees when one of a registered customer's hours closes.
pub(crate) struct HourCx<'a> {
    pub reg: &'a MeterRecord,
    pub hour: ClosedHour,
    pub series: &'a Series,
    /// Demand over the 24 closed hours ending with this one (when 5/6 of them have data).
    pub day: Option<Window>,
    /// The mining detector's reading of the day, which tells the night-block and step detectors
    /// whether a flat load is theirs to judge.
    pub flat: mining::Flat,
    /// The site has an episode running: learned standings hold still.
    pub has_case: bool,
    /// `1 + permit_tolerance`: demand up to `permitted_kw` times this is within a permit.
    pub tolerance: f64,
    /// The customers of the same class on the same feeder, for peer comparisons.
    pub peers: Option<&'a mut peer::Peers>,
    /// The feeder's customers holding a raised floor, for a farm split over their meters.
    pub split: Option<&'a mut split::Parts>,
    /// The site's region's season: how many of its customers drew well above their usual.
    pub season: Option<&'a mut season::Season>,
    /// Many of the region's customers of its class stand above their own usual together — a
    /// cold snap or a heat wave ([`peer::PeerDetector::common_rise`]) —, by this much as a rule
    /// (`ln` of last 24 h ÷ usual day).
    pub common_rise: Option<season::Risen>,
    /// The same a day before: a pattern seen two days running is the season's if either of
    /// its days was (the tail of a heat wave still runs the air conditioning a day after most
    /// homes fell back).
    pub rose_day_before: bool,
    /// The site started its history anew as this hour closed: occupied again after standing
    /// empty ([`crate::series::Series::note_day`]).
    pub moved_in: bool,
}

impl HourCx<'_> {
    pub fn residential(&self) -> bool {
        self.reg.customer_class == Some(CustomerClass::Residential)
    }

    /// The site's demand over its last days follows its region's weather and, without the
    /// heating or cooling, would stay under `floor_kw` ([`season::Season::explains`]).
    pub fn weather_explains(&self, floor_kw: f64) -> bool {
        self.season.as_deref().is_some_and(|s| {
            s.explains(
                &self.series.days,
                self.hour.end.div_euclid(86_400),
                floor_kw,
            )
        })
    }

    /// A licensed mining site drawing `kw` inside its permit: its load is authorized.
    pub fn licensed_within_permit(&self, kw: f64) -> bool {
        self.reg.licensed_mining
            && self
                .reg
                .permitted_kw
                .is_some_and(|p| kw <= p * self.tolerance)
    }
}

/// An hourly detector of a site's own series.
pub(crate) trait SiteDetector {
    /// The kind of alert its findings argue for.
    const KIND: AlertKind;
    /// Its part of each meter's state.
    type State: Default + Clone + Serialize + DeserializeOwned;

    /// Judges the hour that closed; returns a finding of kind [`SiteDetector::KIND`] while its
    /// condition holds.
    fn on_hour(&self, cx: &mut HourCx<'_>, state: &mut Self::State) -> Option<Raised>;

    /// A register row changed from `old` to `new`. Returns why evidence this detector filed no
    /// longer stands (a raised permit, a mining licence), to withdraw it from the site's case.
    fn on_register(
        &self,
        _old: Option<&MeterRecord>,
        _new: Option<&MeterRecord>,
        _state: &mut Self::State,
    ) -> Option<&'static str> {
        None
    }
}

/// What a config section's `build()` refuses: the key and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "detector.{} {}", self.key, self.problem)
    }
}

impl std::error::Error for ConfigError {}

/// Checks for config sections: `positive("peer.cusum_limit", v)?`.
pub(crate) fn positive(key: &str, v: f64) -> Result<(), ConfigError> {
    (v > 0.0 && v.is_finite())
        .then_some(())
        .ok_or_else(|| ConfigError {
            key: key.into(),
            problem: format!("must be a positive number, got {v}"),
        })
}

pub(crate) fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    key: &str,
    v: T,
    lo: T,
    hi: T,
) -> Result<(), ConfigError> {
    (lo <= v && v <= hi)
        .then_some(())
        .ok_or_else(|| ConfigError {
            key: key.into(),
            problem: format!("must be between {lo} and {hi}, got {v}"),
        })
}

pub(crate) fn at_least<T: PartialOrd + std::fmt::Display + Copy>(
    key: &str,
    v: T,
    lo: T,
) -> Result<(), ConfigError> {
    (lo <= v).then_some(()).ok_or_else(|| ConfigError {
        key: key.into(),
        problem: format!("must be at least {lo}, got {v}"),
    })
}

/// "a residential site", "an industrial site": for summaries.
pub(crate) fn a_site(reg: &MeterRecord) -> String {
    let class = class_name(reg);
    let article = if class.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {class} site")
}

pub(crate) fn class_name(reg: &MeterRecord) -> &'static str {
    crate::evidence::ClassName(reg.customer_class).as_str()
}

pub(crate) fn fmt_kw(kw: f64) -> String {
    if kw >= 10.0 {
        format!("{kw:.0}")
    } else {
        format!("{kw:.1}")
    }
}
