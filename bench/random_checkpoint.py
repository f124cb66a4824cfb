"""Write a DMNet checkpoint with random-initialised weights, for speed and memory checks.

    python bench/random_checkpoint.py --preset paper --out /tmp/dmnet_paper_random.pt
    fusedet evaluate --dataset demo --sources ir,vi,paper=dmnet:/tmp/dmnet_paper_random.pt ...

Speed and memory do not depend on the weights' values, so a freshly initialised `paper` model
(392M parameters, about 1.6 GB) stands in for trained weights nobody has yet. Its fused images are
meaningless: never report their AP or metrics. Written with dmnet.checkpoint.save_checkpoint
(atomically), readable by ``dmnet:PATH`` and ``--weights PATH`` like any trained checkpoint.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from dmnet import DMNet
from dmnet.checkpoint import save_checkpoint

NOTE = "random-initialised weights for speed and memory checks: the fused images are meaningless"


def write_random_checkpoint(path: str | os.PathLike, preset: str = "paper", seed: int = 0) -> Path:
    """A `preset` DMNet initialised with torch seed `seed`, saved to `path`; returns the path."""
    torch.manual_seed(seed)
    model = DMNet.from_preset(preset)
    return save_checkpoint(path, model, {"note": NOTE, "preset": preset, "seed": seed})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="paper", help="lite or paper (default: paper)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="checkpoint file to write")
    args = parser.parse_args(argv)
    path = write_random_checkpoint(args.out, args.preset, args.seed)
    print(f"wrote {path} ({path.stat().st_size / 2**30:.2f} GB, preset {args.preset}, random weights)")


if __name__ == "__main__":
    main()
