"""Pairs per second of the detection pipeline's stages on demo data: fuse, detect, evaluate.

    python bench/pipeline_speed.py                                   # CPU (and CUDA when present)
    python bench/pipeline_speed.py --size 1024x768 --weights yolov5xu.yaml --imgsz 640 --devices cuda

CPU threads: torch's own count, which fusedet keeps when ultralytics starts a detector (printed).

- fuse:     read the pair (reader threads), fuse on the device (--fuse-batch pairs per pass), quantise to 8 bits,
            write the cache (an empty one): what the first evaluation of a fuser source costs per pair;
- detect:   the detector alone on images already in memory, batched (one source);
- evaluate: the evaluation engine (fusedet.evaluation.Evaluation) from scratch with sources ir, vi and the fuser (fresh output and
            cache folders): per pair, three detections, one fusion, cache writes, AP; plus the
            time of the AP stage alone.

`--weights yolov5xu.yaml` builds YOLOv5x with random weights: the same compute as the real
yolov5xu.pt (which is not downloadable here); the AP stage is then cheap (random weights give few
boxes), so the AP time of a real detector must be added: for 4200 images of 300 boxes each (M3FD
at conf 0.001) we measured, on one core here, 3 s to build the COCO results, 3 s to write the
108 MB json and 10 s in pycocotools, per source. The last line projects 4200 pairs (M3FD's count; use
--size 1024x768 for M3FD's size) through sources ir, vi and the fuser from the measured rates:
4200 / fuse + 3 * 4200 / detect + the AP time scaled, the stages one after the other as in
the engine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def bench_device(device: str, args) -> None:
    import dataclasses
    import json

    import torch

    from fusedet.datasets.registry import load_dataset
    from fusedet.detector import Detector
    from fusedet.evaluation import Evaluation
    from fusedet.settings import ReportSettings, RunSettings
    from fusedet.sources import parse_sources

    data = load_dataset("demo", args.root, seed=0, n_pairs=max(args.pairs, 10), size=args.size)
    records = [dataclasses.replace(r, split="test") for r in data.records[: args.pairs]]  # every chosen pair
    data = dataclasses.replace(data, records=records)
    fuser_source = parse_sources(args.fuser, device=device)[0]
    detector = Detector(args.weights, device, imgsz=args.imgsz, batch=args.batch)
    if str(args.weights).endswith((".yaml", ".yml")):  # random weights: name class i after dataset class i mod K
        detector.names = {i: data.classes[i % len(data.classes)] for i in detector.names}
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def timed(fn) -> float:
        sync()
        start = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - start

    scratch = tempfile.TemporaryDirectory(prefix="fusedet-pipeline-speed-")
    caches = iter(Path(scratch.name) / f"cache{i}" for i in range(1000))

    def run(**values) -> RunSettings:
        return RunSettings(workers=args.workers, fuse_batch=args.fuse_batch, device=device, **values)

    vi = parse_sources("vi")[0]
    images = [img for _, batch in vi.images(records, run(), args.batch) for img in batch]
    detector.detect(images[: args.batch], data.classes)  # warm-up (predictor start)

    def fused(chunk) -> None:
        for _ in fuser_source.images(chunk, run(cache_dir=next(caches)), args.batch):
            pass

    fused(records[: args.batch])  # warm-up (weights on the device, kernels)
    fuse_s = timed(lambda: fused(records))
    detect_s = timed(lambda: detector.detect(images, data.classes))

    with scratch:
        sources = parse_sources(["ir", "vi", args.fuser], device=device)
        out = Path(scratch.name) / "out"
        settings = run(split="test", cache_dir=next(caches))
        eval_s = timed(lambda: Evaluation(data, sources, detector, out, run=settings, report=ReportSettings(bootstrap=0)).run())
        ap_s = json.loads((out / "run.json").read_text())["timings_s"]["ap"]

    n = len(records)
    name = torch.cuda.get_device_name() if device.startswith("cuda") else f"cpu ({torch.get_num_threads()} threads)"
    h, w = records[0].height, records[0].width
    print(
        f"\n{name}: {n} pairs of {w}x{h}, fuser {args.fuser}, detector {detector.weights} (imgsz {detector.imgsz}), "
        f"batch {args.batch}, fuse batch {args.fuse_batch}"
    )
    print(f"  fuse     {n / fuse_s:8.2f} pairs/s   (read + fuse + 8-bit + cache write)")
    print(f"  detect   {n / detect_s:8.2f} pairs/s   (one source, images in memory)")
    print(f"  evaluate {n / eval_s:8.2f} pairs/s   (ir + vi + {args.fuser}: read, fuse, cache, 3 x detect, AP)")
    print(f"  AP stage {ap_s:8.2f} s for 3 sources")
    m3fd = 4200 / (n / fuse_s) + 3 * 4200 / (n / detect_s) + ap_s * 4200 / n
    print(f"  4200 pairs of {w}x{h} (M3FD's count) at these rates: {m3fd / 60:.1f} min")


def main(argv: list[str] | None = None) -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", nargs="+", default=None, help="cpu and/or cuda (default: cpu, plus cuda when present)")
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--size", default="320x256", help="demo image size WxH (M3FD: 1024x768)")
    parser.add_argument("--root", default=None, help="where the demo data is generated (default: the fusedet cache)")
    parser.add_argument("--fuser", default="dmnet")
    parser.add_argument("--weights", default="demo", help="detector weights: demo, a .pt, or a yaml (random weights)")
    parser.add_argument("--imgsz", type=int, default=None)
    parser.add_argument("--batch", type=int, default=8, help="images per detection pass")
    parser.add_argument("--fuse-batch", type=int, default=1, help="pairs per fusion pass")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    print(f"fusedet pipeline speed; torch {torch.__version__}, python {sys.version.split()[0]}")
    for device in devices:
        bench_device(device, args)


if __name__ == "__main__":
    main()
