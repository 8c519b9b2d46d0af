"""Wall time per sample: the latent text-to-image model vs the pixel-space MNIST model.

Both draw 28x28 digits with the same sampler (DDIM 50 trailing, classifier-free guidance:
two network evaluations per step) in one batch; the latent side runs its U-Net on 7x7x4
latents and then the autoencoder's decoder, the pixel side its U-Net on 28x28x1 images.
Compiles are excluded (one warm-up call each); the two alternate (A B A B ...) so that
machine noise hits both. Also recorded: the parameters of each denoiser.

Usage:
  python -m benchmarks.latent_vs_pixel --latent=mnist_text2img --pixel=mnist \\
      --batch=100 --out=benchmarks/results/latent_vs_pixel_cpu.json

``--latent`` and ``--pixel`` take shipped names or training workdirs.
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import measure
from jaxdiff import _xla_flags

SAMPLER = dict(method="ddim", num_steps=50, guidance=1.0, spacing="trailing")


def latent_runner(source: str, batch: int):
    """A blocking call drawing ``batch`` decoded digits from the latent model ``source``."""
    from jaxdiff import text2img

    gen = text2img.load(source)
    prompts = [f"a {w}" for w in ("zero", "one", "two", "three", "four")] * (batch // 5 + 1)
    key = jax.random.key(0)
    return gen, lambda: gen.generate(key, prompts=prompts[:batch], **SAMPLER)


def pixel_runner(source: str, batch: int):
    """A blocking call drawing ``batch`` digits from the pixel-space model ``source``."""
    from jaxdiff import pretrained
    from jaxdiff.training import components

    run = pretrained.load_run(source)
    fn = jax.jit(components.make_sampler(run.config, run.net, run.process, **SAMPLER))
    labels = jnp.arange(batch) % 10
    return run, lambda: np.asarray(fn(run.params, jax.random.key(0), labels))


def count(params) -> int:
    return int(sum(np.size(a) for a in jax.tree.leaves(params)))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--latent", default="mnist_text2img")
    p.add_argument("--pixel", default="mnist")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="benchmarks/results/latent_vs_pixel_cpu.json")
    args = p.parse_args(argv)
    _xla_flags.prepare()
    gen, latent = latent_runner(args.latent, args.batch)
    run, pixel = pixel_runner(args.pixel, args.batch)
    latent(), pixel()  # compiles
    times = measure.alternate({"latent": latent, "pixel": pixel}, args.repeats)
    result = {
        "device": measure.device_info(),
        "batch": args.batch,
        "sampler": SAMPLER,
        "models": {"latent": args.latent, "pixel": args.pixel},
        "params": {
            "latent_denoiser": count(gen.run.params),
            "pixel_denoiser": count(run.params),
        },
        "times": times,
        "seconds_per_sample": {k: v["median_s"] / args.batch for k, v in times.items()},
        "pixel_over_latent": times["pixel"]["median_s"] / times["latent"]["median_s"],
    }
    measure.write_json(args.out, result)
    print({k: result[k] for k in ("seconds_per_sample", "pixel_over_latent", "params")})


if __name__ == "__main__":
    main()
