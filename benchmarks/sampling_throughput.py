"""Sampling throughput: jaxdiff's samplers vs the diffusers DDIM loop, same network, same run.

The network is a diffusers ``UNet2DModel`` and its imported jaxdiff twin (identical weights).
jaxdiff: ``samplers.sample(method="ddim", num_steps=50, spacing="leading")`` (one compiled
``lax.scan``) and ``method="ode_heun", num_steps=18`` (35 network evaluations) on the
schedule's continuous form. diffusers: the DDIMPipeline loop (``DDIMScheduler`` with its
defaults except ``clip_sample=False``: ``unet(x, t).sample`` then ``scheduler.step``) under
``torch.inference_mode``, float32 eager on CPU, bf16 autocast + ``torch.compile`` on GPU.
Both start from the same noise and end with the samples on the host. The DDIM outputs of
the two sides are compared (``ddim_max_rel_diff`` = max |difference| / max |diffusers'|): the
same algorithm on the same network agrees to float tolerance in float32 (a randomly
initialised network makes DDIM's x0 estimates large, hence the relative measure).

Usage:
  python -m benchmarks.sampling_throughput --preset=mnist_small --batch=64 \\
      --out=benchmarks/results/sampling_throughput_cpu.json
  python -m benchmarks.sampling_throughput --preset=ddpm_cifar10 --batch=256 \\
      --out=benchmarks/results/sampling_throughput_gpu.json
"""

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # torch shares the GPU

import argparse  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import measure, twins  # noqa: E402
from jaxdiff import _xla_flags, samplers, schedules  # noqa: E402

NUM_TRAIN_STEPS = 1000


def make_eps_fn(net, num_steps: int = NUM_TRAIN_STEPS):
    """``apply(params, x, t) -> eps``: a diffusers-style network as a jaxdiff model function.

    Process time t = (i + 1) / N maps to the timestep i = N t - 1 (fractional between grid
    points, as the continuous-time samplers need). Build it once and reuse it: samplers
    cache compilations by this function's identity.
    """

    def apply(params, x, t):
        return net.apply({"params": params}, x, t * num_steps - 1.0)

    return apply


def jax_sampler(apply, params, shape, method: str, num_steps: int, **options):
    """A blocking ``run(x_init) -> numpy samples`` for one jaxdiff sampler setting."""
    schedule = schedules.DiscreteSchedule.from_name("linear", num_steps=NUM_TRAIN_STEPS)
    model_fn = jax.tree_util.Partial(apply, params)

    def run(x_init):
        x, info = samplers.sample(
            jax.random.key(0),
            model_fn,
            schedule,
            shape,
            method=method,
            num_steps=num_steps,
            kind="eps",
            x_init=x_init,
            **options,
        )
        return np.asarray(x), int(info["nfe"])

    return run


def torch_ddim(model, num_steps: int, opts: dict):
    """The DDIMPipeline loop with a given start: ``run(x_init_nhwc) -> numpy NHWC samples``."""
    import diffusers
    import torch

    device = torch.device(opts["device"])
    model = model.to(device).eval()
    fwd = torch.compile(model) if opts["compile"] else model
    sched = diffusers.DDIMScheduler(num_train_timesteps=NUM_TRAIN_STEPS, clip_sample=False)

    @torch.inference_mode()
    def run(x_init):
        x = torch.from_numpy(np.asarray(x_init).transpose(0, 3, 1, 2).copy()).to(device)
        sched.set_timesteps(num_steps)
        for t in sched.timesteps:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=opts["bf16"]):
                eps = fwd(x, t.to(device)).sample
            x = sched.step(eps.float(), t, x, eta=0.0).prev_sample
        return x.cpu().numpy().transpose(0, 2, 3, 1)

    return run


def settings(ddim_steps: int = 50, heun_steps: int = 18) -> dict:
    """jaxdiff settings: name -> (method, num_steps, options); Heun makes 2 N - 1 calls."""
    return {
        f"ddim_{ddim_steps}": ("ddim", ddim_steps, {"spacing": "leading"}),
        f"heun_{2 * heun_steps - 1}nfe": ("ode_heun", heun_steps, {}),
    }


