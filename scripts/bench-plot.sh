#!/usr/bin/env bash
# Draws docs/bench/plot.png from the JSON that scripts/bench-all.sh wrote.
#
#   bash scripts/bench-plot.sh [BENCH_DIR]   (default docs/bench)
#
# Needs Python 3 with matplotlib; installs it with pip (scripts/bench-plot.txt)
# into a virtual environment under target/ when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-docs/bench}
python=python3
if ! python3 -c "import matplotlib" 2>/dev/null; then
    venv=target/bench-plot-venv
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --requirement scripts/bench-plot.txt
    python=$venv/bin/python
fi
"$python" scripts/bench-plot.py "$dir"
