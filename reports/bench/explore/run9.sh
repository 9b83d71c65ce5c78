#!/bin/bash
# For session 5 (issue 9), about 500 s, with .whl carried: the 12-run sweep at 1000 steps a run (at
# 300 steps, session 4, the stage's compile and graph capture dominated: 1.23x), its evaluation with
# the new timing breakdown, w1024 at L=508 for sparse and linear (memory; session 4 cut them off),
# and the GPU tests (the linear-attention fix has not run on the GPU yet). Output goes to files, no
# pipes; every step's leftover processes are killed before the next starts.
# Run from the repository root: bash run9.sh <git rev>
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=$PWD:/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1 || exit 1
REV=$1; LOG=$OUT/call.log
clean() { pkill -9 -f "python -m pipeline" ; pkill -9 -f multiprocessing.spawn ; sleep 1; }
step() {  # step <seconds> <name> <bench-train arguments...>
  local t=$1 name=$2; shift 2
  echo "== $name ($(date +%T))" >> $LOG
  timeout -k 5 $t python -m pipeline bench-train --git-rev $REV --out $OUT/$name.json "$@" >> $OUT/$name.log 2>&1
  echo "== $name: exit $? ($(date +%T))" >> $LOG
  clean; grep "bench-train" $OUT/$name.log >> $LOG
}
nvidia-smi --query-gpu=name,driver_version --format=csv > $LOG
step 330 sweep --sweep --sweep-steps 1000
step 110 w1024 --warmup 5 --steps 10 --cells 1024x508 --only sparse,linear
echo "== GPU tests ($(date +%T))" >> $LOG
timeout -k 5 120 python -m pytest -q -p no:cacheprovider tests/test_attention_gpu.py > $OUT/gpu_tests.log 2>&1
echo "== GPU tests: exit $? ($(date +%T))" >> $LOG; tail -1 $OUT/gpu_tests.log >> $LOG
cat $LOG
