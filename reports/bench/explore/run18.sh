#!/bin/bash
# For session 9 (issue 9), with .whl carried: linear attention, the furthest from its targets (4.9x at
# w256 L=212 against 8x; 26% and 37% MFU at w512 and w1024 against 45%), at the chunk sizes it now
# benchmarks (linear_c32, _c128, _c512: 512 is one chunk, the quadratic form, at these lengths)
# against its default 64; then the 1000-step sweep's eager leg alone, with each run's seconds (its
# total was 219.1 s in session 5 and 106.7 s in session 6).
# Run from the repository root: bash run18.sh <git rev, written out> <seconds>
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=$PWD:/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1 || exit 1
REV=$1; END=$((SECONDS + $2)); LOG=$OUT/call.log
nvidia-smi --query-gpu=name,driver_version --format=csv > $LOG
tidy() { pkill -9 -f "python -m pipeline"; pkill -9 -f multiprocessing.spawn; sleep 1; }
timeout -k 5 $((END - SECONDS - 240)) python -m pipeline bench-train --git-rev $REV --out $OUT/linear_chunks.json \
  --cells 256x212,256x508,1024x212 --only linear,linear_c32,linear_c128,linear_c512 --warmup 10 --steps 30 \
  > $OUT/linear_chunks.log 2>&1
echo "bench-train linear chunks: exit $? ($((END - SECONDS))s left)" >> $LOG; tidy
grep "bench-train:" $OUT/linear_chunks.log >> $LOG
timeout -k 5 $((END - SECONDS - 5)) python -m pipeline bench-train --git-rev $REV --out $OUT/sweep_eager.json --sweep \
  --sweep-steps 1000 --sweep-phases eager > $OUT/sweep_eager.log 2>&1
echo "sweep eager: exit $? ($((END - SECONDS))s left)" >> $LOG; tidy
grep "bench-train:" $OUT/sweep_eager.log >> $LOG; cat $LOG
