"""Tests for jaxdiff.losses: DSM / eps / v / EDM / hybrid losses and the VLB pieces.

Gaussian data x0 ~ N(mu, diag(s^2)) have the closed-form score
s(x, t) = -(x - scale mu) / (scale^2 s^2 + sigma^2) at every t, so the expected losses
must be minimised exactly there: a perturbation delta h raises the expected per-example
loss by exactly its quadratic term (the cross term has mean zero), which the tests check
within 4 Monte-Carlo standard errors.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

from jaxdiff import losses, parametrization, schedules, sdes

MU = jnp.array([0.5, -1.0, 2.0])
STD = jnp.array([0.3, 1.0, 0.5])
VP = sdes.VPSDE(0.1, 20.0)
VE = sdes.VESDE(0.01, 50.0)
BATCH = 16384


def _gaussian_data(key, batch=BATCH):
    return MU + STD * jax.random.normal(key, (batch, 3))


def _exact_score_fn(process, mu=MU, std=STD):
    def score_fn(x, t):
        scale, sigma = (a[:, None] for a in process.marginal(t))
        return -(x - scale * mu) / (scale**2 * std**2 + sigma**2)

    return score_fn


def _exact_model(process, kind):
    return parametrization.convert_model_fn(_exact_score_fn(process), "score", kind, process)


def _assert_quadratic_increase(exact_metrics, pert_metrics, expected):
    """mean(d_i) == mean(expected_i) within 4 standard errors, and clearly > 0."""
    d = np.asarray(pert_metrics["loss_per_example"] - exact_metrics["loss_per_example"])
    se = np.std(d - expected) / np.sqrt(d.size)
    assert abs(d.mean() - expected.mean()) < 4 * se + 1e-6, (d.mean(), expected.mean(), se)
    assert expected.mean() > 8 * se  # the test can tell the minimum apart


@pytest.mark.parametrize(
    "process,weighting", [(VP, "sigma2"), (VP, "likelihood"), (VE, "sigma2"), (VE, "likelihood")]
)
def test_dsm_minimised_at_exact_score(process, weighting):
    loss_fn = losses.make_loss("dsm", process, weighting=weighting)
    score_fn = _exact_score_fn(process)
    key, x0 = jax.random.key(1), _gaussian_data(jax.random.key(0))
    run = jax.jit(lambda delta, h: loss_fn(lambda x, t: score_fn(x, t) + delta * h, key, x0))
    loss0, m0 = run(0.0, jnp.zeros(3))
    t = m0["t"]
    lam = {
        "sigma2": VP.variance(t) if process is VP else VE.variance(t),
        "likelihood": jnp.square(process.coefficients(x0, t)[1]),
        "none": jnp.ones_like(t),
    }[weighting]
    for delta, h in [(0.5, jnp.array([1.0, 0.0, 0.0])), (-0.5, jnp.array([0.0, 1.0, -1.0]))]:
        loss, m = run(delta, h)
        assert loss > loss0
        _assert_quadratic_increase(m0, m, np.asarray(0.5 * lam * delta**2 * jnp.sum(h**2)))


@pytest.mark.parametrize("name,kind", [("eps", "eps"), ("v", "v"), ("x0", "x0"), ("eps", "x0")])
def test_regression_losses_minimised_at_exact_prediction(name, kind):
    process = schedules.DiscreteSchedule.from_name("cosine", 100) if kind == "x0" else VP
    loss_fn = losses.make_loss(name, process, kind=kind, time_sampler="antithetic")
    model = _exact_model(process, kind)
    key, x0 = jax.random.key(2), _gaussian_data(jax.random.key(3))
    h = jnp.array([0.3, 0.0, -0.3])
    run = jax.jit(lambda delta: loss_fn(lambda x, t: model(x, t) + delta * h, key, x0))
    loss0, m0 = run(0.0)
    loss1, m1 = run(1.0)
    assert loss1 > loss0
    if kind == name:  # the perturbation is in the loss's own units: + |h|^2 / dim exactly
        _assert_quadratic_increase(m0, m1, np.full(BATCH, float(jnp.sum(h**2)) / 3))


@pytest.mark.parametrize("kind", ["eps", "v"])
def test_dsm_converts_other_kinds_to_scores(kind):
    x0, key = _gaussian_data(jax.random.key(13), 8), jax.random.key(14)
    ref = losses.make_loss("dsm", VE, weighting="likelihood")(_exact_score_fn(VE), key, x0)[1]
    loss_fn = losses.make_loss("dsm", VE, kind=kind, weighting="likelihood")
    out = loss_fn(_exact_model(VE, kind), key, x0)[1]
    np.testing.assert_allclose(out["loss_per_example"], ref["loss_per_example"], rtol=1e-3)
    np.testing.assert_allclose(out["score_sq_norm"], ref["score_sq_norm"], rtol=1e-3)


def test_affine_score_model_fit_recovers_exact_score():
    """Fit s(x, t) = -(x - scale m) / (scale^2 exp(2 l) + sigma^2) by DSM with optax."""
    loss_fn = losses.make_loss("dsm", VP, time_sampler="antithetic")
    params = {"m": jnp.zeros(3), "log_s": jnp.zeros(3)}

    def model(params, x, t):
        scale, sigma = (a[:, None] for a in VP.marginal(t))
        var = scale**2 * jnp.exp(2 * params["log_s"]) + sigma**2
        return -(x - scale * params["m"]) / var

    opt = optax.adam(optax.cosine_decay_schedule(0.05, 600))

    def step(carry, i):
        params, opt_state = carry
        # Independent streams: fold_in(k, 1) equals split(k)[1], which the loss uses.
        key = jax.random.fold_in(jax.random.key(4), i)
        x0 = _gaussian_data(jax.random.fold_in(jax.random.key(5), i), 1024)
        grads = jax.grad(lambda p: loss_fn(lambda x, t: model(p, x, t), key, x0)[0])(params)
        updates, opt_state = opt.update(grads, opt_state)
        return (optax.apply_updates(params, updates), opt_state), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), jnp.arange(600))
    np.testing.assert_allclose(params["m"], MU, atol=0.04)
    np.testing.assert_allclose(jnp.exp(params["log_s"]), STD, rtol=0.05)
    x, t = _gaussian_data(jax.random.key(5), 64), jnp.linspace(0.05, 1.0, 64)
    fitted, exact = model(params, x, t), _exact_score_fn(VP)(x, t)
    assert float(jnp.linalg.norm(fitted - exact) / jnp.linalg.norm(exact)) < 0.05


def test_edm_loss():
    loss_fn = losses.make_loss("edm", None, time_sampler="antithetic")
    key, x0 = jax.random.key(6), _gaussian_data(jax.random.key(7))

    def denoiser(x, sigma, delta=0.0):  # the exact E[x0 | x] for Gaussian data
        s2 = STD**2
        return MU + s2 / (s2 + sigma[:, None] ** 2) * (x - MU) + delta * jnp.array([1.0, 0, 0])

    run = jax.jit(lambda delta: loss_fn(denoiser, key, x0, delta=delta))
    _, m0 = run(0.0)
    _, m1 = run(0.2)
    sigma = m0["t"]
    weight = (sigma**2 + 0.25) / (sigma * 0.5) ** 2
    _assert_quadratic_increase(m0, m1, np.asarray(weight * 0.04 / 3))
    log_sigma = np.log(np.asarray(sigma))
    # Stratified normal quantiles: the moments of ln sigma are nearly exact.
    assert abs(log_sigma.mean() + 1.2) < 1e-3
    assert abs(log_sigma.std() - 1.2) < 5e-3
    # Given noise levels are used as they are; a constant error c costs weight * c^2.
    sig = jnp.array([0.1, 1.0, 10.0])
    _, m = loss_fn(lambda x, s: x0[:3] + 0.5, key, x0[:3], t=sig)
    expected = (sig**2 + 0.25) / (sig * 0.5) ** 2 * 0.25
    np.testing.assert_allclose(m["loss_per_example"], expected, rtol=1e-6)


def test_weightings_metrics_t_weights_and_cond():
    key, x0 = jax.random.key(8), _gaussian_data(jax.random.key(9), 16)
    model = lambda x, t, label: jnp.zeros_like(x) + label[:, None]
    label = jnp.arange(16.0)
    per = {}
    for w in ("none", "sigma2", "likelihood"):
        loss, m = losses.make_loss("dsm", VP, weighting=w)(model, key, x0, label=label)
        chex.assert_shape([m["loss_per_example"], m["t"], m["score_sq_norm"]], (16,))
        np.testing.assert_allclose(loss, m["loss"])
        per[w] = m["loss_per_example"]
    t = m["t"]
    np.testing.assert_allclose(per["sigma2"] / per["none"], VP.variance(t), rtol=1e-5)
    np.testing.assert_allclose(per["likelihood"] / per["none"], 0.1 + 19.9 * t, rtol=1e-4)
    np.testing.assert_allclose(m["score_sq_norm"], 3 * label**2, rtol=1e-6)
    weights = jnp.linspace(0.0, 2.0, 16)
    tt = jnp.linspace(0.1, 0.9, 16)
    loss, m = losses.make_loss("v", VE)(model, key, x0, t=tt, t_weights=weights, label=label)
    np.testing.assert_allclose(m["t"], tt)
    np.testing.assert_allclose(loss, jnp.mean(weights * m["loss_per_example"]), rtol=1e-6)


def test_normal_kl():
    m, lv = jnp.array([0.3, -2.0]), jnp.array([0.1, -1.0])
    np.testing.assert_allclose(losses.normal_kl(m, lv, m, lv), 0.0, atol=1e-7)
    s1, s2 = np.exp(0.5 * np.asarray(lv)), np.array([1.5, 0.2])
    expected = np.log(s2 / s1) + (s1**2 + (np.asarray(m) - 1.0) ** 2) / (2 * s2**2) - 0.5
    np.testing.assert_allclose(losses.normal_kl(m, lv, 1.0, 2 * jnp.log(s2)), expected, rtol=1e-5)


def test_discretized_gaussian_decoder():
    x = jnp.broadcast_to(-1.0 + 2.0 * jnp.arange(256) / 255.0, (5, 256))
    means = jnp.array([0.0, 0.3, -0.99, 1.7, 0.5])[:, None] * jnp.ones((5, 256))
    log_scales = jnp.array([-1.0, -8.0, -3.0, 0.0, 2.0])[:, None]
    logp = losses.discretized_gaussian_log_likelihood(x, means, log_scales)
    np.testing.assert_allclose(jnp.sum(jnp.exp(logp), axis=-1), 1.0, rtol=2e-5)
    xs, mu, sd = np.asarray(x[0]), np.asarray(means[:, :1]), np.exp(np.asarray(log_scales))
    upper = np.where(xs > 0.999, np.inf, xs + 1 / 255)
    lower = np.where(xs < -0.999, -np.inf, xs - 1 / 255)
    p = stats.norm.cdf(upper, mu, sd) - stats.norm.cdf(lower, mu, sd)
    ok = p > 1e-6  # compare where float64 differences are meaningful
    np.testing.assert_allclose(np.asarray(logp)[ok], np.log(p[ok]), rtol=2e-4, atol=1e-4)


def _numpy_gaussian_vlb(betas, mu, s2, x0, xs):
    """VLB terms with the exact reverse model for N(mu, s2) data, independently in numpy.

    xs[i] is x at step i. Returns bits/dim per step (decoder at step 0, KL after).
    """
    ab = np.cumprod(1 - betas)
    terms = []
    for i in range(len(betas)):
        ab_prev = ab[i - 1] if i else 1.0
        # joint of (x_{i-1}, x_i) under the data distribution -> exact p(x_{i-1} | x_i)
        var_prev = ab_prev * s2 + 1 - ab_prev
        var_i = ab[i] * s2 + 1 - ab[i]
        cov = np.sqrt(1 - betas[i]) * var_prev
        m_model = np.sqrt(ab_prev) * mu + cov / var_i * (xs[i] - np.sqrt(ab[i]) * mu)
        v_model = var_prev - cov**2 / var_i
        if i == 0:
            sd = np.sqrt(v_model)
            up = np.where(x0 > 0.999, np.inf, x0 + 1 / 255)
            lo = np.where(x0 < -0.999, -np.inf, x0 - 1 / 255)
            p = stats.norm.cdf(up, m_model, sd) - stats.norm.cdf(lo, m_model, sd)
            terms.append(-np.log(p).mean(axis=-1) / np.log(2))
            continue
        # true posterior q(x_{i-1} | x_i, x_0) by conditioning given x_0
        c = np.sqrt(1 - betas[i]) * (1 - ab_prev)
        m_true = np.sqrt(ab_prev) * x0 + c / (1 - ab[i]) * (xs[i] - np.sqrt(ab[i]) * x0)
        v_true = (1 - ab_prev) - c**2 / (1 - ab[i])
        kl = 0.5 * (np.log(v_model / v_true) + (v_true + (m_true - m_model) ** 2) / v_model - 1)
        terms.append(kl.mean(axis=-1) / np.log(2))
    return np.stack(terms, axis=1), m_model, v_model


def test_vlb_for_gaussian_data_matches_numpy():
    betas = np.array([0.002, 0.02, 0.1, 0.3, 0.6])
    sched = schedules.DiscreteSchedule.from_betas(betas)
    betas = np.asarray(sched.betas, np.float64)  # the float32 values the code uses
    mu, s2 = 0.1, 0.2
    rng = np.random.default_rng(0)
    x0 = np.clip(np.round((mu + np.sqrt(s2) * rng.normal(size=(4, 6)) + 1) * 127.5), 0, 255)
    x0 = x0 / 127.5 - 1.0
    ab = np.cumprod(1 - betas)
    xs = [np.sqrt(a) * x0 + np.sqrt(1 - a) * rng.normal(size=x0.shape) for a in ab]
    expected, _, _ = _numpy_gaussian_vlb(betas, mu, s2, x0, xs)
    got = []
    for i in range(5):
        ab_prev = ab[i - 1] if i else 1.0
        var_prev, var_i = ab_prev * s2 + 1 - ab_prev, ab[i] * s2 + 1 - ab[i]
        cov = np.sqrt(1 - betas[i]) * var_prev
        mean = np.sqrt(ab_prev) * mu + cov / var_i * (xs[i] - np.sqrt(ab[i]) * mu)
        log_var = np.full_like(x0, np.log(var_prev - cov**2 / var_i))
        t = jnp.full((4,), (i + 1) / 5)
        args = (jnp.asarray(a, jnp.float32) for a in (x0, xs[i], t, mean, log_var))
        x0_, xt_, t_, mean_, lv_ = args
        got.append(jax.jit(losses.vlb_terms)(sched, x0_, xt_, t_, mean_, lv_))
    np.testing.assert_allclose(jnp.stack(got, axis=1), expected, rtol=2e-3, atol=2e-5)
    a_n = ab[-1]
    prior = 0.5 * (a_n * x0**2 + (1 - a_n) - 1 - np.log(1 - a_n)).mean(-1) / np.log(2)
    np.testing.assert_allclose(
        losses.prior_kl(sched, jnp.asarray(x0, jnp.float32)), prior, rtol=1e-4
    )


def test_hybrid_loss():
    sched = schedules.DiscreteSchedule.from_name("cosine", 50)
    loss_fn = losses.make_loss("hybrid", sched)
    x0 = jnp.clip(_gaussian_data(jax.random.key(11), 64) / 3, -1, 1)
    t = sched.timesteps()[jnp.arange(64) % 50]  # includes step 0 (the decoder term)
    seen = []

    def model(params, x, t):
        seen.append(x)
        return params["a"] * x, jnp.tanh(params["b"]) * jnp.ones_like(x)

    params = {"a": jnp.array(0.5), "b": jnp.array(0.2)}
    key = jax.random.key(12)

    def objective(params):
        seen.clear()
        loss, m = loss_fn(lambda x, t: model(params, x, t), key, x0, t=t)
        x_t = seen[0]  # the x_t the model saw, from the same trace
        mean, log_var = losses.model_posterior(sched, 0.5 * x_t, jnp.tanh(0.2), x_t, t)
        return loss, (m, x_t, losses.vlb_terms(sched, x0, x_t, t, mean, log_var))

    (_, (m, x_t, vlb)), grads = jax.jit(jax.value_and_grad(objective, has_aux=True))(params)
    x_t = np.asarray(x_t, np.float64)
    scale, sigma = (np.asarray(a, np.float64)[:, None] for a in sched.marginal(t))
    eps = (x_t - scale * np.asarray(x0)) / sigma
    # eps rebuilt from x_t carries float32 cancellation error (~3e-5 relative)
    np.testing.assert_allclose(m["mse"], np.mean((0.5 * x_t - eps) ** 2, -1), rtol=3e-4)
    np.testing.assert_allclose(m["vlb"], vlb, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m["loss_per_example"], m["mse"] + 0.001 * 50 * m["vlb"], rtol=1e-6)
    assert float(jnp.max(m["vlb"])) > 0.0
    # Stop-gradient: the vlb term trains only the variance output.
    grad_mse = np.mean(2 * (0.5 * x_t - eps) * x_t)
    np.testing.assert_allclose(grads["a"], grad_mse, rtol=1e-3)
    assert abs(float(grads["b"])) > 1e-6
    with pytest.raises(ValueError, match=r"needs model_fn to return \(prediction, v\)"):
        loss_fn(lambda x, t: x, key, x0)
    with pytest.raises(ValueError, match=r"The 'hybrid' loss needs a DiscreteSchedule; got VPSDE"):
        losses.make_loss("hybrid", VP)


def test_bad_loss_options():
    names = r"\['dsm', 'edm', 'eps', 'hybrid', 'v', 'x0'\]"
    with pytest.raises(ValueError, match=rf"Unknown loss 'l2'; valid names: {names}"):
        losses.make_loss("l2", VP)
    with pytest.raises(
        ValueError,
        match=r"Unknown weighting 'snr'; valid names: \['likelihood', 'none', 'sigma2'\]",
    ):
        losses.make_loss("dsm", VP, weighting="snr")
    with pytest.raises(ValueError, match=r"The 'dsm' loss needs a Process; got NoneType"):
        losses.make_loss("dsm", None)
    with pytest.raises(ValueError, match=r"Unknown time sampler 'halton'"):
        losses.make_loss("eps", VP, time_sampler="halton")
    with pytest.raises(ValueError, match=r"Unknown prediction kind 'noise'"):
        losses.make_loss("v", VP, kind="noise")
    with pytest.raises(ValueError, match=r"p_std=0\.0"):
        losses.make_loss("edm", None, p_std=0.0)


class LossVariantsTest(chex.TestCase):
    """Public loss functions give the same values with and without jit."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_losses(self):
        x0 = jnp.linspace(-1, 1, 24).reshape(4, 3, 2)
        model = lambda x, t: 0.1 * x
        for name, process in [("dsm", VP)]:
            loss_fn = losses.make_loss(name, process)
            fn = lambda key, x0: loss_fn(model, key, x0)
            out = self.variant(fn)(jax.random.key(0), x0)
            chex.assert_trees_all_close(out, jax.jit(fn)(jax.random.key(0), x0), rtol=1e-5)
            chex.assert_shape([out[1]["loss_per_example"], out[1]["t"]], (4,))

    @chex.variants(with_jit=True, without_jit=True)
    def test_vlb_pieces(self):
        x = jnp.linspace(-1, 1, 8).reshape(2, 4)
        kl = self.variant(losses.normal_kl)(x, 0.1 * x, 0.5 * x, -x)
        logp = self.variant(losses.discretized_gaussian_log_likelihood)(x, 0.9 * x, -2.0)
        chex.assert_shape([kl, logp], (2, 4))
        chex.assert_tree_all_finite((kl, logp))
