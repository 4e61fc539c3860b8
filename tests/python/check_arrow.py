"""Loads gridwatch's Arrow output the way the README tells analysts to, and checks that it
holds exactly the alerts of a JSON Lines file.

usage: check_arrow.py FLAGGED_DIR ALERTS_JSONL README
"""
import collections
import datetime
import json
import pathlib
import re
import sys

flagged_dir, alerts_path, readme_path = sys.argv[1:4]


def snippet(name):
    """The python block that follows `<!-- snippet: NAME -->` in the README, with its
    `flagged = "…"` path pointed at the folder under test."""
    text = open(readme_path, encoding="utf-8").read()
    m = re.search(r"<!-- snippet: " + name + r" -->\s*```python\n(.*?)```", text, re.S)
    assert m, f"README has no '{name}' snippet"
    code, n = re.subn(r'^flagged = ".*"$', f"flagged = {flagged_dir!r}", m.group(1), flags=re.M)
    assert n == 1, f"the '{name}' snippet must set flagged = \"…\" once"
    return code


expected = collections.Counter()
for line in open(alerts_path, encoding="utf-8"):
    if line.strip():
        a = json.loads(line)
        expected[(a["alert_id"], a["status"], a["kind"], a["detected_at"])] += 1
assert expected, "no alerts to compare with"

# pyarrow, exactly as the README shows it.
ns = {}
exec(snippet("pyarrow"), ns)
table = ns["table"]
import pyarrow as pa

schema = table.schema
assert schema.field("detected_at").type == pa.timestamp("ms", tz="UTC"), schema.field("detected_at").type
assert schema.field("window_start").type == pa.timestamp("ms", tz="UTC")
assert schema.field("evidence").type == pa.string()
assert schema.field("score").type == pa.float64()
# Dictionary-encoded batches break readers such as DuckDB's Arrow extension: none in the files.
for f in pa.ipc.open_file(str(next(pathlib.Path(flagged_dir).rglob("*.arrow")))).schema:
    assert not pa.types.is_dictionary(f.type), f"{f.name} is dictionary-encoded"
rows = table.to_pylist()
got = collections.Counter()
for r in rows:
    at = r["detected_at"].astimezone(datetime.timezone.utc)
    got[(r["alert_id"], r["status"], r["kind"], at.strftime("%Y-%m-%dT%H:%M:%SZ"))] += 1
    assert str(r["date"]) == at.strftime("%Y-%m-%d"), (r["date"], at)
    assert isinstance(json.loads(r["evidence"]), dict)
    assert r["summary"]
missing = expected - got
extra = got - expected
assert not missing and not extra, f"pyarrow rows differ from the alerts: missing {list(missing)[:5]}, extra {list(extra)[:5]}"

# polars, exactly as the README shows it.
ns = {}
exec(snippet("polars"), ns)
df = ns["df"]
assert df.height == sum(expected.values()), (df.height, sum(expected.values()))
pl_ids = collections.Counter(zip(df["alert_id"].to_list(), df["status"].to_list()))
want_ids = collections.Counter()
for (aid, status, _, _), n in expected.items():
    want_ids[(aid, status)] += n
assert pl_ids == want_ids, "polars rows differ from the alerts"
assert "date" in df.columns
print(f"python checks passed: {table.num_rows} rows via pyarrow.dataset and {df.height} via polars.scan_ipc")
