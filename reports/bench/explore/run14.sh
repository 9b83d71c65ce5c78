#!/bin/bash
# For session 8 (issue 9), with .whl carried: the 1000-step sweep's stage under CUDA MPS. Separate
# processes take turns on the GPU (session 7: 12 at once eager 114 s against 107 s one after
# another); MPS lets their kernels run side by side. The daemon is the user's own (private pipe and
# log folders, the GPU's compute mode untouched) and is stopped on exit whatever happens.
# Run from the repository root: bash run14.sh <git rev> <seconds>, the revision written out here: on the
# device, `git rev-parse` answers from a stale .git (session 7 recorded 5e5ef16 for 5663c42)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=$PWD:/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1 || exit 1
REV=$1; END=$((SECONDS + $2)); LOG=$OUT/call.log
nvidia-smi --query-gpu=name,driver_version,compute_mode --format=csv > $LOG
if ! command -v nvidia-cuda-mps-control > /dev/null; then echo "no nvidia-cuda-mps-control on this machine" >> $LOG; cat $LOG; exit 0; fi
export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
mkdir -p $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY
trap 'echo quit | nvidia-cuda-mps-control; sleep 2; cp $CUDA_MPS_LOG_DIRECTORY/*.log $OUT/ 2>/dev/null' EXIT
nvidia-cuda-mps-control -d >> $LOG 2>&1; echo "mps daemon: exit $?" >> $LOG
left=$((END - SECONDS - 20))
timeout -k 5 $left python -m pipeline bench-train --git-rev $REV --out $OUT/sweep_mps.json --sweep --sweep-steps 1000 \
  --sweep-stage 12:none,auto:auto --sweep-phases stage,eager > $OUT/sweep_mps.log 2>&1
echo "sweep under MPS: exit $? ($((END - SECONDS))s left)" >> $LOG
pkill -9 -f "python -m pipeline"; pkill -9 -f multiprocessing.spawn
grep -h "bench-train" $OUT/sweep_mps.log >> $LOG; cat $LOG
