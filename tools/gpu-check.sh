#!/usr/bin/env bash
# The GPU smoke check: the first command of any session lent a CUDA machine, sized for a few minutes.
# It installs nothing: it runs this checkout (PYTHONPATH=src) on the machine's own python3 and torch, and
# checks, in order:
#   1. the CUDA tests (every test of the device fixture's cuda leg, and the ones named for CUDA);
#   2. `ticketlab bench --device cuda`, its measurements kept as JSON;
#   3. a tiny sweep trained twice into two stores, whose runs must be the same to the bit.
# A step that fails does not stop the others (device time is scarce: one call should say everything);
# the exit status is 1 if any failed.
# Usage: tools/gpu-check.sh [cuda|cpu]   (cpu: step 3 alone, so that the script itself is tested in CI)
# Writes its log and the bench's JSON into $OUT (the device machine's return folder) or a temp folder.
set -uo pipefail
device=${1:-cuda}
case "$device" in cuda|cpu) ;; *) echo "gpu-check: unknown device '$device': give cuda or cpu" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.." || exit 2
repo=$PWD
out=${OUT:-$(mktemp -d)}
mkdir -p "$out" || exit 2
py=${PYTHON:-python3}
export PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
log="$out/gpu-check.log"
failed=()
step() { echo "== gpu-check $(date -u +%H:%M:%S) $*" | tee -a "$log"; }

step "device $device; $("$py" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__)')"
if [ "$device" = cuda ]; then
  "$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
    || { echo "gpu-check: torch sees no CUDA device here: run it on a GPU machine, or give cpu" >&2; exit 2; }
  "$py" -c 'import torch; p = torch.cuda.get_device_properties(0); print(p.name, p.total_memory // 2**20, "MiB")' | tee -a "$log"
  step "1/3 CUDA tests"
  "$py" -m pytest -q -p no:cacheprovider --timeout 300 -k cuda "$repo/tests" 2>&1 | tee -a "$log" || failed+=("CUDA tests")
  step "2/3 bench"
  { "$py" -m ticketlab bench --device cuda --json 2>&1 | tee -a "$log" | tail -n 1 > "$out/bench.json"; } || failed+=("bench")
fi

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
  "$py" -m ticketlab sweep "$work/tiny.toml" --scale full --device "$device" --out "$work/$copy" >/dev/null 2>>"$log" \
    || { swept=0; echo "gpu-check: the tiny sweep failed (its error is in $log)" | tee -a "$log"; }
done
if [ $swept = 1 ]; then
  "$py" "$repo/tools/same_runs.py" "$work/a" "$work/b" 2>&1 | tee -a "$log" || failed+=("bitwise sweep")
else
  failed+=("tiny sweep")
fi

if [ ${#failed[@]} -gt 0 ]; then
  step "FAILED: ${failed[*]}"
  exit 1
fi
step "passed"
