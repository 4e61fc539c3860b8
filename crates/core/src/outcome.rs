//! Inspection outcomes: what an inspector found at a case's target. The contract: CSV
//! `target_id,verdict,visited_at,explained_by,kw,inspector,note`, the same fields as JSON.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What the visit found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Unauthorized use found: the case closes as `confirmed`.
    Confirmed,
    /// A legitimate load explains it: the case closes as `cleared`, and the site is not
    /// accused again of the same while its load stays as it was.
    Legitimate,
    /// The inspector could not get in: the case stays open and ranks higher.
    NoAccess,
}

/// What explains a load an inspector found legitimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Explanation {
    Heating,
    HeatPump,
    Ev,
    Pv,
    Licensed,
    Business,
    Other,
}

macro_rules! names {
    ($t:ty, $what:literal, $($v:path => $name:literal),+ $(,)?) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $($v => $name),+ }
            }
        }
        impl FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($name => Ok($v),)+
                    _ => Err(format!(concat!("{:?} is not ", $what), s)),
                }
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

names!(Verdict, "a verdict (confirmed, legitimate or no_access)",
    Verdict::Confirmed => "confirmed",
    Verdict::Legitimate => "legitimate",
    Verdict::NoAccess => "no_access",
);

names!(Explanation, "an explanation (heating, heat_pump, ev, pv, licensed, business or other)",
    Explanation::Heating => "heating",
    Explanation::HeatPump => "heat_pump",
    Explanation::Ev => "ev",
    Explanation::Pv => "pv",
    Explanation::Licensed => "licensed",
    Explanation::Business => "business",
    Explanation::Other => "other",
);

/// One inspection outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The case's target: an alert's `site_id`, `meter_id` or `feeder_id`.
    pub target_id: String,
    pub verdict: Verdict,
    /// When the inspector was there (epoch seconds; RFC 3339 on the wire): the event time the
    /// outcome applies at.
    #[serde(with = "crate::time::serde_rfc3339")]
    pub visited_at: i64,
    #[serde(default)]
    pub explained_by: Option<Explanation>,
    /// The unauthorized (or legitimate) load measured on site, kW.
    #[serde(default)]
    pub kw: Option<f64>,
    #[serde(default)]
    pub inspector: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
}

pub const OUTCOMES_HEADER: [&str; 7] = [
    "target_id",
    "verdict",
    "visited_at",
    "explained_by",
    "kw",
    "inspector",
    "note",
];

impl Outcome {
    /// Checks what serde cannot: a target, a finite non-negative `kw`, an explanation only
    /// for a legitimate load.
    pub fn validate(&self) -> Result<(), String> {
        if self.target_id.trim().is_empty() {
            return Err("field target_id: empty".into());
        }
        if let Some(kw) = self.kw {
            if !(kw.is_finite() && kw >= 0.0) {
                return Err(format!("field kw: {kw} is not a load in kW"));
            }
        }
        if self.explained_by.is_some() && self.verdict != Verdict::Legitimate {
            return Err(format!(
                "field explained_by: only a legitimate verdict is explained, this one is {}",
                self.verdict
            ));
        }
        Ok(())
    }
}

/// Reads an outcomes CSV (header [`OUTCOMES_HEADER`], in that order; quoted fields allowed
/// in `note`). Every bad row is an error naming the file, line and field; all are listed.
pub fn read_outcomes(text: &str, name: &str) -> Result<Vec<Outcome>, String> {
    let mut lines = text.lines().enumerate();
    let header = lines
        .next()
        .map(|(_, l)| l.trim_start_matches('\u{feff}'))
        .unwrap_or("");
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    if cols.len() < OUTCOMES_HEADER.len() || cols[..OUTCOMES_HEADER.len()] != OUTCOMES_HEADER {
        return Err(format!(
            "{name}:1: the header must start {}",
            OUTCOMES_HEADER.join(",")
        ));
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        match parse_row(line) {
            Ok(o) => out.push(o),
            Err(e) => errors.push(format!("{name}:{}: {e}", i + 1)),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors.join("\n"))
    }
}

