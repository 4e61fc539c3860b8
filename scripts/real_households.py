"""Converts the real household trial data (shared/data) into gridwatch's contract formats, so the
pipeline can be replayed on real negatives: none of these households is a known unauthorized
load, so every alert on them is a false alert.

- registry.csv: one residential site per household on feeder REAL, permitted 15 kW, active,
  time zone Australia/Sydney, at Sydney's coordinates.
- readings.csv: general supply only; `reading_datetime` is the interval start in naive
  Australia/Sydney local time, so each becomes ts = start + 30 min, in UTC. The hour that
  repeats when DST ends can't be told apart in naive time: its second pass maps onto the first
  and gridwatch counts it as a duplicate.

usage: python3 scripts/real_households.py SRC.csv.gz OUT_DIR
prints: households and household-days.
"""
import csv
import datetime as dt
import gzip
import os
import sys
from zoneinfo import ZoneInfo

src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
tz = ZoneInfo("Australia/Sydney")
utc = dt.timezone.utc
days = {}
seen = set()
with gzip.open(src, "rt") as f, open(os.path.join(out, "readings.csv"), "w", newline="") as w:
    w.write("meter_id,ts,interval_s,kwh\n")
    for row in csv.DictReader(f):
        # Naive local time repeats an hour when DST ends: the second pass is the later one.
        key = (row["customer_id"], row["reading_datetime"])
        fold = 1 if key in seen else 0
        seen.add(key)
        start = dt.datetime.strptime(row["reading_datetime"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=tz, fold=fold)
        end = (start.astimezone(utc) + dt.timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
        cid = row["customer_id"]
        w.write(f"R{cid},{end},1800,{row['general_supply_kwh']}\n")
        days.setdefault(cid, set()).add(row["reading_datetime"][:10])

with open(os.path.join(out, "registry.csv"), "w") as w:
    w.write("site_id,meter_id,feeder_id,role,customer_class,permitted_kw,status,licensed_mining,lat,lon,region,timezone\n")
    for cid in sorted(days):
        w.write(f"RS{cid},R{cid},REAL,customer,residential,15,active,false,-33.87,151.21,Sydney,Australia/Sydney\n")

print(f"{len(days)} households, {sum(len(d) for d in days.values())} household-days")
