"""Sweeps of a shipped model on the in-repo classifier's features (Frechet distance, NOT FID).

Three tables for docs/pretrained.md (issue "Models worth showing"):

- ``guidance``: classifier accuracy on the requested class and Frechet distance vs the test
  set, against the guidance weight w, at the shipped sampler;
- ``nfe``: Frechet distance against the number of network evaluations for each sampler
  (ddim, dpm_solver++, ode_heun, edm_stochastic, ddpm), at the shipped guidance;
- ``training``: Frechet distance and accuracy against the training step, over checkpoints
  of the run that made the model (``--run_dirs``: training workdirs, one per step, e.g.
  snapshots of a run's checkpoints), each sampled with the shipped sampler and guidance and
  the shipped EMA decay (``--params``).

Features are the 128-d penultimate layer of ``jaxdiff.evaluation.classifier`` (trained by
its own command on the same data set); the distances rank settings but are not comparable
with published FIDs. Samples: classes uniform (0, 1, ..., 9 cycling), fixed seeds, the same
for every setting. Every finished setting is written to ``--out`` at once, and a rerun skips
the settings already there (resumable).

Usage:
  python -m benchmarks.pretrained_sweeps --model=mnist --classifier_dir=runs/clf_mnist \\
      --data_dir=/path/to/tfds --num_samples=2000 --sweeps=guidance,nfe \\
      --out=benchmarks/results/pretrained_sweeps_mnist.json
  python -m benchmarks.pretrained_sweeps --model=mnist --classifier_dir=runs/clf_mnist \
      --sweeps=training --run_dirs='runs/mnist_snaps/*' --params=0.9999 --out=...
"""

import argparse
import glob
import json
import os
import re
import time

import numpy as np

GUIDANCE = (0.0, 0.5, 1.0, 2.0, 3.0, 5.0)
NFE = (5, 10, 20, 50, 100)
METHODS = ("ddim", "dpm_solver++", "ode_heun", "edm_stochastic", "ddpm")


