#!/usr/bin/env bash
# The GPU measurements of bench/README.md in one go, on the JAX backend (TensorFlow is not installed there).
#
#   bench/gpu.sh smoke              # seconds: the GPU is seen and a 2-trial digits search runs on it
#   bench/gpu.sh all [TOTAL_S]      # throughput, the KerasTuner comparison, then a full Fashion-MNIST search
#                                   # with the time left of TOTAL_S (default 540) as its time budget
#   bench/gpu.sh steps              # throughput with 1, 8 and 32 training steps per call (steps_per_execution)
#   bench/gpu.sh trace_ahead        # would compiling the next trial's network in a thread pay? (trace_ahead.py)
#
# Environment: DATA (the four Fashion-MNIST IDX files; default Debian's folder), OUT (results; default
# bench/results/gpu), SUBSET (training images of the comparison; default 10000). GPU utilisation is sampled
# every 250 ms for the whole run (util.csv) and averaged per stage (summary.json). SKIP=throughput skips that stage.
set -u
mode=${1:-all}
total=${2:-540}
started=$(date +%s)
OUT=${OUT:-bench/results/gpu}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
SUBSET=${SUBSET:-10000}
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
mkdir -p "$OUT"
log="$OUT/log.txt"
mark() { echo "STAGE $(date '+%Y/%m/%d %H:%M:%S.%3N') $1" | tee -a "$log"; }

nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader | tee -a "$log"
python3 -c "import jax, keras, keras_tuner; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__, 'keras-tuner', keras_tuner.__version__)" 2>&1 | tee -a "$log"
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits -lms 250 >"$OUT/util.csv" &
sampler=$!
trap 'kill $sampler 2>/dev/null' EXIT

work=$(mktemp -d)
if [ "$mode" = smoke ]; then
  cat >"$work/smoke.yaml" <<'EOF'
version: 1
data: {source: digits}
model: {blocks: {int: [1, 2]}, filters: 16, dense_units: 32, padding: same}
training: {learning_rate: 0.003, batch_size: 64}
search: {algorithm: random, max_trials: 2, max_epochs: 2}
EOF
  mark smoke
  timeout 150 python3 -m tuning search "$work/smoke.yaml" --out "$work" 2>&1 | tee -a "$log"
  mark end
  exit
fi

if [ "$mode" = steps ]; then
  for steps in 1 32 8; do
    repeats=2; [ "$steps" = 8 ] && repeats=1
    mark "steps_$steps"
    timeout 150 python3 bench/trial_throughput.py --data "$DATA" --epochs 6 --batch-size 128 --repeats $repeats --steps-per-execution $steps --out "$OUT/throughput_steps$steps.json" 2>&1 | grep -E '"(steady_epoch_s|images_per_s|tuning_over_bare_images_per_s|first|steps_per_execution)"' | tee -a "$log"
  done
  mark end
  exit
fi

if [ "$mode" = trace_ahead ]; then
  mark trace_ahead
  timeout 300 python3 bench/trace_ahead.py --data "$DATA" --subset 8000 --batch-size 128 --rounds 8 --out "$OUT/trace_ahead.json" 2>&1 | grep -E '"(meanwhile_s|first_epoch_s|round_s|gain_per_network_s|overlapped_over_sequential)"' | tee -a "$log"
  mark end
  exit
fi

if [ "${SKIP:-}" != throughput ]; then
mark throughput
# three pairs, order swapped each time: on a host-bound GPU one pair varies by process more than by side
timeout 200 python3 bench/trial_throughput.py --data "$DATA" --epochs 6 --batch-size 128 --repeats 3 --out "$OUT/throughput.json" 2>&1 | grep -E '"(steady_epoch_s|images_per_s|tuning_over_bare_images_per_s|first)"' | tee -a "$log"
fi
mark compare
timeout 260 python3 bench/compare_kerastuner.py --data "$DATA" --subset "$SUBSET" --max-epochs 9 --batch-size 128 --out "$OUT/compare.json" 2>&1 | tail -60 | tee -a "$log"
mark full_search
# search_spaces/fashion_mnist.yaml on all 60,000 training images, stopped when TOTAL_S is near (70 s kept for its end).
budget=$((started + total - $(date +%s) - 70))
[ "$budget" -lt 60 ] && budget=60
sed -e '/max_train_samples/d' -e "s#^  path: .*#  path: $DATA#" search_spaces/fashion_mnist.yaml >"$work/fashion_full.yaml"
echo "  time_budget: $budget" >>"$work/fashion_full.yaml"
timeout $((budget + 90)) python3 -m tuning search "$work/fashion_full.yaml" --name fashion_full --out "$work" 2>&1 | tail -50 | tee -a "$log"
cp "$work/fashion_full/trials.csv" "$OUT/full_trials.csv" 2>/dev/null
cp "$work/fashion_full/run.json" "$OUT/full_run.json" 2>/dev/null
mark end
kill $sampler 2>/dev/null

python3 - "$OUT" <<'EOF'
"""Mean GPU utilisation per stage, from util.csv and the STAGE lines of log.txt."""
import csv, json, sys
from datetime import datetime
out = sys.argv[1]
parse = lambda s: datetime.strptime(s.strip(), "%Y/%m/%d %H:%M:%S.%f")
stages = [(line.split()[3], parse(" ".join(line.split()[1:3]))) for line in open(f"{out}/log.txt") if line.startswith("STAGE ")]
rows = [(parse(r[0]), float(r[1]), float(r[2])) for r in csv.reader(open(f"{out}/util.csv")) if len(r) == 3 and r[1].strip().replace(".", "").isdigit()]
summary = {}
for (name, start), (_, end) in zip(stages, stages[1:]):
    inside = [(u, m) for t, u, m in rows if start <= t < end]
    if inside:
        summary[name] = {"seconds": round((end - start).total_seconds(), 1), "samples": len(inside),
                         "mean_utilisation_pct": round(sum(u for u, _ in inside) / len(inside), 1),
                         "busy_share": round(sum(u > 0 for u, _ in inside) / len(inside), 3),
                         "peak_memory_mib": max(m for _, m in inside)}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)
print(json.dumps(summary, indent=2))
EOF
