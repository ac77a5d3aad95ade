#!/usr/bin/env bash
# Build the one-folder app into dist/UNetPP-Viewer/ and check it with --selftest.
# Usage: build_spec/build.sh [python]   (default: .venv/bin/python; needs the "build" extra)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
start=$(date +%s)
"$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
  --distpath dist --workpath build/pyinstaller build_spec/unetpp_viewer.spec
echo "build time: $(( $(date +%s) - start )) s"
echo "bundle size: $(du -sh dist/UNetPP-Viewer | cut -f1)"
dist/UNetPP-Viewer/UNetPP-Viewer --selftest
