"""Sample quality per number of network evaluations (NFE) on MNIST, per sampler.

Three resumable phases in one ``--workdir``:

1. train: jaxdiff's ``unet_28x28`` U-Net, eps loss on the linear 1000-step schedule, Adam
   with parameter EMA, within ``--time_budget_s`` per run (default 8 minutes), until
   ``--train_steps``; orbax checkpoints (params, EMA, optimiser state, step). The data live
   on the device and each step draws its batch with ``fold_in(key, step)``, so a resumed run
   continues exactly as an uninterrupted one and the loop has no host syncs.
2. sample: ``--num_samples`` EMA samples per setting (DDIM 10/20/50, Heun 9/17/35 NFE,
   DPM-Solver++ 10/20, ancestral DDPM 1000), saved as uint8 ``samples/<setting>.npz``;
   existing files are kept, so an interrupted run resumes per setting.
3. evaluate: Frechet distance of each setting's samples to the 10,000 MNIST test images on
   the features of ``--features`` (see :mod:`benchmarks.fid_features`: the standard
   Inception FID where ``jaxdiff.evaluation.fid`` exists, else a small MNIST classifier's
   features, which are not comparable with published FIDs), plus the floor: MNIST train
   (same count) vs test. Writes a JSON table and a plot.

Usage (GPU; rerun the same command until the JSON appears, each run <= 8 min of training):
  python -m benchmarks.quality_vs_nfe --workdir=/tmp/qnfe --data_dir=/work/shared/tfds \\
      --out=benchmarks/results/quality_vs_nfe_gpu.json
CPU smoke (not real numbers):
  python -m benchmarks.quality_vs_nfe --workdir=/tmp/qnfe_smoke --preset=unet_8x8 \\
      --train_steps=20 --batch=16 --num_samples=64 --limit=1000 --classifier_steps=50 \\
      --settings ddim_10 heun_9 --out=benchmarks/results/quality_vs_nfe_cpu_smoke.json
"""

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

from benchmarks import fid_features, measure
from jaxdiff import _xla_flags, losses, models, samplers, schedules

NUM_TRAIN_STEPS = 1000
SETTINGS = {  # name -> (method, num_steps, options); NFE = info["nfe"]
    "ddim_10": ("ddim", 10, {}),
    "ddim_20": ("ddim", 20, {}),
    "ddim_50": ("ddim", 50, {}),
    "heun_9": ("ode_heun", 5, {}),
    "heun_17": ("ode_heun", 9, {}),
    "heun_35": ("ode_heun", 18, {}),
    "dpmpp_10": ("dpm_solver++", 10, {}),
    "dpmpp_20": ("dpm_solver++", 20, {}),
    "ddpm_1000": ("ddpm", 1000, {}),
}


def load_mnist(split: str, data_dir: str | None, limit: int | None = None):
    """MNIST ``split`` from TFDS as (uint8 (N, 28, 28, 1), int32 (N,)), the first ``limit``."""
    import tensorflow_datasets as tfds

    source = tfds.data_source("mnist", split=split, data_dir=data_dir)
    n = len(source) if limit is None else min(limit, len(source))
    records = source.__getitems__(list(range(n)))
    images = np.stack([r["image"] for r in records]).astype(np.uint8)
    return images, np.array([r["label"] for r in records], np.int32)


def cached_mnist(args, split: str):
    """``load_mnist`` through a tensors-only cache in the workdir (decoding takes ~1 min)."""
    path = os.path.join(args.workdir, f"mnist_{split}_{args.limit or 'all'}.npz")
    if os.path.exists(path):
        with np.load(path, allow_pickle=False) as f:
            return f["images"], f["labels"]
    images, labels = load_mnist(split, args.data_dir, args.limit)
    os.makedirs(args.workdir, exist_ok=True)
    np.savez(path, images=images, labels=labels)
    return images, labels


def noise_input(t):
    """Process time t = (i + 1) / N -> the U-Net's timestep input i (fractional between)."""
    return t * NUM_TRAIN_STEPS - 1.0


