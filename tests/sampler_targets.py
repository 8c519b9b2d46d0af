"""Exact-score targets for sampler tests: data whose score is known in closed form at every t.

The data is a product of two independent blocks of ``DIM`` coordinates each:

- a Gaussian N(mu, diag(s^2)),
- a two-component Gaussian mixture pi_a N(m_a 1, s_a^2 I) + pi_b N(m_b 1, s_b^2 I).

Under any process with marginal x_t = scale x_0 + sigma eps, each block stays Gaussian
(resp. a Gaussian mixture) with means scale * m and variances scale^2 s^2 + sigma^2, so the
score is exact at every t. Both targets are sampled in one run (their scores factorise),
which halves the number of compiled samplers in the tests.
"""

import jax
import jax.numpy as jnp
import numpy as np

DIM = 16
MU = np.linspace(-0.5, 0.5, DIM).astype(np.float32)
S = np.linspace(0.3, 0.8, DIM).astype(np.float32)
WEIGHTS = np.array([0.3, 0.7], np.float32)
MEANS = np.array([1.4, -0.6], np.float32)  # overall mean 0: p_1 matches the prior
STDS = np.array([0.3, 0.5], np.float32)


def _score(process, x, t, **cond):
    """Exact score of the product target at time t; x (B, 2 DIM), t (B,)."""
    del cond
    scale, sigma = process.marginal(t)
    scale, sigma = scale[:, None], sigma[:, None]
    g, m = x[:, :DIM], x[:, DIM:]
    score_g = -(g - scale * MU) / (jnp.square(scale * S) + jnp.square(sigma))
    # Mixture block: isotropic components, so only the row sums of m and m^2 enter.
    var_k = jnp.square(scale * STDS) + jnp.square(sigma)  # (B, 2)
    mean_k = scale * MEANS  # (B, 2)
    s1, s2 = jnp.sum(m, -1, keepdims=True), jnp.sum(jnp.square(m), -1, keepdims=True)
    sq = s2 - 2.0 * mean_k * s1 + DIM * jnp.square(mean_k)  # sum_d (m_d - mean_k)^2
    logp = -0.5 * sq / var_k - 0.5 * DIM * jnp.log(var_k) + jnp.log(WEIGHTS)
    resp = jax.nn.softmax(logp, axis=-1)  # (B, 2)
    precision = jnp.sum(resp / var_k, -1, keepdims=True)
    shift = jnp.sum(resp * mean_k / var_k, -1, keepdims=True)
    return jnp.concatenate([score_g, shift - precision * m], axis=-1)


def exact_score(process):
    """The exact score model ``(x, t) -> score`` as a Partial (the process is a leaf)."""
    return jax.tree_util.Partial(_score, process)


def exact_eps(process):
    """The same model predicting eps = -sigma * score."""
    return jax.tree_util.Partial(_eps, process)


def _eps(process, x, t, **cond):
    return -process.sigma(t)[:, None] * _score(process, x, t)


def data_sample(key, n):
    """n exact draws from the target, shape (n, 2 DIM)."""
    kg, kc, km = jax.random.split(key, 3)
    g = MU + S * jax.random.normal(kg, (n, DIM))
    comp = jax.random.bernoulli(kc, WEIGHTS[1], (n,)).astype(jnp.int32)
    m = MEANS[comp][:, None] + STDS[comp][:, None] * jax.random.normal(km, (n, DIM))
    return jnp.concatenate([g, m], axis=-1)


def statistics(x):
    """Sample statistics: Gaussian-block mean/var (DIM,), mixture weight, comp means/vars."""
    x = np.asarray(x, np.float64)
    g, m = x[:, :DIM], x[:, DIM:]
    in_a = m.mean(axis=1) > 0.5 * (MEANS[0] + MEANS[1])
    return {
        "mean": g.mean(0),
        "var": g.var(0),
        "weight": in_a.mean(),
        "comp_mean": np.array([m[in_a].mean(), m[~in_a].mean()]),
        "comp_var": np.array([m[in_a].var(0).mean(), m[~in_a].var(0).mean()]),
    }


def errors(x, scale: float = 1.0, sigma: float = 0.0):
    """Errors of sample statistics against the target's marginal at (scale, sigma).

    Args:
      x: samples, shape (n, 2 DIM).
      scale, sigma: the marginal p_t to compare with (default: the data, t = 0).

    Returns:
      ``(raw, se)``: dicts over "mean", "var", "weight", "comp_mean", "comp_var" of the
      largest absolute error (means in units of the std, variances relative) and of its
      Monte-Carlo standard error in the same units.
    """
    n = x.shape[0]
    st = statistics(x)
    w = WEIGHTS[0]
    n_k = np.array([w, 1 - w]) * n
    std = np.sqrt(np.square(scale * S) + sigma**2)
    comp_std = np.sqrt(np.square(scale * STDS) + sigma**2)
    raw = {
        "mean": float(np.max(np.abs(st["mean"] - scale * MU) / std)),
        "var": float(np.max(np.abs(st["var"] / std**2 - 1))),
        "weight": float(abs(st["weight"] - w)),
        "comp_mean": float(np.max(np.abs(st["comp_mean"] - scale * MEANS) / comp_std)),
        "comp_var": float(np.max(np.abs(st["comp_var"] / comp_std**2 - 1))),
    }
    se = {
        "mean": 1 / np.sqrt(n),
        "var": np.sqrt(2.0 / n),
        "weight": float(np.sqrt(w * (1 - w) / n)),
        "comp_mean": float(1 / np.sqrt(n_k.min() * DIM)),
        "comp_var": float(np.sqrt(2.0 / (n_k.min() * DIM))),
    }
    return raw, se


def worst_z(x, scale: float = 1.0, sigma: float = 0.0) -> float:
    """The largest error over all statistics in units of its Monte-Carlo standard error."""
    raw, se = errors(x, scale, sigma)
    return max(raw[k] / se[k] for k in raw)


def on_shape(model):
    """``model`` (on (B, 2 DIM) arrays) applied to arrays of any shape (B, ...) holding
    2 DIM numbers per example: flattened in, reshaped out (video and audio shapes)."""
    return jax.tree_util.Partial(_on_shape, model)


def _on_shape(model, x, t, **cond):
    return model(x.reshape(x.shape[0], -1), t, **cond).reshape(x.shape)
