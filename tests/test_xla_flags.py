"""The entry points' XLA:CPU defaults: added only when safe and wanted, and they take effect."""

import os
import subprocess
import sys

import pytest

from jaxdiff import _xla_flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEASURED = _xla_flags._jaxlib_version() in _xla_flags.MEASURED_JAXLIB


@pytest.fixture
def measured_jaxlib(monkeypatch):
    monkeypatch.setattr(_xla_flags, "_jaxlib_version", lambda: (0, 10))


def test_appends_to_existing_flags(measured_jaxlib):
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    assert _xla_flags.apply_cpu_defaults(env)
    assert env["XLA_FLAGS"].split() == [
        "--xla_force_host_platform_device_count=8",
        _xla_flags.CPU_DEFAULTS,
    ]
    assert not _xla_flags.apply_cpu_defaults(env)  # idempotent: the flag is now set


def test_respects_the_users_own_setting_and_the_opt_out(measured_jaxlib):
    own = {"XLA_FLAGS": f"{_xla_flags.YNN_FLAG}="}
    assert not _xla_flags.apply_cpu_defaults(own) and own["XLA_FLAGS"] == f"{_xla_flags.YNN_FLAG}="
    opted_out = {_xla_flags.OPT_OUT: "0"}
    assert not _xla_flags.apply_cpu_defaults(opted_out) and "XLA_FLAGS" not in opted_out
    int8 = {}  # int8 convolutions stay with YNNPACK
    assert not _xla_flags.apply_cpu_defaults(int8, int8=True) and "XLA_FLAGS" not in int8


def test_int8_evaluation_scores_in_a_fresh_process_with_the_flag(measured_jaxlib):
    # int8 sampling runs without the flag; Inception then runs in a child that has it
    from jaxdiff import evaluate

    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    assert evaluate.scores_elsewhere(True, env)
    assert not evaluate.scores_elsewhere(False, env)  # fp32 has the flag in-process
    assert not evaluate.scores_elsewhere(True, {_xla_flags.OPT_OUT: "0"})  # opted out
    argv = ["--pretrained=mnist", "--quantize=int8", "--num_samples=5000"]
    command, child_env = evaluate.scoring_command(argv, env)
    assert command == [sys.executable, "-m", "jaxdiff.evaluate", *argv, "--score_only"]
    assert _xla_flags.CPU_DEFAULTS in child_env["XLA_FLAGS"].split()
    assert "--xla_force_host_platform_device_count=2" in child_env["XLA_FLAGS"]
    assert not evaluate.scores_elsewhere(True, child_env)  # the child scores in place
    assert _xla_flags.YNN_FLAG not in env["XLA_FLAGS"]  # the caller's environment untouched


def test_leaves_unmeasured_jaxlib_alone(monkeypatch):
    # An unknown XLA flag aborts start-up, so versions it was not measured on get nothing.
    for version in [(0, 9), (0, 12), (1, 0), None]:
        monkeypatch.setattr(_xla_flags, "_jaxlib_version", lambda v=version: v)
        env = {}
        assert not _xla_flags.apply_cpu_defaults(env) and env == {}


@pytest.mark.skipif(not MEASURED, reason="the flag is only applied on measured jaxlib versions")
@pytest.mark.parametrize("apply", [False, True])
def test_flag_moves_convolutions_off_ynnpack_after_importing_jax(apply):
    # Applied after `import jax` (as the entry points do) but before the first compile, the
    # flag must take effect: the compiled conv is no longer a YNNPACK fusion.
    code = (
        "import jax, jax.numpy as jnp\n"
        "from jaxdiff import _xla_flags\n"
        f"if {apply}: assert _xla_flags.apply_cpu_defaults()\n"
        "dn = ('NHWC', 'HWIO', 'NHWC')\n"
        "conv = jax.lax.conv_general_dilated\n"
        "f = lambda x, w: conv(x, w, (1, 1), 'SAME', dimension_numbers=dn)\n"
        "x, w = jnp.ones((8, 28, 28, 32)), jnp.ones((3, 3, 32, 64))\n"
        "print('__ynn_fusion' in jax.jit(f).lower(x, w).compile().as_text())\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", _xla_flags.OPT_OUT)}
    env["JAX_PLATFORMS"] = "cpu"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == str(not apply)


CACHED_RUN = """
import os, jax, jax.numpy as jnp
from jaxdiff import _xla_flags
_xla_flags.prepare()
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # cache even this one
jax.jit(lambda x: jnp.sin(x) * 2.0)(jnp.ones(3)).block_until_ready()
print(jax.config.jax_compilation_cache_dir)
"""


def test_the_compilation_cache_is_on_in_entry_points_and_can_be_turned_off(tmp_path):
    assert _xla_flags.enable_compilation_cache({"JAXDIFF_COMPILATION_CACHE": "0"}) is None
    for env, where in (
        ({"JAXDIFF_COMPILATION_CACHE": str(tmp_path / "mine")}, tmp_path / "mine"),
        ({"JAXDIFF_CACHE": str(tmp_path)}, tmp_path / "xla"),  # the default folder
    ):
        run_env = {k: v for k, v in os.environ.items() if not k.startswith("JAXDIFF_")}
        out = subprocess.run(
            [sys.executable, "-c", CACHED_RUN], cwd=REPO, env={**run_env, **env},
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.split()[-1] == str(where) and os.listdir(where)  # a program landed
