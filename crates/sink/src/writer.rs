//! Flagged-site files: alert rows to zstd-compressed Arrow IPC (`.arrow`, the default) or
//! Parquet (`.parquet`) files, Hive-partitioned by the UTC date of `detected_at`, written under
//! `_tmp/`, fsynced and renamed into place so a reader never sees half a file.

use arrow_array::builder::{Float64Builder, StringBuilder, TimestampMillisecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_ipc::writer::{FileWriter, IpcWriteOptions};
use arrow_ipc::CompressionType;
use gridwatch_core::schema::alert_schema;
use gridwatch_core::time::format_date;
use gridwatch_core::{Alert, OutputFormat};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An alert with its position in the input: the Kafka offset, or the line index of
/// `alerts.jsonl` in embedded mode.
#[derive(Debug, Clone)]
pub struct Row {
    pub offset: i64,
    pub alert: Alert,
}

/// Writes files under `<out>/flagged/`.
#[derive(Debug, Clone)]
pub struct FlaggedFiles {
    root: PathBuf,
    /// This writer's own folder under `_tmp/`: sinks of one group share `flagged/`, and one
    /// starting must not remove the files another is writing.
    tmp: PathBuf,
    format: OutputFormat,
}

impl FlaggedFiles {
    /// Prepares `<out>/flagged/_tmp/<writer>/`, removing what a crashed run of the same writer
    /// left there (never visible to readers, and rewritten from uncommitted input).
    pub fn open(out: &Path, format: OutputFormat, writer: &str) -> io::Result<FlaggedFiles> {
        let root = out.join("flagged");
        let tmp = root.join("_tmp").join(writer);
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir_all(&tmp)?;
        Ok(FlaggedFiles { root, tmp, format })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes `rows` (in offset order) of one input partition: one file per date. Returns the
    /// final paths. Files are named by their first and last offsets, so rewriting the same
    /// rows after a crash yields the same names.
    pub fn write(&self, partition: i32, rows: &[Row]) -> io::Result<Vec<PathBuf>> {
        let mut by_date: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
        for r in rows {
            by_date
                .entry(format_date(r.alert.detected_at))
                .or_default()
                .push(r);
        }
        let mut written = Vec::new();
        for (date, rows) in by_date {
            let first = rows.first().map_or(0, |r| r.offset);
            let last = rows.last().map_or(0, |r| r.offset);
            let name = format!(
                "part-{partition}-{first}-{last}.{}",
                self.format.extension()
            );
            // Not `.arrow` until renamed into place: a glob over `flagged/` never matches a file
            // in progress, or one a crashed sink left behind.
            let tmp = self.tmp.join(format!("{name}.tmp"));
            let batch = to_batch(&rows).map_err(io::Error::other)?;
            match self.format {
                OutputFormat::Arrow => write_ipc(&tmp, &batch)?,
                OutputFormat::Parquet => write_parquet(&tmp, &batch)?,
            }
            let dir = self.root.join(format!("date={date}"));
            if !dir.exists() {
                fs::create_dir_all(&dir)?;
                // The new folder's entry must be durable before the file in it is.
                File::open(&self.root)?.sync_all()?;
            }
            let dest = dir.join(&name);
            fs::rename(&tmp, &dest)?;
            File::open(&dir)?.sync_all()?;
            written.push(dest);
        }
        Ok(written)
    }

    /// What is already on disk, read from the file names (of either format: a sink switched
    /// from one to the other doesn't write rows twice). A sink that restarts skips the rows it
    /// covers, so a crash between a rename and the offset commit neither loses nor duplicates
    /// a row — including a batch whose rows span several dates, whose files are renamed one by
    /// one: coverage is per date, so the rows of a date whose file didn't make it are written.
    pub fn on_disk(&self) -> io::Result<OnDisk> {
        let mut out = OnDisk::default();
        for dir in fs::read_dir(&self.root)? {
            let dir = dir?;
            let folder = dir.file_name().to_string_lossy().into_owned();
            let Some(date) = folder.strip_prefix("date=") else {
                continue;
            };
            for f in fs::read_dir(dir.path())? {
                let name = f?.file_name().to_string_lossy().into_owned();
                let Some(stem) = name.strip_prefix("part-").and_then(|s| {
                    s.strip_suffix(".arrow")
                        .or_else(|| s.strip_suffix(".parquet"))
                }) else {
                    continue;
                };
                let parts: Vec<&str> = stem.split('-').collect();
                if let [p, first, last] = parts[..] {
                    if let (Ok(p), Ok(first), Ok(last)) =
                        (p.parse::<i32>(), first.parse::<i64>(), last.parse::<i64>())
                    {
                        out.files
                            .entry((p, date.to_string()))
                            .or_default()
                            .push((first, last));
                    }
                }
            }
        }
        Ok(out)
    }
}

/// The offset ranges of the files on disk, per input partition and date.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OnDisk {
    files: BTreeMap<(i32, String), Vec<(i64, i64)>>,
}

impl OnDisk {
    /// Whether the row at `offset` of `partition` is already in a file: one of its date whose
    /// offset range holds it (a batch's file of a date holds all its rows of that date).
    pub fn covers(&self, partition: i32, row: &Row) -> bool {
        let date = format_date(row.alert.detected_at);
        self.files.get(&(partition, date)).is_some_and(|ranges| {
            ranges
                .iter()
                .any(|&(first, last)| (first..=last).contains(&row.offset))
        })
    }

    /// The highest offset in a file, per partition (for the start-up log).
    pub fn last_offsets(&self) -> BTreeMap<i32, i64> {
        let mut out = BTreeMap::new();
        for ((p, _), ranges) in &self.files {
            for &(_, last) in ranges {
                let e = out.entry(*p).or_insert(last);
                *e = (*e).max(last);
            }
        }
        out
    }
}

fn write_ipc(path: &Path, batch: &RecordBatch) -> io::Result<()> {
    let file = File::create(path)?;
    let opts = IpcWriteOptions::default()
        .try_with_compression(Some(CompressionType::ZSTD))
        .map_err(io::Error::other)?;
    let mut w = FileWriter::try_new_with_options(BufWriter::new(file), &batch.schema(), opts)
        .map_err(io::Error::other)?;
    w.write(batch).map_err(io::Error::other)?;
    w.finish().map_err(io::Error::other)?;
    let file = w
        .into_inner()
        .map_err(io::Error::other)?
        .into_inner()
        .map_err(|e| e.into_error())?;
    file.sync_all()
}

/// Parquet, zstd, the Arrow schema (and its metadata) embedded, so readers get the same types.
fn write_parquet(path: &Path, batch: &RecordBatch) -> io::Result<()> {
    use parquet::arrow::ArrowWriter;
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::file::properties::WriterProperties;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let file = File::create(path)?;
    let mut w = ArrowWriter::try_new(BufWriter::new(file), batch.schema(), Some(props))
        .map_err(io::Error::other)?;
    w.write(batch).map_err(io::Error::other)?;
    let file = w
        .into_inner()
        .map_err(io::Error::other)?
        .into_inner()
        .map_err(|e| e.into_error())?;
    file.sync_all()
}

/// Builds one record batch in the contract's schema.
pub fn to_batch(rows: &[&Row]) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let n = rows.len();
    let text = || StringBuilder::with_capacity(n, n * 16);
    let (mut id, mut kind, mut status, mut severity) = (text(), text(), text(), text());
    let (mut site, mut meter, mut feeder, mut region) = (text(), text(), text(), text());
    let (mut evidence, mut summary) = (text(), StringBuilder::with_capacity(n, n * 80));
    let num = || Float64Builder::with_capacity(n);
    let (mut score, mut lat, mut lon, mut kw, mut kwh) = (num(), num(), num(), num(), num());
    let ts = || TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let (mut detected, mut wstart, mut wend) = (ts(), ts(), ts());
    for r in rows {
        let a = &r.alert;
        id.append_value(&a.alert_id);
        kind.append_value(a.kind.as_str());
        status.append_value(a.status.as_str());
        severity.append_value(a.severity.as_str());
        score.append_value(a.score);
        site.append_option(a.site_id.as_deref());
        meter.append_option(a.meter_id.as_deref());
        feeder.append_option(a.feeder_id.as_deref());
        region.append_option(a.region.as_deref());
        lat.append_option(a.lat);
        lon.append_option(a.lon);
        detected.append_value(a.detected_at * 1000);
        wstart.append_value(a.window_start * 1000);
        wend.append_value(a.window_end * 1000);
        kw.append_value(a.est_excess_kw);
        kwh.append_value(a.est_excess_kwh);
        evidence.append_value(serde_json::Value::Object(a.evidence.clone()).to_string());
        summary.append_value(&a.summary);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(kind.finish()),
        Arc::new(status.finish()),
        Arc::new(severity.finish()),
        Arc::new(score.finish()),
        Arc::new(site.finish()),
        Arc::new(meter.finish()),
        Arc::new(feeder.finish()),
        Arc::new(region.finish()),
        Arc::new(lat.finish()),
        Arc::new(lon.finish()),
        Arc::new(detected.finish()),
        Arc::new(wstart.finish()),
        Arc::new(wend.finish()),
        Arc::new(kw.finish()),
        Arc::new(kwh.finish()),
        Arc::new(evidence.finish()),
        Arc::new(summary.finish()),
    ];
    RecordBatch::try_new(alert_schema(), columns)
}

