#!/bin/bash
# The speed measurements still missing for issue 9, for the next GPU call (about 400 s): the 12-run
# small-width sweep with the evaluate stage timed, the largest cell (w1024 L=508: memory), clean w64
# numbers for AUTO_INDUCTOR_WIDTH. Output goes to files, never through pipes (session 3's call 1
# lost all of its output: a pipe to tail waited on pool processes that outlived `timeout`), and every
# command's leftover processes are killed before the next starts.
# Run from the repository root, with .whl carried: bash run6.sh <git rev>
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=$PWD:/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1 || exit 1
REV=$1; LOG=$OUT/call.log
step() {  # step <seconds> <name> <bench-train arguments...>
  local t=$1 name=$2; shift 2
  echo "== $name ($(date +%T))" >> $LOG
  timeout -k 5 $t python -m pipeline bench-train --git-rev $REV --out $OUT/$name.json "$@" >> $OUT/$name.log 2>&1
  echo "== $name: exit $? ($(date +%T))" >> $LOG
  pkill -9 -f "python -m pipeline" ; pkill -9 -f multiprocessing.spawn ; sleep 1
  grep "bench-train" $OUT/$name.log >> $LOG
}
nvidia-smi --query-gpu=name,driver_version --format=csv > $LOG
step 260 sweep --sweep --sweep-steps 300
step 100 w1024 --warmup 5 --steps 10 --cells 1024x508 --only standard,sparse,linear
step 50 w64 --warmup 20 --steps 100 --cells 64x212 --compile cudagraphs,inductor-cudagraphs --only standard
cat $LOG