def make_train_step(net, tx, ema_decay: float, batch: int):
    """``step(state, data) -> (state, loss)`` with donated state; draws its own batch."""
    schedule = schedules.DiscreteSchedule.from_name("linear", num_steps=NUM_TRAIN_STEPS)
    loss_fn = losses.make_loss("eps", schedule)

    def step(state, data):
        key = jax.random.fold_in(jax.random.key(0), state["step"])
        k_idx, k_loss, k_drop = jax.random.split(key, 3)
        idx = jax.random.randint(k_idx, (batch,), 0, data.shape[0])
        x0 = data[idx].astype(jnp.float32) / 127.5 - 1.0

        def objective(params):
            def model_fn(x, t):
                return net.apply(
                    {"params": params}, x, noise_input(t), train=True, rngs={"dropout": k_drop}
                )

            return loss_fn(model_fn, k_loss, x0)[0]

        loss, grads = jax.value_and_grad(objective)(state["params"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        ema = optax.incremental_update(params, state["ema"], 1.0 - ema_decay)
        new = {"params": params, "ema": ema, "opt_state": opt_state, "step": state["step"] + 1}
        return new, loss

    return jax.jit(step, donate_argnums=0)


def _init_state(net, tx):
    params = net.init({"params": jax.random.key(0)}, jnp.zeros((1, 28, 28, 1)), jnp.zeros((1,)))
    params = params["params"]
    return {
        "params": params,
        "ema": jax.tree.map(jnp.copy, params),
        "opt_state": tx.init(params),
        "step": jnp.int32(0),
    }


def _manager(workdir: str) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        preservation_policy=ocp.checkpoint_managers.LatestN(n=2),
        enable_async_checkpointing=False,
    )
    return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "ckpt"), options=options)


def train(args, net, images: np.ndarray) -> dict:
    """Trains (resuming from the workdir) until train_steps or the time budget; returns info."""
    tx = optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.adam(optax.linear_schedule(0.0, args.lr, args.warmup)),
    )
    manager = _manager(args.workdir)
    state = _init_state(net, tx)
    if manager.latest_step() is not None:
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
        state = manager.restore(manager.latest_step(), args=ocp.args.StandardRestore(abstract))
    start_step = int(state["step"])
    step = make_train_step(net, tx, args.ema_decay, args.batch)
    data = jnp.asarray(images)
    start, loss = time.perf_counter(), float("nan")
    while int(state["step"]) < args.train_steps:
        chunk = min(args.log_every, args.train_steps - int(state["step"]))
        for _ in range(chunk):
            state, loss = step(state, data)
        loss = float(loss)  # one host sync per chunk
        if not np.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {int(state['step'])}.")
        print(f"step {int(state['step'])} loss {loss:.4f} {time.perf_counter() - start:.0f} s")
        if time.perf_counter() - start > args.time_budget_s:
            break
    if int(state["step"]) != start_step:
        manager.save(int(state["step"]), args=ocp.args.StandardSave(state), force=True)
        manager.wait_until_finished()
    return {
        "step": int(state["step"]),
        "steps_this_run": int(state["step"]) - start_step,
        "seconds_this_run": time.perf_counter() - start,
        "last_loss": loss,
        "ema": state["ema"],
    }


def generate(args, net, ema, name: str) -> dict:
    """Samples one setting into samples/<name>.npz (kept if present); returns its info."""
    path = os.path.join(args.workdir, "samples", f"{name}.npz")
    if os.path.exists(path):
        with np.load(path, allow_pickle=False) as f:
            return {"nfe": int(f["nfe"]), "seconds": float(f["seconds"]), "cached": True}
    method, num_steps, options = SETTINGS[name]
    schedule = schedules.DiscreteSchedule.from_name("linear", num_steps=NUM_TRAIN_STEPS)
    model_fn = jax.tree_util.Partial(_apply_for(net), ema)
    out, start, nfe = [], time.perf_counter(), 0
    for i in range(0, args.num_samples, args.sample_batch):
        x, info = samplers.sample(
            jax.random.fold_in(jax.random.key(1), i),
            model_fn,
            schedule,
            (args.sample_batch, 28, 28, 1),
            method=method,
            num_steps=num_steps,
            kind="eps",
            **options,
        )
        out.append(np.asarray(jnp.round((jnp.clip(x, -1, 1) + 1) * 127.5).astype(jnp.uint8)))
        nfe = int(info["nfe"])
    seconds = time.perf_counter() - start
    os.makedirs(os.path.dirname(path), exist_ok=True)
    images = np.concatenate(out)[: args.num_samples]
    np.savez(path, images=images, nfe=nfe, seconds=seconds)
    return {"nfe": nfe, "seconds": seconds, "cached": False}


