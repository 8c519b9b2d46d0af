"""A/B measurements of performance practices on jaxdiff's training step and sampler.

Each A/B runs both variants in the same process, in alternating repetitions, on the
``--preset`` U-Net twin (see :mod:`benchmarks.twins`):

- ``donation``: train step with the state donated (``donate_argnums=0``) vs not: step time
  and XLA's memory analysis (arguments + outputs + temporaries - aliased bytes).
- ``host_sync``: reading the loss on the host after every step vs once per repetition.
- ``bf16``: bfloat16 compute (float32 parameters) vs float32 compute.
- ``scan_sampling``: DDIM 50 steps as one compiled ``lax.scan`` (``samplers.sample``) vs a
  Python loop dispatching a jitted step 50 times: first-call (compile) and steady times, and
  the largest difference of their outputs (same algorithm, same noise).
- ``compile_cache``: the train step's compile time in fresh processes without a cache, with
  a cold persistent cache and with a warm one
  (``jax.config.update("jax_compilation_cache_dir", DIR)``).

Usage:
  python -m benchmarks.practices --preset=mnist_small --batch=32 \\
      --out=benchmarks/results/practices_cpu.json
"""

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import measure, sampling_throughput, train_throughput, twins  # noqa: E402
from jaxdiff import _xla_flags, schedules  # noqa: E402
from jaxdiff.samplers import grids  # noqa: E402


def _ab_train(args, variants: dict) -> dict:
    """Times train-step variants (name -> jax_side kwargs) alternately; returns rows."""
    _, net, variables, shape = twins.unet_pair(args.preset)
    dropout = twins.UNET_CONFIGS[args.preset]["dropout"] > 0
    runs, rows = {}, {}
    for name, kw in variants.items():
        kw = dict(kw)
        dtype = kw.pop("dtype", jnp.float32)
        run, compile_s, cost, _ = train_throughput.jax_side(
            net.clone(dtype=dtype), variables, shape, args.batch, 0, dropout, **kw
        )
        run(1)
        runs[name] = lambda r=run: r(args.steps_per_rep)
        rows[name] = {"compile_s": compile_s, "xla_memory_bytes": cost["xla_memory_bytes"]}
    for name, t in measure.alternate(runs, args.repeats).items():
        rows[name]["step_s"] = t["median_s"] / args.steps_per_rep
        rows[name]["rep_times_s"] = t["all_s"]
    return rows


def ab_donation(args) -> dict:
    return _ab_train(args, {"donated": {"donate": True}, "not_donated": {"donate": False}})


def ab_host_sync(args) -> dict:
    return _ab_train(args, {"sync_once": {}, "sync_every_step": {"sync_every": 1}})


def ab_bf16(args) -> dict:
    return _ab_train(args, {"float32": {}, "bfloat16": {"dtype": jnp.bfloat16}})


@functools.cache
def _ddim_step(apply):
    """One jitted DDIM (eta = 0) step per model function (compiled once, then reused)."""

    @jax.jit
    def step(params, x, t, a, a_prev):
        eps = apply(params, x, jnp.full((x.shape[0],), t))
        x0 = (x - jnp.sqrt(1 - a) * eps) / jnp.sqrt(a)
        return jnp.sqrt(a_prev) * x0 + jnp.sqrt(1 - a_prev) * eps

    return step


def python_loop_ddim(apply, params, x_init, num_steps: int):
    """DDIM (eta = 0, leading spacing, final alpha_bar = 1) as a Python loop of jitted steps."""
    schedule = schedules.DiscreteSchedule.from_name("linear", num_steps=1000)
    times = np.asarray(grids.discrete(schedule, num_steps, spacing="leading").times)
    abar = np.asarray(schedule.alphas_cumprod)
    alpha = lambda t: 1.0 if t == 0 else float(abar[round(t * 1000) - 1])  # noqa: E731

    step = _ddim_step(apply)
    x = jnp.asarray(x_init)
    for t, t_next in zip(times[:-1], times[1:], strict=True):
        x = step(params, x, jnp.float32(t), alpha(t), alpha(t_next))
    return np.asarray(x)


