//! The ground truth: `labels.csv`, written and read.

use super::*;

/// One ground-truth label (`labels.csv`).
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub target_type: TargetType,
    pub target_id: String,
    pub scenario: Scenario,
    pub onset: i64,
    /// Counts toward the detection targets (false for cases below them).
    pub required: bool,
}

impl Utility {
    pub fn write_labels(&self, w: &mut impl Write) -> io::Result<()> {
        writeln!(w, "target_type,target_id,scenario,onset,required")?;
        for l in &self.labels {
            writeln!(
                w,
                "{},{},{},{},{}",
                l.target_type,
                l.target_id,
                l.scenario,
                format_rfc3339(l.onset),
                l.required
            )?;
        }
        Ok(())
    }
}

/// Reads `labels.csv`; errors name the line and field.
pub fn read_labels(input: impl io::Read, name: &str) -> Result<Vec<Label>, String> {
    const HEADER: [&str; 5] = ["target_type", "target_id", "scenario", "onset", "required"];
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(input);
    let mut out = Vec::new();
    let mut record = csv::StringRecord::new();
    let mut header_seen = false;
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(format!("{name}: {e}")),
        }
        let line = record.position().map_or(0, |p| p.line());
        if !header_seen {
            header_seen = true;
            if record.iter().ne(HEADER) {
                return Err(format!(
                    "{name}:{line}: header must be {}",
                    HEADER.join(",")
                ));
            }
            continue;
        }
        if record.iter().all(str::is_empty) {
            continue;
        }
        let at = |field: &str| format!("{name}:{line}: field {field}");
        if record.len() != 5 {
            return Err(format!(
                "{name}:{line}: expected 5 fields, found {}",
                record.len()
            ));
        }
        let target_type = record[0]
            .parse()
            .map_err(|e| format!("{}: {e}", at("target_type")))?;
        let scenario = record[2]
            .parse()
            .map_err(|e| format!("{}: {e}", at("scenario")))?;
        let onset = gridwatch_core::time::parse_rfc3339(&record[3])
            .map_err(|e| format!("{}: {e}", at("onset")))?;
        let required = match &record[4] {
            "true" => true,
            "false" => false,
            v => return Err(format!("{}: {v:?} is not true or false", at("required"))),
        };
        out.push(Label {
            target_type,
            target_id: record[1].to_string(),
            scenario,
            onset,
            required,
        });
    }
    Ok(out)
}
