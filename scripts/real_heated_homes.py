"""Converts the real Swiss heated homes of shared/data (heated_homes_ch_2018.csv.gz: 152 homes
with electric, storage or heat-pump heating, 15-minute data, 29 Oct - 16 Dec 2018; CC BY-SA 4.0,
K. Hopf, A. Weigert, N. Weinig and T. Staake, University of Bamberg, R package
ResidentialEnergyConsumption 1.1.0) into gridwatch's contract formats, so the pipeline can be
replayed on real winter negatives: none of these homes is a known unauthorized load, so every
alert on them is a false alert.

- registry.csv: one residential site per home on feeder CH, permitted 25 kW (a Swiss house's
  3 x 40 A connection), active, at Zurich's coordinates (solar time UTC+1, as their CET).
- readings.csv: `ts_utc` is already the interval end in UTC.

usage: python3 scripts/real_heated_homes.py SRC.csv.gz OUT_DIR
prints: homes and home-days.
"""
import csv
import gzip
import os
import sys

src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
days = {}
with gzip.open(src, "rt") as f, open(os.path.join(out, "readings.csv"), "w", newline="") as w:
    w.write("meter_id,ts,interval_s,kwh\n")
    for row in csv.DictReader(f):
        cid = row["customer_id"]
        w.write(f"{cid},{row['ts_utc']},{row['interval_s']},{row['kwh']}\n")
        days.setdefault(cid, set()).add(row["ts_utc"][:10])

with open(os.path.join(out, "registry.csv"), "w") as w:
    w.write("site_id,meter_id,feeder_id,role,customer_class,permitted_kw,status,licensed_mining,lat,lon,region,timezone\n")
    for cid in sorted(days):
        w.write(f"S{cid},{cid},CH,customer,residential,25,active,false,47.37,8.54,Zurich,Europe/Zurich\n")

print(f"{len(days)} homes, {sum(len(d) for d in days.values())} home-days")
