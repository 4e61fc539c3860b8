//! The register CSV: one row per meter, validated as a whole. A register with errors is
//! refused with every error listed (file, line, field): loading half a register would make
//! every meter left out look unregistered.
//!
//! Optional columns after the fixed eleven, by name: `timezone` (IANA), `generation_kw` (the
//! export capacity of registered generation, kW; empty or 0: none) and `effective_from`
//! (RFC 3339, the event time from which the row holds). With `effective_from` a meter may have
//! several rows, one per time: its history of changes (a permit raised on 1 March, a site
//! disconnected on 15 March). Rows come back in file order, except that a meter's rows come in
//! the order of their times.

use gridwatch_core::registry::REGISTRY_HEADER;
use gridwatch_core::{MeterRecord, Role};
use std::collections::HashMap;
use std::io::BufRead;

/// Why a register was refused: every problem found, one per line.
#[derive(Debug, thiserror::Error)]
#[error("{} problem(s) in register {source_name}:\n{}", .problems.len(), .problems.join("\n"))]
pub struct RegistryError {
    pub source_name: String,
    pub problems: Vec<String>,
}

const MAX_PROBLEMS: usize = 50;

/// Reads and validates a whole register. `source_name` names the input in messages.
pub fn read_registry(
    input: impl BufRead,
    source_name: &str,
) -> Result<Vec<MeterRecord>, RegistryError> {
    let mut problems = Vec::new();
    let mut out = Vec::new();
    let mut first_line: HashMap<(String, Option<i64>), u64> = HashMap::new();
    let mut optional = Optional::default();
    let mut width = 0;
    let mut header_seen = false;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(input);
    let mut record = csv::ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                problems.push(format!("{source_name}:{line}: read error: {e}"));
                break;
            }
        }
        let line_no = record.position().map_or(0, |p| p.line());
        let at = |field: &str| format!("{source_name}:{line_no}: field {field}");
        let Ok(fields) = record
            .iter()
            .map(std::str::from_utf8)
            .collect::<Result<Vec<&str>, _>>()
        else {
            problems.push(format!("{source_name}:{line_no}: not UTF-8 text"));
            continue;
        };
        if fields.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        if !header_seen {
            header_seen = true;
            let cols: Vec<&str> = fields
                .iter()
                .map(|c| c.trim().trim_start_matches('\u{feff}'))
                .collect();
            if cols.len() < REGISTRY_HEADER.len()
                || cols[..REGISTRY_HEADER.len()] != REGISTRY_HEADER
            {
                return Err(RegistryError {
                    source_name: source_name.into(),
                    problems: vec![format!(
                        "{source_name}:{line_no}: header must start with {}; found {:?}",
                        REGISTRY_HEADER.join(","),
                        cols.join(",")
                    )],
                });
            }
            optional = Optional {
                timezone: cols.iter().position(|c| *c == "timezone"),
                effective_from: cols.iter().position(|c| *c == "effective_from"),
                generation_kw: cols.iter().position(|c| *c == "generation_kw"),
            };
            width = cols.len();
            continue;
        }
        if fields.len() != width {
            problems.push(format!(
                "{source_name}:{line_no}: expected {width} fields as in the header, found {}",
                fields.len()
            ));
        } else {
            match row(&fields, optional, &at) {
                Ok(rec) => {
                    let key = (rec.meter_id.clone(), rec.effective_from);
                    if let Some(prev) = first_line.get(&key) {
                        problems.push(format!(
                            "{}: {:?} already appears on line {prev} (one row per meter{})",
                            at("meter_id"),
                            rec.meter_id,
                            if optional.effective_from.is_some() {
                                " and effective_from"
                            } else {
                                ""
                            }
                        ));
                    } else {
                        first_line.insert(key, line_no);
                        out.push(rec);
                    }
                }
                Err(e) => problems.push(e),
            }
        }
        if problems.len() >= MAX_PROBLEMS {
            problems.push(format!(
                "{source_name}: stopped after {MAX_PROBLEMS} problems"
            ));
            break;
        }
    }
    if !header_seen {
        problems.push(format!("{source_name}: empty register (no header)"));
    }
    if problems.is_empty() {
        in_time_order(&mut out);
        Ok(out)
    } else {
        Err(RegistryError {
            source_name: source_name.into(),
            problems,
        })
    }
}

/// Where the optional columns are, if the header has them.
#[derive(Debug, Clone, Copy, Default)]
struct Optional {
    timezone: Option<usize>,
    effective_from: Option<usize>,
    generation_kw: Option<usize>,
}

