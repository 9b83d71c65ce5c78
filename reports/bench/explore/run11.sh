#!/bin/bash
# For session 6 (issue 9), with .whl carried: the 12-run sweep at 1000 steps a run, the stage and its
# evaluation first (timing breakdown per run), the eager baseline last (219 s in session 5, when the
# call's 330 s limit cut the evaluation off). The JSON is written after every phase. Then, in 90 s,
# where a w256 standard step's time goes (profile_step.py), for the 12x target.
# Run from the repository root: bash run11.sh <git rev> <seconds for the sweep>   (e.g. 470)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=$PWD:/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1 || exit 1
REV=$1; LOG=$OUT/call.log
nvidia-smi --query-gpu=name,driver_version --format=csv > $LOG
timeout -k 5 $2 python -m pipeline bench-train --git-rev $REV --out $OUT/sweep.json --sweep --sweep-steps 1000 \
  > $OUT/sweep.log 2>&1
echo "sweep: exit $?" >> $LOG
pkill -9 -f "python -m pipeline"; pkill -9 -f multiprocessing.spawn
grep "bench-train" $OUT/sweep.log >> $LOG
timeout -k 5 90 python reports/bench/explore/profile_step.py 256 standard inductor-cudagraphs > $OUT/profile_w256.log 2>&1
echo "profile: exit $?" >> $LOG; pkill -9 -f profile_step.py; cat $LOG
