"""Training throughput and MFU: jaxdiff vs PyTorch diffusers, same network, same run.

Both sides train with the DDPM eps loss (linear schedule, 1000 steps, uniform t) and Adam
(lr 2e-4) on a fixed synthetic batch held on the device (the network is measured, not a data
pipeline). jaxdiff: one ``jax.jit`` step with donated state, AOT-compiled, noise and t drawn
inside; bf16 compute with float32 parameters via ``--dtype=bfloat16``. PyTorch: the
diffusers training-example step (``add_noise``, forward, MSE, backward, ``Adam.step``),
float32 on CPU, bf16 autocast + ``torch.compile`` + fused Adam on GPU (flags toggle them).
The two sides' timed repetitions alternate (A B A B ...) so load changes hit both alike.

U-Nets are literally the same network (diffusers weights imported into jaxdiff, parameter
counts checked). DiTs are the same size but diffusers' DiTTransformer2DModel embeds t and y
in every block (749.8M parameters at XL/2 vs 675M): compare them per FLOP.

Reported per batch size: step time, images/s, compile time (jax: lower + compile; torch:
first step, which includes torch.compile), FLOPs per step (XLA cost analysis; torch's
FlopCounterMode counts matmuls/convs/attention only), MFU = FLOPs per step / (step time x
peak), peak memory (GPU allocators; on CPU XLA's memory analysis of the step only). With
``--profile=DIR``: torch.profiler's top ops of one diffusers step go into the JSON and a
jax.profiler trace of two jaxdiff steps into DIR (open with TensorBoard or Perfetto).

Usage:
  # CPU (committed result; a few minutes on 2 cores):
  python -m benchmarks.train_throughput --preset=mnist_small --batch 32 64 \\
      --out=benchmarks/results/train_throughput_cpu.json
  # GPU:
  python -m benchmarks.train_throughput --preset=ddpm_cifar10 --batch 64 128 256 \\
      --out=benchmarks/results/train_throughput_gpu_unet.json
  python -m benchmarks.train_throughput --preset=dit_xl_2 --batch 32 64 128 \\
      --out=benchmarks/results/train_throughput_gpu_dit_xl_2.json
"""

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # torch shares the GPU

import argparse  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from benchmarks import measure, twins  # noqa: E402
from jaxdiff import _xla_flags, losses, schedules  # noqa: E402

NUM_TRAIN_STEPS = 1000
LEARNING_RATE = 2e-4
PRESETS = sorted(twins.UNET_CONFIGS) + sorted(twins.DIT_CONFIGS)


def noise_input(t, num_steps: int = NUM_TRAIN_STEPS):
    """Process time t = (i + 1) / N -> the network's timestep index i (diffusers' input)."""
    return jnp.round(t * num_steps) - 1.0


def make_jax_step(net, schedule, tx, num_classes: int, dropout: bool, donate: bool = True):
    """The jaxdiff train step: ``step(state, batch) -> (state, loss)``, state donated.

    Args:
      net: the Flax network (U-Net or DiT).
      schedule: the DiscreteSchedule of the eps loss.
      tx: an optax optimiser.
      num_classes: > 0 draws random labels (DiT class conditioning).
      dropout: run the network in train mode (dropout active, as diffusers' ``.train()``).
      donate: donate the state's buffers (updated in place); False for the A/B.

    Returns:
      The jitted step; state is ``{"params", "opt_state", "step"}``, batch (B, H, W, C).
    """
    loss_fn = losses.make_loss("eps", schedule)

    def step(state, batch):
        key = jax.random.fold_in(jax.random.key(0), state["step"])
        k_loss, k_drop, k_label = jax.random.split(key, 3)
        cond = {}
        if num_classes:
            cond["label"] = jax.random.randint(k_label, (batch.shape[0],), 0, num_classes)

        def objective(params):
            def model_fn(x, t, **c):
                out = net.apply(
                    {"params": params},
                    x,
                    noise_input(t),
                    train=dropout,
                    rngs={"dropout": k_drop},
                    **c,
                )
                return out[..., : x.shape[-1]]  # learned-sigma nets: the eps half

            return loss_fn(model_fn, k_loss, batch, **cond)[0]

        loss, grads = jax.value_and_grad(objective)(state["params"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        return {"params": params, "opt_state": opt_state, "step": state["step"] + 1}, loss

    return jax.jit(step, donate_argnums=0 if donate else ())


def make_torch_step(model, batch: int, shape, num_classes: int, opts: dict):
    """The diffusers training step on a fixed batch; returns a blocking ``step()``.

    Args:
      model: the diffusers model (UNet2DModel or DiTTransformer2DModel).
      batch: batch size.
      shape: (H, W, C).
      num_classes: > 0 passes random class labels (DiT).
      opts: ``device``, ``bf16`` (autocast), ``compile`` (torch.compile).
    """
    import diffusers
    import torch
    import torch.nn.functional as F

    device = torch.device(opts["device"])
    model = model.to(device).train()
    h, w, c = shape
    x = torch.randn(batch, c, h, w, device=device)
    sched = diffusers.DDPMScheduler(num_train_timesteps=NUM_TRAIN_STEPS)
    sched.alphas_cumprod = sched.alphas_cumprod.to(device)
    fwd = torch.compile(model) if opts["compile"] else model
    cuda = device.type == "cuda"
    opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, fused=cuda or None)

    def one():
        noise = torch.randn_like(x)
        t = torch.randint(0, NUM_TRAIN_STEPS, (batch,), device=device)
        noisy = sched.add_noise(x, noise, t)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=opts["bf16"]):
            if num_classes:
                y = torch.randint(0, num_classes, (batch,), device=device)
                out = fwd(noisy, timestep=t, class_labels=y).sample
            else:
                out = fwd(noisy, t).sample
        loss = F.mse_loss(out[:, :c].float(), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    def step(k: int = 1):
        for _ in range(k):
            loss = one()
        if cuda:
            torch.cuda.synchronize()
        return float(loss.detach())

    return step, one


def torch_flops(one_step) -> float:
    """FLOPs of one torch step counted by FlopCounterMode (matmul/conv/attention only)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        one_step()
    return float(counter.get_total_flops())


def torch_top_ops(one_step, cuda: bool, limit: int = 10) -> list[dict]:
    """The ops taking the most time in one torch step (torch.profiler), largest first."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        one_step()
    attr = "self_device_time_total" if cuda else "self_cpu_time_total"
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, attr), reverse=True)
    total = sum(getattr(e, attr) for e in events) or 1.0
    return [
        {"op": e.key, "share": getattr(e, attr) / total, "self_ms": getattr(e, attr) / 1e3}
        for e in events[:limit]
    ]


