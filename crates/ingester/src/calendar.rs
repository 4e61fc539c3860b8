//! Holidays files: `region,date,name` CSV (names may be quoted), validated as a whole like the
//! register: a calendar with a wrong line is refused with every problem listed (file, line,
//! field), since a holiday dropped silently would turn a closed shop into a case.

use gridwatch_core::calendar::{parse_day, HOLIDAYS_HEADER};
use gridwatch_core::Holiday;
use std::io::BufRead;

/// Why a holidays file was refused: every problem found, one per line.
#[derive(Debug, thiserror::Error)]
#[error("{} problem(s) in holidays file {source_name}:\n{}", .problems.len(), .problems.join("\n"))]
pub struct HolidaysError {
    pub source_name: String,
    pub problems: Vec<String>,
}

const MAX_PROBLEMS: usize = 50;

/// Reads and validates a whole holidays file. `source_name` names the input in messages.
pub fn read_holidays(
    input: impl BufRead,
    source_name: &str,
) -> Result<Vec<Holiday>, HolidaysError> {
    let refuse = |problems: Vec<String>| HolidaysError {
        source_name: source_name.into(),
        problems,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(input);
    let (mut problems, mut out, mut header_seen) = (Vec::new(), Vec::new(), false);
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                problems.push(format!("{source_name}:{line}: {e}"));
                break;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        let f: Vec<&str> = record.iter().map(str::trim).collect();
        if f.iter().all(|v| v.is_empty()) {
            continue;
        }
        if !header_seen {
            header_seen = true;
            let cols: Vec<&str> = f.iter().map(|c| c.trim_start_matches('\u{feff}')).collect();
            if cols != HOLIDAYS_HEADER {
                return Err(refuse(vec![format!(
                    "{source_name}:{line}: header must be {}; found {:?}",
                    HOLIDAYS_HEADER.join(","),
                    cols.join(",")
                )]));
            }
            continue;
        }
        let at = |field: &str| format!("{source_name}:{line}: field {field}");
        let row = if f.len() != HOLIDAYS_HEADER.len() {
            Err(format!(
                "{source_name}:{line}: expected 3 fields (region,date,name), found {}",
                f.len()
            ))
        } else {
            parse_day(f[1])
                .map_err(|e| format!("{}: {e}", at("date")))
                .map(|date| Holiday {
                    region: f[0].to_string(),
                    date,
                    name: f[2].to_string(),
                })
                .and_then(|h| {
                    h.validate()
                        .map(|()| h)
                        .map_err(|(field, why)| format!("{}: {why}", at(field)))
                })
        };
        match row {
            Ok(h) => out.push(h),
            Err(e) => problems.push(e),
        }
        if problems.len() >= MAX_PROBLEMS {
            problems.push(format!(
                "{source_name}: stopped after {MAX_PROBLEMS} problems"
            ));
            break;
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(refuse(problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_calendar_reads_with_quoted_names_and_every_problem_is_named() {
        let ok = "region,date,name\nPavlodar,2026-01-07,Orthodox Christmas\nAlmaty,2026-03-21,\"Nauryz, day one\"\n";
        let h = read_holidays(ok.as_bytes(), "h.csv").expect("valid");
        assert_eq!(h.len(), 2);
        assert_eq!(h[1].name, "Nauryz, day one");
        assert_eq!(h[0].key(), "Pavlodar|2026-01-07");
        let bad = "region,date,name\nPavlodar,2026-13-01,x\n,2026-01-07,y\nPavlodar,2026-01-08\n";
        let e = read_holidays(bad.as_bytes(), "h.csv").expect_err("refused");
        assert_eq!(e.problems.len(), 3, "{e}");
        assert!(e.problems[0].starts_with("h.csv:2: field date"), "{e}");
        assert!(e.problems[1].starts_with("h.csv:3: field region"), "{e}");
        assert!(
            e.problems[2].starts_with("h.csv:4: expected 3 fields"),
            "{e}"
        );
    }
}