def steps_for(method: str, nfe: int) -> int:
    """Grid intervals that spend about ``nfe`` network evaluations (Heun: 2 per step)."""
    return max(1, (nfe + 1) // 2) if method in ("ode_heun", "edm_stochastic") else nfe


class Scorer:
    """Classifier features and logits of images in [-1, 1]; Frechet distance to the test set.

    Args:
      classifier_dir: a trained ``jaxdiff.evaluation.classifier`` run.
      reference: test images (N, 28, 28, 1) in [-1, 1].
    """

    def __init__(self, classifier_dir: str, reference: np.ndarray):
        from jaxdiff.evaluation import classifier, fid

        params, self.meta = classifier.load_classifier(classifier_dir)
        self._features = classifier.logits_fn(params, (-1, 1), features=True)
        self._logits = classifier.logits_fn(params, (-1, 1))
        real = fid.extract_features(reference, self._features, data_range=(-1, 1))
        self._real_stats = fid.feature_statistics(real)

    def __call__(self, images: np.ndarray, labels: np.ndarray) -> dict:
        """{"fd": Frechet distance to the test set, "accuracy": on the requested labels}."""
        from jaxdiff.evaluation import fid

        fake = fid.extract_features(images, self._features, data_range=(-1, 1))
        logits = fid.extract_features(images, self._logits, data_range=(-1, 1))
        mu, sigma = fid.feature_statistics(fake)
        fd = fid.frechet_distance(mu, sigma, *self._real_stats)
        return {"fd": float(fd), "accuracy": float(np.mean(logits.argmax(-1) == labels))}


def draw(model, n: int, batch: int, seed: int, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """(images (n, H, W, C), labels (n,)): batch i drawn with key fold_in(key(seed), i)."""
    import jax

    labels = np.arange(n) % model.num_classes
    out = []
    for i in range(0, n, batch):
        key = jax.random.fold_in(jax.random.key(seed), i // batch)
        out.append(np.asarray(model.sample(key, batch, labels[i : i + batch], **kwargs)))
    return np.concatenate(out)[:n], labels


def settings(sweeps, run_dirs=(), guidance=None, nfe=None, methods=None, sampler=None):
    """(sweep name, sampler kwargs) of every setting, in order.

    Args:
      sweeps: names from "guidance", "nfe", "training".
      run_dirs: the training sweep's checkpoints (one run workdir each).
      guidance, nfe, methods: the values swept (default GUIDANCE, NFE, METHODS).
      sampler: {"method", "num_steps"} for the guidance and training sweeps (default: the
        shipped sampler).
    """
    sampler = sampler or {}
    out = []
    if "training" in sweeps:
        out += [("training", {"run_dir": d, **sampler}) for d in run_dirs]
    if "guidance" in sweeps:
        out += [("guidance", {"guidance": w, **sampler}) for w in guidance or GUIDANCE]
    if "nfe" in sweeps:
        for method in methods or METHODS:
            for n in nfe or NFE:
                kw = {"method": method, "num_steps": steps_for(method, n), "nfe": n}
                out.append(("nfe", kw))
    return out


def params_at(run_dir: str, params: str) -> tuple:
    """(parameters, step) of ``run_dir``'s newest checkpoint (``params``: ema, raw, a decay)."""
    from jaxdiff.training import restore

    run = restore.load_run(run_dir, params)
    return run.params, run.step


def run(args) -> dict:
    from jaxdiff import pretrained
    from jaxdiff.evaluation import classifier

    results = json.load(open(args.out)) if os.path.exists(args.out) else {"rows": []}
    done = {json.dumps(r["setting"], sort_keys=True) for r in results["rows"]}
    model = pretrained.load(args.model)
    reference, _ = classifier.load_split(model.config.data.name, "test", args.data_dir)
    scorer = Scorer(args.classifier_dir, np.asarray(reference)[: args.num_samples])
    natural = lambda d: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", d)]
    run_dirs = sorted(glob.glob(args.run_dirs), key=natural) if args.run_dirs else []
    sampler = {k: v for k, v in (("method", args.method), ("num_steps", args.num_steps)) if v}
    listed = lambda text, kind: [kind(x) for x in text.split(",")] if text else None
    grid = settings(
        args.sweeps.split(","),
        run_dirs,
        guidance=listed(args.guidance, float),
        nfe=listed(args.nfe, int),
        methods=listed(args.methods, str),
        sampler=sampler,
    )
    for sweep, setting in grid:
        tag = json.dumps({"sweep": sweep, **setting}, sort_keys=True)
        if tag in done:
            continue
        kwargs = {k: v for k, v in setting.items() if k not in ("nfe", "run_dir")}
        start, step = time.time(), model.record["step"]
        if sweep == "training":
            kwargs["params"], step = params_at(setting["run_dir"], args.params)
        images, labels = draw(model, args.num_samples, args.batch, args.seed, **kwargs)
        row = {"setting": json.loads(tag), "step": step, **scorer(images, labels)}
        row["seconds"] = time.time() - start
        results["rows"].append(row)
        print(row, flush=True)
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    return results


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="mnist")
    p.add_argument("--classifier_dir", required=True)
    p.add_argument("--data_dir", default=None)
    p.add_argument("--num_samples", type=int, default=2000)
    p.add_argument("--batch", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sweeps", default="guidance,nfe", help="of guidance, nfe, training")
    p.add_argument("--run_dirs", default="", help="training sweep: a glob of run workdirs")
    p.add_argument("--params", default="ema", help="training sweep: ema, raw or an EMA decay")
    p.add_argument("--guidance", default="", help="guidance sweep: w values, e.g. 0,1,2")
    p.add_argument("--nfe", default="", help="nfe sweep: NFE values, e.g. 10,20,50")
    p.add_argument("--methods", default="", help="nfe sweep: samplers, e.g. ddim,dpm_solver++")
    p.add_argument("--method", default="", help="guidance/training sweeps: the sampler")
    p.add_argument("--num_steps", type=int, default=0, help="guidance/training sweeps: steps")
    p.add_argument("--out", required=True)
    return p


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    from jaxdiff import _xla_flags

    _xla_flags.apply_cpu_defaults()
    run(args)


if __name__ == "__main__":
    main()
