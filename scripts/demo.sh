#!/usr/bin/env bash
# The README's first command: installs the build packages if missing, builds gridwatch, and runs
# `gridwatch demo` (embedded, no Kafka). Arguments pass through, e.g. scripts/demo.sh --seed 8.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
source scripts/lib/deps.sh
install_build_deps
bin=target/release/gridwatch
# Cargo's own progress while building: a first build from nothing compiles about 300 crates
# (librdkafka and Arrow among them) and is silent for minutes without it.
if [[ ! -x $bin ]] || [[ -n $(find crates Cargo.toml Cargo.lock -newer "$bin" -print -quit) ]]; then
  echo "building gridwatch (release): about 10 minutes on a 2-core machine the first time, seconds after that"
  cargo build --release -p gridwatch
fi
exec "$bin" demo "$@"
