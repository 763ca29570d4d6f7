#!/usr/bin/env bash
# One prepared check of every CUDA path on a bare GPU machine (issue 28): installs what the machine lacks, then
# runs benchmarks/gpu_check.py (its docstring lists the steps) with this script's arguments.
#
#   bash benchmarks/gpu_check.sh [--out DIR] [--work DIR] [--budget SECONDS] [--bundles a,b] [--harness a,b] [--harness-first] [--dry-run]
#
# Wheels: benchmarks/gpu_wheels.sh downloads, into .whl/, the packages of benchmarks/gpu_wheels.txt (those the
# device image lacks) for its Python. When .whl/ holds wheels and the interpreter has no MONAI, they and the
# project are installed into /tmp/site with --no-deps and --no-index, so the image's PyTorch is used as it is. PYTHON picks the
# interpreter (default python3).
set -uo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if compgen -G ".whl/*.whl" > /dev/null && ! "$python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('monai') is None)"; then
    pip_install=("$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site)
    "${pip_install[@]}" .whl/*.whl || { echo "error: installing the carried wheels failed" >&2; exit 1; }
    "${pip_install[@]}" --no-build-isolation . || echo "warning: installing the project failed; it runs from the checkout" >&2
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
exec "$python" benchmarks/gpu_check.py "$@"
