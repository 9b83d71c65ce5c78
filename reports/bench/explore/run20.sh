#!/bin/bash
# For session 10 (issue 9), with .whl carried: the README's bench-train table again at the current
# revision (linear attention's default chunk is now 128; every JSON now records its host: CPU,
# cores, the CPU's cost of one op), so reports/bench/train.json and predict-hours stop holding chunk
# 64's linear numbers.
# Run from the repository root: bash run20.sh <git rev, written out> <seconds>
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=$PWD:/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1 || exit 1
REV=$1; END=$((SECONDS + $2)); LOG=$OUT/call.log
nvidia-smi --query-gpu=name,driver_version --format=csv > $LOG
timeout -k 5 $((END - SECONDS - 5)) python -m pipeline bench-train --git-rev $REV --out $OUT/train.json --device cuda \
  --batch 512 --warmup 10 --steps 30 --compile auto --cells 256x212,256x508,512x212,1024x212 --only standard,linear,sparse \
  > $OUT/train.log 2>&1
echo "bench-train: exit $? ($((END - SECONDS))s left)" >> $LOG; grep "bench-train:" $OUT/train.log >> $LOG; cat $LOG
