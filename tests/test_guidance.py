"""Tests of jaxdiff.guidance.cfg: the formula, one batched call, exact guided Gaussians."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import guidance, samplers, sdes

NUM_CLASSES = 3
CLASS_MEANS = jnp.array([[1.0, -1.0], [0.0, 2.0], [-2.0, 0.5], [0.3, 0.2]])  # last: null
DATA_STD = 0.5


def _gaussian_class_score(process, x, t, label):
    """Exact score of p_t(x | label) for data N(CLASS_MEANS[label], DATA_STD^2 I)."""
    scale, sigma = (a[:, None] for a in process.marginal(t))
    var = jnp.square(scale * DATA_STD) + jnp.square(sigma)
    return -(x - scale * CLASS_MEANS[label]) / var


def test_formula_and_single_batched_call():
    shapes = []

    def model(x, t, label, context):
        shapes.append((x.shape, t.shape, label.shape, context.shape))
        return x * label[:, None] + context.sum((1, 2))[:, None]

    x = jnp.arange(6.0).reshape(3, 2)
    t = jnp.full((3,), 0.5)
    label = jnp.array([0, 1, 2])
    context = jnp.ones((3, 4, 5))
    out = guidance.cfg(model, w=2.0, null_label=NUM_CLASSES)(x, t, label=label, context=context)
    assert shapes == [((6, 2), (6,), (6,), (6, 4, 5))]  # one call on the doubled batch
    cond, uncond = x * label[:, None] + 20.0, x * NUM_CLASSES + 20.0
    np.testing.assert_allclose(out, 3.0 * cond - 2.0 * uncond)


def test_w_zero_is_the_conditional_model():
    model = lambda x, t, label: x * (label[:, None] + 1.0)
    x, t, label = jnp.ones((2, 3)), jnp.zeros((2,)), jnp.array([1, 2])
    guided = guidance.cfg(model, w=0.0, null_label=NUM_CLASSES)
    np.testing.assert_allclose(guided(x, t, label=label), model(x, t, label))


def test_extra_outputs_come_from_the_conditional_half():
    model = lambda x, t, label: (x * label[:, None], jnp.broadcast_to(label[:, None], x.shape))
    x, t, label = jnp.ones((2, 3)), jnp.zeros((2,)), jnp.array([1, 2])
    pred, v = guidance.cfg(model, w=1.0, null_label=NUM_CLASSES)(x, t, label=label)
    np.testing.assert_allclose(pred, 2.0 * x * label[:, None] - x * NUM_CLASSES)
    np.testing.assert_allclose(v, jnp.broadcast_to(label[:, None], x.shape))


def test_guided_sampling_matches_the_exact_guided_gaussian():
    # With equal class variances, the guided score (1 + w) s_y - w s_null is the exact score
    # of N((1 + w) mu_y - w mu_null, s^2) at every t: guided samples have that mean.
    process = sdes.VPSDE()
    model = jax.tree_util.Partial(_gaussian_class_score, process)
    n, w = 4000, 1.5
    label = jnp.full((n,), 1, jnp.int32)
    guided = guidance.cfg(model, w=w, null_label=NUM_CLASSES)
    x, info = samplers.sample(jax.random.key(0), guided, process, (n, 2), method="dpm_solver++",
                              num_steps=30, label=label)  # fmt: skip
    assert int(info["nfe"]) == 30  # a guided call on the doubled batch is one call
    expected = (1 + w) * CLASS_MEANS[1] - w * CLASS_MEANS[NUM_CLASSES]
    np.testing.assert_allclose(x.mean(0), expected, atol=5 * DATA_STD / np.sqrt(n) + 0.01)
    np.testing.assert_allclose(x.std(0), DATA_STD, rtol=0.05)


def test_changing_w_does_not_recompile():
    model = chex.assert_max_traces(lambda x, t, label: -x + label[:, None], n=1)
    label = jnp.zeros((4,), jnp.int32)
    for w in (0.0, 1.0, 4.0):
        guided = guidance.cfg(model, w=w, null_label=NUM_CLASSES)
        samplers.sample(jax.random.key(0), guided, sdes.VPSDE(), (4, 2), method="ode_euler",
                        num_steps=4, label=label)  # fmt: skip


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: guidance.cfg(lambda x, t, label: x, w=-1.0, null_label=3), "w must be >= 0"),
        (lambda: guidance.cfg(lambda x, t, label: x, w=1.0, null_label=-1), "null_label must"),
        (lambda: guidance.cfg(lambda x, t, label: x, w=1.0, null_label=2.0), "null_label must"),
    ],
)
def test_bad_construction_raises(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_call_raises():
    guided = guidance.cfg(lambda x, t, label: x, w=1.0, null_label=3)
    x, t = jnp.ones((2, 3)), jnp.zeros((2,))
    with pytest.raises(ValueError, match="needs label="):
        guided(x, t)
    with pytest.raises(ValueError, match=r"label must have shape \(B,\) = \(2,\); got \(3,\)"):
        guided(x, t, label=jnp.zeros((3,), jnp.int32))
