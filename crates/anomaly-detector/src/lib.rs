//! The anomaly detector: a pure, I/O-free detection core ([`engine`]) and the Kafka service
//! around it ([`service`]). The embedded mode (`gridwatch run`) drives the same engine.

pub mod engine;
mod episode;
mod feeder;
mod meter;
mod peer;
pub mod service;

pub use engine::{Engine, Stats, Use};
