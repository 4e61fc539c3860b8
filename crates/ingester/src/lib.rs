//! The ingester: parsers and validation for readings and the register, and the shells that
//! move them to Kafka (the producer with its DLQ, the HTTP API).

pub mod parse;
pub mod registry;

pub use parse::{Format, Records, Reject, Validation};
pub use registry::{read_registry, RegistryError};
