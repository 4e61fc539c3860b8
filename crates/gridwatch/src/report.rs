//! `report.html`: the inspection list with the load curves that justify each visit, one
//! self-contained file (inline SVG and CSS, no script, no network) that opens from disk. Per
//! open case, ranked like `gridwatch suspects` (likelihood × energy): its summary, score,
//! estimated energy and evidence, and a plot of the site's load over the case and the days
//! before it, with its permit and, where peers spoke, their median; for a feeder, its head
//! meter against the sum of its customers' meters plus the losses its model expected. A map
//! places the flagged sites by latitude and longitude, coloured by feeder.

use crate::suspects::{rank, Suspect};
use anyhow::{Context, Result};
use gridwatch_core::time::format_rfc3339;
use gridwatch_core::{Alert, MeterRecord, Reading, Role};
use rustc_hash::FxHashMap;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;

/// Cases shown, at most: an inspection team's fortnight.
const MAX_CASES: usize = 30;
const HOUR: i64 = 3600;

/// Which line of a plot a meter's energy adds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Line {
    /// The site's (or unregistered meter's) own load.
    Load,
    /// A feeder's head meter.
    Head,
    /// The sum of a feeder's customer meters.
    Customers,
}

/// One open case, with what its plot needs.
struct Case {
    suspect: Suspect,
    alert: Alert,
    from: i64,
    to: i64,
    permit_kw: Option<f64>,
    /// Hourly kWh by line, keyed by the hour's start.
    hours: BTreeMap<(Line, i64), f64>,
}

/// The report over `alerts`, with load curves from `readings` (pass `None` when the readings
/// can't be read again, e.g. from standard input: the cards then have no plots).
pub struct Report {
    cases: Vec<Case>,
    /// Meter → (case index, line) it contributes to.
    wanted: FxHashMap<String, Vec<(usize, Line)>>,
    registry: HashMap<String, MeterRecord>,
    total_open: usize,
    total_mwh: f64,
    inspections: Option<String>,
    plotted: bool,
}

impl Report {
    pub fn new(alerts: &[Alert], registry: &[MeterRecord]) -> Report {
        let ranked: Vec<Suspect> = rank(alerts).into_iter().filter(|s| s.open).collect();
        let total_open = ranked.len();
        let total_mwh = ranked.iter().map(|s| s.est_excess_mwh).sum();
        let registry: HashMap<String, MeterRecord> = registry
            .iter()
            .map(|r| (r.meter_id.clone(), r.clone()))
            .collect();
        let mut cases = Vec::new();
        let mut wanted: FxHashMap<String, Vec<(usize, Line)>> = FxHashMap::default();
        for s in ranked.into_iter().take(MAX_CASES) {
            let alert = s.alert.clone();
            let i = cases.len();
            let lasted = (alert.window_end - alert.window_start).clamp(2 * 86_400, 7 * 86_400);
            let to = alert.detected_at.max(alert.window_end);
            let from = (alert.window_start - lasted).max(to - 21 * 86_400);
            let mut permit_kw = None;
            match (&alert.site_id, &alert.meter_id) {
                (Some(site), _) => {
                    for r in registry.values().filter(|r| &r.site_id == site) {
                        wanted
                            .entry(r.meter_id.clone())
                            .or_default()
                            .push((i, Line::Load));
                        permit_kw = permit_kw.or(r.permitted_kw);
                    }
                }
                (None, Some(meter)) => wanted
                    .entry(meter.clone())
                    .or_default()
                    .push((i, Line::Load)),
                (None, None) => {
                    for r in registry
                        .values()
                        .filter(|r| alert.feeder_id.as_deref() == Some(r.feeder_id.as_str()))
                    {
                        let line = match r.role {
                            Role::FeederHead => Line::Head,
                            Role::Customer => Line::Customers,
                        };
                        wanted
                            .entry(r.meter_id.clone())
                            .or_default()
                            .push((i, line));
                    }
                }
            }
            cases.push(Case {
                suspect: s,
                alert,
                from,
                to,
                permit_kw,
                hours: BTreeMap::new(),
            });
        }
        Report {
            cases,
            wanted,
            registry,
            total_open,
            total_mwh,
            inspections: crate::suspects::Inspections::of(alerts).line(),
            plotted: false,
        }
    }

    /// Whether the plots need this meter's readings.
    pub fn wants(&self, meter_id: &str) -> bool {
        self.wanted.contains_key(meter_id)
    }

