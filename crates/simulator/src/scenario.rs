//! What the simulator plants, and what its labels name: one enum of scenarios (cases to find
//! and negatives to leave alone) and one of label targets, each with its `labels.csv` name.

use std::fmt;
use std::str::FromStr;

macro_rules! named_enum {
    ($(#[$doc:meta])* $t:ident, $what:literal, $($v:ident => $name:literal),+ $(,)?) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $t { $($v),+ }

        impl $t {
            pub const ALL: &'static [$t] = &[$($t::$v),+];

            pub fn as_str(self) -> &'static str {
                match self { $($t::$v => $name),+ }
            }
        }

        impl FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                $t::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| format!(concat!("{:?} is not a ", $what), s))
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

named_enum!(
    /// Who a label is about.
    TargetType, "label target (site, meter or feeder)",
    Site => "site",
    Meter => "meter",
    Feeder => "feeder",
);

named_enum!(
    /// A planted case or negative; labels name the cases (and a tampered meter's feeder).
    Scenario, "scenario",
    MiningFarmResidential => "mining_farm_residential",
    SmallMinerResidential => "small_miner_residential",
    HomeMiner => "home_miner",
    MiningFarmCommercial => "mining_farm_commercial",
    MiningFarmIndustrial => "mining_farm_industrial",
    NightMiner => "night_miner",
    DutyCycledMiner => "duty_cycled_miner",
    RampUpMiner => "ramp_up_miner",
    SmallRigsIndustrial => "small_rigs_industrial",
    UnregisteredMeter => "unregistered_meter",
    DisconnectedConsumption => "disconnected_consumption",
    SuspendedConsumption => "suspended_consumption",
    CapacityExceedance => "capacity_exceedance",
    CapacityCreep => "capacity_creep",
    TamperZeroing => "tamper_zeroing",
    TamperBypass => "tamper_bypass",
    TamperReverse => "tamper_reverse",
    TamperShunt => "tamper_shunt",
    TamperZeroingFeeder => "tamper_zeroing_feeder",
    TamperBypassFeeder => "tamper_bypass_feeder",
    TamperReverseFeeder => "tamper_reverse_feeder",
    TamperShuntFeeder => "tamper_shunt_feeder",
    UnregisteredMeterFeeder => "unregistered_meter_feeder",
    FeederTapFlat => "feeder_tap_flat",
    FeederTapDuty => "feeder_tap_duty",
    FeederTapSmall => "feeder_tap_small",
    FeederTapNight => "feeder_tap_night",
    SplitFarm => "split_farm",
    PublicBuildingMiner => "public_building_miner",
    DutyCycledInPermit => "duty_cycled_in_permit",
    SteppedMiner => "stepped_miner",
    LicensedFarm => "licensed_farm",
    ColdStorage => "cold_storage",
    Hospital => "hospital",
    Bakery => "bakery",
    SuspendedQuiet => "suspended_quiet",
    EvDepot => "ev_depot",
    Greenhouse => "greenhouse",
    MeterGlitch => "meter_glitch",
    MoveIn => "move_in",
    ClockHourOff => "clock_hour_off",
    UnregisteredGeneration => "unregistered_generation",
    GenerationAboveRegistered => "generation_above_registered",
);

impl Scenario {
    /// What a tampered or unregistered meter's feeder head shows, labelled on the feeder: energy
    /// no registered meter counts.
    pub fn at_feeder(self) -> Option<Scenario> {
        match self {
            Scenario::UnregisteredMeter => Some(Scenario::UnregisteredMeterFeeder),
            Scenario::TamperZeroing => Some(Scenario::TamperZeroingFeeder),
            Scenario::TamperBypass => Some(Scenario::TamperBypassFeeder),
            Scenario::TamperReverse => Some(Scenario::TamperReverseFeeder),
            Scenario::TamperShunt => Some(Scenario::TamperShuntFeeder),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_refused() {
        for s in Scenario::ALL {
            assert_eq!(s.as_str().parse::<Scenario>(), Ok(*s));
        }
        for t in TargetType::ALL {
            assert_eq!(t.as_str().parse::<TargetType>(), Ok(*t));
        }
        assert!("mining"
            .parse::<Scenario>()
            .unwrap_err()
            .contains("scenario"));
        assert!("house".parse::<TargetType>().is_err());
    }
}
