"""A/B of XLA:CPU flags on jaxdiff's training step and network forward (fresh process each).

XLA reads ``XLA_FLAGS`` once, when its backend starts, so every variant runs in its own
process; rounds alternate the order of the variants so drifting load hits all alike. Each
process compiles the ``--preset`` U-Net twin's train step (as ``train_throughput``) and its
eps forward (the unit of every sampler step) and reports median times. Variants:

- ``default``: XLA's defaults (YNNPACK library fusions on);
- ``default_1core``: the same pinned to one core (``os.sched_setaffinity``): if it is as
  fast as ``default``, the default path does not use the second core;
- ``no_ynn_conv``: ``--xla_cpu_experimental_ynn_fusion_type=-individual_convolution``
  (convolutions go to XLA's own multi-threaded Eigen kernels, the rest stays on YNNPACK);
- ``no_ynn``: ``--xla_cpu_experimental_ynn_fusion_type=`` (no YNNPACK fusions at all).

Usage:
  python -m benchmarks.xla_flags --preset=mnist_small --batch=32 --sample_batch=16 \\
      --out=benchmarks/results/xla_flags_cpu.json
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

from jaxdiff import _xla_flags

VARIANTS = {
    "default": ("", None),
    "default_1core": ("", 1),
    "no_ynn_conv": ("--xla_cpu_experimental_ynn_fusion_type=-individual_convolution", None),
    "no_ynn": ("--xla_cpu_experimental_ynn_fusion_type=", None),
}


def probe(preset: str, batch: int, sample_batch: int, repeats: int) -> dict:
    """In this process: median seconds of a train step and of a forward, and compile times."""
    from benchmarks import cpu_profile, measure

    result = {}
    for what, build, size, k in (
        ("train", cpu_profile.compiled_train_step, batch, 3),
        ("forward", cpu_profile.compiled_forward, sample_batch, 10),
    ):
        compile_s = measure.timed(lambda b=build, s=size: result.update({what: b(preset, s)}))
        run, _ = result.pop(what)
        run(2)
        times = [measure.timed(lambda r=run, n=k: r(n)) / k for _ in range(repeats)]
        result[f"{what}_s"] = statistics.median(times)
        result[f"{what}_compile_s"] = compile_s
    return result


def run_variant(name: str, args) -> dict:
    flags, cores = VARIANTS[name]
    env = dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip())
    env[_xla_flags.OPT_OUT] = "0"  # exactly the variant's flags
    cmd = [sys.executable, "-m", "benchmarks.xla_flags", "--probe", f"--preset={args.preset}"]
    cmd += [f"--batch={args.batch}", f"--sample_batch={args.sample_batch}"]
    cmd += [f"--repeats={args.repeats}"] + ([f"--cores={cores}"] if cores else [])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=root, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(args) -> dict:
    from benchmarks import measure

    runs = {name: [] for name in args.variants}
    for r in range(args.rounds):
        order = args.variants if r % 2 == 0 else args.variants[::-1]
        for name in order:
            runs[name].append(run_variant(name, args))
            print(name, json.dumps(runs[name][-1]), flush=True)
    rows = {}
    for name, results in runs.items():
        rows[name] = {"flags": VARIANTS[name][0], "cores": VARIANTS[name][1] or os.cpu_count()}
        for key in results[0]:
            rows[name][key] = statistics.median(r[key] for r in results)
    base = rows.get("default")
    for row in rows.values():
        if base:
            row["train_speedup"] = base["train_s"] / row["train_s"]
            row["forward_speedup"] = base["forward_s"] / row["forward_s"]
    result = {
        "benchmark": "xla_flags",
        "preset": args.preset,
        "batch": args.batch,
        "sample_batch": args.sample_batch,
        "rounds": args.rounds,
        "device": measure.device_info(),
        "rows": rows,
    }
    if args.out:
        measure.write_json(args.out, result)
    return result


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="mnist_small")
    p.add_argument("--batch", type=int, default=32, help="training batch")
    p.add_argument("--sample_batch", type=int, default=16, help="forward batch")
    p.add_argument("--repeats", type=int, default=5, help="timed repetitions per process")
    p.add_argument("--rounds", type=int, default=2, help="processes per variant")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--probe", action="store_true", help="internal: measure in this process")
    p.add_argument("--cores", type=int, help="internal: pin the probe to this many cores")
    p.add_argument("--out")
    return p


if __name__ == "__main__":
    a = parser().parse_args()
    if a.probe:
        if a.cores:
            os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: a.cores])
        print(json.dumps(probe(a.preset, a.batch, a.sample_batch, a.repeats)))
    else:
        result = run(a)
        for name, row in result["rows"].items():
            print(
                f"{name:14s} train {row['train_s'] * 1e3:7.1f} ms ({row['train_speedup']:.2f}x)"
                f"  forward {row['forward_s'] * 1e3:6.1f} ms ({row['forward_speedup']:.2f}x)"
            )
