"""The detection-quality benchmark: runs a fixed suite of simulated utilities (several seeds and
sizes) through the embedded pipeline, scores them against their truth, replays the real
households of shared/data as negatives, compares simulated and real household shapes, and
writes docs/QUALITY.md.

usage: python3 scripts/quality.py [--bin target/release/gridwatch] [--real ../shared/data/smart_meter_50_halfhourly.csv.gz] [--out docs/QUALITY.md] [--work DIR]
"""
import argparse
import collections
import csv
import datetime as dt
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zlib

# The fixed suite (several seeds and sizes; the fifth half-hourly, Central European time across
# the spring DST change), shared with the golden-alerts test (scripts/golden.sh).
SUITE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden", "suite.json")
SUITE = [(s["seed"], s["sites"], s["days"], s["extra"]) for s in json.load(open(SUITE_FILE)) if not s.get("season")]
# The winter utility (a cold snap, electric heating, daily batches, backfilled gaps) is scored
# on its own: its false targets are the winter target.
SEASONS = [(s["seed"], s["sites"], s["days"], s["extra"], s["season"]) for s in json.load(open(SUITE_FILE)) if s.get("season")]
SEASON_NAME = {"winter": "winter with a cold snap", "summer": "summer with a heat wave",
               "sunbelt": "sunbelt summer (rooftop PV on a quarter of homes, MDM estimates, 2-4 day outages backfilled late)"}
FARMS = ["mining_farm_residential", "mining_farm_commercial", "mining_farm_industrial", "ramp_up_miner"]

ap = argparse.ArgumentParser()
ap.add_argument("--bin", default="target/release/gridwatch")
ap.add_argument("--real", default="../shared/data/smart_meter_50_halfhourly.csv.gz")
ap.add_argument("--heated", default="../shared/data/heated_homes_ch_2018.csv.gz")
ap.add_argument("--out", default="docs/QUALITY.md")
ap.add_argument("--work", default=None)
args = ap.parse_args()
work = args.work or tempfile.mkdtemp(prefix="gridwatch-quality-")


def gw(*a):
    subprocess.run([args.bin, *a], check=True, stdout=subprocess.DEVNULL)


def simulate_run_eval(d, seed, sites, days, extra):
    """Simulates a utility into d, runs it and scores it: (simulate s, run s, evaluation)."""
    t0 = time.time()
    gw("simulate", "--out", d, "--sites", str(sites), "--days", str(days), "--seed", str(seed), *extra)
    t1 = time.time()
    gw("run", "--registry", f"{d}/registry.csv", "--readings", f"{d}/readings.csv", "--holidays", f"{d}/holidays.csv", "--out", f"{d}/out", "--quiet")
    t2 = time.time()
    e = json.loads(subprocess.run([args.bin, "eval", "--data", d, "--alerts", f"{d}/out/alerts.jsonl", "--json"], check=True, capture_output=True, text=True).stdout)
    return t1 - t0, t2 - t1, e


def pct(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, round((len(v) - 1) * q))] if v else float("nan")


# 1. The suite.
cases = []  # (run, case row)
false_alerts = []
site_days = 0.0
kinds = collections.Counter()
kinds_on_cases = collections.Counter()
runs = []
opened_scores = []  # (score at open, on a case)
messages = collections.Counter()  # per case: open, update, resolved
reopened = 0
for seed, sites, days, extra in SUITE:
    d = os.path.join(work, f"sim-{seed}-{sites}-{days}")
    ts, tr, e = simulate_run_eval(d, seed, sites, days, extra)
    runs.append((seed, sites, days, ts, tr, e))
    cases += [(seed, c) for c in e["cases"]]
    false_alerts += [(seed, f) for f in e["false_alert_list"]]
    false_ids = {f["alert_id"] for f in e["false_alert_list"]}
    per_target = collections.Counter()
    for line in open(f"{d}/out/alerts.jsonl"):
        a = json.loads(line)
        messages[a["status"]] += 1
        if a["status"] == "open":
            opened_scores.append((a["score"], a["alert_id"] not in false_ids))
            per_target[(a["kind"], a["site_id"] or a["meter_id"] or a["feeder_id"])] += 1
    reopened += sum(n - 1 for n in per_target.values())
    site_days += e["site_days"]
    for k in e["kinds"]:
        kinds[k["kind"]] += k["opened"]
        kinds_on_cases[k["kind"]] += k["on_cases"]
    print(f"seed {seed}: {sites} sites x {days} days: simulate {ts:.1f} s, run {tr:.1f} s", file=sys.stderr)


