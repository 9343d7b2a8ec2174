#!/usr/bin/env bash
# Every number of issue #13's "done when" for a checkpoint (default: the shipped default model), as JSON
# into OUT (default docs/bench/lite; predictions go to runs/measure/). ~25 min on a 2-core CPU; needs ../shared/data.
#   bash scripts/measure_default.sh [CHECKPOINT] [OUT]
set -euo pipefail
CK=${1:-ausm-lite}
OUT=${2:-docs/bench/lite}
W=runs/measure/$(basename "$CK")
D=../shared/data
mkdir -p "$OUT" "$W"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
bench() {  # NAME ARGS...: one DAVIS-2016 val benchmark, its summary line and per-object results kept
  local name=$1; shift
  echo "+ ausm benchmark davis2016 $*" >&2
  ausm benchmark davis2016 --root $D/davis2016 --checkpoint "$CK" --quiet --out "$W/$name" "$@" | tee "$OUT/$name.txt" >&2
  cp "$W/$name/results.json" "$OUT/$name.json"
}
bench davis2016_semi
bench davis2016_unsup --task unsupervised
echo "+ ausm benchmark duts" >&2
ausm benchmark duts --root $D/duts_tr__aviroshkovan_DUTS-TR --checkpoint "$CK" --quiet --out "$W/duts" | tee "$OUT/duts_holdout.txt" >&2
cp "$W/duts/stills.json" "$OUT/duts_holdout.json"
echo "+ ausm segment --demo" >&2
ausm segment --demo --checkpoint "$CK" --out "$W/demo" 2>&1 | tee "$OUT/demo.txt" >&2
bench davis2016_semi_ft40 --finetune 40
echo "done: $OUT" >&2
