#!/usr/bin/env bash
# Regenerate the README screenshots: the real app in a real window under Xvfb, on the bundled
# model and slices of patients it was never trained on (validation and test) from the LGG data in ../shared;
# nothing from the data set is committed.
# Needs: apt-get install xvfb xauth and Qt's xcb libraries (README, Quick start); the venv from Quick start.
set -euo pipefail
cd "$(dirname "$0")/.."
LGG=${LGG:-../shared/data/lgg}
OUT=docs/screenshots
mkdir -p "$OUT"
export XDG_CONFIG_HOME=$(mktemp -d)  # fresh settings: default layout, the model's own thresholds
run() { local screen=$1; shift; xvfb-run -a -s "-screen 0 ${screen}x24" .venv/bin/unetpp-gui "$@"; }
# the window opens at its default size: 92 % of the screen, on the two screens reviewers use most
run 1366x768 "$LGG/TCGA_CS_4943_20000902" --snapshot "$OUT/viewer_1366x768.png" --select 14
run 1920x1080 "$LGG/TCGA_CS_4943_20000902" --snapshot "$OUT/viewer.png" --select 14
run 1920x1080 "$LGG/TCGA_DU_7304_19930325" "$LGG/TCGA_HT_7881_19981015" --snapshot "$OUT/batch.png" --select 21
xvfb-run -a -s "-screen 0 1680x1050x24" .venv/bin/python scripts/dialog_screenshots.py "$LGG" "$OUT"
ls -la "$OUT"
