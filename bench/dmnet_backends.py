"""DMNet CPU inference backends side by side: eager (fusedet's), torch.compile (inductor), ONNX Runtime.

    python bench/dmnet_backends.py                          # all three, lite weights, 480x640, 1 thread
    python bench/dmnet_backends.py --backends eager,onnx --threads 2

The shipped lite weights (or --weights) on one random 480x640 pair. For each backend: the one-off
cost a user would pay (compile, or export + session creation) in wall seconds, then the CPU seconds
of this process per pass (``time.process_time``: robust to other processes on a shared machine,
unlike wall time) as the median of --repeats passes after a warm-up, and the largest difference to
the eager output. Passes of the backends alternate, so a drift in the machine's load falls on all.

- eager:   ``model(ir, vis)``, the code path of ``fusedet fuse``;
- compile: ``torch.compile`` of the same model (inductor's CPU backend, frozen weights);
- onnx:    the stage-II graph exported with ``torch.onnx.export`` (the latent noise as an input,
           drawn as ``model.forward`` draws it), run by ONNX Runtime's CPU provider with all graph
           optimisations (needs ``pip install onnxruntime onnx onnxscript``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path


def stage2_with_noise(model):
    """``model.forward`` with the latent noise as an argument (ONNX has no seeded generator)."""
    import torch

    from dmnet.latent import pad_to_multiple

    class Stage2(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, ir, vis, noise):
            m, b = self.model, ir.shape[0]
            base = m.encoder.base(torch.cat((ir, vis), 0))
            detail = m.encoder.detail(base)
            x = m.dm_in(torch.cat((base[:b], base[b:]), 1))
            dm = m.dm
            x0 = pad_to_multiple(x, dm.multiple)
            n_t = len(dm.timesteps)
            eps = noise.expand(n_t, b, *x0.shape[1:]).reshape(n_t * b, *x0.shape[1:])
            t = torch.tensor(dm.timesteps).repeat_interleave(b)
            feats = dm.unet.decoder_features(dm.schedule.q_sample(x0.repeat(n_t, 1, 1, 1), t, eps), t)
            latent = dm.fuse_features(feats, tuple(x.shape[-2:]))
            attended = m.encoder.attend(torch.cat((detail, latent), 0))
            return m.decoder(attended[:b] + attended[b:2 * b] + attended[2 * b:])

    return Stage2().eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="eager,compile,onnx")
    parser.add_argument("--weights", default=None, help="DMNet checkpoint (default: the shipped lite weights)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", default="480x640", help="H x W")
    args = parser.parse_args(argv)

    import torch

    import dmnet.kernels
    from fusedet.dmnet_fuser import DMNetFuser, keep_freed_memory

    torch.set_num_threads(args.threads)
    keep_freed_memory()
    height, width = (int(v) for v in args.size.lower().split("x"))
    model = DMNetFuser(args.weights, precision="fp32").model
    torch.manual_seed(0)
    ir, vis = torch.rand(1, 1, height, width), torch.rand(1, 1, height, width)
    with torch.inference_mode():
        reference = model(ir, vis)
    runners, setup = {}, {}
    for name in args.backends.split(","):
        start = time.perf_counter()
        if name == "eager":
            runners[name] = lambda: model(ir, vis)
        elif name == "compile":
            import torch._inductor.config as inductor

            inductor.freezing = True
            compiled = torch.compile(model)
            with torch.inference_mode():
                compiled(ir, vis)
            runners[name] = lambda compiled=compiled: compiled(ir, vis)
        elif name == "onnx":
            import onnxruntime as ort

            generator = torch.Generator().manual_seed(model.config.seed)
            multiple = model.dm.multiple
            padded = (-(-height // multiple) * multiple, -(-width // multiple) * multiple)
            noise = torch.randn((len(model.dm.timesteps), 1, 2, *padded), generator=generator)
            path = Path(tempfile.mkdtemp()) / "dmnet.onnx"
            saved, dmnet.kernels._ONEDNN = dmnet.kernels._ONEDNN, False  # export the plain operators
            try:
                with torch.no_grad():
                    torch.onnx.export(stage2_with_noise(model), (ir, vis, noise), str(path), dynamo=True,
                                      input_names=["ir", "vis", "noise"], output_names=["fused"])
            finally:
                dmnet.kernels._ONEDNN = saved
            options = ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            feed = {"ir": ir.numpy(), "vis": vis.numpy(), "noise": noise.numpy()}
            runners[name] = lambda session=session, feed=feed: torch.from_numpy(session.run(None, feed)[0])
        else:
            parser.error(f"unknown backend {name!r}")
        setup[name] = time.perf_counter() - start

    seconds: dict[str, list[float]] = {name: [] for name in runners}
    diff = {}
    with torch.inference_mode():
        for name, run in runners.items():  # warm-up
            diff[name] = (run() - reference).abs().max().item()
        for _ in range(args.repeats):
            for name, run in runners.items():
                start = time.process_time()
                run()
                seconds[name].append(time.process_time() - start)
    print(f"DMNet {height}x{width}, torch {torch.__version__}, {args.threads} thread(s); CPU seconds of this process per pass")
    print("| backend | one-off setup (s, wall) | CPU s / pass | x eager | max diff to eager |")
    print("|---|---:|---:|---:|---:|")
    base = statistics.median(seconds["eager"]) if "eager" in seconds else None
    for name in runners:
        cpu = statistics.median(seconds[name])
        ratio = f"{cpu / base:.2f}" if base else "-"
        print(f"| {name} | {setup[name]:.1f} | {cpu:.3f} | {ratio} | {diff[name]:.1e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