    /// Adds the readings the plots need (one pass; the rest are skipped).
    pub fn add_readings(&mut self, readings: impl Iterator<Item = Reading>) {
        self.plotted = true;
        for r in readings {
            let Some(targets) = self.wanted.get(r.meter_id.as_str()) else {
                continue;
            };
            let hour = (r.ts - 1).div_euclid(HOUR) * HOUR;
            for &(i, line) in targets {
                let c = &mut self.cases[i];
                if (c.from..c.to).contains(&hour) {
                    *c.hours.entry((line, hour)).or_default() += r.kwh;
                }
            }
        }
    }

    /// Writes the report to `path`.
    pub fn write(&self, path: &Path, title: &str) -> Result<()> {
        std::fs::write(path, self.html(title))
            .with_context(|| format!("{}: cannot write the report", path.display()))
    }

    fn html(&self, title: &str) -> String {
        let mut h = String::new();
        let _ = write!(
            h,
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>gridwatch: {}</title><style>{CSS}</style></head><body>",
            esc(title)
        );
        let _ = write!(
            h,
            "<header><h1>gridwatch inspection report</h1><p>{}</p><p class=\"big\">{} open cases, {:.1} MWh estimated unauthorized; the {} most likely × largest below.</p></header>",
            esc(title),
            self.total_open,
            self.total_mwh,
            self.cases.len()
        );
        if let Some(line) = &self.inspections {
            let _ = write!(h, "<p>{}</p>", esc(line));
        }
        if self.cases.is_empty() {
            h.push_str("<p>No open cases.</p></body></html>");
            return h;
        }
        h.push_str("<section><h2>Where they are</h2>");
        h.push_str(&self.map());
        h.push_str("</section>");
        if !self.plotted {
            h.push_str("<p class=\"note\">Load curves need the readings file; they were read from standard input, so the cards have none (<code>gridwatch report</code> makes them from saved files).</p>");
        }
        for c in &self.cases {
            h.push_str(&self.card(c));
        }
        h.push_str("<footer>Made by gridwatch from its alerts; times in UTC. Plots show hourly mean demand.</footer></body></html>");
        h
    }

