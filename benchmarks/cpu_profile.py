"""Where the time of a jaxdiff step goes: a jax.profiler trace, attributed to compiled HLO ops.

Traces a few training steps (or network forwards, the unit of sampling) of a U-Net twin,
reads the trace with ``jax.profiler.ProfileData`` (no TensorBoard needed), matches each
event to its instruction in the compiled HLO and sums the time per category:

- ``conv 3x3`` / ``conv 1x1``: convolutions with a small window, i.e. forward passes and
  input gradients;
- ``conv weight-gradient``: XLA writes dL/dW as a convolution whose window is the whole
  feature map (28x28, 14x14, 7x7 here);
- ``transpose``: layout copies; on XLA:CPU mostly the (B, H, W, C) -> (C, H, W, B) copies
  that feed the weight-gradient convolutions;
- ``dot``, ``reduce`` (GroupNorm statistics, loss), ``random bits`` (threefry for noise,
  t and dropout masks), ``elementwise`` (the rest: activations, norms, Adam).

Times are summed over XLA's threads, so a category's share is of busy thread time. XLA's
own (Eigen) convolutions, used when YNNPACK's are turned off (see ``benchmarks/xla_flags.py``),
emit no per-op trace event: wall time not covered by traced ops is reported as
``untraced (Eigen convolutions)``. With
``--torch``, torch.profiler's top ops of the diffusers twin's step are recorded beside it.

Usage:
  python -m benchmarks.cpu_profile --preset=mnist_small --batch=32 --what=train \\
      --out=benchmarks/results/cpu_profile_train.json
"""

import argparse
import collections
import glob
import re
import tempfile

import jax
import jax.numpy as jnp

from benchmarks import measure, sampling_throughput, train_throughput, twins
from jaxdiff import _xla_flags

_INSTRUCTION = re.compile(r"\s*(?:ROOT )?%?([\w.\-]+) = (\S+) ([\w\-]+)\(")
_COMPUTATION = re.compile(r"^(?:ENTRY )?%?([\w.\-]+) .*?\{\n(.*?)\n\}", re.S | re.M)
_CONV_WINDOW = re.compile(r"convolution\(.*?window=\{size=(\d+)x(\d+)")


def categorize(body: str) -> str:
    """The category of an HLO instruction (or of a fusion, given its computation's text)."""
    window = _CONV_WINDOW.search(body)
    if window:
        h, w = int(window.group(1)), int(window.group(2))
        return f"conv {h}x{w}" if max(h, w) <= 3 else "conv weight-gradient"
    for pattern, name in (
        (r"\bdot\(", "dot"),
        (r"\btranspose\(", "transpose"),
        (r"\breduce\(", "reduce"),
        (r"\bu32\[", "random bits"),
    ):
        if re.search(pattern, body):
            return name
    return "elementwise"


def hlo_categories(hlo_text: str) -> dict[str, str]:
    """Instruction name -> category, for every instruction of a compiled module's text."""
    bodies = {m.group(1): m.group(2) for m in _COMPUTATION.finditer(hlo_text)}
    names = {}
    for line in hlo_text.splitlines():
        m = _INSTRUCTION.match(line)
        if not m:
            continue
        called = re.search(r"calls=%?([\w.\-]+)", line)
        body = bodies.get(called.group(1), line) if called else line
        names[m.group(1)] = categorize(body)
    return names


def traced_op_times(trace_dir: str, names: dict[str, str]) -> collections.Counter:
    """Seconds per HLO instruction (summed over threads) in a jax.profiler trace."""
    (path,) = glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)
    times = collections.Counter()
    for plane in jax.profiler.ProfileData.from_file(path).planes:
        for line in plane.lines:
            for event in line.events:
                if event.name in names:
                    times[event.name] += event.duration_ns * 1e-9
    return times


