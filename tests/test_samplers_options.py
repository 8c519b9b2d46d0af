"""The typed options records of the samplers: one per method, static vs traced fields."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import samplers, schedules, sdes
from jaxdiff.samplers import edm, options

SCHED = schedules.DiscreteSchedule.from_name("linear", 100)


def test_eta_int_float_and_jax_scalar_share_one_compilation():
    traced = chex.assert_max_traces(lambda x, t: -x, n=1)
    run = lambda eta: samplers.sample(
        jax.random.key(0), traced, SCHED, (4, 2), method="ddim", num_steps=10, eta=eta
    )[0]
    outs = [run(eta) for eta in (0, 0.0, np.float64(0.5), jnp.float32(1.0), jnp.array(1))]
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[3], outs[4])
    assert float(jnp.max(jnp.abs(outs[0] - outs[3]))) > 1e-3
    # A traced scalar (sample() under an outer jit) reuses the same traced program too.
    np.testing.assert_allclose(jax.jit(run)(jnp.float32(1.0)), outs[3], atol=1e-6)


def test_static_options_recompile_and_host_options_do_not():
    traced = chex.assert_max_traces(lambda x, t: -x, n=2)  # one trace per compilation
    for steps in (1, 2, 2):
        samplers.sample(jax.random.key(0), traced, sdes.VESDE(), (2, 2),
                        method="annealed_langevin", num_steps=3, steps_per_level=steps,
                        denoise_final=False)  # fmt: skip
    once = chex.assert_max_traces(lambda x, t: -x, n=1)
    for rho in (7.0, 3.0):  # a grid parameter: new times, same program
        samplers.sample(jax.random.key(0), once, sdes.VPSDE(), (2, 2), method="ode_euler",
                        num_steps=4, rho=rho)  # fmt: skip


def test_each_method_has_a_frozen_typed_record():
    for name, spec in samplers.METHODS.items():
        record = spec.options()
        assert isinstance(record, options.SamplerOptions), name
        with pytest.raises(dataclasses.FrozenInstanceError):
            record.t_end = 0.5
    rec = samplers.METHODS["edm_stochastic"].options
    assert rec is edm.EDMOptions
    assert set(rec.names("traced")) == {"t_start", "t_end", "S_churn", "S_tmin", "S_tmax",
                                        "S_noise"}  # fmt: skip
    assert set(rec.names("host")) == {"grid", "rho", "sigma_min", "spacing"}
    assert rec().S_churn == 40.0 and rec().grid == "edm"
    assert samplers.METHODS["pc"].options().n_corrector == 1


def test_checks_run_on_concrete_values_only():
    with pytest.raises(ValueError, match="Option S_noise must be a float > 0; got S_noise=0"):
        edm.EDMOptions.create("edm_stochastic", S_noise=0)
    with pytest.raises(ValueError, match=r"Unknown options \['eta'\] for method 'ode_heun'"):
        samplers.METHODS["ode_heun"].options.create("ode_heun", eta=0.1)

    @jax.jit
    def traced(s_noise):
        return edm.EDMOptions.create("edm_stochastic", S_noise=s_noise).S_noise

    assert float(traced(-1.0)) == -1.0  # not checkable under jit: used as given
