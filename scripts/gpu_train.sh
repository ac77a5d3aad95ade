#!/usr/bin/env bash
# One training session on a lent GPU machine that has JAX but no TensorFlow (see MODEL_CARD.md, "GPU runs").
# Expects in the repository: .whl/ (keras and the small wheels it needs), .gpu/lgg.zip (scripts/gpu_pack.py:
# training and validation patients only), .gpu/jobs.txt (one "NAME: training options" line per job, with
# DATA standing for the unpacked folder). Results go to $OUT (best models, logs).
# Usage: DEADLINE=520 scripts/gpu_train.sh
set -u
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD"
# two jobs share the GPU: no JAX process may take most of its memory up front
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.4
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
export KERAS_BACKEND=jax
if ! python3 -c "import jax, keras; print(keras.__version__, jax.__version__, jax.devices()); print(keras.ops.sum(keras.ops.ones(3)))"; then
    echo "Keras on JAX failed; trying torch" >&2
    export KERAS_BACKEND=torch
fi
python3 scripts/gpu_pack.py unpack .gpu/lgg.zip /tmp/lgg || exit 1
mapfile -t JOBS < <(sed 's#DATA#/tmp/lgg#g' "${JOBS_FILE:-.gpu/jobs.txt}")
args=()
for j in "${JOBS[@]}"; do args+=(--job "$j"); done
python3 scripts/gpu_train.py --deadline "${DEADLINE:-520}" --out /tmp/runs "${args[@]}" 2>&1 | tee "$OUT/driver.log"
# best models only, without optimizer state (37 MB with it: over the 16 MiB a returned file may have)
for f in /tmp/runs/*.h5; do
    case "$f" in *.probe.h5|*.last.h5) ;; *)
        python3 -c "import sys; from training.export import export_model; export_model(sys.argv[1], sys.argv[2])" \
            "$f" "$OUT/$(basename "$f")" ;;
    esac
done
for f in /tmp/runs/*.jsonl; do case "$f" in *.probe.jsonl) ;; *) cp "$f" "$OUT/" ;; esac; done
tail -n 30 /tmp/runs/*.err > "$OUT/stderr.txt" 2>/dev/null
ls -la "$OUT"
