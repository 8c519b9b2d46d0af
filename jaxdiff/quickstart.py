"""Quickstart: train a DDPM on real 8x8 digits on a CPU, draw a grid, score the samples.

``python -m jaxdiff.quickstart [--workdir=runs/quickstart]`` runs
``configs/quickstart.py`` (the same as ``python -m jaxdiff.train
--config=configs/quickstart.py --workdir=...``), then samples 500 digits with the EMA
parameters (DDIM, 50 steps), writes ``WORKDIR/quickstart_samples.png`` and prints a
sample-quality figure:

*Digits Frechet distance (FD)*: the Frechet distance between Gaussian fits of features of
the samples and of the 297 held-out test digits (never seen in training), the features
being the 64 hidden ReLU units of a small MLP classifier (scikit-learn, trained here on the
1,500 training digits). It is FID's recipe with a digits classifier in place of Inception;
for scale it also prints the FD of 500 real *training* digits (the floor a perfect model
reaches) and of pure noise. Running it again resumes the finished run and only re-samples.
"""

import os

import numpy as np
from absl import flags

from jaxdiff import _cli, _xla_flags

FLAGS = flags.FlagValues()
flags.DEFINE_string(
    "workdir", "runs/quickstart", "Where checkpoints and samples go.", flag_values=FLAGS
)
flags.DEFINE_integer(
    "num_samples", 500, "Samples scored against the held-out digits.", flag_values=FLAGS
)
_cli.define_verbose(FLAGS)

CONFIG = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "quickstart.py"
)


def load_config():
    """configs/quickstart.py's config (the repository's configs/ beside the package)."""
    import importlib.util

    if not os.path.exists(CONFIG):
        raise ValueError(f"{CONFIG} not found: run from a source checkout (pip install -e .).")
    spec = importlib.util.spec_from_file_location("quickstart_config", CONFIG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def digit_features():
    """Trains the feature classifier; returns (features(images) -> (N, 64), test accuracy).

    images are (N, 8, 8, 1) in [-1, 1].
    """
    from sklearn.neural_network import MLPClassifier

    from jaxdiff.data import sources

    def flat(images):
        return (np.asarray(images, np.float32).reshape(len(images), 64) + 1.0) / 2.0

    train, test = sources.digits("train"), sources.digits("test")
    to_unit = lambda src: src.images.astype(np.float32) / 127.5 - 1.0
    clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=500, random_state=0)
    clf.fit(flat(to_unit(train)), train.labels)
    accuracy = clf.score(flat(to_unit(test)), test.labels)

    def features(images):
        return np.maximum(flat(images) @ clf.coefs_[0] + clf.intercepts_[0], 0.0)

    return features, accuracy


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) of two feature sets (N, D).

    The FID formula of :mod:`jaxdiff.evaluation.fid` (its stable square root copes with the
    singular covariances that dead ReLU units give).
    """
    from jaxdiff.evaluation import fid

    return fid.fid_from_features(a, b)


def score(samples: np.ndarray, seed: int = 0) -> dict:
    """The digits FD of ``samples`` (N, 8, 8, 1) in [-1, 1], with its reference values."""
    from jaxdiff.data import sources

    features, accuracy = digit_features()
    test = sources.digits("test").images.astype(np.float32) / 127.5 - 1.0
    train = sources.digits("train").images.astype(np.float32) / 127.5 - 1.0
    rng = np.random.default_rng(seed)
    real = train[rng.choice(len(train), len(samples), replace=False)]
    noise = np.clip(rng.normal(size=samples.shape), -1, 1)
    f_test = features(test)
    return {
        "fd_samples": frechet_distance(features(samples), f_test),
        "fd_train_digits": frechet_distance(features(real), f_test),
        "fd_noise": frechet_distance(features(noise), f_test),
        "classifier_test_accuracy": accuracy,
    }


def run() -> None:
    _cli.require(FLAGS.num_samples >= 2, f"--num_samples={FLAGS.num_samples}: must be >= 2.")
    _xla_flags.prepare()  # before JAX starts its backends
    import jax

    from jaxdiff.training import components, loop, summaries

    config = load_config()
    state = loop.train(config, FLAGS.workdir)
    config.sample.num_samples = FLAGS.num_samples
    net, process = components.build_model(config), components.build_process(config)
    sample = jax.jit(components.make_sampler(config, net, process))
    params = next(iter(state.ema.values()))
    samples = np.asarray(sample(params, jax.random.key(1234), None))
    path = os.path.join(FLAGS.workdir, "quickstart_samples.png")
    summaries.save_grid(samples[:100], path, ncol=10, upscale=4)
    r = score(samples)
    print(f"wrote {path}")
    print(
        f"digits FD (lower is better; MLP features, {len(samples)} samples vs 297 held-out "
        f"digits): samples {r['fd_samples']:.2f} | real train digits {r['fd_train_digits']:.2f}"
        f" | noise {r['fd_noise']:.2f}  (feature classifier test accuracy "
        f"{r['classifier_test_accuracy']:.3f})"
    )


def main(argv: list[str] | None = None) -> None:
    """The command (``argv`` without the program name; default ``sys.argv[1:]``)."""
    _cli.run_absl(run, FLAGS, argv, "jaxdiff.quickstart", doc=__doc__)


if __name__ == "__main__":
    main()