fn split_csv(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().expect("one field").push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(String::new()),
            (c, _) => fields.last_mut().expect("one field").push(c),
        }
    }
    fields
}

fn parse_row(line: &str) -> Result<Outcome, String> {
    let f = split_csv(line);
    let get = |i: usize| f.get(i).map(|s| s.trim()).filter(|s| !s.is_empty());
    let field = |i: usize| format!("field {}", OUTCOMES_HEADER[i]);
    let o = Outcome {
        target_id: get(0)
            .ok_or_else(|| format!("{}: empty", field(0)))?
            .to_string(),
        verdict: get(1)
            .ok_or_else(|| format!("{}: empty", field(1)))?
            .parse()
            .map_err(|e| format!("{}: {e}", field(1)))?,
        visited_at: crate::time::parse_rfc3339(
            get(2).ok_or_else(|| format!("{}: empty", field(2)))?,
        )
        .map_err(|e| format!("{}: {e}", field(2)))?,
        explained_by: get(3)
            .map(str::parse)
            .transpose()
            .map_err(|e| format!("{}: {e}", field(3)))?,
        kw: get(4)
            .map(|v| {
                v.parse::<f64>()
                    .map_err(|_| format!("{}: {v:?} is not a number", field(4)))
            })
            .transpose()?,
        inspector: get(5).map(str::to_string),
        note: get(6).map(str::to_string),
    };
    o.validate()?;
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "target_id,verdict,visited_at,explained_by,kw,inspector,note";

    #[test]
    fn rows_parse_and_bad_ones_are_named_by_line_and_field() {
        let text = format!(
            "{HEAD}\nS1,confirmed,2026-01-10T09:00:00Z,,86,insp-7,\"rigs in the garage, 40 of them\"\n\
             S2,legitimate,2026-01-10T11:00:00+05:00,heat_pump,,insp-7,\n\
             F03,no_access,2026-01-11T09:00:00Z,,,,gate locked\n"
        );
        let o = read_outcomes(&text, "o.csv").unwrap();
        assert_eq!(o.len(), 3);
        assert_eq!(o[0].note.as_deref(), Some("rigs in the garage, 40 of them"));
        assert_eq!(o[0].kw, Some(86.0));
        assert_eq!(o[1].explained_by, Some(Explanation::HeatPump));
        assert_eq!(o[1].visited_at, o[0].visited_at + 2 * 3600 - 5 * 3600);
        assert_eq!(o[2].verdict, Verdict::NoAccess);
        let bad = format!(
            "{HEAD}\nS1,guilty,2026-01-10T09:00:00Z,,,,\nS2,confirmed,yesterday,,,,\n\
             S3,confirmed,2026-01-10T09:00:00Z,heating,,,\n"
        );
        let e = read_outcomes(&bad, "o.csv").unwrap_err();
        assert!(
            e.contains("o.csv:2: field verdict: \"guilty\" is not a verdict"),
            "{e}"
        );
        assert!(e.contains("o.csv:3: field visited_at"), "{e}");
        assert!(
            e.contains("o.csv:4: field explained_by: only a legitimate"),
            "{e}"
        );
        assert!(read_outcomes("site,verdict\n", "o.csv")
            .unwrap_err()
            .starts_with("o.csv:1"));
    }

    #[test]
    fn json_round_trips_with_rfc3339_times() {
        let line = r#"{"target_id":"S1","verdict":"legitimate","visited_at":"2026-01-10T09:00:00Z","explained_by":"ev"}"#;
        let o: Outcome = serde_json::from_str(line).unwrap();
        assert_eq!(o.explained_by, Some(Explanation::Ev));
        let back = serde_json::to_string(&o).unwrap();
        assert!(
            back.contains("\"visited_at\":\"2026-01-10T09:00:00Z\""),
            "{back}"
        );
    }
}