def late_rejects(out):
    """Valid readings the run rejected as late (every simulated reading is valid)."""
    path = os.path.join(out, "rejects.jsonl")
    return sum(1 for l in open(path) if json.loads(l)["reason"].startswith("late")) if os.path.exists(path) else 0


late_total = sum(late_rejects(os.path.join(work, f"sim-{seed}-{sites}-{days}", "out")) for seed, sites, days, _ in SUITE)

# 1b. The winter utility, run without and with its weather.
winter_runs = []
winter_weather = []  # (seed, run s, evaluation) with --weather
for seed, sites, days, extra, season in SEASONS:
    d = os.path.join(work, f"{season}-{seed}-{sites}-{days}")
    ts, tr, e = simulate_run_eval(d, seed, sites, days, extra)
    n_readings = sum(1 for _ in open(f"{d}/readings.csv")) - 1
    # The same readings again, with the weather the simulator drew (weather.csv).
    t = time.time()
    gw("run", "--registry", f"{d}/registry.csv", "--readings", f"{d}/readings.csv", "--holidays", f"{d}/holidays.csv", "--weather", f"{d}/weather.csv", "--out", f"{d}/out-weather", "--quiet")
    trw = time.time() - t
    ew = json.loads(subprocess.run([args.bin, "eval", "--data", d, "--alerts", f"{d}/out-weather/alerts.jsonl", "--json"], check=True, capture_output=True, text=True).stdout)
    winter_runs.append((seed, sites, days, extra, ts, tr, e, late_rejects(f"{d}/out"), n_readings))
    winter_weather.append((seed, trw, ew, season))
    print(f"{season} {seed}: {sites} sites x {days} days: simulate {ts:.1f} s, run {tr:.1f} s, with weather {trw:.1f} s", file=sys.stderr)


def recall(scenarios, within_h=None):
    rows = [c for _, c in cases if c["scenario"] in scenarios]
    hit = [c for c in rows if c["delay_h"] is not None and (within_h is None or c["delay_h"] <= within_h)]
    delays = [c["delay_h"] for c in rows if c["delay_h"] is not None]
    return len(rows), len(hit), delays


# 1c. Delivery order: the winter utility's readings delivered in another order — each meter's
# moved by its own 0-12 hours on top of the daily batches —, judged as delivered (the default)
# and in event order (--in-event-order). Issue: the same readings in any arrival order within
# the horizon give the same alerts.
def moved_copy(src, dst, hours):
    """Writes src with each meter's lines moved later by up to `hours` of lines (its own amount)."""
    with open(src) as f:
        header, *lines = f.read().splitlines()
    per_hour = len(lines) / max(1, ORDER_DAYS * 24)
    span = max(1, int(per_hour * hours))
    keyed = sorted(((i + zlib.crc32(l.split(",", 1)[0].encode()) % span, l) for i, l in enumerate(lines)), key=lambda t: t[0])
    with open(dst, "w") as f:
        f.write("\n".join([header] + [l for _, l in keyed]) + "\n")


def alert_lines(out):
    return sorted(open(os.path.join(out, "alerts.jsonl")).read().splitlines())