def ab_scan_sampling(args) -> dict:
    """samplers.sample's lax.scan DDIM vs a Python loop of jitted steps, 50 steps."""
    _, net, variables, shape = twins.unet_pair(args.preset)
    full = (args.sample_batch, *shape)
    x_init = np.asarray(jax.random.normal(jax.random.key(1), full))
    apply = sampling_throughput.make_eps_fn(net)
    params = variables["params"]
    scan = sampling_throughput.jax_sampler(apply, params, full, "ddim", 50, spacing="leading")
    runs = {
        "scan": lambda: scan(x_init)[0],
        "python_loop": lambda: python_loop_ddim(apply, params, x_init, 50),
    }
    rows, outs = {}, {}
    for name, fn in runs.items():
        rows[name] = {"first_call_s": measure.timed(lambda n=name, f=fn: outs.update({n: f()}))}
    for name, t in measure.alternate(runs, args.repeats).items():
        rows[name]["seconds"] = t["median_s"]
        rows[name]["rep_times_s"] = t["all_s"]
    scale = np.max(np.abs(outs["scan"]))
    rows["max_rel_diff"] = float(np.max(np.abs(outs["scan"] - outs["python_loop"])) / scale)
    return rows


def compile_probe(preset: str, batch: int, cache_dir: str | None) -> dict:
    """In this (fresh) process: trace+lower and compile times of the train step."""
    if cache_dir:
        jax.config.update("jax_compilation_cache_dir", cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    import optax

    from jaxdiff.models import convert

    cfg = twins.UNET_CONFIGS[preset]
    net = convert.unet_from_config(cfg)
    shape = (cfg["sample_size"], cfg["sample_size"], cfg["in_channels"])
    x = jnp.zeros((batch, *shape))
    params = jax.jit(net.init)({"params": jax.random.key(0)}, x[:1], jnp.zeros((1,)))["params"]
    tx = optax.adam(1e-4)
    state = {"params": params, "opt_state": tx.init(params), "step": jnp.int32(0)}
    schedule = schedules.DiscreteSchedule.from_name("linear", num_steps=1000)
    step = train_throughput.make_jax_step(net, schedule, tx, 0, cfg["dropout"] > 0)
    start = time.perf_counter()
    lowered = step.lower(state, x)
    lower_s = time.perf_counter() - start
    compile_s = measure.timed(lowered.compile)
    return {"lower_s": lower_s, "compile_s": compile_s}


def ab_compile_cache(args) -> dict:
    """Compile times in fresh processes: no cache, cold cache, warm cache."""
    rows = {}
    with tempfile.TemporaryDirectory() as cache:
        for name, cache_dir in (("no_cache", ""), ("cold_cache", cache), ("warm_cache", cache)):
            cmd = [
                sys.executable,
                "-m",
                "benchmarks.practices",
                "--probe",
                f"--preset={args.preset}",
                f"--batch={args.batch}",
                f"--cache_dir={cache_dir}",
            ]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=_root())
            rows[name] = json.loads(out.stdout.strip().splitlines()[-1])
        rows["cache_files"] = len(os.listdir(cache))
    return rows


def _root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


ABS = {
    "donation": ab_donation,
    "host_sync": ab_host_sync,
    "bf16": ab_bf16,
    "scan_sampling": ab_scan_sampling,
    "compile_cache": ab_compile_cache,
}


def run(args) -> dict:
    unknown = sorted(set(args.only) - set(ABS))
    if unknown:
        raise ValueError(f"Unknown A/B names {unknown}; valid: {sorted(ABS)}.")
    result = {
        "benchmark": "practices",
        "preset": args.preset,
        "batch": args.batch,
        "sample_batch": args.sample_batch,
        "device": measure.device_info(),
    }
    for name in args.only:
        result[name] = ABS[name](args)
        print(name, json.dumps(result[name], default=float))
    result["device_after"] = {"load_average": os.getloadavg()}
    if args.out:
        measure.write_json(args.out, result)
    return result


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="mnist_small", help=str(sorted(twins.UNET_CONFIGS)))
    p.add_argument("--batch", type=int, default=32, help="training batch")
    p.add_argument("--sample_batch", type=int, default=16)
    p.add_argument("--steps_per_rep", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--only", nargs="+", default=list(ABS), help=str(list(ABS)))
    p.add_argument("--probe", action="store_true", help="internal: one compile measurement")
    p.add_argument("--cache_dir", default="")
    p.add_argument("--out")
    return p


if __name__ == "__main__":
    _xla_flags.apply_cpu_defaults()  # what jaxdiff's entry points run with
    a = parser().parse_args()
    if a.probe:
        print(json.dumps(compile_probe(a.preset, a.batch, a.cache_dir or None)))
    else:
        run(a)