_APPLY = {}


def _apply_for(net):
    """One apply function per network (samplers cache compilations by its identity)."""
    if net not in _APPLY:
        _APPLY[net] = lambda params, x, t: net.apply({"params": params}, x, noise_input(t))
    return _APPLY[net]


def evaluate(args, names, train_data, test_images) -> dict:
    """Frechet distances of each setting's samples and of the train-vs-test floor."""
    images, labels = train_data
    features, info = fid_features.build(
        args.features, args.workdir, images, labels, steps=args.classifier_steps
    )
    test_f = features(test_images)
    n = min(args.num_samples, len(images))
    out = {
        "features": info,
        "floor_train_vs_test": fid_features.fd_from_features(features(images[:n]), test_f),
    }
    for name in names:
        with np.load(os.path.join(args.workdir, "samples", f"{name}.npz")) as f:
            out[name] = fid_features.fd_from_features(features(f["images"]), test_f)
    return out


def plot(result: dict, path: str) -> None:
    """Frechet distance vs NFE per sampler family, the floor as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    families = {}
    for name, row in result["settings"].items():
        families.setdefault(name.rsplit("_", 1)[0], []).append((row["nfe"], row["fd"]))
    for family, points in families.items():
        nfe, fd = zip(*sorted(points), strict=True)
        ax.plot(nfe, fd, "o-", label=family)
    ax.axhline(result["floor_train_vs_test"], color="gray", ls="--", label="train vs test")
    ax.set(xscale="log", xlabel="NFE", ylabel=f"FD ({result['features']['backend']})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args) -> dict | None:
    """All three phases; returns the results (None while training is unfinished)."""
    unknown = sorted(set(args.settings) - set(SETTINGS))
    if unknown:
        raise ValueError(f"Unknown settings {unknown}; valid settings: {sorted(SETTINGS)}.")
    dtype = jnp.dtype(args.dtype or ("bfloat16" if jax.default_backend() == "gpu" else "float32"))
    net = models.create(args.preset, dtype=dtype)
    train_images, train_labels = cached_mnist(args, "train")
    trained = train(args, net, train_images)
    if trained["step"] < args.train_steps:
        print(f"Training at step {trained['step']}/{args.train_steps}: rerun to resume.")
        return None
    ema = trained.pop("ema")
    settings = {name: generate(args, net, ema, name) for name in args.settings}
    test_images, _ = cached_mnist(args, "test")
    fds = evaluate(args, args.settings, (train_images, train_labels), test_images)
    for name in args.settings:
        settings[name]["fd"] = fds.pop(name)
    result = {
        "benchmark": "quality_vs_nfe",
        "device": measure.device_info(),
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "training": trained,
        "settings": settings,
        **fds,
    }
    if args.out:
        measure.write_json(args.out, result)
        plot(result, os.path.splitext(args.out)[0] + ".png")
    return result


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--data_dir", default=os.environ.get("TFDS_DATA_DIR", "/work/shared/tfds"))
    p.add_argument("--preset", default="unet_28x28", help="a jaxdiff models preset")
    p.add_argument("--dtype", choices=["float32", "bfloat16"])
    p.add_argument("--train_steps", type=int, default=30_000)
    p.add_argument("--time_budget_s", type=float, default=480.0, help="training per run")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--ema_decay", type=float, default=0.999)
    p.add_argument("--log_every", type=int, default=500)
    p.add_argument("--num_samples", type=int, default=10_000)
    p.add_argument("--sample_batch", type=int, default=1000)
    p.add_argument("--settings", nargs="+", default=list(SETTINGS))
    p.add_argument("--features", default="classifier", help=str(sorted(fid_features.FEATURES)))
    p.add_argument("--classifier_steps", type=int, default=3000)
    p.add_argument("--limit", type=int, help="use only the first N images of each split")
    p.add_argument("--out", help="results JSON path (a .png plot is written beside it)")
    return p


if __name__ == "__main__":
    _xla_flags.apply_cpu_defaults()  # what jaxdiff's entry points run with
    res = run(parser().parse_args())
    if res is not None:
        print(json.dumps({k: res[k] for k in ("settings", "floor_train_vs_test")}, indent=1))
