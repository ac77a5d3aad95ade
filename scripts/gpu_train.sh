#!/usr/bin/env bash
# One training session on a lent GPU machine that has JAX but no TensorFlow (see MODEL_CARD.md, "GPU runs").
# Expects in the repository: .whl/ (keras and the small wheels it needs), .gpu/lgg.zip (scripts/gpu_pack.py:
# training and validation patients only), .gpu/jobs.txt (one "NAME: training options" line per job, with
# DATA standing for the unpacked folder). Results go to $OUT: each job's best model (at most 7 jobs: 8 files
# come back) and logs.tgz (progress logs, driver log, stderr tails, GPU utilisation every 10 s).
# Usage: DEADLINE=520 [GPU_TRAIN_ARGS="--margin 0.8"] [EXPORT_LAST=1] scripts/gpu_train.sh
set -u
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD"
JOBS_FILE="${JOBS_FILE:-.gpu/jobs.txt}"
# the jobs share the GPU: each JAX process takes an equal share of its memory up front, not most of it
NJOBS=$(grep -c ':' "$JOBS_FILE")
XLA_PYTHON_CLIENT_MEM_FRACTION=$(python3 -c "print(round(0.9 / max(1, $NJOBS), 3))")
export XLA_PYTHON_CLIENT_MEM_FRACTION
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
# how busy the GPU is while the jobs run (for the model card)
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -l 10 > /tmp/gpu_util.csv 2>&1 &
UTIL_PID=$!
# compiled programs kept on disk: a job that starts again with the same shapes and schedule (a resumed run, a
# second call on the same machine) skips its compile
export JAX_COMPILATION_CACHE_DIR=/tmp/jax_cache JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=1
# which programs compiled and for how long (stderr; the long ones go into logs.tgz): on the H100 a run's second
# epoch once took 40 s more than the others, cause unknown
export JAX_LOG_COMPILES=1
export KERAS_BACKEND=jax
if ! python3 -c "import jax, keras; print(keras.__version__, jax.__version__, jax.devices()); print(keras.ops.sum(keras.ops.ones(3)))"; then
    echo "Keras on JAX failed; trying torch" >&2
    export KERAS_BACKEND=torch
fi
python3 scripts/gpu_pack.py unpack .gpu/lgg.zip /tmp/lgg || exit 1
mapfile -t JOBS < <(sed 's#DATA#/tmp/lgg#g' "$JOBS_FILE")
args=()
for j in "${JOBS[@]}"; do args+=(--job "$j"); done
# a second call on a still-warm machine finds the first call's runs here: start clean, or they are exported again
rm -rf /tmp/runs && mkdir -p /tmp/runs
python3 scripts/gpu_train.py --deadline "${DEADLINE:-520}" --out /tmp/runs ${GPU_TRAIN_ARGS:-} "${args[@]}" 2>&1 | tee /tmp/runs/driver.log
kill "$UTIL_PID" 2>/dev/null
# best models only, without optimizer state (37 MB with it: over the 16 MiB a returned file may have), side by side
# and on the CPU: each JAX process would otherwise claim the jobs' share of GPU memory (with one job, 90 % each),
# and a call on the H100 lost its only model when parallel exports aborted that way
# EXPORT_LAST=1 returns each run's last epoch instead of its best (cross-validation folds: no checkpoint chosen on
# the patients that measure them)
for f in /tmp/runs/*.h5; do
    case "$f" in *.probe.h5|*.last.h5) ;; *)
        src="$f"
        if [ "${EXPORT_LAST:-0}" = 1 ] && [ -f "${f%.h5}.last.h5" ]; then src="${f%.h5}.last.h5"; fi
        JAX_PLATFORMS=cpu python3 -c "import sys; from training.export import export_model; export_model(sys.argv[1], sys.argv[2])" \
            "$src" "$OUT/$(basename "$f")" & ;;
    esac
done
wait
# logs in one archive: at most 8 files come back
cp /tmp/gpu_util.csv /tmp/runs/ 2>/dev/null
grep -v "XLA compilation\|^Compiling" /tmp/runs/*.err | tail -n 200 > /tmp/runs/stderr.txt 2>/dev/null
grep -H "Finished XLA compilation" /tmp/runs/*.err | awk '$(NF-1) > 1' > /tmp/runs/compiles.txt 2>/dev/null
(cd /tmp/runs && tar czf "$OUT/logs.tgz" ./*.jsonl driver.log stderr.txt compiles.txt gpu_util.csv ./*.split.json 2>/dev/null)
ls -la "$OUT"
