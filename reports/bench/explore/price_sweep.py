"""Session 11: the 12-run sweep's eager leg priced from call 11a's two files (the stage's leg at 4000
steps a run, and each cell's eager step from `bench-train --cells ... --compile none`), by the rule
that `bench-train --sweep --sweep-phases eager_priced` now applies in one command: a run's start-up
(its 10 warm-up steps included) plus its other steps at the timed step's seconds.

    python reports/bench/explore/price_sweep.py reports/bench/explore/sweep4000_call11a.json \
        reports/bench/explore/eager_cells_call11a.json
"""

import json
import sys

sweep, cells = (json.load(open(path)) for path in sys.argv[1:3])
steps, stage = sweep["steps_per_run"], sweep["seconds"]["stage_default"]
runs = sweep["train_seconds_per_run"]["stage_default"]
total = 0.0
for cell in cells["records"]:
    run = f"ed_n12-{cell['attention']}-w{cell['width']}-s0"
    if run not in runs:  # the benchmark's other paths (linear_c64, sparse_flex, ...): not what the stage runs
        continue
    step = cells["batch"] * (cell["L"] - 1) / cell["tokens_per_s"]
    seconds = cell["startup_seconds"] + (steps - cells["warmup_steps"]) * step
    total += seconds
    print(f"{run}: eager step {step * 1e3:.1f} ms, priced {seconds:.1f}s; in the stage {runs[run]:.1f}s")
print(f"eager one after another, priced: {total:.1f}s; the stage: {stage:.1f}s; speedup {total / stage:.2f}x"
      f" (op dispatch {cells['host']['op_dispatch_us']} / {sweep['host']['op_dispatch_us']} us)")
