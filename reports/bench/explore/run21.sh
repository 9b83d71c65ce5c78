#!/bin/bash
# For session 10 (issue 9), with .whl carried: bench-pack's compiled pack against the same 12 models
# one after another eagerly, and graphed, on whatever host this call gets (session 9 measured the
# packed loop 3.07x over eager only on the host whose CPU ran eager steps 2x slower; the JSON now
# names the host).
# Run from the repository root: bash run21.sh <git rev, written out> <seconds>
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=$PWD:/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1 || exit 1
REV=$1; END=$((SECONDS + $2)); LOG=$OUT/call.log
nvidia-smi --query-gpu=name,driver_version --format=csv > $LOG
timeout -k 5 $((END - SECONDS - 5)) python -m pipeline bench-pack --git-rev $REV --steps 1000 \
  --phases packed_compiled,sequential_eager,sequential_graphed --out $OUT/pack.json > $OUT/pack.log 2>&1
echo "bench-pack: exit $? ($((END - SECONDS))s left)" >> $LOG; grep "bench-pack:" $OUT/pack.log >> $LOG; cat $LOG
