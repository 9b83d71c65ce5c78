#!/bin/bash
# For session 11 (issue 9), with .whl carried: the 12-run sweep target (>= 3x over one after another
# eager) at a run length nearer the grid's (its runs train up to 16000 steps; the 1000-step benchmark
# measured mostly start-up). One call, so one host: the train stage's defaults on the sweep at 4000
# steps a run, then the eager step of each of the 12 cells (bench-train --compile none: tokens/s and
# start-up), from which the eager leg at 4000 steps is priced (its own run would take over 10 minutes).
# Run from the repository root: bash run23.sh <git rev, written out> <seconds>
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=$PWD:/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1 || exit 1
REV=$1; END=$((SECONDS + $2)); LOG=$OUT/call.log
nvidia-smi --query-gpu=name,driver_version --format=csv > $LOG
tidy() { pkill -9 -f "python -m pipeline"; pkill -9 -f multiprocessing.spawn; sleep 1; }
timeout -k 5 $((END - SECONDS - 170)) python -m pipeline bench-train --git-rev $REV --out $OUT/sweep4000.json --sweep \
  --sweep-steps 4000 --sweep-phases stage > $OUT/sweep4000.log 2>&1
echo "sweep stage 4000 steps: exit $? ($((END - SECONDS))s left)" >> $LOG; tidy
grep "bench-train:" $OUT/sweep4000.log >> $LOG
timeout -k 5 $((END - SECONDS - 5)) python -m pipeline bench-train --git-rev $REV --out $OUT/eager_cells.json \
  --cells 32x212,64x212,96x212,128x212 --compile none --warmup 10 --steps 30 > $OUT/eager_cells.log 2>&1
echo "eager cells: exit $? ($((END - SECONDS))s left)" >> $LOG; tidy
grep "bench-train:" $OUT/eager_cells.log >> $LOG; cat $LOG
