#!/bin/bash
# For session 8 (issue 9), with .whl carried: what one process gains by packing the sweep's small
# models (bench-pack, after its GPU tests check graphed packed steps against eager ones), then
# max-autotune against the default compile at w512 and w1024 (the 45% MFU target), each step
# time-boxed. Output goes to files, no pipes.
# Run from the repository root: bash run13.sh <git rev> <seconds>, the revision written out here: on the
# device, `git rev-parse` answers from a stale .git (session 7 recorded 5e5ef16 for 5663c42)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=$PWD:/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1 || exit 1
REV=$1; END=$((SECONDS + $2)); LOG=$OUT/call.log
nvidia-smi --query-gpu=name,driver_version --format=csv > $LOG
tidy() { pkill -9 -f "python -m pipeline"; pkill -9 -f multiprocessing.spawn; sleep 1; }
timeout -k 5 120 python -m pytest -q -p no:cacheprovider tests/test_bench_pack.py > $OUT/pack_tests.log 2>&1
echo "pack tests: exit $? ($((END - SECONDS))s left)" >> $LOG; tail -3 $OUT/pack_tests.log >> $LOG
timeout -k 5 200 python -m pipeline bench-pack --git-rev $REV --steps 1000 --out $OUT/pack.json > $OUT/pack.log 2>&1
echo "bench-pack: exit $? ($((END - SECONDS))s left)" >> $LOG; grep "bench-pack:" $OUT/pack.log >> $LOG; tidy
left=$((END - SECONDS - 10)); [ $left -gt 60 ] && timeout -k 5 $left python -m pipeline bench-train --git-rev $REV \
  --out $OUT/train_autotune.json --cells 512x212,1024x212 --compile inductor-cudagraphs,max-autotune \
  --only standard,linear --warmup 10 --steps 30 > $OUT/train_autotune.log 2>&1
echo "bench-train max-autotune: exit $? ($((END - SECONDS))s left)" >> $LOG; tidy
cat $LOG