    fn card(&self, c: &Case) -> String {
        let a = &c.alert;
        let s = &c.suspect;
        let mut h = String::new();
        let _ = write!(
            h,
            "<article class=\"case\"><h2><span class=\"rank\">{}</span> {} <span class=\"kind\">{}</span></h2>",
            s.rank,
            esc(&s.target),
            esc(&s.kinds.join(", "))
        );
        let place = [
            a.feeder_id.as_deref().map(|f| format!("feeder {f}")),
            a.region.clone(),
            a.meter_id.as_deref().map(|m| format!("meter {m}")),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" · ");
        let _ = write!(
            h,
            "<p class=\"summary\">{}</p><p class=\"facts\">score <b>{:.2}</b> · {:.0} kW · <b>{:.2} MWh</b> estimated · since {} · {}</p>",
            esc(&a.summary),
            s.score,
            s.est_excess_kw,
            s.est_excess_mwh,
            format_rfc3339(a.window_start),
            esc(&place)
        );
        if self.plotted {
            h.push_str(&self.plot(c));
        }
        h.push_str("<details><summary>evidence</summary><table>");
        for (k, v) in &a.evidence {
            let shown = match v {
                Value::String(t) => t.clone(),
                other => other.to_string(),
            };
            let _ = write!(h, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&shown));
        }
        h.push_str("</table></details></article>");
        h
    }

    /// The plot of one case: its lines, the case window shaded, the permit and the peers.
    fn plot(&self, c: &Case) -> String {
        let (w, ht, pad) = (900.0, 240.0, 44.0);
        let series = |line: Line| -> Vec<(i64, f64)> {
            c.hours
                .range((line, i64::MIN)..=(line, i64::MAX))
                .map(|(&(_, hour), &kwh)| (hour, kwh))
                .collect()
        };
        let mut lines: Vec<PlotLine> = Vec::new();
        let feeder = c.alert.site_id.is_none() && c.alert.meter_id.is_none();
        let ev = |k: &str| c.alert.evidence.get(k).and_then(Value::as_f64);
        if feeder {
            let customers = series(Line::Customers);
            let expected = ev("loss_ratio_expected").unwrap_or(0.0).clamp(0.0, 0.9);
            let with_losses = customers
                .iter()
                .map(|&(t, kw)| (t, kw / (1.0 - expected)))
                .collect();
            lines.push(PlotLine::new("feeder head", "#c0392b", series(Line::Head)));
            lines.push(PlotLine::new(
                "meters + expected losses",
                "#2c7fb8",
                with_losses,
            ));
            lines.push(PlotLine::new("sum of its meters", "#9ecae1", customers));
        } else {
            lines.push(PlotLine::new("load", "#2c7fb8", series(Line::Load)));
        }
        let peers = ev("peer_median_kw");
        let top = lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.1))
            .chain(c.permit_kw)
            .chain(peers)
            .fold(1.0f64, f64::max)
            * 1.1;
        // From the first hour with data, where the file starts later than the window.
        let from = c
            .hours
            .keys()
            .map(|&(_, hour)| hour)
            .min()
            .map_or(c.from, |first| first.max(c.from));
        let span = (c.to - from).max(HOUR) as f64;
        let x = |t: i64| pad + (t - from) as f64 / span * (w - pad - 10.0);
        let y = |kw: f64| ht - 24.0 - kw / top * (ht - 34.0);
        let mut g = String::new();
        let _ = write!(
            g,
            "<svg class=\"plot\" viewBox=\"0 0 {w} {ht}\" role=\"img\" aria-label=\"hourly demand of {}\">",
            esc(&c.suspect.target)
        );
        let (x0, x1) = (x(c.alert.window_start.max(from)), x(c.to));
        let _ = write!(
            g,
            "<rect x=\"{x0:.1}\" y=\"10\" width=\"{:.1}\" height=\"{:.1}\" class=\"window\"/>",
            (x1 - x0).max(1.0),
            ht - 34.0
        );
        for k in 0..=4 {
            let kw = top * f64::from(k) / 4.0;
            let _ = write!(
                g,
                "<line x1=\"{pad}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" class=\"grid\"/><text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{}</text>",
                w - 10.0,
                y(kw),
                y(kw),
                pad - 4.0,
                y(kw) + 4.0,
                fmt_kw(kw)
            );
        }
        let mut day = from.div_euclid(86_400) * 86_400 + 86_400;
        while day < c.to {
            let _ = write!(
                g,
                "<text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"middle\">{}</text>",
                x(day),
                ht - 8.0,
                &format_rfc3339(day)[5..10]
            );
            day += 86_400 * (1 + (c.to - from) / (86_400 * 12));
        }
        for (label, kw, class) in [
            ("permit", c.permit_kw, "permit"),
            ("peers' median", peers, "peers"),
        ] {
            if let Some(kw) = kw {
                let _ = write!(
                    g,
                    "<line x1=\"{pad}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" class=\"{class}\"/><text x=\"{:.1}\" y=\"{:.1}\" class=\"tick {class}-label\" text-anchor=\"end\">{label} {} kW</text>",
                    w - 10.0,
                    y(kw),
                    y(kw),
                    w - 12.0,
                    y(kw) - 4.0,
                    fmt_kw(kw)
                );
            }
        }
        for (
            i,
            PlotLine {
                label,
                colour,
                points,
            },
        ) in lines.iter().enumerate()
        {
            let points: Vec<String> = points
                .iter()
                .map(|&(t, kw)| format!("{:.1},{:.1}", x(t + HOUR / 2), y(kw)))
                .collect();
            let _ = write!(
                g,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.4\"/><text x=\"{:.1}\" y=\"22\" class=\"legend\" fill=\"{colour}\">{label}</text>",
                points.join(" "),
                pad + 8.0 + 190.0 * i as f64
            );
        }
        if lines.iter().all(|l| l.points.is_empty()) {
            let _ = write!(
                g,
                "<text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"middle\">no readings of this target in the file</text>",
                w / 2.0,
                ht / 2.0
            );
        }
        g.push_str("</svg>");
        g
    }

    /// Flagged sites by latitude and longitude, coloured by feeder, labelled by rank.
    fn map(&self) -> String {
        let placed: Vec<(&Case, f64, f64)> = self
            .cases
            .iter()
            .filter_map(|c| {
                let reg = c
                    .alert
                    .meter_id
                    .as_deref()
                    .and_then(|m| self.registry.get(m));
                let lat = c.alert.lat.or(reg.and_then(|r| r.lat))?;
                let lon = c.alert.lon.or(reg.and_then(|r| r.lon))?;
                Some((c, lat, lon))
            })
            .collect();
        if placed.is_empty() {
            return "<p class=\"note\">No flagged site has coordinates in the register (lat, lon).</p>".into();
        }
        let (w, ht, pad) = (900.0, 320.0, 30.0);
        let (mut lat0, mut lat1, mut lon0, mut lon1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(_, lat, lon) in &placed {
            (lat0, lat1, lon0, lon1) = (lat0.min(lat), lat1.max(lat), lon0.min(lon), lon1.max(lon));
        }
        let (dlat, dlon) = ((lat1 - lat0).max(0.01), (lon1 - lon0).max(0.01));
        let mut feeders: Vec<&str> = placed
            .iter()
            .filter_map(|(c, _, _)| c.alert.feeder_id.as_deref())
            .collect();
        feeders.sort_unstable();
        feeders.dedup();
        let colour = |f: Option<&str>| {
            let i = f
                .and_then(|f| feeders.iter().position(|x| *x == f))
                .unwrap_or(0);
            PALETTE[i % PALETTE.len()]
        };
        let mut g = format!("<svg class=\"map\" viewBox=\"0 0 {w} {ht}\" role=\"img\" aria-label=\"map of flagged sites\"><rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{ht}\" class=\"land\"/>");
        for &(c, lat, lon) in &placed {
            let px = pad + (lon - lon0) / dlon * (w - 2.0 * pad);
            let py = ht - pad - (lat - lat0) / dlat * (ht - 2.0 * pad);
            let r = 5.0 + (c.suspect.est_excess_mwh.max(0.0).sqrt() * 2.0).min(14.0);
            let _ = write!(
                g,
                "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"{r:.1}\" fill=\"{}\" fill-opacity=\"0.75\"><title>{} {} ({lat:.4}, {lon:.4})</title></circle><text x=\"{:.1}\" y=\"{:.1}\" class=\"pin\">{}</text>",
                colour(c.alert.feeder_id.as_deref()),
                c.suspect.rank,
                esc(&c.suspect.target),
                px + r + 2.0,
                py + 4.0,
                c.suspect.rank
            );
        }
        g.push_str("</svg><p class=\"legend-row\">");
        for f in &feeders {
            let _ = write!(
                g,
                "<span style=\"color:{}\">● feeder {}</span> ",
                colour(Some(f)),
                esc(f)
            );
        }
        g.push_str("</p>");
        g
    }
}

