//! The Arrow layout of flagged-site files (the sink's output contract).

use arrow_schema::{DataType, Field, Schema, TimeUnit};
use std::collections::HashMap;
use std::sync::Arc;

/// Bumped whenever a column is added, removed or changes type.
pub const SCHEMA_VERSION: &str = "1";

/// Columns of the alert rows, in order: the alert fields of the contract, `evidence` as a
/// JSON string, timestamps as `timestamp[ms, UTC]`. The `date` partition lives in the path.
pub fn alert_schema() -> Arc<Schema> {
    let ts = || DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    let fields = vec![
        Field::new("alert_id", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("severity", DataType::Utf8, false),
        Field::new("score", DataType::Float64, false),
        Field::new("site_id", DataType::Utf8, true),
        Field::new("meter_id", DataType::Utf8, true),
        Field::new("feeder_id", DataType::Utf8, true),
        Field::new("region", DataType::Utf8, true),
        Field::new("lat", DataType::Float64, true),
        Field::new("lon", DataType::Float64, true),
        Field::new("detected_at", ts(), false),
        Field::new("window_start", ts(), false),
        Field::new("window_end", ts(), false),
        Field::new("est_excess_kw", DataType::Float64, false),
        Field::new("est_excess_kwh", DataType::Float64, false),
        Field::new("evidence", DataType::Utf8, false),
        Field::new("summary", DataType::Utf8, false),
    ];
    let metadata = HashMap::from([
        (
            "gridwatch.schema_version".to_string(),
            SCHEMA_VERSION.to_string(),
        ),
        ("gridwatch.content".to_string(), "alerts".to_string()),
    ]);
    Arc::new(Schema::new_with_metadata(fields, metadata))
}
