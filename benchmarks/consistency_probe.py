"""Where a consistency model loses its teacher's clean backgrounds: a probe per noise level.

For real MNIST test digits x, noised to x~ = x + sigma~ n at each level of the CD grid, it
compares the teacher's denoiser D(x~) (guided with its shipped w) with the student's
consistency function f(x~): the mean squared error to x, and the standard deviation and
mean of the output's background pixels (those at least 3 pixels away from any stroke of x,
on the 0-255 scale). Real digits' background is exactly 0; a student whose background std
rises above the teacher's at the *low* levels has drifted where f should equal D, and the
consistency chain carries that residual noise up to the one-step samples.

Usage::

  python -m benchmarks.consistency_probe --workdir=runs/cd_mnist --data_dir=/path/to/tfds \\
      --out=benchmarks/results/consistency_probe_cd_cpu.json
"""

import argparse

import numpy as np


def load_digits(data_dir: str, num: int):
    """(images in [-1, 1] (num, 28, 28, 1) float32, labels (num,)) of the MNIST test split."""
    import tensorflow_datasets as tfds

    ds = tfds.data_source("mnist", split="test", data_dir=data_dir)
    rows = [ds[i] for i in range(num)]
    x = np.stack([r["image"] for r in rows]).astype(np.float32) / 127.5 - 1.0
    return x, np.array([r["label"] for r in rows])


def background_mask(x: np.ndarray) -> np.ndarray:
    """Pixels at least 3 pixels (Chebyshev) from any stroke pixel, (N, H, W) bool."""
    from scipy.ndimage import maximum_filter

    return ~maximum_filter(x[..., 0] > -1.0, size=(1, 5, 5))


def output_stats(out: np.ndarray, x: np.ndarray, mask: np.ndarray) -> dict:
    """{"mse", "bg_std", "bg_mean"} of outputs ``out`` against the clean digits ``x``."""
    out = np.clip(out, -1.0, 1.0)
    bg = (out[..., 0][mask] + 1.0) * 127.5
    return {
        "mse": float(np.mean((out - x) ** 2)),
        "bg_std": float(bg.std()),
        "bg_mean": float(bg.mean()),
    }


def probe_fns(workdir: str):
    """(times of the CD grid, {"teacher D": fn, "student f": fn}); fn(x~, t, labels)."""
    import jax

    from jaxdiff.distill import consistency as cm
    from jaxdiff.distill import consistency_losses as cl
    from jaxdiff.distill import teacher as teacher_lib
    from jaxdiff.training import components, restore

    student = restore.load_run(workdir, "ema")
    d = student.config.distill
    teacher = teacher_lib.load_teacher(d.teacher)
    process = teacher.process
    w = d.get("guidance", 0.0)
    t_fn = components.guided_model_fn(teacher.config, teacher.net, process, teacher.params, w)
    s_fn = components.guided_model_fn(
        student.config, student.net, student.process, student.params, 0.0
    )
    teacher_d = cm.denoiser(t_fn, teacher.config.sample.kind, process)
    student_f = cm.consistency_fn(s_fn, student.config.sample.kind, process, d.t_min)
    fns = {
        "teacher D": jax.jit(lambda x, t, y: teacher_d(x, t, label=y)),
        "student f": jax.jit(lambda x, t, y: student_f(x, t, label=y)),
    }
    return cl.karras_times(process, d.num_intervals, d.t_min, d.rho), process, fns


def probe(workdir: str, data_dir: str, num: int = 200, seed: int = 0) -> list[dict]:
    """One row per grid level above t_min: {"sigma", NAME: output_stats, ...}."""
    import jax.numpy as jnp

    from jaxdiff.distill import consistency as cm

    x, labels = load_digits(data_dir, num)
    mask = background_mask(x)
    noise = np.random.default_rng(seed).standard_normal(x.shape).astype(np.float32)
    times, process, fns = probe_fns(workdir)
    rows = []
    for t in times[1:]:
        sigma = float(cm.sigma_hat(process, jnp.asarray([t]))[0])
        x_tilde, tt = jnp.asarray(x + sigma * noise), jnp.full((num,), t)
        row: dict = {"sigma": sigma}
        for name, fn in fns.items():
            row[name] = output_stats(np.asarray(fn(x_tilde, tt, jnp.asarray(labels))), x, mask)
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    """A markdown table of the probe."""
    names = [k for k in rows[0] if k != "sigma"]
    head = "| sigma~ | " + " | ".join(f"{n}: bg std | {n}: MSE" for n in names) + " |"
    lines = [head, "|" + " --- |" * (1 + 2 * len(names))]
    for r in rows:
        cells = " | ".join(f"{r[n]['bg_std']:.2f} | {r[n]['mse']:.4f}" for n in names)
        lines.append(f"| {r['sigma']:.3f} | {cells} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="a consistency-distillation run")
    parser.add_argument("--data_dir", required=True, help="TFDS data dir with mnist")
    parser.add_argument("--num", type=int, default=200, help="test digits")
    parser.add_argument("--out", default="", help="JSON file of the rows")
    args = parser.parse_args(argv)
    from benchmarks import measure

    rows = probe(args.workdir, args.data_dir, args.num)
    print(table(rows))
    if args.out:
        payload = {"workdir": args.workdir, "num": args.num, "rows": rows}
        measure.write_json(args.out, {**payload, "device": measure.device_info()})


if __name__ == "__main__":
    main()