/// One line of a plot: its label, colour and (hour start, kW) points.
struct PlotLine {
    label: &'static str,
    colour: &'static str,
    points: Vec<(i64, f64)>,
}

impl PlotLine {
    fn new(label: &'static str, colour: &'static str, points: Vec<(i64, f64)>) -> PlotLine {
        PlotLine {
            label,
            colour,
            points,
        }
    }
}

const PALETTE: [&str; 8] = [
    "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666",
];

const CSS: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:960px;color:#222;background:#fafafa}\
h1{font-size:22px;margin:0}h2{font-size:17px;margin:0 0 6px}header p{margin:4px 0;color:#555}.big{font-size:16px;color:#222!important}\
section,article{background:#fff;border:1px solid #ddd;border-radius:6px;padding:14px 16px;margin:14px 0}\
.rank{display:inline-block;min-width:26px;padding:1px 6px;border-radius:12px;background:#c0392b;color:#fff;text-align:center;margin-right:4px}\
.kind{font-weight:normal;color:#666;font-size:13px}.summary{margin:4px 0}.facts{color:#555;margin:4px 0 8px}\
svg{width:100%;height:auto;display:block}.window{fill:#fdecea}.grid{stroke:#eee}.tick{font-size:11px;fill:#777}\
.permit{stroke:#e67e22;stroke-dasharray:6 4}.permit-label{fill:#e67e22}.peers{stroke:#27ae60;stroke-dasharray:2 3}.peers-label{fill:#27ae60}\
.legend{font-size:12px}.land{fill:#f3f6f4}.pin{font-size:11px;fill:#333}.note{color:#8a6d3b}\
table{border-collapse:collapse;font-size:12px}th{text-align:left;padding:2px 10px 2px 0;color:#555;font-weight:normal}td{padding:2px 0}\
footer{color:#888;font-size:12px;margin-top:20px}";

fn fmt_kw(kw: f64) -> String {
    if kw >= 100.0 {
        format!("{kw:.0}")
    } else if kw >= 10.0 {
        format!("{kw:.1}")
    } else {
        format!("{kw:.2}")
    }
}

/// HTML-escapes text.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
