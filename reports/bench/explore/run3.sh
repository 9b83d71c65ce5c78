#!/bin/bash
# GPU call 3 of issue 9's speed work: the GPU attention tests (every sparse path), the issue's cells
# with compile auto (dynamo reset per run, float32 baseline), the 12-run small-width sweep.
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
REV=$1
timeout 110 python -m pytest -q -x tests/test_attention_gpu.py 2>&1 | tail -6 | tee $OUT/gpu_tests.log
timeout 290 python -m pipeline bench-train --git-rev $REV --warmup 10 --steps 30 --cells 256x212,256x508,512x212,1024x212 --only standard,linear,sparse --out $OUT/train.json 2>&1 | grep bench-train | tee $OUT/train.log
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=$PWD:/tmp/site PATH=/tmp/site/bin:$PATH
timeout 140 python -m pipeline bench-train --git-rev $REV --sweep --sweep-steps 300 --out $OUT/sweep.json 2>&1 | grep -v Warning | tail -30 | tee $OUT/sweep.log
