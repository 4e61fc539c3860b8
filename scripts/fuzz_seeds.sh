#!/usr/bin/env bash
# The fuzz seed corpora kept in git (fuzz/seeds/<target>), made anew from the grown corpora
# (fuzz/corpus/<target>, outside git): libFuzzer's merge by edge coverage (-use_counters=0)
# keeps, smallest first, the inputs that reach an edge no smaller one reaches. A few hundred
# inputs of a few bytes each per target, instead of the tens of thousands the fuzzer grows.
#
#   scripts/fuzz_seeds.sh [TARGET...]      default: every target (needs nightly and cargo-fuzz)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root/fuzz"
targets=("$@")
((${#targets[@]})) || targets=(readings_csv readings_jsonl readings_json_body readings_xml readings_nem12 reference_files topic_records engine_checkpoint)
cargo +nightly fuzz build -s none >&2
bin=target/x86_64-unknown-linux-gnu/release
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "seeds/$t"
  fresh=$(mktemp -d)
  "$bin/$t" -merge=1 -use_counters=0 "$fresh" "seeds/$t" "corpus/$t" >/dev/null 2>&1
  rm -rf "seeds/$t" && mv "$fresh" "seeds/$t"
  printf '%s: %d seeds, %s bytes (grown corpus: %d inputs)\n' "$t" "$(ls "seeds/$t" | wc -l)" \
    "$(cat "seeds/$t"/* 2>/dev/null | wc -c)" "$(ls "corpus/$t" | wc -l)"
done
