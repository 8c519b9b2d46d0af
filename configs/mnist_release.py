"""Class-conditional MNIST: the model shipped as ``jaxdiff.pretrained.load("mnist")``.

Command (chained runs of at most ~100 minutes; each resumes the last)::

  timeout -s TERM 100m python -m jaxdiff.train --config=configs/mnist_release.py \\
      --workdir=runs/mnist_release --config.data.data_dir=/path/to/tfds
  python -m jaxdiff.pretrained --workdir=runs/mnist_release --name=mnist

Recipe (issue "Models worth showing", ``training.config.release``): a discrete cosine
schedule of 1,024 steps (a power of two, so progressive distillation can halve it down to
one step), v-prediction (what distillation needs), classifier-free guidance (label dropout
0.1), the 1.6M-parameter ``unet_28x28`` with attention at 7x7, EMAs 0.999 and 0.9999.

Choices made for the 2-core CPU budget: dropout 0 (the run sees each image only a few
times, far from overfitting, and dropout masks cost time); batch 64 (per image a step costs
the same at 32 and 64, and a short run gains from more updates); ``prng_impl`` threefry2x32,
since rbg and unsafe_rbg measured no faster (benchmarks/results/prng_cpu.json).

Expected: readable digits of the requested class. The shipped weights (2026-12-06) are
one run stopped by SIGTERM at step 5,760 of the 40,000 planned: 95 minutes on 2 cores of
an Intel Xeon (1.06 steps/s), 6.1 epochs; 99.8% of its samples are classified as the digit
asked for (in-repo classifier, shipped DPM-Solver++ 20 steps, w = 0.25). docs/pretrained.md
records the hours, hardware, choices and scores.
``:smoke`` runs one tiny step.
"""

from jaxdiff.training import config as base

VARIANTS = ("smoke",)  # --config=configs/X.py:VARIANT


def get_config(arg=None):
    arg = base.check_variant(arg, VARIANTS)
    c = base.release("mnist")
    return base.smoke(c, **base.SMOKE_UNET) if arg == "smoke" else c
