#!/usr/bin/env bash
# Train the jobs of a job file one after another on this machine's CPU, resuming each from its last
# checkpoint: the CPU counterpart of gpu_train.sh for runs that span sessions.
#
#   bash scripts/cpu_jobs.sh JOBS_FILE RUN_DIR [EXTRA OPTIONS...]
#
# JOBS_FILE holds "name: unetpp train options" lines (scripts/cv_jobs.py writes them; DATA stands for
# $DATA, default ../shared/data/lgg). Each job writes RUN_DIR/<name>.h5 and RUN_DIR/<name>.last.h5 and logs to
# RUN_DIR/<name>.log. A job whose last checkpoint holds its final epoch is skipped; one with a checkpoint
# goes on with --resume (the stored settings win); others start. EXTRA OPTIONS (e.g. --validate-every 5) are
# added to every fresh start. Stop with SIGTERM: the running job saves nothing of its unfinished epoch.
set -euo pipefail
jobs_file=$1 run_dir=$2
shift 2
DATA=${DATA:-../shared/data/lgg}
UNETPP=${UNETPP:-unetpp}
PYTHON=${PYTHON:-python3}
mkdir -p "$run_dir"
trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; exit 143' TERM INT

done_epochs() {  # the epoch a checkpoint holds and the epochs its run planned: "epoch planned"
    "$PYTHON" -c 'import sys
from unetpp_gui.core.metadata import read_metadata
t = read_metadata(sys.argv[1]).training
print(t.get("epoch", 0), t.get("config", {}).get("epochs", 0))' "$1"
}

while IFS= read -r line; do
    [[ -z "$line" || "$line" == \#* ]] && continue
    name=${line%%:*}
    opts=${line#*:}
    opts=${opts//DATA/$DATA}
    last="$run_dir/$name.last.h5"
    if [[ -f "$last" ]]; then
        read -r epoch planned < <(done_epochs "$last" </dev/null)
        if (( epoch >= planned )); then
            echo "$name: done ($epoch of $planned epochs)"
            continue
        fi
        echo "$name: resuming at epoch $epoch of $planned"
        # shellcheck disable=SC2086  # the options are words
        "$UNETPP" train --resume "$last" --data "$DATA" --out "$run_dir/$name.h5" --epochs "$planned" \
            >> "$run_dir/$name.log" 2>&1 &
    else
        echo "$name: starting"
        # shellcheck disable=SC2086
        "$UNETPP" train $opts --out "$run_dir/$name.h5" "$@" >> "$run_dir/$name.log" 2>&1 &
    fi
    child=$!
    wait "$child" || { echo "$name: stopped (exit $?)"; exit 1; }
done < "$jobs_file"
echo "all jobs done"
