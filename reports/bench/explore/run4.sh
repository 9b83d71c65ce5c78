#!/bin/bash
# Session 3, GPU call 1 of issue 9: the 12-run small-width sweep with the evaluate stage timed, the
# largest cell (w1024 L=508: memory), clean w64 numbers for AUTO_INDUCTOR_WIDTH, then the schedule
# study with what is left of the call. Run from the repository root: bash run4.sh <git rev> <seconds>
# Ran once (session 3, call 1, at e2010e5): all 600 s of it, and nothing came back but nvidia-smi.
# Most likely the sweep ran past its 260 s (at 300 steps a run, session 2's eager runs took 9-15 s
# each; this asked for 600), `timeout` killed only the parent, and its pool processes kept the pipe
# to `tail` open, so nothing was printed. Superseded by run5.sh (the study) and run6.sh (the rest).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=$PWD:/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1 || exit 1
REV=$1; END=$((SECONDS + ${2:-570}))
LOG=$OUT/call.log
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv | tee -a $LOG
mkdir -p $OUT && cp reports/convergence/study.json $OUT/ 2>/dev/null
timeout 260 python -m pipeline bench-train --git-rev $REV --sweep --sweep-steps 600 --out $OUT/sweep.json 2>&1 \
  | grep -v Warning | tail -30 | tee -a $LOG
timeout 130 python -m pipeline bench-train --git-rev $REV --warmup 5 --steps 10 --cells 1024x508 \
  --only standard,sparse,linear --out $OUT/w1024.json 2>&1 | grep bench-train | tee -a $LOG
timeout 60 python -m pipeline bench-train --git-rev $REV --warmup 20 --steps 100 --cells 64x212 \
  --compile cudagraphs,inductor-cudagraphs --only standard --out $OUT/w64.json 2>&1 | grep bench-train | tee -a $LOG
shift 2
timeout $((END - SECONDS)) python -m pipeline study-schedule --git-rev $REV --out $OUT \
  --budget $((END - SECONDS - 10)) "$@" 2>&1 | grep -v Warning | tee -a $LOG