def jax_profile(run, directory: str) -> None:
    """Writes a jax.profiler trace (TensorBoard/Perfetto) of two steps to ``directory``."""
    with jax.profiler.trace(directory):
        run(2)


def build_pair(preset: str, dtype):
    """(torch model, jax net, variables, shape, num_classes, dropout) for a preset."""
    if preset in twins.UNET_CONFIGS:
        model, net, variables, shape = twins.unet_pair(preset, dtype=dtype)
        return model, net, variables, shape, 0, twins.UNET_CONFIGS[preset]["dropout"] > 0
    model, net, variables, shape = twins.dit_pair(preset, dtype=dtype)
    return model, net, variables, shape, 1000, False


def jax_side(net, variables, shape, batch, num_classes, dropout, donate=True, sync_every=0):
    """Compiles the jaxdiff step; returns (run(k) blocking, compile seconds, cost dict,
    the compiled step).

    ``sync_every=1`` reads the loss on the host after every step (the A/B of host syncs).
    """
    schedule = schedules.DiscreteSchedule.from_name("linear", num_steps=NUM_TRAIN_STEPS)
    tx = optax.adam(LEARNING_RATE)
    params = jax.tree.map(jnp.array, variables["params"])  # own copy: donation frees it
    state = {"params": params, "opt_state": tx.init(params), "step": jnp.int32(0)}
    x = jax.random.normal(jax.random.key(1), (batch, *shape))
    step = make_jax_step(net, schedule, tx, num_classes, dropout, donate)
    compile_s = measure.timed(lambda: setattr(step, "_c", step.lower(state, x).compile()))
    compiled, holder = step._c, {"state": state}

    def run(k: int = 1):
        s = holder["state"]
        for i in range(k):
            s, loss = compiled(s, x)
            if sync_every and i % sync_every == 0:
                float(loss)
        holder["state"] = s
        return float(loss)  # blocks

    return run, compile_s, measure.xla_cost(compiled), compiled


