#!/usr/bin/env bash
# Benchmark (not a test): the detection core's speed against the end of the first round
# (0824855), paired in one run on this machine. Builds both `examples/throughput` (the old one in
# a git worktree under target/), then runs them alternately, PAIRS times each, and prints every
# figure, each build's min/median/max and the ratio of the medians. Absolute figures move with
# the machine and its load; a ratio measured in one run does not.
#
#   scripts/bench_core_paired.sh [PAIRS] [METERS] [DAYS]     defaults: 5 pairs, 100000 meters, 2 days
#   BASE=<commit> scripts/bench_core_paired.sh                another base than 0824855
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
pairs=${1:-5}
meters=${2:-100000}
days=${3:-2}
base=${BASE:-0824855}
tree=$root/target/bench-base-$base
if [[ ! -d $tree ]]; then
  git worktree add --detach "$tree" "$base" >&2
fi
echo "building $base's and this tree's throughput example (release; several minutes on 2 cores the first time)" >&2
(cd "$tree" && CARGO_TARGET_DIR=$root/target/bench-base-target \
  cargo build --release -p gridwatch-anomaly-detector --example throughput >&2)
cargo build --release -p gridwatch-anomaly-detector --example throughput >&2
old=$root/target/bench-base-target/release/examples/throughput
new=$root/target/release/examples/throughput
rate() { "$1" "$meters" "$days" | sed -n 's/.*= \([0-9.]*\) M readings\/s.*/\1/p'; }
mem() { "$1" "$meters" 1 | sed -n 's/^engine state: \([0-9]*\) B per meter.*/\1/p'; }
olds=() news=()
for i in $(seq 1 "$pairs"); do
  o=$(rate "$old"); n=$(rate "$new")
  olds+=("$o"); news+=("$n")
  printf 'pair %d: %s %s M readings/s, HEAD %s M readings/s\n' "$i" "$base" "$o" "$n"
done
summary() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {printf "%s %s %s", a[1], a[int((NR+1)/2)], a[NR]}'; }
read -r omin omed omax <<<"$(summary "${olds[@]}")"
read -r nmin nmed nmax <<<"$(summary "${news[@]}")"
printf '%s: min %s median %s max %s M readings/s\n' "$base" "$omin" "$omed" "$omax"
printf 'HEAD: min %s median %s max %s M readings/s\n' "$nmin" "$nmed" "$nmax"
awk -v n="$nmed" -v o="$omed" 'BEGIN {printf "ratio of medians (HEAD / base): %.2f (target >= 0.90)\n", n / o}'
printf 'engine state per meter: %s B (%s), %s B (HEAD; target <= 1024)\n' "$(mem "$old")" "$base" "$(mem "$new")"
