#!/usr/bin/env bash
# Runs the core benchmark (crates/core/benches/core.rs) with the settings BENCHMARKS.md uses
# and keeps criterion's report plus the ratio table in bench/core/<date>.txt.
#
#   bench/core/run.sh              # all benchmarks
#   bench/core/run.sh decode       # only those whose id contains "decode"
set -euo pipefail
cd "$(dirname "$0")/../.."
out="bench/core/$(date -u +%Y-%m-%d).txt"
{
  echo "# $(date -u '+%Y-%m-%d %H:%M UTC') $(uname -m), $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# $(rustc --version)"
  cargo bench -p botlink-core --bench core -- --warm-up-time 1 --measurement-time 3 "$@" 2>&1
} | tee "$out"
echo "saved to $out"
