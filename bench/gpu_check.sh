#!/usr/bin/env bash
# The GPU check in one command: at most 8 minutes on one CUDA GPU, one JSON file of figures.
#
#   bench/gpu_check.sh                       # writes gpu_check.json in the current folder
#   bench/gpu_check.sh --out figures.json    # any option of bench/gpu_check.py (--parts, --work, --dry-run)
#   PYTHON=/path/to/venv/bin/python bench/gpu_check.sh
#
# What it measures and the targets: the docstring of bench/gpu_check.py. Without a GPU it stops at
# once with exit code 2 (--dry-run runs the same script on the CPU with the lite preset at tiny sizes).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python}"
dry=0
for arg in "$@"; do
  if [ "$arg" = "--dry-run" ]; then dry=1; fi
done
if [ "$dry" = 0 ] && ! "$python" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check: no CUDA GPU visible to torch ($("$python" -c 'import torch; print("torch", torch.__version__)' 2>&1 | tail -1)); nothing measured." >&2
  echo "gpu_check: run it on a machine with a GPU, or add --dry-run to check the script on the CPU." >&2
  exit 2
fi
# the script keeps its parts within 8 minutes; the hard limit stops anything that hangs
exec timeout --signal=INT --kill-after=15 "${GPU_CHECK_LIMIT_S:-480}" "$python" "$here/gpu_check.py" "$@"
