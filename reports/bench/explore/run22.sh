#!/bin/bash
# For session 10 (issue 9), with .whl carried: the grid's smallest cells (profiles/gpu_cells.yaml:
# arithmetic n=6 and ED n=6, three types) through the real stages (generate, train, evaluate, report)
# under the paper profile's schedule and evaluation: what the evaluate stage costs next to training
# where training is cheapest. First widths 32 alone (6 runs), then, while time is left, the whole
# profile (the w32 runs reused, w64 trained). Each round's outputs are packed as they finish.
# Run from the repository root: bash run22.sh <git rev, written out> <seconds>
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=$PWD:/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1 PIPELINE_GIT_REV=$1 || exit 1
END=$((SECONDS + $2)); LOG=$OUT/call.log; mkdir -p logs
nvidia-smi --query-gpu=name,driver_version --format=csv > $LOG
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 2 > $OUT/gpu_util.csv &
rm -rf data runs runtime results metrics.json  # this copy's CPU outputs: the stages start empty
python3 -c "import yaml; p = yaml.safe_load(open('profiles/gpu_cells.yaml')); p['train']['widths'] = [32]
yaml.safe_dump(p, open('/tmp/cells_w32.yaml', 'w'))"
stage() {  # stage params round: one stage, its seconds in the log
  local t=$SECONDS; timeout -k 5 $((END - SECONDS - 10)) python -m pipeline $1 --params $2 > logs/$1_$3.log 2>&1
  echo "$1 ($3): exit $? in $((SECONDS - t))s ($((END - SECONDS))s left)" >> $LOG
}
pack() { tar czf $OUT/cells_$1.tgz results runtime metrics.json logs reports/report.md reports/figures \
  reports/plots reports/runtime 2>> $LOG; }
stage generate profiles/gpu_cells.yaml all
for s in train evaluate report; do stage $s /tmp/cells_w32.yaml w32; done
pack w32
if [ $((END - SECONDS)) -gt 330 ]; then
  for s in train evaluate report; do stage $s profiles/gpu_cells.yaml all; done
  pack all
fi
cat $LOG
