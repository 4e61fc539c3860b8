//! Weather files: `region,ts,temp_c` as CSV (with that header) or JSON Lines, told apart by
//! the first non-blank character. Validated as a whole like the register: a file with errors
//! is refused with every problem listed (file, line, field), since a weather series with holes
//! cut in silently would explain some days' heating and not others'.

use gridwatch_core::weather::WEATHER_HEADER;
use gridwatch_core::WeatherObs;
use std::io::BufRead;

/// Why a weather file was refused: every problem found, one per line.
#[derive(Debug, thiserror::Error)]
#[error("{} problem(s) in weather file {source_name}:\n{}", .problems.len(), .problems.join("\n"))]
pub struct WeatherError {
    pub source_name: String,
    pub problems: Vec<String>,
}

const MAX_PROBLEMS: usize = 50;

/// Reads and validates a whole weather file. `source_name` names the input in messages.
pub fn read_weather(
    input: impl BufRead,
    source_name: &str,
) -> Result<Vec<WeatherObs>, WeatherError> {
    let mut problems = Vec::new();
    let mut out = Vec::new();
    let mut header_seen = false;
    let mut json = None;
    for (i, line) in input.lines().enumerate() {
        let line_no = i + 1;
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                problems.push(format!("{source_name}:{line_no}: read error: {e}"));
                break;
            }
        };
        let text = line.trim().trim_start_matches('\u{feff}');
        if text.is_empty() {
            continue;
        }
        let is_json = *json.get_or_insert(text.starts_with('{'));
        let parsed = if is_json {
            serde_json::from_str::<WeatherObs>(text)
                .map_err(|e| format!("{source_name}:{line_no}: {e}"))
        } else if !header_seen {
            header_seen = true;
            let cols: Vec<&str> = text.split(',').map(str::trim).collect();
            if cols != WEATHER_HEADER {
                return Err(WeatherError {
                    source_name: source_name.into(),
                    problems: vec![format!(
                        "{source_name}:{line_no}: header must be {}; found {text:?}",
                        WEATHER_HEADER.join(",")
                    )],
                });
            }
            continue;
        } else {
            csv_row(text, &|field| {
                format!("{source_name}:{line_no}: field {field}")
            })
        };
        match parsed.and_then(|w| {
            w.validate()
                .map(|()| w)
                .map_err(|(field, why)| format!("{source_name}:{line_no}: field {field}: {why}"))
        }) {
            Ok(w) => out.push(w),
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
        Err(WeatherError {
            source_name: source_name.into(),
            problems,
        })
    }
}

fn csv_row(text: &str, at: &dyn Fn(&str) -> String) -> Result<WeatherObs, String> {
    let f: Vec<&str> = text.split(',').map(str::trim).collect();
    if f.len() != WEATHER_HEADER.len() {
        return Err(format!(
            "{}: expected 3 fields (region,ts,temp_c), found {}",
            at("count"),
            f.len()
        ));
    }
    let ts = gridwatch_core::time::parse_rfc3339(f[1]).map_err(|e| format!("{}: {e}", at("ts")))?;
    let temp_c = f[2]
        .parse::<f64>()
        .ok()
        .filter(|t| t.is_finite())
        .ok_or_else(|| format!("{}: {:?} is not a number", at("temp_c"), f[2]))?;
    Ok(WeatherObs {
        region: f[0].to_string(),
        ts,
        temp_c,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_json_lines_read_alike() {
        let csv = "region,ts,temp_c\nPavlodar,2026-01-05T01:00:00Z,-7.1\n\nEkibastuz,2026-01-05T01:00:00Z,-8\n";
        let jsonl = "{\"region\":\"Pavlodar\",\"ts\":\"2026-01-05T01:00:00Z\",\"temp_c\":-7.1}\n{\"region\":\"Ekibastuz\",\"ts\":\"2026-01-05T01:00:00Z\",\"temp_c\":-8}\n";
        let a = read_weather(csv.as_bytes(), "w.csv").expect("csv");
        let b = read_weather(jsonl.as_bytes(), "w.jsonl").expect("jsonl");
        assert_eq!(a, b);
        assert_eq!(a.len(), 2);
        assert_eq!(a[1].temp_c, -8.0);
    }

    #[test]
    fn every_problem_is_named_by_line_and_field() {
        let csv = "region,ts,temp_c\nPavlodar,2026-01-05T01:30:00Z,-7.1\nPavlodar,yesterday,-7\nPavlodar,2026-01-05T02:00:00Z,cold\n,2026-01-05T03:00:00Z,1\nPavlodar,2026-01-05T04:00:00Z,265\n";
        let e = read_weather(csv.as_bytes(), "w.csv").expect_err("refused");
        assert_eq!(e.problems.len(), 5, "{e}");
        assert!(e.problems[0].starts_with("w.csv:2: field ts"), "{e}");
        assert!(e.problems[1].starts_with("w.csv:3: field ts"), "{e}");
        assert!(e.problems[2].starts_with("w.csv:4: field temp_c"), "{e}");
        assert!(e.problems[3].starts_with("w.csv:5: field region"), "{e}");
        assert!(e.problems[4].starts_with("w.csv:6: field temp_c"), "{e}");
        let bad_header = read_weather("site,ts,t\n".as_bytes(), "x.csv").expect_err("header");
        assert!(bad_header
            .to_string()
            .contains("header must be region,ts,temp_c"));
    }
}