def bench_batch(pair, batch: int, opts: dict) -> dict:
    """Times both sides at one batch size (alternating) and returns one results row."""
    import torch

    model, net, variables, shape, num_classes, dropout = pair
    jax_run, jax_compile_s, cost, _ = jax_side(net, variables, shape, batch, num_classes, dropout)
    torch_run, torch_one = make_torch_step(model, batch, shape, num_classes, opts)
    flops_torch = torch_flops(torch_one) if opts["count_torch_flops"] else float("nan")
    torch_first_s = measure.timed(torch_run)
    jax_run(opts["warmup"])
    torch_run(opts["warmup"])
    k = opts["steps_per_rep"]
    times = measure.alternate(
        {"jaxdiff": lambda: jax_run(k), "diffusers": lambda: torch_run(k)}, opts["repeats"]
    )
    peak, _ = measure.peak_flops()
    row = {"batch": batch}
    for side, flops, compile_s in (
        ("jaxdiff", cost["flops"], jax_compile_s),
        ("diffusers", flops_torch, torch_first_s),
    ):
        step_s = times[side]["median_s"] / k
        row[side] = {
            "step_s": step_s,
            "images_per_s": batch / step_s,
            "compile_or_first_step_s": compile_s,
            "flops_per_step": flops,
            "mfu": flops / (step_s * peak),
            "rep_times_s": times[side]["all_s"],
        }
    row["jaxdiff"]["xla_memory_bytes"] = cost["xla_memory_bytes"]
    row["jaxdiff"]["peak_memory_bytes"] = measure.jax_peak_memory()
    if torch.cuda.is_available():
        row["diffusers"]["peak_memory_bytes"] = int(torch.cuda.max_memory_allocated())
        torch.cuda.reset_peak_memory_stats()
    if opts["profile"]:
        row["diffusers"]["top_ops"] = torch_top_ops(torch_one, torch.cuda.is_available())
        jax_profile(jax_run, os.path.join(opts["profile"], f"jax_batch{batch}"))
    row["speedup_images_per_s"] = row["jaxdiff"]["images_per_s"] / row["diffusers"]["images_per_s"]
    # Per FLOP (the DiTs differ in size): each side's achieved FLOP/s by its own count (XLA:
    # every op; torch's counter: matmuls/convs/attention, nearly all of a transformer's).
    for side in ("jaxdiff", "diffusers"):
        row[side]["flops_per_s"] = row[side]["flops_per_step"] / row[side]["step_s"]
    row["per_flop_speedup"] = row["jaxdiff"]["flops_per_s"] / row["diffusers"]["flops_per_s"]
    return row


def resolve_options(args) -> dict:
    """Fills GPU/CPU defaults: bf16 + torch.compile on GPU, float32 eager on CPU."""
    import torch

    gpu = jax.default_backend() == "gpu"
    pick = lambda value: gpu if value is None else value  # noqa: E731
    return {
        "dtype": args.dtype or ("bfloat16" if gpu else "float32"),
        "device": "cuda" if gpu and torch.cuda.is_available() else "cpu",
        "bf16": pick(args.torch_bf16),
        "compile": pick(args.torch_compile),
        "warmup": args.warmup,
        "steps_per_rep": args.steps_per_rep,
        "repeats": args.repeats,
        "count_torch_flops": args.torch_flops,
        "profile": args.profile,
    }


def run(args) -> dict:
    """Runs every batch size of ``args.preset``; returns (and optionally writes) the results."""
    if args.preset not in PRESETS:
        raise ValueError(f"Unknown preset {args.preset!r}; valid presets: {PRESETS}.")
    threads = measure.set_torch_threads(args.threads)
    opts = resolve_options(args)
    dtype = jnp.dtype(opts["dtype"])
    pair = build_pair(args.preset, dtype)
    peak, peak_note = measure.peak_flops()
    result = {
        "benchmark": "train_throughput",
        "preset": args.preset,
        "device": measure.device_info(),
        "torch_threads": threads,
        "options": opts,
        "params": {
            "jaxdiff": twins.count_jax(pair[2]),
            "diffusers": twins.count_torch(pair[0]),
        },
        "peak_flops": peak,
        "peak_flops_note": peak_note,
        "rows": [bench_batch(pair, b, opts) for b in args.batch],
    }
    if args.out:
        measure.write_json(args.out, result)
    return result


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="mnist_small", help=f"one of {PRESETS}")
    p.add_argument("--batch", type=int, nargs="+", default=[32])
    p.add_argument("--dtype", choices=["float32", "bfloat16"], help="jaxdiff compute dtype")
    p.add_argument("--torch_bf16", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--torch_compile", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--torch_flops", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--threads", type=int, help="torch threads (default: all cores, as XLA)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per side")
    p.add_argument("--steps_per_rep", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--profile", help="folder for jax traces; also records torch's top ops")
    p.add_argument("--out", help="results JSON path")
    return p


def summary(result: dict) -> str:
    """One line per batch size: images/s of both sides and the ratio."""
    lines = [f"{result['preset']} on {result['device']['device']} params {result['params']}"]
    for row in result["rows"]:
        j, d = row["jaxdiff"], row["diffusers"]
        lines.append(
            f"  batch {row['batch']}: jaxdiff {j['images_per_s']:.1f} img/s "
            f"(step {j['step_s'] * 1e3:.1f} ms, compile {j['compile_or_first_step_s']:.1f} s, "
            f"MFU {j['mfu']:.1%}), diffusers {d['images_per_s']:.1f} img/s "
            f"(step {d['step_s'] * 1e3:.1f} ms), ratio {row['speedup_images_per_s']:.2f}x"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    _xla_flags.apply_cpu_defaults()  # what jaxdiff's entry points run with
    print(summary(run(parser().parse_args())))