/// Accumulates rows per input partition and says when a file should roll.
#[derive(Debug, Default)]
pub struct Batches {
    pending: BTreeMap<i32, Vec<Row>>,
}

impl Batches {
    pub fn push(&mut self, partition: i32, row: Row) {
        self.pending.entry(partition).or_default().push(row);
    }

    pub fn len(&self) -> usize {
        self.pending.values().map(Vec::len).sum()
    }

    /// Drops the rows of partitions this instance no longer holds (their next owner reads
    /// them again from the group's commit).
    pub fn forget(&mut self, partitions: &[i32]) {
        self.pending.retain(|p, _| !partitions.contains(p));
    }

    pub fn is_empty(&self) -> bool {
        self.pending.values().all(Vec::is_empty)
    }

    /// Writes every pending partition; returns (partition, last offset written) pairs.
    pub fn flush(&mut self, files: &FlaggedFiles) -> io::Result<Vec<(i32, i64)>> {
        let mut done = Vec::new();
        for (p, rows) in std::mem::take(&mut self.pending) {
            if let Some(last) = rows.last().map(|r| r.offset) {
                files.write(p, &rows)?;
                done.push((p, last));
            }
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_ipc::reader::FileReader;
    use gridwatch_core::{AlertKind, AlertStatus, Severity};

    fn alert(i: i64, day: i64) -> Alert {
        Alert {
            alert_id: format!("id{i}"),
            kind: AlertKind::MiningSignature,
            status: AlertStatus::Open,
            severity: Severity::High,
            score: 0.9,
            site_id: (i % 2 == 0).then(|| format!("S{i}")),
            meter_id: Some(format!("M{i}")),
            feeder_id: Some("F1".into()),
            region: None,
            lat: Some(52.0),
            lon: None,
            detected_at: 1_767_225_600 + day * 86_400 + i,
            window_start: 1_767_225_600,
            window_end: 1_767_225_600 + day * 86_400 + i,
            est_excess_kw: 85.2,
            est_excess_kwh: 1704.0,
            evidence: serde_json::json!({"load_factor": 0.97})
                .as_object()
                .unwrap()
                .clone(),
            summary: "Flat".into(),
        }
    }

    /// `n` rows from offset `first`, the i-th detected on day `day(i)` after 1 January.
    fn rows(first: i64, n: i64, day: impl Fn(i64) -> i64) -> Vec<Row> {
        (0..n)
            .map(|i| Row {
                offset: first + i,
                alert: alert(i, day(i)),
            })
            .collect()
    }

    #[test]
    fn a_writer_starting_clears_only_its_own_unfinished_files() {
        let dir = tempfile::tempdir().unwrap();
        FlaggedFiles::open(dir.path(), OutputFormat::Arrow, "a").unwrap();
        let a_tmp = dir.path().join("flagged/_tmp/a/part-0-1-2.arrow");
        fs::write(&a_tmp, b"half a file").unwrap();
        FlaggedFiles::open(dir.path(), OutputFormat::Arrow, "b").unwrap();
        assert!(
            a_tmp.exists(),
            "another sink's file in progress was removed"
        );
        FlaggedFiles::open(dir.path(), OutputFormat::Arrow, "a").unwrap();
        assert!(!a_tmp.exists(), "a restarted writer clears what it left");
    }

    #[test]
    fn writes_partitioned_files_that_read_back_and_records_progress() {
        let dir = tempfile::tempdir().unwrap();
        let files = FlaggedFiles::open(dir.path(), OutputFormat::Arrow, "t").unwrap();
        let rows = rows(100, 10, |i| i / 5);
        let paths = files.write(3, &rows).unwrap();
        assert_eq!(paths.len(), 2);
        assert!(
            paths[0].ends_with("flagged/date=2026-01-01/part-3-100-104.arrow"),
            "{paths:?}"
        );
        assert!(paths[1].ends_with("flagged/date=2026-01-02/part-3-105-109.arrow"));
        let reader = FileReader::try_new(File::open(&paths[0]).unwrap(), None).unwrap();
        assert_eq!(reader.schema().metadata()["gridwatch.schema_version"], "1");
        let batches: Vec<_> = reader.map(Result::unwrap).collect();
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 5);
        assert_eq!(batches[0].schema(), alert_schema());
        assert!(fs::read_dir(files.root().join("_tmp/t"))
            .unwrap()
            .next()
            .is_none());
        let disk = files.on_disk().unwrap();
        assert_eq!(disk.last_offsets(), BTreeMap::from([(3, 109)]));
        assert!(rows.iter().all(|r| disk.covers(3, r)));
        assert!(!disk.covers(2, &rows[0]), "another partition");
        let later = Row {
            offset: 110,
            alert: alert(1, 0),
        };
        assert!(!disk.covers(3, &later));
    }

    /// A batch whose rows span two dates, interleaved in offsets (a late alert): the file of
    /// one date is in place, the other's never got renamed (the sink died). On restart the rows
    /// of the missing date must be written, and those on disk skipped: none lost, none twice.
    #[test]
    fn a_batch_half_renamed_across_dates_loses_no_row() {
        let dir = tempfile::tempdir().unwrap();
        let files = FlaggedFiles::open(dir.path(), OutputFormat::Arrow, "t").unwrap();
        // Offsets 100..=105, alternating between 1 and 2 January.
        let rows = rows(100, 6, |i| (i + 1) % 2);
        let second_day: Vec<Row> = rows.iter().filter(|r| r.offset % 2 == 0).cloned().collect();
        // Only the 2 January file made it: offsets 100, 102, 104 (its range 100–104 spans
        // offsets 101 and 103, which are 1 January's).
        files.write(0, &second_day).unwrap();
        let disk = files.on_disk().unwrap();
        let again: Vec<&Row> = rows.iter().filter(|r| !disk.covers(0, r)).collect();
        assert_eq!(
            again.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![101, 103, 105],
            "the 1 January rows are written on restart, the rest skipped"
        );
    }

    #[test]
    fn parquet_files_read_back_with_the_same_schema_and_count_toward_progress() {
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let dir = tempfile::tempdir().unwrap();
        let rows = rows(200, 10, |i| i / 5);
        let arrow = FlaggedFiles::open(dir.path(), OutputFormat::Arrow, "t").unwrap();
        arrow.write(1, &rows[..3]).unwrap();
        let files = FlaggedFiles::open(dir.path(), OutputFormat::Parquet, "t").unwrap();
        let paths = files.write(1, &rows[3..]).unwrap();
        assert!(
            paths[0].ends_with("flagged/date=2026-01-01/part-1-203-204.parquet"),
            "{paths:?}"
        );
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(File::open(&paths[1]).unwrap()).unwrap();
        // The Arrow schema travels in the file, metadata and all.
        assert_eq!(builder.schema().metadata()["gridwatch.schema_version"], "1");
        let batches: Vec<_> = builder.build().unwrap().map(Result::unwrap).collect();
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 5);
        assert_eq!(batches[0].schema().fields(), alert_schema().fields());
        // Both formats count: a sink switched to Parquet doesn't rewrite the Arrow rows.
        let disk = files.on_disk().unwrap();
        assert_eq!(disk.last_offsets(), BTreeMap::from([(1, 209)]));
        assert!(rows.iter().all(|r| disk.covers(1, r)));
    }
}
