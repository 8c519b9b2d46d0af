"""Few-step students of a trained diffusion model.

- :mod:`jaxdiff.distill.progressive`: progressive distillation's loss (Salimans & Ho 2022);
- :mod:`jaxdiff.distill.rounds`: the rounds that halve the steps, as resumable training
  runs; ``python -m jaxdiff.distill --config=configs/distill_mnist.py --workdir=DIR``.
"""
