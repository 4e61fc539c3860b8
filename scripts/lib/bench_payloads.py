"""Writes the first 200,000 readings of a readings CSV as the JSON values the ingester produces
(field order and optional fields as gridwatch serializes them), one per line: payloads for
Kafka's ProducerPerformance, so the broker's ceiling is measured on the same records.

usage: python3 scripts/lib/bench_payloads.py READINGS.csv OUT.txt
"""
import csv
import json
import sys

with open(sys.argv[1]) as f, open(sys.argv[2], "w") as w:
    for i, r in enumerate(csv.DictReader(f)):
        if i == 200_000:
            break
        o = {"meter_id": r["meter_id"], "ts": r["ts"], "interval_s": int(r["interval_s"]), "kwh": float(r["kwh"])}
        for k in ("kvarh", "kwh_export", "voltage_v", "current_a"):
            if r.get(k):
                o[k] = float(r[k])
        if r.get("feeder_id"):
            o["feeder_id"] = r["feeder_id"]
        w.write(json.dumps(o, separators=(",", ":")) + "\n")
