"""Derives the simulator's household library from the real half-hourly trial data.

For each of the 50 households in shared/data/smart_meter_50_halfhourly.csv.gz, takes the first
8 complete weeks (Monday to Sunday, 48 half-hours a day, no gaps) starting in the southern
winter (June) if there are such weeks, else the first complete ones, and writes them as
little-endian u16 watt-hours: households × 56 days × 48 half-hours.

usage: python3 scripts/derive_households.py ../shared/data/smart_meter_50_halfhourly.csv.gz crates/simulator/data/households.bin
"""
import collections
import csv
import datetime as dt
import gzip
import struct
import sys

src, dst = sys.argv[1], sys.argv[2]
series = collections.defaultdict(dict)  # customer -> {datetime: kwh}
with gzip.open(src, "rt") as f:
    for row in csv.DictReader(f):
        t = dt.datetime.strptime(row["reading_datetime"], "%Y-%m-%d %H:%M:%S")
        series[row["customer_id"]][t] = float(row["general_supply_kwh"])

WEEKS = 8
out = []
for cust in sorted(series):
    s = series[cust]
    days = sorted({t.date() for t in s})
    complete = {d for d in days if all(dt.datetime.combine(d, dt.time()) + dt.timedelta(minutes=30 * i) in s for i in range(48))}
    mondays = [d for d in days if d.weekday() == 0 and all(d + dt.timedelta(days=k) in complete for k in range(7 * WEEKS))]
    if not mondays:
        print(f"skipping {cust}: no {WEEKS} complete weeks", file=sys.stderr)
        continue
    winter = [d for d in mondays if d.month == 6]
    start = (winter or mondays)[0]
    block = []
    for k in range(7 * WEEKS):
        day = dt.datetime.combine(start + dt.timedelta(days=k), dt.time())
        block.extend(min(65535, round(s[day + dt.timedelta(minutes=30 * i)] * 1000)) for i in range(48))
    out.append(block)
    print(f"{cust}: {start} .. {start + dt.timedelta(days=7 * WEEKS - 1)}", file=sys.stderr)

with open(dst, "wb") as f:
    for block in out:
        f.write(struct.pack(f"<{len(block)}H", *block))
print(f"{len(out)} households x {7 * WEEKS} days x 48 half-hours -> {dst}", file=sys.stderr)
