#!/bin/bash
# GPU call 1 of issue 9's speed work: which train.compile mode pays at which width (bench-train cells).
# Run on the H200 from the repository root: bash reports/bench/explore/run1.sh <git rev>
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
REV=$1
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv
python -c "import torch, lightning; print(torch.__version__, lightning.__version__)"
b() { name=$1; shift; timeout ${T:-200} python -m pipeline bench-train --git-rev $REV --warmup 10 --steps 30 --out $OUT/$name.json "$@" 2>&1 | grep -v Warning | tee $OUT/$name.log; }
T=230 b w256 --cells 256x212 --compile none,inductor-cudagraphs
T=120 b w64 --cells 64x212 --compile none,cudagraphs,inductor-cudagraphs --only standard,linear,sparse_blocks
T=150 b w1024 --cells 1024x212 --compile inductor-cudagraphs --only standard,linear,sparse_blocks
T=60 b w256i --cells 256x212 --compile inductor,cudagraphs --only standard
