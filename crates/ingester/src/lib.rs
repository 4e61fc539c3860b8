//! The ingester: parsers and validation for readings and the register, and the shells that
//! move them to Kafka (the producer with its DLQ, the HTTP API).

pub mod auth;
pub mod calendar;
pub mod http;
pub mod kafka;
mod nem12;
pub mod parse;
pub mod registry;
pub mod tls;
pub mod weather;
mod xml;

pub use kafka::{ingest, reading_key, FeederIndex, SendError, Sender};
pub use parse::{Format, Records, Reject, Validation};
pub use registry::{read_registry, RegistryError};
