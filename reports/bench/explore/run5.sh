#!/bin/bash
# Session 3, GPU call 2 of issue 9: the schedule study alone (call 1 lost its output: a pipe to tail
# waited on the sweep's pool processes, which outlived `timeout`). Output goes to files, no pipes.
# Run from the repository root: bash run5.sh <git rev> <seconds> <study-schedule arguments>
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
REV=$1; END=$((SECONDS + $2)); shift 2
cp reports/convergence/study.json $OUT/ 2>/dev/null
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/call.log
timeout -k 5 $((END - SECONDS)) python -m pipeline study-schedule --git-rev $REV --out $OUT \
  --budget $((END - SECONDS - 15)) "$@" >> $OUT/call.log 2>&1
pkill -9 -f "python -m pipeline"; grep -v Warning $OUT/call.log | tail -40
