"""Tests for jaxdiff.parametrization: eps / x0 / v / score conversions for every process."""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import parametrization as P
from jaxdiff import schedules, sdes

PROCESSES = {
    "vp": sdes.VPSDE(0.1, 20.0),
    "subvp": sdes.SubVPSDE(0.1, 20.0),  # scale^2 + sigma^2 != 1: the general v formula
    "ve": sdes.VESDE(0.01, 50.0),
    "linear": schedules.DiscreteSchedule.from_name("linear", 1000),
    "cosine": schedules.DiscreteSchedule.from_name("cosine", 1000),
    "sigmoid": schedules.DiscreteSchedule.from_name("sigmoid", 1000),
}
PAIRS = list(itertools.product(P.KINDS, P.KINDS))


def _rel_err(a, b):
    """Per-example relative error |a - b| / |b| over the data axes, shape (B,)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b, axis=-1) / np.linalg.norm(b, axis=-1)


def _truths(process, batch=64, dim=8):
    """x0, eps, t in [0.01, 0.99], x_t and every kind's exact value, in float64 numpy."""
    rng = np.random.default_rng(0)
    x0 = rng.normal(size=(batch, dim))
    eps = rng.normal(size=(batch, dim))
    t = np.linspace(0.01, 0.99, batch)
    scale, sigma = (np.asarray(a, np.float64)[:, None] for a in process.marginal(t))
    truth = {
        "eps": eps,
        "x0": x0,
        "v": scale * eps - sigma * x0,
        "score": -eps / sigma,
    }
    return jnp.asarray(scale * x0 + sigma * eps, jnp.float32), jnp.asarray(t, jnp.float32), truth


def _all_conversions(truth, x, t, process):
    """{(a, b): (a converted to b, and back to a)} for every pair of kinds (eager: the
    primitives compile once for all processes, cheaper than one jit per process)."""
    out = {}
    for a, b in PAIRS:
        there = P.convert(truth[a], a, b, x, t, process)
        out[a, b] = there, P.convert(there, b, a, x, t, process)
    return out


@pytest.mark.parametrize("name", sorted(PROCESSES))
def test_conversions_exact_and_round_trip(name):
    process = PROCESSES[name]
    x, t, truth = _truths(process)
    results = _all_conversions(jax.tree.map(jnp.float32, truth), x, t, process)
    for (a, b), (there, back) in results.items():
        assert _rel_err(there, truth[b]).max() < 1e-4, (name, a, b)
        assert _rel_err(back, truth[a]).max() < 1e-4, (name, a, b)


@pytest.mark.parametrize("name", ["subvp", "cosine"])
def test_true_prediction_matches_definitions(name):
    process = PROCESSES[name]
    x, t, truth = _truths(process, batch=8)
    x0, eps = (jnp.asarray(truth[k], jnp.float32) for k in ("x0", "eps"))
    for kind in P.KINDS:
        out = P.true_prediction(kind, x0, eps, t, process)
        assert _rel_err(out, truth[kind]).max() < 1e-5, kind


def test_tweedie_denoiser_gives_exact_gaussian_score():
    """For data N(mu, s^2 I): E[x0 | x_t] in closed form, converted to a score, is the score."""
    process, mu, s2 = PROCESSES["vp"], 0.7, 0.25
    x, t, _ = _truths(process, batch=16, dim=3)
    scale, sigma = (a[:, None] for a in process.marginal(t))
    var = scale**2 * s2 + sigma**2

    def denoiser(x, t, shift=0.0):
        return mu + s2 * scale / var * (x - scale * mu) + shift

    score_fn = P.to_score_fn(denoiser, "x0", process)
    np.testing.assert_allclose(score_fn(x, t), -(x - scale * mu) / var, rtol=1e-4, atol=1e-4)
    # Conditioning keywords pass through the wrappers.
    eps_fn = P.convert_model_fn(denoiser, "x0", "eps", process)
    shifted = eps_fn(x, t, shift=1.0) - eps_fn(x, t)
    np.testing.assert_allclose(shifted, -jnp.broadcast_to(scale / sigma, x.shape), rtol=1e-4)
    back = P.to_denoiser(P.to_score_fn(denoiser, "x0", process), "score", process)
    np.testing.assert_allclose(back(x, t), denoiser(x, t), rtol=1e-4, atol=1e-5)
    assert P.convert_model_fn(denoiser, "x0", "x0", process) is denoiser


def test_bad_inputs():
    process = PROCESSES["vp"]
    x = jnp.ones((2, 3))
    with pytest.raises(
        ValueError,
        match=r"Unknown prediction kind 'noise'; valid kinds: \['eps', 'x0', 'v', 'score'\]",
    ):
        P.convert(x, "noise", "eps", x, 0.5, process)
    with pytest.raises(ValueError, match=r"Unknown prediction kind 'mean'"):
        P.to_score_fn(lambda x, t: x, "mean", process)
    with pytest.raises(
        ValueError, match=r"pred and x must have one shape; got \(2, 2\) and \(2, 3\)"
    ):
        P.convert(jnp.ones((2, 2)), "eps", "x0", x, 0.5, process)
    with pytest.raises(ValueError, match=r"t must be a scalar or have shape \(B,\) = \(2,\)"):
        P.convert(x, "eps", "x0", x, jnp.ones((3,)), process)


class ConvertVariantsTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_convert_with_process_argument(self):
        process = PROCESSES["ve"]
        x, t, truth = _truths(process, batch=4, dim=2)
        fn = lambda pred, x, t, process: P.convert(pred, "v", "score", x, t, process)
        out = self.variant(fn)(jnp.asarray(truth["v"], jnp.float32), x, t, process)
        chex.assert_shape(out, (4, 2))
        assert _rel_err(out, truth["score"]).max() < 1e-4
