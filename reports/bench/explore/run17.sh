#!/bin/bash
# For session 9 (issue 9), with .whl carried. Session 8 measured the sweep's 12 small models GPU-bound:
# packed CUDA graphs of eager models 1.50x one-after-another eager (bench-pack, 300 steps), the stage's
# cells compiled with graphs 4.8-7.1 ms a step against 9.9-22.8 ms eager. Here: the pack GPU tests
# (the compiled member against eager) and the attention GPU tests (linear with one chunk), then bench-pack at 1000 steps with each model compiled before
# capture (fewer kernels in each graph) against one after another eager; the training loop's own
# seconds come back too (the start-up, compiling 12 models in one process, apart).
# Run from the repository root: bash run17.sh <git rev, written out> <seconds>
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=$PWD:/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1 || exit 1
REV=$1; END=$((SECONDS + $2)); LOG=$OUT/call.log
nvidia-smi --query-gpu=name,driver_version --format=csv > $LOG
tidy() { pkill -9 -f "python -m pipeline"; sleep 1; }
timeout -k 5 200 python -m pytest -q -p no:cacheprovider tests/test_bench_pack.py tests/test_attention_gpu.py \
  > $OUT/pack_tests.log 2>&1
echo "pack tests: exit $? ($((END - SECONDS))s left)" >> $LOG; tail -3 $OUT/pack_tests.log >> $LOG
timeout -k 5 $((END - SECONDS - 5)) python -m pipeline bench-pack --git-rev $REV --steps 1000 \
  --phases packed_compiled,sequential_eager --out $OUT/pack_compiled.json > $OUT/pack_compiled.log 2>&1
echo "bench-pack compiled: exit $? ($((END - SECONDS))s left)" >> $LOG; grep "bench-pack:" $OUT/pack_compiled.log >> $LOG
tidy; cat $LOG
