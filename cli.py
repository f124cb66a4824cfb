"""Run the fusedet CLI from a checkout: `python cli.py ...` is the same as `fusedet ...`."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

import fusedet  # noqa: E402

# From a plain checkout (not installed), `fusedet.datasets` and `fusedet.eval` live in ./datasets and
# ./eval, as setuptools' package-dir maps them; extending the package path gives the same mapping.
if Path(fusedet.__file__).resolve().parent == ROOT / "fusedet" and str(ROOT) not in fusedet.__path__:
    fusedet.__path__.append(str(ROOT))

from fusedet.cli import run  # noqa: E402

if __name__ == "__main__":
    run()
