"""A/B of JAX PRNG implementations on the real training step (fresh process each).

The implementation of a run's keys (``config.prng_impl``) decides how the noise, the
diffusion times, the label dropout and the dropout masks of every training step are drawn.
Each variant runs in its own process (``jax_default_prng_impl`` is read when keys are made;
a fresh process also keeps compile caches apart); rounds alternate the order of the variants
so that drifting load hits all alike. Each process builds the train step of ``--config``
exactly as ``python -m jaxdiff.train`` does (same network, loss, optimiser, EMA) on a fixed
synthetic batch and reports the median step time, plus the time of the random draws alone
(noise of the batch's shape and dropout-sized bits).

Usage:
  python -m benchmarks.prng --config=configs/mnist_release.py --rounds=2 \\
      --out=benchmarks/results/prng_cpu.json
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")


def load_config(spec: str):
    """``get_config(arg)`` of a ``path.py[:arg]`` config file."""
    import importlib.util

    path, _, arg = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location("bench_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg or None)


def probe(config_path: str, impl: str, repeats: int, steps: int) -> dict:
    """In this process: median seconds of a train step and of the random draws alone."""
    import jax
    import numpy as np

    from benchmarks import measure
    from jaxdiff.training import components
    from jaxdiff.training import state as state_lib
    from jaxdiff.training import step as step_lib

    config = load_config(config_path)
    config.prng_impl = impl
    mesh = state_lib.make_mesh()
    process, net = components.build_process(config), components.build_model(config)
    step_fn, imp_state = components.make_train_step(config, net, process)
    step_fn = step_lib.jit_train_step(step_fn, mesh)
    params = components.init_params(config, net, jax.random.key(0, impl=impl))
    tx = components.build_optimizer(config)
    state = state_lib.create(params, tx, config.optim.ema_decays, 0, imp_state, prng_impl=impl)
    b = config.data.batch_size
    rng = np.random.default_rng(0)
    batch = {"image": rng.uniform(-1, 1, components.example_shape(config, b)).astype("f4")}
    if components.num_classes(config):
        batch["label"] = rng.integers(0, components.num_classes(config), b).astype("i4")
    batch = state_lib.global_batch(batch, mesh)
    box = {"state": state}

    def run():
        for _ in range(steps):
            box["state"], metrics = step_fn(box["state"], batch)
        jax.block_until_ready(metrics["loss"])

    compile_s = measure.timed(run)
    step_s = statistics.median(measure.timed(run) / steps for _ in range(repeats))
    # The draws alone: the batch's noise and a dropout-sized Bernoulli mask, 10 keys.
    shape = components.example_shape(config, b)

    @jax.jit
    def draws(key):
        keys = jax.random.split(key, 10)
        noise = jax.vmap(lambda k: jax.random.normal(k, shape))(keys)
        mask = jax.vmap(lambda k: jax.random.bernoulli(k, 0.9, (b, 28, 28, 64)))(keys)
        return noise.sum() + mask.sum()

    key = jax.random.key(1, impl=impl)
    jax.block_until_ready(draws(key))
    draw_s = statistics.median(
        measure.timed(lambda: jax.block_until_ready(draws(key))) / 10 for _ in range(repeats)
    )
    return {"step_s": step_s, "first_call_s": compile_s, "draws_s": draw_s, "batch": b}


def run_variant(impl: str, args) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.prng", "--probe", f"--impl={impl}"]
    cmd += [f"--config={args.config}", f"--repeats={args.repeats}", f"--steps={args.steps}"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(args) -> dict:
    from benchmarks import measure

    rounds = {impl: [] for impl in IMPLS}
    for r in range(args.rounds):
        order = IMPLS if r % 2 == 0 else IMPLS[::-1]
        for impl in order:
            rounds[impl].append(run_variant(impl, args))
            print(impl, rounds[impl][-1], flush=True)
    result = {"device": measure.device_info(), "config": args.config, "variants": {}}
    base = statistics.median(x["step_s"] for x in rounds["threefry2x32"])
    for impl, runs in rounds.items():
        step = statistics.median(x["step_s"] for x in runs)
        result["variants"][impl] = {
            "step_s": step,
            "draws_s": statistics.median(x["draws_s"] for x in runs),
            "speedup_vs_threefry": base / step,
            "runs": runs,
        }
    return result


def summary(result: dict) -> str:
    lines = [
        f"PRNG A/B, train step of `{result['config']}`, {result['device'].get('cpu', '')}:",
        "",
        "| implementation | step | step speedup vs threefry | draws alone |",
        "| --- | --- | --- | --- |",
    ]
    for impl, v in result["variants"].items():
        lines.append(
            f"| {impl} | {v['step_s'] * 1e3:.0f} ms | {v['speedup_vs_threefry']:.3f}x "
            f"| {v['draws_s'] * 1e3:.1f} ms |"
        )
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/mnist_release.py")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--impl", default="threefry2x32")
    p.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", default="")
    return p


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    from jaxdiff import _xla_flags

    _xla_flags.apply_cpu_defaults()
    if args.probe:
        print(json.dumps(probe(args.config, args.impl, args.repeats, args.steps)))
        return
    result = run(args)
    print(summary(result))
    if args.out:
        from benchmarks import measure

        measure.write_json(args.out, result)


if __name__ == "__main__":
    main()
