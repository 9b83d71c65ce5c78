#!/bin/bash
# GPU call 2 of issue 9's speed work: the issue's cells with compile auto (no sync between timed
# steps), sparse paths at L=508, small widths' modes, a profile of one step, the GPU attention tests.
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
REV=$1
b() { name=$1; shift; timeout ${T:-200} python -m pipeline bench-train --git-rev $REV --warmup 10 --steps 30 --out $OUT/$name.json "$@" 2>&1 | grep -v Warning | tee $OUT/$name.log; }
T=260 b cells --cells 256x212,256x508,512x212,1024x212 --only standard,linear,sparse
T=60 b paths508 --cells 256x508 --only sparse_blocks,sparse_flex
T=100 b small --cells 64x212 --compile cudagraphs,inductor-cudagraphs
timeout 45 python reports/bench/explore/profile_step.py 256 standard inductor-cudagraphs 2>&1 | grep -v Warning > $OUT/profile256.txt
timeout 100 python -m pytest -q -x tests/test_attention_gpu.py 2>&1 | tail -15 | tee $OUT/gpu_tests.log
