#!/usr/bin/env bash
# Runs every fuzz target, one after another, for SECONDS each (default 180), on one job,
# and prints each target's last libFuzzer status line. Logs go to fuzz/logs/<target>.log;
# new corpus entries to fuzz/corpus/<target>; crashes to fuzz/artifacts/<target>.
#
#   fuzz/run-all.sh            # 3 minutes per target
#   fuzz/run-all.sh 30 decode  # 30 seconds, one target
set -uo pipefail
cd "$(dirname "$0")"
secs="${1:-180}"
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && mapfile -t targets < <(cargo fuzz list)
# cargo-fuzz needs nightly flags: use the nightly toolchain if rustup has one, else let the
# stable compiler accept them.
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then tc=(+nightly); else tc=(); export RUSTC_BOOTSTRAP=1; fi
mkdir -p logs
cargo "${tc[@]}" fuzz build -O || exit 1
status=0
for t in "${targets[@]}"; do
  dict=dict/json.dict
  case "$t" in parse_link) dict=dict/links.dict ;; decode) dict="" ;; esac
  mkdir -p "corpus/$t"
  args=(-max_total_time="$secs" -jobs=1 -workers=1 -print_final_stats=1)
  [ -n "$dict" ] && args+=(-dict="$dict")
  echo "== $t (${secs}s)"
  cargo "${tc[@]}" fuzz run -O "$t" "corpus/$t" "seeds/$t" -- "${args[@]}" >"logs/$t.log" 2>&1
  rc=$?
  grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "logs/$t.log" | tail -n1
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "logs/$t.log"
  if [ $rc -ne 0 ]; then
    status=1
    echo "!! $t exited $rc: see fuzz/logs/$t.log and fuzz/artifacts/$t"
    grep -m5 -E 'panicked|ERROR|SUMMARY' "logs/$t.log"
  fi
done
exit $status
