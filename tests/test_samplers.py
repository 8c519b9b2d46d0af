"""Tests of jaxdiff.samplers: exact-score statistics, convergence order, DDIM/DDPM identity,
round trips, compile counts, NFE counts and bad input.

The exact-score targets (a 16-d Gaussian N(mu, diag s^2) and a 16-d two-component mixture,
sampled together) are in ``sampler_targets.py``.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sampler_targets import DIM, data_sample, errors, exact_eps, exact_score, worst_z

from jaxdiff import samplers, schedules, sdes
from jaxdiff.samplers import discrete

N_SAMPLES = 10_000
SHAPE = (N_SAMPLES, 2 * DIM)
MC_SIGMAS = 5.0  # Monte-Carlo part of every tolerance: 5 standard errors

PROCESSES = {
    "vp": sdes.VPSDE(beta_min=0.1, beta_max=20.0),
    "ve": sdes.VESDE(sigma_min=0.01, sigma_max=100.0),
    "ddpm": schedules.DiscreteSchedule.from_name("linear", 1000),
}


def _sample(method, process, num_steps, seed=0, **options):
    p = PROCESSES[process]
    key = jax.random.key(seed)
    return samplers.sample(
        key, exact_score(p), p, SHAPE, method=method, num_steps=num_steps, **options
    )


# The tolerance table. Each row: method, process, options, the fine setting (num_steps, or
# steps_per_level / rtol), a coarse setting whose error must be larger, and the
# discretisation allowance `disc` (added to 5 Monte-Carlo standard errors; in the units of
# sampler_targets.errors: std units for means, relative for variances, absolute for the
# weight). Allowances are upper bounds of the bias measured at the fine setting.
TABLE = [
    # method, process, options, (fine num_steps, coarse num_steps), disc
    ("ddpm", "ddpm", {}, (1000, 25), 0.02),
    ("ddim", "ddpm", {}, (250, 10), 0.01),
    ("ddim", "ddpm", {"eta": 1.0}, (500, 25), 0.02),
    ("euler_maruyama", "vp", {}, (500, 50), 0.01),
    ("euler_maruyama", "ve", {}, (500, 10), 0.01),
    # Langevin corrector: unadjusted-Langevin bias ~ step / (2 var) <= 6% on the narrowest
    # coordinates at snr = 0.16.
    ("pc", "vp", {}, (200, 20), 0.03),
    ("pc", "ve", {}, (200, 20), 0.03),
    ("ode_euler", "vp", {}, (400, 20), 0.01),
    ("ode_euler", "ve", {}, (400, 20), 0.01),
    ("ode_heun", "vp", {}, (60, 8), 0.01),
    ("ode_heun", "ve", {}, (60, 8), 0.01),
    ("edm_stochastic", "vp", {"S_churn": 40.0}, (100, 10), 0.02),
    ("edm_stochastic", "ve", {"S_churn": 40.0}, (100, 10), 0.02),
    ("dpm_solver++", "vp", {}, (40, 5), 0.01),
    ("dpm_solver++", "ve", {}, (40, 5), 0.01),
]
# Settings that are not num_steps: the adaptive solver (rtol; num_steps only sets its first
# step). Annealed Langevin (steps_per_level) has its own test below.
TABLE_OTHER = [
    # method, process, num_steps, fine options, coarse options, disc
    ("ode_adaptive", "vp", 10, {"rtol": 1e-5, "atol": 1e-5}, {"rtol": 0.3, "atol": 0.3}, 0.005),
    ("ode_adaptive", "ve", 10, {"rtol": 1e-5, "atol": 1e-5}, {"rtol": 0.3, "atol": 0.3}, 0.005),
]


def _check_statistics(x, disc, label, scale=1.0, sigma=0.0):
    raw, se = errors(x, scale, sigma)
    for k in raw:
        tol = MC_SIGMAS * se[k] + disc
        assert raw[k] <= tol, f"{label}: {k} error {raw[k]:.4f} > tolerance {tol:.4f} ({raw})"


@pytest.mark.parametrize(
    "method, process, options, steps, disc", TABLE, ids=[f"{r[0]}-{r[1]}" for r in TABLE]
)
def test_exact_score_statistics(method, process, options, steps, disc):
    fine, coarse = steps
    x, info = _sample(method, process, fine, **options)
    assert x.shape == SHAPE and bool(jnp.all(jnp.isfinite(x)))
    _check_statistics(x, disc, f"{method}/{process}/{fine}")
    x_coarse, _ = _sample(method, process, coarse, **options)
    assert worst_z(x_coarse) > worst_z(x), "error must fall as num_steps grows"


@pytest.mark.parametrize(
    "method, process, num_steps, fine, coarse, disc",
    TABLE_OTHER,
    ids=[f"{r[0]}-{r[1]}" for r in TABLE_OTHER],
)
def test_exact_score_statistics_other_settings(method, process, num_steps, fine, coarse, disc):
    x, _ = _sample(method, process, num_steps, **fine)
    _check_statistics(x, disc, f"{method}/{process}/{fine}")
    x_coarse, _ = _sample(method, process, num_steps, **coarse)
    assert worst_z(x_coarse) > worst_z(x), f"error must fall from {coarse} to {fine}"


def _t_at_sigma(process, sigma: float) -> float:
    t = jnp.linspace(0.0, 1.0, 100_001)
    return float(jnp.interp(sigma, process.sigma(t), t))


# Annealed Langevin samples the last level's marginal p_{t_L}; it is compared with that
# exact marginal (sigma_L = 0.05, no final denoise), and step_size eps = 0.5 sigma_L^2.
# Unadjusted Langevin keeps a bias of order step / var at each level and the chain barely
# moves once step << var, so the allowance is larger than for the other samplers.
# With 10 levels the mixture weight depends on where the levels fall around the point where
# the modes separate (VP: 0.06 measured; VE: 0.01).
ANNEALED = [
    # process, num_steps (levels), fine steps_per_level, coarse steps_per_level, disc
    ("ve", 10, 100, 10, 0.05),
    ("vp", 10, 100, 10, 0.07),
    pytest.param("ve", 30, 100, 10, 0.02, marks=pytest.mark.slow),
    pytest.param("vp", 30, 100, 10, 0.02, marks=pytest.mark.slow),
]


@pytest.mark.parametrize(
    "process, levels, fine, coarse, disc", ANNEALED, ids=["ve-10", "vp-10", "ve-30", "vp-30"]
)
def test_annealed_langevin_statistics(process, levels, fine, coarse, disc):
    p = PROCESSES[process]
    t_end = _t_at_sigma(p, 0.05)
    scale, sigma = (float(a) for a in p.marginal(jnp.float32(t_end)))
    opts = dict(t_end=t_end, denoise_final=False, step_size=0.5 * sigma**2)
    x, info = _sample("annealed_langevin", process, levels, steps_per_level=fine, **opts)
    assert int(info["nfe"]) == levels * fine
    _check_statistics(x, disc, f"annealed_langevin/{process}", scale, sigma)
    x_coarse, _ = _sample("annealed_langevin", process, levels, steps_per_level=coarse, **opts)
    assert worst_z(x_coarse, scale, sigma) > worst_z(x, scale, sigma)


def test_exact_data_passes_the_statistics_check():
    # The check itself: exact draws pass with no allowance.
    _check_statistics(data_sample(jax.random.key(1), N_SAMPLES), 0.0, "exact draws")


def _ode_errors(process, method, steps_list, t_end=0.05):
    """RMS error on the Gaussian block at t_end vs a fine adaptive solve (same x_init)."""
    p = PROCESSES[process]
    x1 = p.prior_sample(jax.random.key(3), (256, 2 * DIM))
    common = dict(x_init=x1, t_end=t_end, denoise_final=False)
    key = jax.random.key(0)
    ref, info = samplers.sample(
        key, exact_score(p), p, x1.shape, method="ode_adaptive", num_steps=10,
        rtol=1e-6, atol=1e-6, **common,
    )  # fmt: skip
    assert not bool(info["reached_max_steps"])
    errs = []
    for n in steps_list:
        x, _ = samplers.sample(key, exact_score(p), p, x1.shape, method=method, num_steps=n,
                               x_init=x1, t_end=t_end)  # fmt: skip
        errs.append(float(jnp.sqrt(jnp.mean(jnp.square(x - ref)[:, :DIM]))))
    return np.array(errs)


def _slope(steps_list, errs):
    return -np.polyfit(np.log(steps_list), np.log(errs), 1)[0]


ORDER_STEPS = [16, 32, 64, 128]


@pytest.mark.parametrize("process", ["vp", pytest.param("ve", marks=pytest.mark.slow)])
@pytest.mark.parametrize("method, bounds", [("ode_euler", (0.8, 1.2)), ("ode_heun", (1.7, 2.3))])
def test_ode_order_of_convergence(process, method, bounds):
    # The ODE of the Gaussian block (the blocks do not interact), against a fine adaptive
    # solve; the fitted slope of log error vs log num_steps is the order.
    errs = _ode_errors(process, method, ORDER_STEPS)
    slope = _slope(ORDER_STEPS, errs)
    assert bounds[0] <= slope <= bounds[1], f"{method}: slope {slope:.2f}, errors {errs}"
    expected = samplers.METHODS[method].stepper.order
    assert abs(slope - expected) < 0.3


def test_adaptive_nfe_falls_as_rtol_loosens_and_error_tracks_rtol():
    p = PROCESSES["vp"]
    x1 = p.prior_sample(jax.random.key(3), (256, 2 * DIM))
    key, common = jax.random.key(0), dict(x_init=x1, t_end=0.05, denoise_final=False)
    run = lambda tol: samplers.sample(key, exact_score(p), p, x1.shape, method="ode_adaptive",
                                      num_steps=1, rtol=tol, atol=tol, **common)  # fmt: skip
    ref, _ = run(1e-6)
    tols = [1e-5, 1e-4, 1e-3, 1e-2]
    nfes, errs = [], []
    for tol in tols:
        x, info = run(tol)
        nfes.append(int(info["nfe"]))
        errs.append(float(jnp.sqrt(jnp.mean(jnp.square(x - ref)))))
        assert int(info["nfe"]) == 1 + 6 * int(info["accepted"] + info["rejected"])
    assert all(a > b for a, b in zip(nfes, nfes[1:], strict=False)), nfes
    assert all(a < b for a, b in zip(errs, errs[1:], strict=False)), errs
    # Error tracks rtol: the RMS error stays below a small multiple of it (the global error
    # of a tolerance-controlled solve is ~ C * tol) and the log-log slope is near 1.
    for tol, err in zip(tols, errs, strict=True):
        assert err < 5 * tol, (tol, err)
    assert 0.5 < -_slope(tols, errs) < 1.3, errs


def test_ddim_eta1_equals_ddpm_beta_tilde_on_full_grid():
    sched = PROCESSES["ddpm"]
    key, shape = jax.random.key(7), (64, 2 * DIM)
    model = exact_eps(sched)
    x_ddpm, i1 = samplers.sample(key, model, sched, shape, method="ddpm", num_steps=1000,
                                 kind="eps", variance="beta_tilde")  # fmt: skip
    x_ddim, i2 = samplers.sample(key, model, sched, shape, method="ddim", num_steps=1000,
                                 kind="eps", eta=1.0)  # fmt: skip
    assert int(i1["nfe"]) == int(i2["nfe"]) == 1000
    np.testing.assert_allclose(x_ddim, x_ddpm, atol=1e-4)
    # ...and the identity is not vacuous: eta = 0 gives a different sample.
    x_det, _ = samplers.sample(key, model, sched, shape, method="ddim", num_steps=1000,
                               kind="eps", eta=0.0)  # fmt: skip
    assert float(jnp.max(jnp.abs(x_det - x_ddpm))) > 0.1


def test_ddim_eta0_is_deterministic_and_round_trips():
    sched = PROCESSES["ddpm"]
    model = exact_score(sched)
    x0 = data_sample(jax.random.key(5), 256)
    a, _ = samplers.sample(jax.random.key(0), model, sched, x0.shape, method="ddim",
                           num_steps=20, x_init=x0)  # fmt: skip
    b, _ = samplers.sample(jax.random.key(1), model, sched, x0.shape, method="ddim",
                           num_steps=20, x_init=x0)  # fmt: skip
    np.testing.assert_array_equal(a, b)
    errs = []
    for n in (50, 200, 1000):
        noise, info = samplers.encode(model, sched, x0, num_steps=n)
        assert int(info["nfe"]) == n
        back, _ = samplers.sample(jax.random.key(0), model, sched, x0.shape, method="ddim",
                                  num_steps=n, x_init=noise)  # fmt: skip
        errs.append(float(jnp.sqrt(jnp.mean(jnp.square(back - x0)))))
    assert errs[0] > errs[1] > errs[2], errs
    assert errs[2] < 2e-2, errs


def test_compiles_once_per_shape_steps_method():
    # One trace for repeated calls with new keys, x_init, process parameters and float
    # options; the model (a traced-once wrapper) would raise on a second trace.
    traced = chex.assert_max_traces(lambda x, t: -x, n=1)
    shape = (8, 3)
    for i, beta_max in enumerate([20.0, 15.0, 10.0]):
        p = sdes.VPSDE(beta_min=0.1, beta_max=beta_max)
        x_init = jax.random.normal(jax.random.key(i), shape)
        x, info = samplers.sample(jax.random.key(i), traced, p, shape, method="ode_euler",
                                  num_steps=12, x_init=x_init, t_end=0.01 * (i + 1))  # fmt: skip
        assert int(info["nfe"]) == 12
    # Model parameters passed as leaves of a Partial are traced too.
    apply = chex.assert_max_traces(lambda w, x, t: -w * x, n=1)
    for w in (1.0, 2.0, 3.0):
        model = jax.tree_util.Partial(apply, jnp.float32(w))
        samplers.sample(jax.random.key(0), model, sdes.VESDE(), shape, method="dpm_solver++",
                        num_steps=5)  # fmt: skip


def test_sample_inside_an_outer_jit():
    # The grid is host data built eagerly; the same numbers come out under jit.
    p = PROCESSES["vp"]
    run = lambda key: samplers.sample(key, lambda x, t: -x, p, (2, 3), method="ode_heun",
                                      num_steps=4)[0]  # fmt: skip
    key = jax.random.key(1)
    np.testing.assert_allclose(jax.jit(run)(key), run(key), atol=1e-6)
    traced_process = lambda b: samplers.sample(
        key, lambda x, t: -x, sdes.VPSDE(beta_max=b), (2, 3), method="ode_heun", num_steps=4
    )
    with pytest.raises(ValueError, match="process holds traced values"):
        jax.jit(traced_process)(20.0)


def test_float_options_are_traced():
    # eta as a Python float or a JAX scalar: one trace for all values.
    traced = chex.assert_max_traces(lambda x, t: -x, n=1)
    sched = schedules.DiscreteSchedule.from_name("linear", 100)
    outs = [
        samplers.sample(
            jax.random.key(0), traced, sched, (4, 2), method="ddim", num_steps=10, eta=eta
        )[0]  # fmt: skip
        for eta in (0.0, 0.5, jnp.float32(1.0))
    ]
    assert float(jnp.max(jnp.abs(outs[0] - outs[2]))) > 1e-3


def test_compile_counts_for_ddpm_and_pc():
    traced = chex.assert_max_traces(lambda x, t: -x, n=3)  # pc: corrector, predictor, denoise
    for beta_end in (0.02, 0.03):
        sched = schedules.DiscreteSchedule.from_name("linear", 100, beta_end=beta_end)
        samplers.sample(jax.random.key(0), traced, sched, (4, 2), method="pc", num_steps=10)
    traced_ddpm = chex.assert_max_traces(lambda x, t: -x, n=1)
    for seed in range(2):
        samplers.sample(jax.random.key(seed), traced_ddpm, sched, (4, 2), method="ddpm",
                        num_steps=10)  # fmt: skip


NFE = [
    ("ddpm", "ddpm", 10, {}, 10),
    ("ddim", "ddpm", 10, {}, 10),
    ("euler_maruyama", "vp", 10, {}, 11),  # + final denoise
    ("pc", "vp", 10, {"n_corrector": 2}, 31),  # N (1 + n_corrector) + final denoise
    ("annealed_langevin", "ve", 4, {"steps_per_level": 3}, 13),
    ("ode_euler", "vp", 10, {}, 10),
    ("ode_heun", "vp", 10, {}, 19),  # 2N - 1: the last step goes to sigma = 0 (Euler)
    ("ode_heun", "ve", 10, {}, 20),  # 2N: VE ends at sigma_min > 0 (Heun to the end)
    ("edm_stochastic", "ve", 10, {}, 20),
    ("dpm_solver++", "vp", 10, {"denoise_final": True}, 11),
]


@pytest.mark.parametrize("method, process, n, options, nfe", NFE, ids=[r[0] for r in NFE])
def test_nfe_counts_network_calls(method, process, n, options, nfe):
    calls = []

    def model(x, t):
        jax.debug.callback(lambda: calls.append(1))
        return -x

    p = PROCESSES[process]
    x, info = samplers.sample(jax.random.key(0), model, p, (2, 3), method=method,
                              num_steps=n, **options)  # fmt: skip
    jax.effects_barrier()
    assert int(info["nfe"]) == nfe == len(calls)


def test_trajectory():
    p = PROCESSES["vp"]
    x_init = jnp.ones((2, 3))
    x, info = samplers.sample(jax.random.key(0), lambda x, t: -x, p, (2, 3), method="ode_heun",
                              num_steps=6, x_init=x_init, return_trajectory=True)  # fmt: skip
    assert info["trajectory"].shape == (7, 2, 3) and info["times"].shape == (7,)
    np.testing.assert_array_equal(info["trajectory"][0], x_init)
    np.testing.assert_array_equal(info["trajectory"][-1], x)
    assert float(info["times"][0]) == 1.0 and float(info["times"][-1]) == 0.0


def test_learned_variance_interpolates_beta_and_beta_tilde():
    sched = schedules.DiscreteSchedule.from_name("linear", 100)
    key, shape = jax.random.key(2), (16, 4)
    runs = {}
    for name, kwargs in {
        "tilde": dict(variance="beta_tilde"),
        "beta": dict(variance="beta"),
        "v=-1": dict(learned_variance=True),
        "v=+1": dict(learned_variance=True),
    }.items():
        sign = 1.0 if name == "v=+1" else -1.0
        model = lambda x, t, sign=sign: (-x, jnp.full_like(x, sign)) if name[0] == "v" else -x
        runs[name], _ = samplers.sample(key, model, sched, shape, method="ddpm", num_steps=25,
                                        **kwargs)  # fmt: skip
    np.testing.assert_allclose(runs["v=-1"], runs["tilde"], atol=1e-5)
    np.testing.assert_allclose(runs["v=+1"], runs["beta"], atol=1e-5)
    assert float(jnp.max(jnp.abs(runs["beta"] - runs["tilde"]))) > 1e-3


def test_learned_log_variance_matches_schedule_on_full_grid():
    sched = schedules.DiscreteSchedule.from_name("cosine", 50)
    times = jnp.asarray(samplers.grids.discrete(sched, 50).times)
    sd = samplers._driver.step_data(times)
    v = jnp.linspace(-1.0, 1.0, 50)
    ours = discrete._learned_log_variance(sched, sd, v)
    ref = sched.learned_log_variance(v[:, None], sd.t)[:, 0]
    np.testing.assert_allclose(ours, ref, rtol=1e-4)


@pytest.mark.parametrize("method", ["ode_heun", "ddim", "euler_maruyama"])
def test_truncated_sampling_from_partially_noised_data(method):
    # SDEdit: x_init ~ p(x_t | x_0) at t_start = 0.5 is an exact draw of p_{0.5}, so with the
    # exact score the sampler must return the data distribution; with t_end = 0.2 and no
    # final denoise it must return p_{0.2}.
    process = "ddpm" if method == "ddim" else "vp"
    p = PROCESSES[process]
    x0 = data_sample(jax.random.key(11), N_SAMPLES)
    x_init, _ = p.sample_marginal(jax.random.key(12), x0, 0.5)
    x, info = _sample(method, process, 100, t_start=0.5, x_init=x_init)
    _check_statistics(x, 0.03, f"{method} from t=0.5")
    x_mid, _ = _sample(method, process, 60, t_start=0.5, t_end=0.2, x_init=x_init,
                       denoise_final=False)  # fmt: skip
    scale, sigma = (float(a) for a in p.marginal(jnp.float32(0.2)))
    _check_statistics(x_mid, 0.03, f"{method} 0.5 -> 0.2", scale, sigma)


def test_model_kinds_agree():
    p = PROCESSES["vp"]
    key, shape = jax.random.key(4), (32, 2 * DIM)
    a, _ = samplers.sample(key, exact_score(p), p, shape, method="dpm_solver++", num_steps=8)
    b, _ = samplers.sample(key, exact_eps(p), p, shape, method="dpm_solver++", num_steps=8,
                           kind="eps")  # fmt: skip
    np.testing.assert_allclose(a, b, atol=1e-4)


def _bad(**overrides):
    args = dict(key=jax.random.key(0), model_fn=lambda x, t, **c: -x,
                process=PROCESSES["vp"], shape=(4, 2), method="ode_euler", num_steps=5)  # fmt: skip
    args.update(overrides)
    key, model, process, shape = (args.pop(k) for k in ("key", "model_fn", "process", "shape"))
    return lambda: samplers.sample(key, model, process, shape, **args)


@pytest.mark.parametrize(
    "call, match",
    [
        (_bad(method="heun"), r"Unknown method 'heun'; valid methods: \[.*'ode_heun'.*\]"),
        (_bad(num_steps=0), "num_steps must be an integer >= 1; got num_steps=0"),
        (_bad(num_steps=2.5), "num_steps must be an integer >= 1"),
        (_bad(t_start=1.5), r"t_start must lie in \(t_end, 1\]"),
        (_bad(t_start=0.3, t_end=0.5), r"t_start must lie in \(t_end, 1\]"),
        (_bad(t_start=0.5), "t_start=0.5 < 1 needs x_init"),
        (_bad(x_init=jnp.zeros((3, 2))), r"x_init must have shape \(4, 2\); got \(3, 2\)"),
        (_bad(label=jnp.zeros((3,), jnp.int32)), "label= must have batch size 4"),
        (_bad(shape=(0, 2)), "shape must be a tuple"),
        (_bad(method="ddpm"), "'ddpm' needs a DiscreteSchedule"),
        (_bad(method="ddim"), "'ddim' needs a DiscreteSchedule"),
        (_bad(eta=0.5), r"Unknown options \['eta'\] for method 'ode_euler'; valid options"),
        (_bad(method="pc", n_corrector=-1), "n_corrector must be an integer >= 0"),
        (_bad(method="ode_adaptive", rtol=0.0), "rtol must be a float > 0"),
        (_bad(method="ode_adaptive", return_trajectory=True), "not available for ode_adaptive"),
        (_bad(kind="noise"), "Unknown prediction kind 'noise'"),
        (_bad(grid="cubic"), "valid grids"),
        (_bad(model_fn=lambda x, t: x[:, :1]), r"shaped like x \(4, 2\); got \(4, 1\)"),
        (_bad(learned_variance=True), r"needs model_fn to return \(prediction, v\)"),
    ],
)
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_ddpm_bad_variance_and_spacing():
    sched = PROCESSES["ddpm"]
    with pytest.raises(ValueError, match="variance must be 'beta' or 'beta_tilde'"):
        samplers.sample(jax.random.key(0), lambda x, t: -x, sched, (2, 2), method="ddpm",
                        num_steps=5, variance="fixed")  # fmt: skip
    with pytest.raises(ValueError, match="valid spacings"):
        samplers.sample(jax.random.key(0), lambda x, t: -x, sched, (2, 2), method="ddim",
                        num_steps=5, spacing="middle")  # fmt: skip
