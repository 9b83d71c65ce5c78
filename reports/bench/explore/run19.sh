#!/bin/bash
# For session 9 (issue 9), with .whl carried, after linear attention's default chunk went from 64 to
# 128 (call 9b: +10% at w1024 L=212, level at w256). First the GPU tests of what changed: linear
# attention against the float64 reference (chunks 128, 64, 512), and the compiled packed member
# against eager with its new comparison (call 9a's elementwise weight bound failed; the ratio is
# printed). Then the sweep benchmark as the README runs it (the stage's defaults, their evaluation,
# the same 12 runs one after another eagerly), all in this one run.
# Run from the repository root: bash run19.sh <git rev, written out> <seconds>
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=$PWD:/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1 || exit 1
REV=$1; END=$((SECONDS + $2)); LOG=$OUT/call.log
nvidia-smi --query-gpu=name,driver_version --format=csv > $LOG
tidy() { pkill -9 -f "python -m pipeline"; pkill -9 -f multiprocessing.spawn; sleep 1; }
timeout -k 5 150 python -m pytest -q -s -p no:cacheprovider -k "linear or compiled" \
  tests/test_attention_gpu.py tests/test_bench_pack.py > $OUT/gpu_tests.log 2>&1
echo "gpu tests: exit $? ($((END - SECONDS))s left)" >> $LOG; tail -2 $OUT/gpu_tests.log >> $LOG
grep "compiled member" $OUT/gpu_tests.log >> $LOG
timeout -k 5 $((END - SECONDS - 5)) python -m pipeline bench-train --git-rev $REV --out $OUT/sweep.json --sweep \
  --sweep-steps 1000 > $OUT/sweep.log 2>&1
echo "sweep: exit $? ($((END - SECONDS))s left)" >> $LOG; tidy
grep "bench-train:" $OUT/sweep.log >> $LOG; cat $LOG
