#!/bin/bash
# For session 8 (issue 9), with .whl carried: the steady-state step of each of the sweep's 12 small
# runs (w32-128, L=212, batch 512) in the train stage (Lightning), eager and compiled with CUDA
# graphs, with each compile's start-up: the floor under what any packing of the sweep can reach.
# Run from the repository root: bash run16.sh <git rev, written out> <seconds>
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=$PWD:/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1 || exit 1
REV=$1; END=$((SECONDS + $2)); LOG=$OUT/call.log
nvidia-smi --query-gpu=name,driver_version --format=csv > $LOG
timeout -k 5 $((END - SECONDS - 5)) python -m pipeline bench-train --git-rev $REV --out $OUT/small_cells.json \
  --cells 32x212,64x212,96x212,128x212 --compile none,inductor-cudagraphs --warmup 10 --steps 30 \
  > $OUT/small_cells.log 2>&1
echo "bench-train small cells: exit $? ($((END - SECONDS))s left)" >> $LOG
pkill -9 -f "python -m pipeline"; cat $LOG
