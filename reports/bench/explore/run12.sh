#!/bin/bash
# For session 7 (issue 9), with .whl carried. Why 8 concurrent compiled runs of the 1000-step sweep
# took 18-50 ms a step (session 6: the stage 115 s against 107 s one after another eager):
#  1. where a w64 standard step's time goes (GPU or CPU), 60 s;
#  2. the stage's 12 runs all at once eager and with cudagraphs, default threads;
#  3. the stage's defaults and 12 at once eager with one torch thread and one inductor compile thread
#     a process (oversubscribed cores?);
# then the schedule trained whole on LIS n=175, standard w256, with the time that is left.
# Run from the repository root: bash run12.sh <git rev> <seconds>
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=$PWD:/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1 || exit 1
REV=$1; END=$((SECONDS + $2)); LOG=$OUT/call.log
nvidia-smi --query-gpu=name,driver_version --format=csv > $LOG
tidy() { pkill -9 -f "python -m pipeline"; pkill -9 -f multiprocessing.spawn; pkill -9 -f profile_step.py; sleep 1; }
timeout -k 5 60 python reports/bench/explore/profile_step.py 64 standard inductor-cudagraphs > $OUT/profile_w64.log 2>&1
echo "profile w64: exit $? ($((END - SECONDS))s left)" >> $LOG; tidy
timeout -k 5 130 python -m pipeline bench-train --git-rev $REV --out $OUT/sweep_threads_default.json --sweep \
  --sweep-steps 1000 --sweep-stage 12:none,12:cudagraphs --sweep-phases stage > $OUT/sweep_threads_default.log 2>&1
echo "sweep, default threads: exit $? ($((END - SECONDS))s left)" >> $LOG; tidy
OMP_NUM_THREADS=1 TORCHINDUCTOR_COMPILE_THREADS=1 timeout -k 5 150 python -m pipeline bench-train --git-rev $REV \
  --out $OUT/sweep_threads_1.json --sweep --sweep-steps 1000 --sweep-stage auto:auto,12:none --sweep-phases stage \
  > $OUT/sweep_threads_1.log 2>&1
echo "sweep, 1 thread a process: exit $? ($((END - SECONDS))s left)" >> $LOG; tidy
grep -h "bench-train" $OUT/sweep_threads_*.log >> $LOG
cp reports/convergence/study.json $OUT/
left=$((END - SECONDS - 15))
echo "== lis_n175 standard w256 ($(date +%T), ${left}s left)" >> $LOG
timeout -k 5 $((END - SECONDS)) python -m pipeline study-schedule --git-rev $REV --out $OUT --budget $left \
  --dropouts 0.1 --extra-dropout "" --decay-fraction 0.2 --sequences 8192000 --datasets lis_n175 \
  --attentions standard --widths 256 --lrs 1e-3 >> $LOG 2>&1
tidy; grep -v Warning $LOG | tail -30