ORDER_SEED, ORDER_SITES, ORDER_DAYS, _, ORDER_SEASON = SEASONS[0]
od = os.path.join(work, f"{ORDER_SEASON}-{ORDER_SEED}-{ORDER_SITES}-{ORDER_DAYS}")
moved_copy(f"{od}/readings.csv", f"{od}/readings-moved.csv", 12)
order_check = {}  # mode: (alerts as delivered in the stream's order, lines differing, late rejects)
for mode, flags in (("default", []), ("event order", ["--in-event-order"])):
    outs = []
    for name in ("readings", "readings-moved"):
        out = f"{od}/order-{mode.replace(' ', '-')}-{name}"
        gw("run", "--registry", f"{od}/registry.csv", "--readings", f"{od}/{name}.csv", "--holidays", f"{od}/holidays.csv", "--out", out, "--quiet", *flags)
        outs.append(out)
    a, b = alert_lines(outs[0]), alert_lines(outs[1])
    differ = len(set(a) ^ set(b))
    found = []
    for out in outs:
        ev = json.loads(subprocess.run([args.bin, "eval", "--data", od, "--alerts", f"{out}/alerts.jsonl", "--json"], check=True, capture_output=True, text=True).stdout)
        found.append(sum(1 for c in ev["cases"] if c["delay_h"] is not None))
    order_check[mode] = (len(a), differ, late_rejects(outs[0]) + late_rejects(outs[1]), found)
print(f"delivery order: {order_check}", file=sys.stderr)

# 2. Real households.
real_dir = os.path.join(work, "real")
real = subprocess.run([sys.executable, "scripts/real_households.py", args.real, real_dir], check=True, capture_output=True, text=True).stdout.strip()
gw("run", "--registry", f"{real_dir}/registry.csv", "--readings", f"{real_dir}/readings.csv", "--out", f"{real_dir}/out", "--quiet")
real_alerts = [json.loads(l) for l in open(f"{real_dir}/out/alerts.jsonl") if l.strip()]
real_opened = [a for a in real_alerts if a["status"] == "open"]
household_days = int(real.split(",")[1].split()[0])

# 2b. Real heated homes in the heating season (Switzerland, 2018), no weather given.
heated_dir = os.path.join(work, "heated")
heated = subprocess.run([sys.executable, "scripts/real_heated_homes.py", args.heated, heated_dir], check=True, capture_output=True, text=True).stdout.strip()
gw("run", "--registry", f"{heated_dir}/registry.csv", "--readings", f"{heated_dir}/readings.csv", "--out", f"{heated_dir}/out", "--quiet")
heated_opened = [json.loads(l) for l in open(f"{heated_dir}/out/alerts.jsonl") if l.strip() and json.loads(l)["status"] == "open"]
heated_homes = len({a["site_id"] for a in heated_opened})


