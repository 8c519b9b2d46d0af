"""Placeholder quickstart: checks the forward process on scikit-learn's real 8x8 digits.

Run ``python -m jaxdiff.quickstart``. The training issue replaces this with a real
train-and-sample run (``configs/quickstart.py``).
"""

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.datasets import load_digits

from jaxdiff import schedules


def main() -> None:
    digits = load_digits().images.astype(np.float32)  # (1797, 8, 8), values 0..16
    x0 = jnp.asarray(digits / 8.0 - 1.0)[..., None]
    sched = schedules.DiscreteSchedule.from_name("cosine", num_steps=1000)
    print(f"{x0.shape[0]} real 8x8 digits; forward process q(x_t | x_0), cosine schedule:")
    for t in (0.1, 0.5, 0.9):
        xt, _ = sched.sample_marginal(jax.random.key(0), x0, t)
        corr = np.corrcoef(np.ravel(x0), np.ravel(xt))[0, 1]
        print(f"  t={t:.1f}  SNR={float(sched.snr(t)):9.4f}  corr(x_0, x_t)={corr:.3f}")


if __name__ == "__main__":
    main()