def compiled_train_step(preset: str, batch: int):
    """(run(k), compiled) for the train step of train_throughput (same network, loss, Adam)."""
    _, net, variables, shape = twins.unet_pair(preset)
    dropout = twins.UNET_CONFIGS[preset]["dropout"] > 0
    run, _, _, compiled = train_throughput.jax_side(net, variables, shape, batch, 0, dropout)
    return run, compiled


def compiled_forward(preset: str, batch: int):
    """(run(k), compiled) for one eps-network forward, the unit of every sampler step."""
    _, net, variables, shape = twins.unet_pair(preset)
    apply = sampling_throughput.make_eps_fn(net)
    x = jax.random.normal(jax.random.key(1), (batch, *shape))
    t = jnp.full((batch,), 0.5)
    compiled = jax.jit(apply).lower(variables["params"], x, t).compile()

    def run(k: int):
        for _ in range(k):
            out = compiled(variables["params"], x, t)
        return out.block_until_ready()

    return run, compiled


def profile(run, compiled, steps: int) -> dict:
    """Traces ``steps`` calls; returns per-category and top-op times per call."""
    run(2)  # warm
    names = hlo_categories(compiled.as_text())
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir):
            wall = measure.timed(lambda: run(steps))
        times = traced_op_times(trace_dir, names)
    per_category = collections.Counter()
    for name, seconds in times.items():
        per_category[names[name]] += seconds / steps
    traced = sum(per_category.values())
    # XLA's own Eigen convolutions emit no per-op trace event: wall time not covered by
    # traced ops is reported as such (an estimate: traced ops may overlap on threads).
    per_category["untraced (Eigen convolutions)"] = max(wall / steps - traced, 0.0)
    total = sum(per_category.values())
    return {
        "wall_s_per_call": wall / steps,
        "op_s_per_call": traced,
        "categories": {k: {"s": v, "share": v / total} for k, v in per_category.most_common()},
        "top_ops": [
            {"op": n, "category": names[n], "s": s / steps} for n, s in times.most_common(15)
        ],
    }


def run(args) -> dict:
    build = {"train": compiled_train_step, "forward": compiled_forward}[args.what]
    result = {
        "benchmark": "cpu_profile",
        "preset": args.preset,
        "batch": args.batch,
        "what": args.what,
        "device": measure.device_info(),
        "jaxdiff": profile(*build(args.preset, args.batch), args.steps),
    }
    if args.torch and args.what == "train":
        model, _, _, shape = twins.unet_pair(args.preset)
        measure.set_torch_threads(None)
        opts = {"device": "cpu", "bf16": False, "compile": False}
        step, one = train_throughput.make_torch_step(model, args.batch, shape, 0, opts)
        step(2)
        result["diffusers_top_ops"] = train_throughput.torch_top_ops(one, False, limit=15)
    if args.out:
        measure.write_json(args.out, result)
    return result


def summary(result: dict) -> str:
    prof = result["jaxdiff"]
    lines = [
        f"{result['what']} {result['preset']} batch {result['batch']}: "
        f"{prof['wall_s_per_call'] * 1e3:.1f} ms/call, op time {prof['op_s_per_call'] * 1e3:.1f} ms"
    ]
    for name, row in prof["categories"].items():
        lines.append(f"  {name:24s} {row['s'] * 1e3:8.1f} ms  {row['share']:6.1%}")
    for row in result.get("diffusers_top_ops", []):
        lines.append(f"  torch {row['op']:32s} {row['self_ms']:8.1f} ms  {row['share']:6.1%}")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="mnist_small", help=str(sorted(twins.UNET_CONFIGS)))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--what", choices=["train", "forward"], default="train")
    p.add_argument("--steps", type=int, default=3, help="traced calls")
    p.add_argument("--torch", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--out")
    return p


if __name__ == "__main__":
    _xla_flags.apply_cpu_defaults()  # what jaxdiff's entry points run with
    print(summary(run(parser().parse_args())))