# 3. Realism: load factor (mean / peak half-hour) per household and 14-day window, and the
# night/day ratio (00-06 vs 10-18 local), simulated vs real.
def shape_stats(series):
    """series: {household: [(local datetime, kwh per half-hour)]} -> (load factors, night/day ratios)."""
    lfs, nds = [], []
    for points in series.values():
        points.sort()
        by_window = collections.defaultdict(list)
        first = points[0][0]
        for t, kwh in points:
            by_window[(t - first).days // 14].append((t, kwh))
        for w in by_window.values():
            if len(w) < 14 * 48 * 0.9:
                continue
            vals = [k for _, k in w]
            peak = max(vals)
            if peak > 0:
                lfs.append(statistics.fmean(vals) / peak)
            night = [k for t, k in w if t.hour < 6]
            day = [k for t, k in w if 10 <= t.hour < 18]
            if day and statistics.fmean(day) > 0:
                nds.append(statistics.fmean(night) / statistics.fmean(day))
    return lfs, nds


real_series = collections.defaultdict(list)
with gzip.open(args.real, "rt") as f:
    for row in csv.DictReader(f):
        real_series[row["customer_id"]].append((dt.datetime.strptime(row["reading_datetime"], "%Y-%m-%d %H:%M:%S"), float(row["general_supply_kwh"])))
real_lf, real_nd = shape_stats(real_series)

seed, sites, days, *_ = runs[0]
d = os.path.join(work, f"sim-{seed}-{sites}-{days}")
residential = set()
labelled = {l["target_id"] for l in csv.DictReader(open(f"{d}/labels.csv"))}
for r in csv.DictReader(open(f"{d}/registry.csv")):
    if r["customer_class"] == "residential" and r["site_id"] not in labelled:
        residential.add(r["meter_id"])
offset = dt.timedelta(hours=5)  # Asia/Almaty, the simulator's default zone
half_hours = collections.defaultdict(float)
with open(f"{d}/readings.csv") as f:
    for row in csv.DictReader(f):
        if row["meter_id"] in residential:
            end = dt.datetime.strptime(row["ts"], "%Y-%m-%dT%H:%M:%SZ") + offset - dt.timedelta(seconds=1)
            half_hours[(row["meter_id"], end.replace(minute=30 * (end.minute // 30), second=0))] = float(row["kwh"]) + half_hours[(row["meter_id"], end.replace(minute=30 * (end.minute // 30), second=0))]
sim_series = collections.defaultdict(list)
for (m, t), kwh in half_hours.items():
    sim_series[m].append((t, kwh))
sim_lf, sim_nd = shape_stats(sim_series)


# 4. The report.
def row(name, n, hit, target, ok):
    return f"| {name} | {n} | {hit} | {hit / n:.3f} | {target} | {'met' if ok else '**not met**'} |" if n else f"| {name} | 0 | - | - | {target} | - |"


lines = []
add = lines.append
add("# Detection quality")
add("")
add(f"Generated by `python3 scripts/quality.py` on {dt.date.today()} with `{args.bin}`; do not edit by hand.")
add("Every number below comes from simulated utilities whose truth is known (`gridwatch simulate`), scored")
add("by `gridwatch eval`, and from a replay of real households. No threshold was tuned to one seed: the suite")
add("varies seeds and sizes. Each run is given its utility's public holidays (`--holidays holidays.csv`,")
add("on which its shops, offices, schools and factories close), as a utility would give its calendar.")
add("Runs are embedded (`gridwatch run`) with the default three partition engines, as the services run")
add("on a readings topic of three partitions: the seasons and peers are each partition's.")
add("")
add("## The suite")
add("")
add("| seed | sites | days | readings | other settings | simulate s | run s | alerts opened | false alerts |")
add("|---|---|---|---|---|---|---|---|---|")
for (seed, sites, days, ts, tr, e), (*_, extra) in zip(runs, SUITE):
    n = sum(1 for _ in open(os.path.join(work, f"sim-{seed}-{sites}-{days}", "readings.csv"))) - 1
    add(f"| {seed} | {sites} | {days} | {n:,} | {' '.join(extra) or '15-minute readings, Asia/Almaty'} | {ts:.1f} | {tr:.1f} | {sum(k['opened'] for k in e['kinds'])} | {e['false_alerts']} |")
add("")
add("## Against the targets")
add("")
add("| target | cases | found | recall | target | |")
add("|---|---|---|---|---|---|")
n, hit, _ = recall(["unregistered_meter"], 1.0)
add(row("unregistered meters, within 1 h", n, hit, "all", n == hit))
n, hit, _ = recall(["disconnected_consumption", "suspended_consumption"], 1.0)
add(row("consumption on disconnected/suspended sites, within 1 h", n, hit, "all", n == hit))
n, hit, farm_delays = recall(FARMS)
add(row("mining farms ≥ 20 kW (" + ", ".join(FARMS) + ")", n, hit, "≥ 0.98", n and hit / n >= 0.98))
med = statistics.median(farm_delays) if farm_delays else float("nan")
add(f"| mining farms ≥ 20 kW: median delay | | | {med:.1f} h | ≤ 6 h | {'met' if med <= 6 else '**not met**'} |")
precision = sum(kinds_on_cases.values()) / max(1, sum(kinds.values()))
add(f"| precision of all opened alerts (on a case ÷ opened) | {sum(kinds.values())} | {sum(kinds_on_cases.values())} | {precision:.3f} | ≥ 0.95 | {'met' if precision >= 0.95 else '**not met**'} |")
n, hit, _ = recall(["home_miner"], 48.0)
add(row("home miners ≥ 5 kW, within 48 h", n, hit, "≥ 0.9", n and hit / n >= 0.9))
n, hit, _ = recall(["night_miner", "duty_cycled_miner"], 48.0)
add(row("night-only and duty-cycled miners, within 48 h", n, hit, "≥ 0.9", n and hit / n >= 0.9))
n, hit, _ = recall(["feeder_tap_flat", "feeder_tap_duty"], 48.0)
add(row("feeder taps ≥ 5 % of feeder energy, within 48 h", n, hit, "≥ 0.9", n and hit / n >= 0.9))
n, hit, _ = recall(["split_farm", "night_miner", "public_building_miner", "duty_cycled_miner", "duty_cycled_in_permit"], 72.0)
add(row("evasive miners: split-farm parts, windowed (night), nights-and-weekends at public buildings, duty-cycled (also inside a home's permit), within 72 h", n, hit, "≥ 0.9", n and hit / n >= 0.9))
n, hit, _ = recall(["stepped_miner"])
add(row("rigs added step by step (1.5 kW every other day, to 6–9 kW), found at all in the run", n, hit, "all caught", n == hit))
# The same cases, in the runs long enough for the rigs to reach the residential mining level
# (their third step, 4-6 days after they begin) with a day of data left: not a target of its own,
# it shows where the misses are.
long_runs = {seed for seed, _, days, _ in SUITE if days >= 14}
stepped = [c for seed, c in cases if c["scenario"] == "stepped_miner" and seed in long_runs]
stepped_hit = [c for c in stepped if c["delay_h"] is not None]
add(f"| … of them in the runs of 14 days or more | {len(stepped)} | {len(stepped_hit)} | {len(stepped_hit) / max(1, len(stepped)):.3f} | (shown) | |")
n, hit, _ = recall(["feeder_tap_flat", "feeder_tap_duty", "feeder_tap_small", "feeder_tap_night"], 72.0)
add(row("feeder taps ≥ 3 % of feeder energy (flat, duty-cycled, small 3–5 %, night-only), within 72 h", n, hit, "≥ 0.8", n and hit / n >= 0.8))
add(f"| valid readings rejected as late (inside the 48 h horizon), all suite runs | | {late_total} | | 0 | {'met' if late_total == 0 else '**not met**'} |")
for (seed, sites, days, extra, _, _, e, late, n_readings), (*_, season) in zip(winter_runs, winter_weather):
    false_targets = len({f["target"] for f in e["false_alert_list"]})
    rate = false_targets / e["site_days"] * 10_000
    add(f"| {SEASON_NAME[season]}, no weather (seed {seed}): false targets per 10,000 site-days | {e['site_days']:.0f} days | {false_targets} targets | {rate:.2f} | ≤ 1 | {'met' if rate <= 1 else '**not met**'} |")
    add(f"| {season} (seed {seed}, {' '.join(extra)}): valid readings rejected as late | {n_readings:,} readings | {late} | | 0 | {'met' if late == 0 else '**not met**'} |")
for seed, _, e, season in winter_weather:
    false_targets = len({f["target"] for f in e["false_alert_list"]})
    rate = false_targets / e["site_days"] * 10_000
    add(f"| {SEASON_NAME[season]}, with weather (seed {seed}, --weather): false targets per 10,000 site-days | {e['site_days']:.0f} days | {false_targets} targets | {rate:.2f} | ≤ 1 | {'met' if rate <= 1 else '**not met**'} |")
# The sunbelt utility: what PV makes possible to find, and taps under two-way flows.
for (seed, sites, days, extra, ts, tr, e, late, n_readings), (*_, season) in zip(winter_runs, winter_weather):
    if season != "sunbelt":
        continue
    rows = [c for c in e["cases"] if c["scenario"] in ("unregistered_generation", "generation_above_registered")]
    hit = [c for c in rows if c["delay_h"] is not None and c["delay_h"] <= 48]
    add(row(f"sunbelt (seed {seed}): unregistered generation (PV nobody registered, PV beyond its registration), within 48 h", len(rows), len(hit), "≥ 0.95", rows and len(hit) / len(rows) >= 0.95))
    taps = [c for c in e["cases"] if c["scenario"] in ("feeder_tap_flat", "feeder_tap_duty", "feeder_tap_night")]
    taps_hit = [c for c in taps if c["delay_h"] is not None and c["delay_h"] <= 24]
    add(row(f"sunbelt (seed {seed}): feeder taps ≥ 5 % (flat, duty-cycled, night-only), within 24 h", len(taps), len(taps_hit), "≥ 0.9", taps and len(taps_hit) / len(taps) >= 0.9))
    add(f"| sunbelt (seed {seed}): `gridwatch run` of {n_readings:,} readings | | | {tr:.1f} s | ≤ 30 s | {'met' if tr <= 30 else '**not met**'} |")
n_alerts, differ, late, (found, found_moved) = order_check["event order"]
add(f"| the same alerts in another delivery order (seed {ORDER_SEED} {ORDER_SEASON}, each meter moved by up to 12 h; `--in-event-order`): alert messages differing | {n_alerts} messages | {differ} differ, {late} late; cases found {found} and {found_moved} | | 0 | {'met' if differ == 0 and late == 0 else '**not met**'} |")
n_alerts, differ, late, (found, found_moved) = order_check["default"]
add(f"| … judged as delivered (the default, no order window) | {n_alerts} messages | {differ} differ, {late} late; cases found {found} and {found_moved} | | (shown) | |")
rate = len(real_opened) * 10_000 / household_days
add(f"| real households: false alerts per 10,000 household-days | {household_days} days | {len(real_opened)} alerts | {rate:.2f} | ≤ 1 | {'met' if rate <= 1 else '**not met**'} |")
add(f"| real heated homes (Switzerland, winter 2018, no weather): no alert | {heated} | {len(heated_opened)} alerts | {heated_homes} homes flagged | 0 | {'met' if not heated_opened else '**not met**'} |")
sim_rate = len(false_alerts) * 10_000 / site_days
add(f"| simulated sites: false alerts per 10,000 site-days | {site_days:.0f} days | {len(false_alerts)} alerts | {sim_rate:.2f} | ≤ 1 | {'met' if sim_rate <= 1 else '**not met**'} |")
add("")
unmet = [l.split(" | ")[0].lstrip("| ") for l in lines if l.endswith("**not met** |")]
if unmet:
    add("Not met in this run: " + "; ".join(unmet) + ". The per-scenario table and the case lists of")
    add("`gridwatch eval` show which cases are missed. A case whose meter is silent (a simulated comms gap) when")
    add("it begins can only be found once its readings arrive; a partial bypass shows only at its feeder; a tap")
    add("that starts within the first day of data is learned as part of the feeder's losses. Rigs added 1.5 kW")
    add("every other day reach a home's 4.5 kW mining level on their third step, 4–6 days after they begin: in")
    add("the 7-day run they begin on days 2–4 and the data end first (the row under their target).")
else:
    add("Every target is met in this run.")
add("Capacity alerts on farms count as detections: an inspector is sent either way.")
add("")
add("Delivery order: judged as delivered (the default), a reading is judged when it arrives and the")
add("comparisons across meters (the season, the peers, the split parts) see the other meters as they stand,")
add("so another interleaving of the same readings moves alerts (the rows above: the scores and baselines quoted,")
add("the hour a case opens, and which cases are found at all). `--in-event-order` (the services:")
add("`detector.order_window_s`) holds 48 h of readings and judges them in event-time order: any delivery in")
add("which each reading comes within 48 h of the newest before it gives the same alerts, word for word, at")
add("48 h of latency and ~12 KB per meter of memory (docs/ARCHITECTURE.md, \"Arrival order\").")
add("")
add("## Per scenario (all runs pooled)")
add("")
add("| scenario | required | cases | found | recall | median delay h | p90 delay h | found as |")
add("|---|---|---|---|---|---|---|---|")
by = collections.defaultdict(list)
for _, c in cases:
    by[c["scenario"]].append(c)
for s in sorted(by):
    rows = by[s]
    delays = [c["delay_h"] for c in rows if c["delay_h"] is not None]
    found_as = collections.Counter(c["found_as"] for c in rows if c["found_as"])
    med = f"{statistics.median(delays):.1f}" if delays else "-"
    p90 = f"{pct(delays, 0.9):.1f}" if delays else "-"
    fa = ", ".join(f"{k} ×{v}" for k, v in found_as.most_common())
    add(f"| {s} | {'yes' if rows[0]['required'] else 'no'} | {len(rows)} | {len(delays)} | {len(delays) / len(rows):.2f} | {med} | {p90} | {fa} |")
add("")
add("## Precision by alert kind (all runs pooled)")
add("")
add("| kind | opened | on a case | precision |")
add("|---|---|---|---|")
for k in sorted(kinds):
    add(f"| {k} | {kinds[k]} | {kinds_on_cases[k]} | {kinds_on_cases[k] / kinds[k]:.3f} |")
add("")
add("## Cases, not alert storms")
add("")
n_open = messages["open"]
add(f"{n_open} cases opened, {messages['update']} updates ({messages['update'] / max(1, n_open):.1f} per case), "
    f"{messages['resolved']} resolved; {reopened} cases reopened on a target already flagged for the same kind "
    "(a resolved case whose condition came back after a quiet spell longer than the case itself had lasted).")
add("A site's detectors share one case: the kind it opened with, `evidence.detectors` for every detector that")
add("has spoken on it, and a risk `score` combining them (noisy-OR).")
add("")
add("## Risk score at opening against the truth")
add("")
add("| score at open | opened | on a case | share on a case |")
add("|---|---|---|---|")
for lo, hi in ((0.0, 0.5), (0.5, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.01)):
    band = [ok for sc, ok in opened_scores if lo <= sc < hi]
    if band:
        add(f"| {lo:.1f}–{min(hi, 1.0):.1f} | {len(band)} | {sum(band)} | {sum(band) / len(band):.3f} |")
add("")
add("With no false alert in the suite, every band is on a case: the score orders cases for inspection (it is")
add("what `gridwatch suspects` multiplies by the estimated energy) but cannot yet be calibrated against a")
add("false-alert rate the simulator doesn't produce; real inspection outcomes would be the data to fit it to.")
add("")
add("## False alerts")
add("")
add(f"{len(false_alerts)} in {site_days:.0f} simulated site-days ({sim_rate:.2f} per 10,000); {len(real_opened)} on the real households.")
add("")
add("Every simulated utility holds the hard negatives beside its ordinary customers: licensed farms, cold")
add("stores, hospitals, bakeries, EV fleet depots charging at night, greenhouses lit 16–18 h a day, homes a")
add("family moves into (empty before), a meter with one absurd interval (200–900 kW for a quarter-hour), a meter")
add("whose clock runs an hour ahead, homes with electric heating, EV chargers and vacations. Any alert on")
add("one of them is a false alert above.")
add("")
for seed, f in false_alerts[:30]:
    add(f"- seed {seed}: `{f['alert_id']}` {f['kind']} on {f['target']} ({f['class']}): {f['summary']}")
for a in real_opened[:30]:
    add(f"- real: `{a['alert_id']}` {a['kind']} on {a['site_id']}: {a['summary']}")
add("")
add("## Real households as negatives")
add("")
add(f"The 50 households of the Smart Grid Smart City trial in `shared/data` ({real}), converted by")
add("`scripts/real_households.py` (residential, 15 kW permit, Australia/Sydney) and replayed through `gridwatch run`:")
add(f"**{len(real_opened)} alerts opened** in {household_days} household-days. One of them holds a flat ~4 kW load for")
add("days — which is why the residential mining floor is 4.5 kW: home miners of 5 kW and more are the target.")
add("")
add("## Real heated homes as negatives")
add("")
add(f"The 152 Swiss homes with electric, storage or heat-pump heating in `shared/data` ({heated}; 15-minute data,")
add("29 October - 16 December 2018; CC BY-SA 4.0, K. Hopf, A. Weigert, N. Weinig, T. Staake, University of Bamberg,")
add("R package ResidentialEnergyConsumption), converted by `scripts/real_heated_homes.py` (residential, 25 kW permit,")
add(f"Zurich) and replayed through `gridwatch run` without weather: **{len(heated_opened)} cases opened on {heated_homes} homes**.")
add("Thermostats running for hours and storage heaters charging flat all night look like rigs to a detector that")
add("knows no season: residences' flat days, night blocks and duty cycles must be new against the site's own")
add("history (its hour-of-day profile, its floor), not restless, and not shared by many of its feeder's homes at once.")
add("")
for a in heated_opened[:20]:
    add(f"- `{a['site_id']}` {a['kind']} ({a['evidence'].get('pattern', 'around the clock')}): {a['summary']}")
add("")
add("## Seasons: a cold snap with electric heating, a heat wave with air conditioning, daily batches")
add("")
add("`gridwatch simulate --winter` gives half the ordinary homes electric heating — resistance heaters under")
add("thermostats, night storage heaters whose charge lengthens with the cold, heat pumps whose efficiency falls")
add("with it — through a winter around −7 °C with a four-day snap near −25 °C (`weather.csv`, given to")
add("the detector in a second run with `--weather`). `--batched 0.4` delivers 40 % of the meters' days in one batch the next night;")
add("`--backfill 0.5` backfills half the communication gaps when the meter is back. The utility's cases are")
add("the same library as the suite's. `gridwatch simulate --summer` (from a July start) does the same for a")
add("summer around +27 °C with a four-day heat wave near +39 °C, through which a little over half the")
add("ordinary homes cool with air conditioners that run longer the hotter it is.")
add("")
add("| season | seed | weather | sites | days | readings | simulate s | run s | alerts opened | false alerts | false targets | late rejects |")
add("|---|---|---|---|---|---|---|---|---|---|---|---|")
for (seed, sites, days, extra, ts, tr, e, late, n_readings), (_, trw, ew, season) in zip(winter_runs, winter_weather):
    for label, t_run, ev in (("none", tr, e), ("--weather", trw, ew)):
        targets = len({f["target"] for f in ev["false_alert_list"]})
        add(f"| {season} | {seed} | {label} | {sites} | {days} | {n_readings:,} | {ts:.1f} | {t_run:.1f} | {sum(k['opened'] for k in ev['kinds'])} | {ev['false_alerts']} | {targets} | {late} |")
add("")
for (seed, sites, days, extra, ts, tr, e, late, n_readings), (_, trw, ew, season) in zip(winter_runs, winter_weather):
    add(f"**{SEASON_NAME[season].capitalize()}** (seed {seed}):")
    add("")
    add("| scenario | required | cases | found | recall (no weather) | recall (weather) | median delay h | p90 delay h |")
    add("|---|---|---|---|---|---|---|---|")
    by_scenario = collections.defaultdict(list)
    for c in e["cases"]:
        by_scenario[(c["scenario"], c["required"])].append(c["delay_h"])
    with_weather = collections.defaultdict(list)
    for c in ew["cases"]:
        with_weather[c["scenario"]].append(c["delay_h"])
    for (name, required), delays in sorted(by_scenario.items()):
        found = [x for x in delays if x is not None]
        found_w = [x for x in with_weather[name] if x is not None]
        med = f"{statistics.median(found):.1f}" if found else "-"
        add(f"| {name} | {'yes' if required else 'no'} | {len(delays)} | {len(found)} | {len(found) / len(delays):.2f} | {len(found_w) / max(1, len(with_weather[name])):.2f} | {med} | {pct(found, 0.9) if found else float('nan'):.1f} |")
    add("")
    for label, ev in (("no weather", e), ("weather", ew)):
        for f in ev["false_alert_list"][:25]:
            add(f"- false ({season}, {label}): `{f['target']}` {f['kind']} at {f['detected_at']}: {f['summary']}")
add("")
add("## Realism: simulated households against real ones")
add("")
add("Simulated households replay the real ones (49 households, 8 winter weeks each), scaled 0.75–1.10, with")
add("electric heating (12 %), EV chargers (8 %) and vacations (6 %) added. Statistics per household and")
add("14-day window, on half-hourly energy in local time (simulated: the non-case residential sites of seed")
add(f"{runs[0][0]}; real: all 50 households over their whole record).")
add("")
add("| statistic | | p10 | p50 | p90 | p99 | n |")
add("|---|---|---|---|---|---|---|")
for name, r, s in (("load factor (mean ÷ peak)", real_lf, sim_lf), ("night/day ratio (00–06 ÷ 10–18)", real_nd, sim_nd)):
    for who, v in (("real", r), ("simulated", s)):
        add(f"| {name} | {who} | {pct(v, 0.1):.3f} | {pct(v, 0.5):.3f} | {pct(v, 0.9):.3f} | {pct(v, 0.99):.3f} | {len(v)} |")
add("")
os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
open(args.out, "w").write("\n".join(lines))
print(f"wrote {args.out} (work files in {work})", file=sys.stderr)
