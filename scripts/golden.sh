#!/usr/bin/env bash
# Golden alerts: runs the demo and every utility of the fixed quality suite (tests/golden/suite.json,
# the suite scripts/quality.py measures) through the embedded pipeline and compares each
# alerts.jsonl byte for byte with tests/golden/<name>.alerts.jsonl.gz.
#
# usage: scripts/golden.sh [--bless] [BIN]   (BIN: default target/release/gridwatch)
# --bless rewrites the golden files: only for a change that is meant to change alerts, and say
# why in the commit. The test `golden` in tests/e2e runs the same comparison.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bless=false
[[ ${1:-} == --bless ]] && { bless=true; shift; }
bin=${1:-$root/target/release/gridwatch}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
golden=$root/tests/golden
status=0
compare() { # name, alerts.jsonl
  local want=$golden/$1.alerts.jsonl.gz
  if $bless; then
    gzip -9 -n -c "$2" >"$want"
    echo "blessed $1 ($(wc -l <"$2") alerts)"
  elif cmp -s <(gzip -dc "$want") "$2"; then
    echo "same    $1 ($(wc -l <"$2") alerts)"
  else
    echo "DIFFERS $1: diff <(gzip -dc $want) $2" >&2
    diff <(gzip -dc "$want") "$2" | head -20 >&2 || true
    status=1
  fi
}
"$bin" demo --out "$work/demo" >/dev/null
compare demo "$work/demo/alerts.jsonl"
python3 - "$golden/suite.json" >"$work/suite.tsv" <<'PY'
import json, sys
for s in json.load(open(sys.argv[1])):
    if not s.get("golden", True):
        continue  # measured by scripts/quality.py only (too large for every test run)
    args = ["--sites", s["sites"], "--days", s["days"], "--seed", s["seed"], *s["extra"]]
    print(s["name"], *args, sep="\t")
PY
while IFS=$'\t' read -r name args; do
  IFS=$'\t' read -r -a a <<<"$args"
  d=$work/$name
  "$bin" simulate --out "$d" "${a[@]}" >/dev/null
  "$bin" run --registry "$d/registry.csv" --readings "$d/readings.csv" --holidays "$d/holidays.csv" --out "$d/out" --quiet >/dev/null
  compare "$name" "$d/out/alerts.jsonl"
done <"$work/suite.tsv"
exit $status
