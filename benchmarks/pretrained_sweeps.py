"""Sweeps of a shipped model on the in-repo classifier's features (Frechet distance, NOT FID).

Three tables for docs/pretrained.md (issue "Models worth showing"):

- ``guidance``: classifier accuracy on the requested class and Frechet distance vs the test
  set, against the guidance weight w, at the shipped sampler;
- ``nfe``: Frechet distance against the number of network evaluations for each sampler
  (ddim, dpm_solver++, ode_heun, edm_stochastic, ddpm), at the shipped guidance;
(Frechet distance against training time, over a run's kept checkpoints, is still to come.)

Features are the 128-d penultimate layer of ``jaxdiff.evaluation.classifier`` (trained by
its own command on the same data set); the distances rank settings but are not comparable
with published FIDs. Samples: classes uniform (0, 1, ..., 9 cycling), fixed seeds, the same
for every setting. Every finished setting is written to ``--out`` at once, and a rerun skips
the settings already there (resumable).

Usage:
  python -m benchmarks.pretrained_sweeps --model=mnist --classifier_dir=runs/clf_mnist \\
      --data_dir=/path/to/tfds --num_samples=2000 --sweeps=guidance,nfe \\
      --out=benchmarks/results/pretrained_sweeps_mnist.json
"""

import argparse
import json
import os
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


def settings(sweeps: list[str]) -> list[tuple[str, dict]]:
    """(sweep name, sampler kwargs) of every setting, in order."""
    out = []
    if "guidance" in sweeps:
        out += [("guidance", {"guidance": w}) for w in GUIDANCE]
    if "nfe" in sweeps:
        for method in METHODS:
            for nfe in NFE:
                kw = {"method": method, "num_steps": steps_for(method, nfe), "nfe": nfe}
                out.append(("nfe", kw))
    return out


def run(args) -> dict:
    from jaxdiff import pretrained
    from jaxdiff.evaluation import classifier

    results = json.load(open(args.out)) if os.path.exists(args.out) else {"rows": []}
    done = {json.dumps(r["setting"], sort_keys=True) for r in results["rows"]}
    model = pretrained.load(args.model)
    reference, _ = classifier.load_split(model.config.data.name, "test", args.data_dir)
    scorer = Scorer(args.classifier_dir, np.asarray(reference)[: args.num_samples])
    for sweep, setting in settings(args.sweeps.split(",")):
        tag = json.dumps({"sweep": sweep, **setting}, sort_keys=True)
        if tag in done:
            continue
        kwargs = {k: v for k, v in setting.items() if k != "nfe"}
        start = time.time()
        images, labels = draw(model, args.num_samples, args.batch, args.seed, **kwargs)
        row = {"setting": json.loads(tag), **scorer(images, labels)}
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
    p.add_argument("--sweeps", default="guidance,nfe")
    p.add_argument("--out", required=True)
    return p


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    from jaxdiff import _xla_flags

    _xla_flags.apply_cpu_defaults()
    run(args)


if __name__ == "__main__":
    main()
