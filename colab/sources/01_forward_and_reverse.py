# %% [markdown]
# # 01 · The forward and the reverse process
#
# Diffusion models destroy data with Gaussian noise step by step (the *forward process*)
# and learn to undo it (the *reverse process*). This notebook looks at both with
# `jaxdiff`, on real images: the 1,797 8x8 handwritten digits that scikit-learn ships.
#
# 1. the three beta schedules (linear, cosine, sigmoid) and their signal-to-noise ratios;
# 2. the forward process q(x_t | x_0) on real digits;
# 3. one reverse step q(x_{t-1} | x_t, x_0), and a whole reverse chain driven by the
#    *ideal denoiser* of the data set (the exact E[x_0 | x_t] of the empirical distribution).

# %%
# Install cell: skipped when jaxdiff is importable (CI, a local checkout).
try:
    import jaxdiff  # noqa: F401
except ImportError:  # On Colab: set JAXDIFF_REPO to the repository's git URL first.
    import os
    import subprocess
    import sys

    subprocess.check_call(
        [sys.executable, "-m", "pip", "install", "-q", os.environ["JAXDIFF_REPO"]]
    )

# %%
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits

from jaxdiff import schedules, sdes

SMALL = os.environ.get("JAXDIFF_NOTEBOOK_SMALL") == "1"  # CI runs the notebooks small
print("small mode" if SMALL else "full size")

# %% [markdown]
# ## 1. Beta schedules and SNR
#
# `DiscreteSchedule.from_name` builds Ho et al.'s linear schedule, Nichol & Dhariwal's cosine
# schedule and Chen's sigmoid schedule. Step i sits at t = (i + 1) / N, and each schedule has a
# continuous form (the linear one is the VP SDE with beta from 0.1 to 20).

# %%
N = 1000
names = ["linear", "cosine", "sigmoid"]
scheds = {n: schedules.DiscreteSchedule.from_name(n, num_steps=N) for n in names}
t = np.asarray(scheds["linear"].timesteps())
fig, axes = plt.subplots(1, 3, figsize=(14, 3.5))
for name, s in scheds.items():
    axes[0].plot(t, s.betas, label=name)
    axes[1].plot(t, s.alphas_cumprod, label=name)
    axes[2].plot(t, np.log(s.snr(jnp.asarray(t))), label=name)
axes[0].set(title="beta_t", xlabel="t", yscale="log")
axes[1].set(title="alpha_bar_t = scale(t)^2", xlabel="t")
axes[2].set(title="log SNR(t)", xlabel="t")
for ax in axes:
    ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# The linear schedule destroys information fast: its alpha_bar is near zero for the last
# third of the steps, which is why the cosine schedule was proposed. The continuous forms
# agree with the discrete chains on the grid:

# %%
for name, s in scheds.items():
    gap = jnp.max(jnp.abs(s.alphas_cumprod - s.continuous.scale(jnp.asarray(t)) ** 2))
    print(f"{name:8s} max |alpha_bar_discrete - alpha_bar_continuous| = {float(gap):.2e}")

# %% [markdown]
# ## 2. The forward process on real digits
#
# x_t = scale(t) x_0 + sigma(t) eps. The rows below use the cosine schedule.

# %%
digits = load_digits().images.astype(np.float32) / 8.0 - 1.0  # (1797, 8, 8) in [-1, 1]
x0 = jnp.asarray(digits[:8])[..., None]
sched = scheds["cosine"]
times = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]
fig, axes = plt.subplots(len(x0), len(times), figsize=(len(times) * 1.2, len(x0) * 1.2))
for j, tj in enumerate(times):
    xt, _ = sched.sample_marginal(jax.random.key(j), x0, tj)
    for i in range(len(x0)):
        axes[i, j].imshow(xt[i, ..., 0], cmap="gray", vmin=-1.5, vmax=1.5)
        axes[i, j].axis("off")
    axes[0, j].set_title(f"t={tj}")
plt.show()

# %% [markdown]
# ## 3. The reverse process
#
# Given x_0, the reverse step has a closed form: q(x_{t-1} | x_t, x_0) is Gaussian with mean
# `posterior_mean(x0, xt, t)` and variance beta-tilde. A trained network replaces the unknown
# x_0 with its prediction. Here we use the best possible predictor for this data set: the
# *ideal denoiser* E[x_0 | x_t] of the empirical distribution, a softmax over all 1,797 digits.
# (It reproduces training digits: a reminder that a perfect fit memorises.)

# %%
data = jnp.asarray(digits.reshape(len(digits), -1))


def ideal_x0(x, t):
    """E[x_0 | x_t] for x_0 uniform over the data set: a softmax-weighted average."""
    scale, sigma = sched.marginal(t)
    d2 = jnp.sum((x[:, None, :] - scale[:, None, None] * data[None]) ** 2, axis=-1)
    w = jax.nn.softmax(-d2 / (2 * sigma[:, None] ** 2), axis=-1)
    return w @ data


@jax.jit
def reverse_chain(key):
    """Ancestral sampling x_1 -> x_0 with the ideal denoiser, under lax.scan."""
    batch = 16
    x = jax.random.normal(key, (batch, 64))

    def step(x, inputs):
        i, k = inputs
        t = jnp.full((batch,), (i + 1) / N)
        mean = sched.posterior_mean(ideal_x0(x, t), x, t)
        var = sched.posterior_variance(t, "beta_tilde")
        noise = jnp.where(i > 0, jax.random.normal(k, x.shape), 0.0)
        x = mean + jnp.sqrt(var)[:, None] * noise
        return x, x

    steps = jnp.arange(N - 1, -1, -1)
    _, path = jax.lax.scan(step, x, (steps, jax.random.split(key, N)))
    return path


path = reverse_chain(jax.random.key(1))
show = [0, 500, 800, 900, 950, 990, 999]
fig, axes = plt.subplots(4, len(show), figsize=(len(show) * 1.2, 4 * 1.2))
for j, k in enumerate(show):
    for i in range(4):
        axes[i, j].imshow(path[k, i].reshape(8, 8), cmap="gray", vmin=-1.5, vmax=1.5)
        axes[i, j].axis("off")
    axes[0, j].set_title(f"t={(N - 1 - k + 1) / N:.2f}" if k < N - 1 else "t=0")
plt.show()

# %% [markdown]
# Each row starts as pure noise at t = 1 and ends as a digit. The continuous view of the same
# process is the reverse-time SDE dx = [f - g^2 score] dt + g dw-bar; `sdes.reverse_drift`
# gives its drift for any process, and the samplers notebook (04) integrates it many ways.

# %%
vp = sdes.VPSDE(beta_min=0.1, beta_max=20.0)
f, g = vp.coefficients(jnp.ones((1, 64)), jnp.array([0.5]))
print("VP SDE at t=0.5: drift coefficient", float(f[0, 0]), " diffusion g =", float(g[0]))