def bench(args) -> dict:
    """Runs both sides at ``args.batch``; returns the results dict."""
    import torch

    gpu = jax.default_backend() == "gpu"
    threads = measure.set_torch_threads(args.threads)
    opts = {
        "device": "cuda" if gpu and torch.cuda.is_available() else "cpu",
        "bf16": gpu if args.torch_bf16 is None else args.torch_bf16,
        "compile": gpu if args.torch_compile is None else args.torch_compile,
        "dtype": args.dtype or ("bfloat16" if gpu else "float32"),
    }
    model, net, variables, shape = twins.unet_pair(args.preset, dtype=jnp.dtype(opts["dtype"]))
    full = (args.batch, *shape)
    x_init = np.asarray(jax.random.normal(jax.random.key(1), full))
    apply = make_eps_fn(net)
    runners, first, nfe, outputs = {}, {}, {}, {}
    ddim = f"ddim_{args.steps}"
    for name, (method, steps, options) in settings(args.steps, args.heun_steps).items():
        run = jax_sampler(apply, variables["params"], full, method, steps, **options)
        first_call = lambda r=run, n=name: outputs.update({n: r(x_init)})  # noqa: E731
        first[f"jaxdiff_{name}"] = measure.timed(first_call)
        nfe[f"jaxdiff_{name}"] = outputs[name][1]
        runners[f"jaxdiff_{name}"] = lambda r=run: r(x_init)
    torch_run = torch_ddim(model, args.steps, opts)
    first[f"diffusers_{ddim}"] = measure.timed(lambda: outputs.update(torch=torch_run(x_init)))
    nfe[f"diffusers_{ddim}"] = args.steps
    runners[f"diffusers_{ddim}"] = lambda: torch_run(x_init)
    times = measure.alternate(runners, args.repeats)
    rows = {
        name: {
            "seconds": t["median_s"],
            "images_per_s": args.batch / t["median_s"],
            "nfe": nfe[name],
            "first_call_s": first[name],
            "rep_times_s": t["all_s"],
        }
        for name, t in times.items()
    }
    ours, theirs = outputs[ddim][0], outputs["torch"]
    diff = float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))
    result = {
        "benchmark": "sampling_throughput",
        "preset": args.preset,
        "batch": args.batch,
        "device": measure.device_info(),
        "torch_threads": threads,
        "options": opts,
        "rows": rows,
        "ddim_max_rel_diff": diff,
        "ddim_speedup": rows[f"jaxdiff_{ddim}"]["images_per_s"]
        / rows[f"diffusers_{ddim}"]["images_per_s"],
    }
    if args.out:
        measure.write_json(args.out, result)
    return result


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="mnist_small", help=f"one of {sorted(twins.UNET_CONFIGS)}")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=50, help="DDIM steps (both sides)")
    p.add_argument("--heun_steps", type=int, default=18, help="jaxdiff Heun intervals")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], help="jaxdiff compute dtype")
    p.add_argument("--torch_bf16", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--torch_compile", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--threads", type=int, help="torch threads (default: all cores, as XLA)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", help="results JSON path")
    return p


def summary(result: dict) -> str:
    lines = [f"{result['preset']} batch {result['batch']} on {result['device']['device']}"]
    for name, row in result["rows"].items():
        lines.append(
            f"  {name}: {row['images_per_s']:.2f} img/s ({row['seconds']:.2f} s, "
            f"nfe {row['nfe']}, first call {row['first_call_s']:.1f} s)"
        )
    lines.append(
        f"  DDIM speedup {result['ddim_speedup']:.2f}x, "
        f"max |jaxdiff - diffusers| / max |diffusers| = {result['ddim_max_rel_diff']:.1e}"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    _xla_flags.apply_cpu_defaults()  # what jaxdiff's entry points run with
    print(summary(bench(parser().parse_args())))
