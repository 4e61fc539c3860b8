//! The utility's register of meters and sites (`gridwatch.registry`, compacted, keyed by meter).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Customer,
    FeederHead,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CustomerClass {
    Residential,
    Commercial,
    Industrial,
    Agricultural,
    Public,
    Mining,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteStatus {
    Active,
    Disconnected,
    Suspended,
}

macro_rules! text_enum {
    ($t:ty, $what:literal, $($name:literal => $v:expr),+ $(,)?) => {
        impl FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($name => Ok($v),)+
                    other => Err(format!(
                        concat!("unknown ", $what, " {:?} (expected one of: ", $($name, " ",)+ ")"),
                        other
                    )),
                }
            }
        }
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(x if x == $v => $name,)+ _ => unreachable!() }
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(Role, "role", "customer" => Role::Customer, "feeder_head" => Role::FeederHead);
text_enum!(CustomerClass, "customer_class",
    "residential" => CustomerClass::Residential,
    "commercial" => CustomerClass::Commercial,
    "industrial" => CustomerClass::Industrial,
    "agricultural" => CustomerClass::Agricultural,
    "public" => CustomerClass::Public,
    "mining" => CustomerClass::Mining,
);
text_enum!(SiteStatus, "status",
    "active" => SiteStatus::Active,
    "disconnected" => SiteStatus::Disconnected,
    "suspended" => SiteStatus::Suspended,
);

/// One register row: one meter at one site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// Fields it doesn't know are ignored: records written by a newer producer still decode.
pub struct MeterRecord {
    pub site_id: String,
    pub meter_id: String,
    pub feeder_id: String,
    pub role: Role,
    pub customer_class: Option<CustomerClass>,
    /// Permitted demand in kW; `None` where there is no limit.
    pub permitted_kw: Option<f64>,
    pub status: SiteStatus,
    pub licensed_mining: bool,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub region: Option<String>,
    #[serde(default)]
    pub timezone: Option<String>,
    /// The event time from which this row holds (epoch seconds; RFC 3339 on the wire). `None`:
    /// from when the detector reads it. A change to a meter's row that carries it applies when
    /// the meter's readings reach that time, wherever the row falls among them — so a replay
    /// applies it where the live run did.
    #[serde(default, with = "crate::time::serde_rfc3339_opt")]
    pub effective_from: Option<i64>,
    /// Export capacity of the site's registered generation (rooftop PV, a battery), kW; `None`
    /// (or 0) where none is registered: any export is then unregistered generation.
    #[serde(default)]
    pub generation_kw: Option<f64>,
}

impl MeterRecord {
    /// An active, unlicensed customer meter without coordinates, region or zone — set those
    /// fields after, where known.
    pub fn customer(
        site_id: &str,
        meter_id: &str,
        feeder_id: &str,
        class: CustomerClass,
        permitted_kw: Option<f64>,
    ) -> MeterRecord {
        MeterRecord {
            site_id: site_id.into(),
            meter_id: meter_id.into(),
            feeder_id: feeder_id.into(),
            role: Role::Customer,
            customer_class: Some(class),
            permitted_kw,
            status: SiteStatus::Active,
            licensed_mining: false,
            lat: None,
            lon: None,
            region: None,
            timezone: None,
            effective_from: None,
            generation_kw: None,
        }
    }

    /// The head meter of a feeder: it measures everything flowing into the feeder. Its site is
    /// the feeder.
    pub fn feeder_head(meter_id: &str, feeder_id: &str) -> MeterRecord {
        MeterRecord {
            role: Role::FeederHead,
            customer_class: None,
            permitted_kw: None,
            ..MeterRecord::customer(
                feeder_id,
                meter_id,
                feeder_id,
                CustomerClass::Residential,
                None,
            )
        }
    }
}

/// A change to the register as the detector sees it: a row set, or a meter removed
/// (a null value on the compacted topic).
#[derive(Debug, Clone, PartialEq)]
pub enum RegistryUpdate {
    Upsert(MeterRecord),
    Delete { meter_id: String },
}

/// The register CSV header, in its fixed order.
pub const REGISTRY_HEADER: [&str; 11] = [
    "site_id",
    "meter_id",
    "feeder_id",
    "role",
    "customer_class",
    "permitted_kw",
    "status",
    "licensed_mining",
    "lat",
    "lon",
    "region",
];
