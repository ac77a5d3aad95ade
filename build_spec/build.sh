#!/usr/bin/env bash
# Build the one-folder app into DIST/UNetPP-Viewer/ (default dist/) and check it with --selftest.
# Usage: build_spec/build.sh [python] [DIST]   (default: .venv/bin/python; needs the "build" extra)
# OpenVINO goes inside; UNETPP_BUNDLE_OPENVINO=0 leaves it out (see the spec).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
DIST=${2:-dist}
WORK=build/pyinstaller
[ "$DIST" = dist ] || WORK="build/pyinstaller-$(echo "$DIST" | tr '/' '_')"
start=$(date +%s)
"$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
  --distpath "$DIST" --workpath "$WORK" build_spec/unetpp_viewer.spec
echo "build time: $(( $(date +%s) - start )) s"
echo "bundle size: $(du -sh "$DIST/UNetPP-Viewer" | cut -f1)"
"$DIST/UNetPP-Viewer/UNetPP-Viewer" --selftest
