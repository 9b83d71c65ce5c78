#!/bin/bash
# For session 6 (issue 9): the chosen schedule trained whole (lr 1e-3 x min(1, 256/width), dropout
# 0.1, constant, then decayed over the last 20% of 8.19M sequences) at the widths and sizes the study
# has not checked. Each quoted group of study-schedule arguments is one invocation, in order, with the
# time that is left; a configuration still training when its time is up is kept as `cut off`
# (Lightning's Timer), so nothing trained is lost. Output goes to files, no pipes.
# The rate: pass --lrs 1e-3; --lr-width 256 (added in session 10) scales it above w256 as the profiles
# do. Before that the study took --lrs as given: sessions 6-7 passed the scaled rate themselves, and
# session 10's sparse w512 ran at 1e-3, not the schedule's 5e-4.
# Run from the repository root: bash run10.sh <git rev> <seconds> "<args>" ["<args>" ...]
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
REV=$1; END=$((SECONDS + $2)); shift 2
cp reports/convergence/study.json $OUT/ 2>/dev/null
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/call.log
for group in "$@"; do
  left=$((END - SECONDS - 15)); [ $left -lt 60 ] && break
  echo "== $group ($(date +%T), ${left}s left)" >> $OUT/call.log
  # shellcheck disable=SC2086  # each group is a list of arguments
  timeout -k 5 $((END - SECONDS)) python -m pipeline study-schedule --git-rev $REV --out $OUT --budget $left --lr-width 256 \
    --dropouts 0.1 --extra-dropout "" --decay-fraction 0.2 --sequences 8192000 $group >> $OUT/call.log 2>&1
  pkill -9 -f "python -m pipeline"
done
grep -v Warning $OUT/call.log | tail -40