/// Puts each meter's rows in the order of their `effective_from` (a row without one first),
/// keeping every other row where it was: a meter's later row is then never applied before
/// its earlier one.
fn in_time_order(rows: &mut [MeterRecord]) {
    let mut at: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        at.entry(r.meter_id.as_str()).or_default().push(i);
    }
    let mut moves: Vec<(usize, usize)> = Vec::new();
    for places in at.into_values().filter(|p| p.len() > 1) {
        let mut by_time = places.clone();
        by_time.sort_by_key(|&i| (rows[i].effective_from.unwrap_or(i64::MIN), i));
        moves.extend(places.into_iter().zip(by_time));
    }
    let picked: Vec<(usize, MeterRecord)> = moves
        .iter()
        .map(|&(to, from)| (to, rows[from].clone()))
        .collect();
    for (to, r) in picked {
        rows[to] = r;
    }
}

fn row(f: &[&str], optional: Optional, at: &dyn Fn(&str) -> String) -> Result<MeterRecord, String> {
    let get = |i: usize| f[i].trim();
    let id = |i: usize| -> Result<String, String> {
        let v = get(i);
        if v.is_empty() || v.len() > 128 || v.chars().any(char::is_control) {
            return Err(format!(
                "{}: {v:?} is not a valid id",
                at(REGISTRY_HEADER[i])
            ));
        }
        Ok(v.to_string())
    };
    let opt_num = |i: usize, lo: f64, hi: f64| -> Result<Option<f64>, String> {
        let v = get(i);
        if v.is_empty() {
            return Ok(None);
        }
        match v.parse::<f64>() {
            Ok(x) if x.is_finite() && (lo..=hi).contains(&x) => Ok(Some(x)),
            _ => Err(format!(
                "{}: {v:?} is not a number in {lo}..={hi}",
                at(REGISTRY_HEADER[i])
            )),
        }
    };
    let role: Role = get(3).parse().map_err(|e| format!("{}: {e}", at("role")))?;
    let class = match get(4) {
        "" => None,
        c => Some(
            c.parse()
                .map_err(|e| format!("{}: {e}", at("customer_class")))?,
        ),
    };
    if role == Role::Customer && class.is_none() {
        return Err(format!(
            "{}: required for a customer meter",
            at("customer_class")
        ));
    }
    let licensed_mining = match get(7) {
        "true" => true,
        "false" | "" => false,
        v => {
            return Err(format!(
                "{}: {v:?} is not true or false",
                at("licensed_mining")
            ))
        }
    };
    let region = Some(get(10)).filter(|s| !s.is_empty()).map(str::to_string);
    Ok(MeterRecord {
        site_id: id(0)?,
        meter_id: id(1)?,
        feeder_id: id(2)?,
        role,
        customer_class: class,
        permitted_kw: opt_num(5, 0.0, 10_000_000.0)?,
        status: get(6)
            .parse()
            .map_err(|e| format!("{}: {e}", at("status")))?,
        licensed_mining,
        lat: opt_num(8, -90.0, 90.0)?,
        lon: opt_num(9, -180.0, 180.0)?,
        region,
        effective_from: optional
            .effective_from
            .map(get)
            .filter(|s| !s.is_empty())
            .map(|t| {
                gridwatch_core::time::parse_rfc3339(t)
                    .map_err(|e| format!("{}: {e}", at("effective_from")))
            })
            .transpose()?,
        generation_kw: match optional.generation_kw.map(get).filter(|s| !s.is_empty()) {
            Some(v) => match v.parse::<f64>() {
                Ok(kw) if (0.0..=10_000_000.0).contains(&kw) => Some(kw).filter(|&kw| kw > 0.0),
                _ => {
                    return Err(format!(
                        "{}: {v:?} is not a number of kW between 0 and 10000000",
                        at("generation_kw")
                    ))
                }
            },
            None => None,
        },
        timezone: match optional.timezone.map(get).filter(|s| !s.is_empty()) {
            Some(zone) => {
                gridwatch_core::time::standard_offset_hours(zone)
                    .map_err(|e| format!("{}: {e}", at("timezone")))?;
                Some(zone.to_string())
            }
            None => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    const HEAD: &str = "site_id,meter_id,feeder_id,role,customer_class,permitted_kw,status,licensed_mining,lat,lon,region";

    #[test]
    fn reads_rows_and_known_optional_columns() {
        let text = format!(
            "{HEAD},timezone,notes\nS1,M1,F1,customer,residential,12,active,false,52.3,77.0,Pavlodar,Asia/Almaty,x\n\
             F1,H1,F1,feeder_head,,,active,false,,,,,\n"
        );
        let r = read_registry(text.as_bytes(), "reg.csv").unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].permitted_kw, Some(12.0));
        assert_eq!(r[0].timezone.as_deref(), Some("Asia/Almaty"));
        assert_eq!(r[1].role, Role::FeederHead);
        assert_eq!(r[1].customer_class, None);
        assert_eq!(r[1].permitted_kw, None);
        let bad = format!(
            "{HEAD},timezone\nS1,M1,F1,customer,residential,12,active,false,,,,Asia/Almatty\n"
        );
        let e = read_registry(bad.as_bytes(), "reg.csv").unwrap_err();
        assert!(
            e.to_string()
                .contains("reg.csv:2: field timezone: \"Asia/Almatty\" is not an IANA time zone"),
            "{e}"
        );
    }

    #[test]
    fn generation_kw_is_the_registered_export_capacity_and_a_bad_one_is_named() {
        let text = format!(
            "{HEAD},generation_kw\nS1,M1,F1,customer,residential,12,active,false,,,,6.6\n\
             S2,M2,F1,customer,residential,12,active,false,,,,0\n\
             S3,M3,F1,customer,residential,12,active,false,,,,\n"
        );
        let r = read_registry(text.as_bytes(), "reg.csv").unwrap();
        let kw: Vec<_> = r.iter().map(|m| m.generation_kw).collect();
        assert_eq!(kw, [Some(6.6), None, None]);
        let bad =
            format!("{HEAD},generation_kw\nS1,M1,F1,customer,residential,12,active,false,,,,-3\n");
        let e = read_registry(bad.as_bytes(), "reg.csv").unwrap_err();
        assert!(
            e.to_string()
                .contains("reg.csv:2: field generation_kw: \"-3\""),
            "{e}"
        );
    }

    #[test]
    fn a_meter_may_have_one_row_per_effective_time_in_time_order() {
        let text = format!(
            "{HEAD},effective_from\n\
             S1,M1,F1,customer,residential,20,active,false,,,,2026-03-01T00:00:00Z\n\
             S2,M2,F1,customer,residential,12,active,false,,,,\n\
             S1,M1,F1,customer,residential,12,active,false,,,,\n\
             S1,M1,F1,customer,residential,20,disconnected,false,,,,2026-03-15T00:00+06:00\n"
        );
        let r = read_registry(text.as_bytes(), "reg.csv").unwrap();
        let got: Vec<(&str, Option<i64>)> = r
            .iter()
            .map(|r| (r.meter_id.as_str(), r.effective_from))
            .collect();
        assert_eq!(
            got,
            [
                ("M1", None),
                ("M2", None),
                ("M1", Some(1_772_323_200)),
                ("M1", Some(1_773_511_200)),
            ]
        );
        assert_eq!(r[0].permitted_kw, Some(12.0), "the row in force first");
        let twice = format!(
            "{HEAD},effective_from\n\
             S1,M1,F1,customer,residential,20,active,false,,,,2026-03-01T00:00:00Z\n\
             S1,M1,F1,customer,residential,25,active,false,,,,2026-03-01T06:00:00+06:00\n\
             S2,M2,F1,customer,residential,12,active,false,,,,2026-03-01\n"
        );
        let e = read_registry(twice.as_bytes(), "reg.csv").unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains("reg.csv:3: field meter_id: \"M1\" already appears on line 2 (one row per meter and effective_from)"),
            "{e}"
        );
        assert!(
            e.contains("reg.csv:4: field effective_from: not an RFC 3339"),
            "{e}"
        );
    }

    #[test]
    fn every_problem_is_listed_with_file_line_and_field() {
        let text = format!(
            "{HEAD}\nS1,M1,F1,customer,residential,12,active,false,,,\n\
             S2,M1,F1,customer,residential,12,active,false,,,\n\
             S3,M3,F1,customer,residential,12,unplugged,false,,,\n\
             S4,M4,F1,customer,castle,12,active,false,,,\n\
             S5,M5,F1,customer,residential,twelve,active,false,,,\n\
             S6,M6,F1,customer,residential,12,active,yes,,,\n\
             S7,M7,F1,customer,residential,12,active,false,95,,\n\
             S8,M8,F1,customer,residential,12,active\n"
        );
        let e = read_registry(text.as_bytes(), "reg.csv").unwrap_err();
        let all = e.to_string();
        for want in [
            "reg.csv:3: field meter_id: \"M1\" already appears on line 2",
            "reg.csv:4: field status: unknown status \"unplugged\"",
            "reg.csv:5: field customer_class: unknown customer_class \"castle\"",
            "reg.csv:6: field permitted_kw",
            "reg.csv:7: field licensed_mining",
            "reg.csv:8: field lat",
            "reg.csv:9: expected 11 fields",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
        assert_eq!(e.problems.len(), 7);
        let bad_header = read_registry("site,meter\n".as_bytes(), "r.csv").unwrap_err();
        assert!(bad_header.to_string().contains("header must start with"));
    }
}
