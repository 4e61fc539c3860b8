#!/usr/bin/env bash
# The README's first command: installs the build packages if missing, builds gridwatch, and runs
# `gridwatch demo` (embedded, no Kafka). Arguments pass through, e.g. scripts/demo.sh --seed 8.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
source scripts/lib/deps.sh
install_build_deps
exec cargo run --release -q -p gridwatch -- demo "$@"
