#!/bin/bash
# For session 5's first GPU call (issue 9): the chosen schedule trained whole (constant, then decayed
# over the last 20% of 8.19M sequences) where the study left doubt: LIS n=110, standard and linear at
# w256 (about 220 s and 250 s). Output goes to files, no pipes.
# Run from the repository root: bash run8.sh <git rev> <seconds> [more study-schedule arguments]
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
REV=$1; END=$((SECONDS + $2)); shift 2
cp reports/convergence/study.json $OUT/ 2>/dev/null
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/call.log
timeout -k 5 $((END - SECONDS)) python -m pipeline study-schedule --git-rev $REV --out $OUT \
  --budget $((END - SECONDS - 15)) --lrs 1e-3 --dropouts 0.1 --extra-dropout "" \
  --decay-fraction 0.2 --sequences 8192000 --datasets lis_n110 --attentions standard,linear "$@" >> $OUT/call.log 2>&1
pkill -9 -f "python -m pipeline"; grep -v Warning $OUT/call.log | tail -40
