#!/bin/bash
# Session 4, GPU call A of issue 9: two study-schedule commands in one call, each with its own cap on
# sequences (the cap is one per command): first one sparse configuration at 8M sequences (does sparse
# leave its plateau at all?), then linear attention with the session-3 fix, at the study's 4M cap.
# Output goes to files, no pipes. Run from the repository root: bash run7.sh <git rev> <seconds>
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
REV=$1; END=$((SECONDS + $2))
cp reports/convergence/study.json $OUT/ 2>/dev/null
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/call.log
study() {
  timeout -k 5 $((END - SECONDS)) python -m pipeline study-schedule --git-rev $REV --out $OUT \
    --budget $((END - SECONDS - 15)) --datasets ed_n12 "$@" >> $OUT/call.log 2>&1
  pkill -9 -f "python -m pipeline"
}
study --extra-dropout sparse=0.1 --sequences 8000000 --only ed_n12-sparse-w256-lr0.002-d0.1
study --extra-dropout linear=0.1 --only ed_n12-linear-w256-lr0.001-d0.1,ed_n12-linear-w256-lr0.002-d0,ed_n12-linear-w256-lr0.001-d0,ed_n12-linear-w256-lr0.0005-d0
grep -v Warning $OUT/call.log | tail -40
