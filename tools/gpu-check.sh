#!/usr/bin/env bash
# The GPU smoke check: the first command of any session lent a CUDA machine. Device time is scarce, so one
# call should say everything: it installs nothing (this checkout via PYTHONPATH=src, on the machine's own
# python3 and torch), a failed or hung step does not stop the others, and each step has a time limit
# (about 9 minutes in all at worst). In order:
#   1. the CUDA tests (the cuda leg of every test on the `device` fixture);
#   2. `ticketlab bench --device cuda --json`, its JSON line kept as bench.json;
#   3. a tiny sweep trained twice into two stores whose runs must be the same to the bit
#      (tools/same_runs.py; on a difference the first differing run of each is kept).
# Usage: bash tools/gpu-check.sh [cuda|cpu]. cpu runs the same steps on the CPU (the CUDA tests then
# skip, the bench is --quick), which is how the test suite checks this script.
# Writes gpu-check.log, bench.json and any kept runs into $OUT (the device machine's return folder), else
# a temporary folder that the first line names. Exit status: 0 all passed, 1 a step failed, 2 cannot start.
set -uo pipefail
device=${1:-cuda}
case "$device" in cuda|cpu) ;; *) echo "gpu-check: unknown device '$device': give cuda or cpu" >&2; exit 2 ;; esac
out=${OUT:-$(mktemp -d)}
mkdir -p "$out" && out=$(cd "$out" && pwd) || { echo "gpu-check: cannot make the output folder $out" >&2; exit 2; }
cd "$(dirname "$0")/.." || exit 2
repo=$PWD
py=${PYTHON:-python3}
export PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
log="$out/gpu-check.log"
: > "$log"
failed=()
step() { echo "== gpu-check $(date -u +%H:%M:%S) $*" | tee -a "$log"; }

step "device $device; writing into $out"
"$py" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__)' 2>>"$log" | tee -a "$log" \
  || { echo "gpu-check: $py cannot import torch (see $log): give PYTHON=a python with torch" >&2; exit 2; }
if [ "$device" = cuda ]; then
  "$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
    || { echo "gpu-check: torch sees no CUDA device here: run it on a GPU machine, or give cpu" >&2; exit 2; }
  "$py" -c 'import torch; p = torch.cuda.get_device_properties(0); print(p.name, p.total_memory // 2**20, "MiB")' | tee -a "$log"
  bench_flags=(--device cuda --json)
else
  bench_flags=(--device cpu --quick --json)
fi

step "1/3 CUDA tests"
timeout -k 10 240 "$py" -m pytest -q -p no:cacheprovider --timeout 120 -k cuda "$repo/tests" 2>&1 | tee -a "$log" \
  || failed+=("CUDA tests")

step "2/3 bench ${bench_flags[*]}"
timeout -k 10 180 "$py" -m ticketlab bench "${bench_flags[@]}" > "$out/bench.out" 2>>"$log"
bench_status=$?
cat "$out/bench.out" >> "$log"
grep '^{' "$out/bench.out" | tail -n 1 > "$out/bench.json.tmp"
if [ $bench_status = 0 ] && "$py" -c 'import json, sys; json.load(open(sys.argv[1]))' "$out/bench.json.tmp" 2>>"$log"; then
  mv "$out/bench.json.tmp" "$out/bench.json"
else
  rm -f "$out/bench.json.tmp"
  failed+=("bench")
fi
rm -f "$out/bench.out"

step "3/3 a tiny sweep, twice, bitwise"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/tiny.toml" <<TOML
name = "gpu-check"
kind = "iterative"
criteria = ["large_final", "random"]
seeds = 2
iterations = 60
eval_every = 20
rounds = 2
TOML
swept=1
for copy in a b; do
  timeout -k 10 90 "$py" -m ticketlab sweep "$work/tiny.toml" --scale full --device "$device" --out "$work/$copy" \
    >/dev/null 2>>"$log" || { swept=0; echo "gpu-check: the tiny sweep failed (its error is in $log)" | tee -a "$log"; }
done
if [ $swept = 1 ]; then
  "$py" "$repo/tools/same_runs.py" "$work/a" "$work/b" --keep "$out" 2>&1 | tee -a "$log" || failed+=("bitwise sweep")
else
  failed+=("tiny sweep")
fi

if [ ${#failed[@]} -gt 0 ]; then
  step "FAILED: ${failed[*]}"
  exit 1
fi
step "passed"
