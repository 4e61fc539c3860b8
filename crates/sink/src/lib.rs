//! The sink: alerts to zstd Arrow IPC files. [`writer`] is the file format and the atomic
//! placement of files; [`service`] consumes `gridwatch.alerts` and commits offsets only after
//! the files are in place.

pub mod service;
pub mod writer;

pub use writer::{Batches, FlaggedFiles, Row};
