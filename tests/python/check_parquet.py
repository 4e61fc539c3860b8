"""Loads gridwatch's Parquet output with DuckDB (natively, as docs/analysts.md shows it), pyarrow
and polars, and checks that it holds exactly the alerts of a JSON Lines file, with `date` typed
as a date and no dictionary-encoded columns anywhere.

usage: check_parquet.py FLAGGED_DIR ALERTS_JSONL ANALYSTS_MD
"""
import collections
import datetime
import json
import re
import sys

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds

flagged_dir, alerts_path, doc_path = sys.argv[1:4]

expected = collections.Counter()
for line in open(alerts_path, encoding="utf-8"):
    if line.strip():
        a = json.loads(line)
        expected[(a["alert_id"], a["status"], a["detected_at"])] += 1
assert expected, "no alerts to compare with"

# DuckDB, exactly as the analysts' page shows it.
text = open(doc_path, encoding="utf-8").read()
m = re.search(r"<!-- snippet: duckdb -->\s*```python\n(.*?)```", text, re.S)
assert m, "docs/analysts.md has no 'duckdb' snippet"
code, n = re.subn(r'^flagged = ".*"$', f"flagged = {flagged_dir!r}", m.group(1), flags=re.M)
assert n == 1, "the duckdb snippet must set flagged = \"…\" once"
ns = {}
exec(code, ns)
assert ns["open_by_kind"], "the snippet found no open cases"

rel = duckdb.sql(f"select * from read_parquet('{flagged_dir}/**/*.parquet', hive_partitioning = true)")
types = dict(zip(rel.columns, [str(t) for t in rel.types]))
assert types["date"] == "DATE", types["date"]
assert types["detected_at"].startswith("TIMESTAMP WITH TIME ZONE"), types["detected_at"]
assert types["score"] == "DOUBLE", types["score"]
got = collections.Counter()
for alert_id, status, at in rel.project("alert_id, status, detected_at").fetchall():
    got[(alert_id, status, at.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))] += 1
assert got == expected, f"duckdb rows differ: missing {list((expected - got).items())[:3]}, extra {list((got - expected).items())[:3]}"
dates_ok = duckdb.sql(
    f"select count(*) from read_parquet('{flagged_dir}/**/*.parquet', hive_partitioning = true) "
    "where date <> cast(detected_at at time zone 'UTC' as date)").fetchall()[0][0]
assert dates_ok == 0, f"{dates_ok} rows in the wrong date folder"

# pyarrow and polars.
table = ds.dataset(flagged_dir, format="parquet", partitioning="hive").to_table()
assert table.num_rows == sum(expected.values()), (table.num_rows, sum(expected.values()))
assert table.schema.field("detected_at").type == pa.timestamp("ms", tz="UTC"), table.schema.field("detected_at").type
for f in table.schema:
    assert not pa.types.is_dictionary(f.type) or f.name == "date", f"{f.name} is dictionary-encoded"
df = pl.scan_parquet(flagged_dir + "/**/*.parquet", hive_partitioning=True).collect()
assert df.height == sum(expected.values())
assert df["date"].dtype == pl.Date, df["date"].dtype
print(f"parquet checks passed: {sum(got.values())} rows via duckdb, {table.num_rows} via pyarrow, {df.height} via polars")
