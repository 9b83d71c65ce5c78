#!/bin/bash
# For session 8 (issue 9), with .whl carried. Call 1 (run13.sh) timed only the packed phase of
# bench-pack at 1000 steps (110.6 s: no faster than session 6's 106.7 s one after another eager).
# Whether the sweep's small models already fill the GPU: bench-pack at 300 steps with all three
# phases (packed graphed, one after another graphed, i.e. GPU time with no CPU cost, and eager), then
# where the w128 sparse and linear steps' GPU time goes. Output goes to files, no pipes.
# Run from the repository root: bash run15.sh <git rev, written out> <seconds>
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=$PWD:/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1 || exit 1
REV=$1; END=$((SECONDS + $2)); LOG=$OUT/call.log
nvidia-smi --query-gpu=name,driver_version --format=csv > $LOG
tidy() { pkill -9 -f "python -m pipeline"; pkill -9 -f profile_step.py; sleep 1; }
timeout -k 5 270 python -m pipeline bench-pack --git-rev $REV --steps 300 --out $OUT/pack300.json > $OUT/pack300.log 2>&1
echo "bench-pack 300: exit $? ($((END - SECONDS))s left)" >> $LOG; grep "bench-pack:" $OUT/pack300.log >> $LOG; tidy
for a in sparse linear; do
  left=$((END - SECONDS - 5)); [ $left -gt 40 ] || break
  timeout -k 5 $((left < 90 ? left : 90)) python reports/bench/explore/profile_step.py 128 $a inductor-cudagraphs \
    > $OUT/profile_w128_$a.log 2>&1
  echo "profile w128 $a: exit $? ($((END - SECONDS))s left)" >> $LOG; tidy
done
cat $LOG
