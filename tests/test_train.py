"""End-to-end tests of ``python -m jaxdiff.train``: exact resume after kill -9, 8 devices,
multi-process, non-finite losses and bad input (one-line errors, checkpoints kept)."""

import json
import os
import socket
import subprocess
import sys
import threading

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxdiff.training import integrity, loop
from tests import _standins

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = "configs/quickstart.py:smoke"
RUN20 = [
    "--config.train.num_steps=20",
    "--config.train.checkpoint_every=5",
    "--config.data.num_threads=2",
]


def train_cli(
    workdir,
    *args,
    devices=1,
    env=None,
    timeout=300,
    check=True,
    module="jaxdiff.train",
    config=SMOKE,
    extra=(),
):
    """Runs the training command (or ``module``) in a fresh process; returns the
    CompletedProcess."""
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        JAX_DISABLE_MOST_OPTIMIZATIONS="1",
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        **(env or {}),
    )
    cmd = [sys.executable, "-m", module, f"--config={config}", f"--workdir={workdir}"]
    out = subprocess.run(
        cmd + list(extra) + list(args),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and out.returncode:
        raise AssertionError(f"exit {out.returncode}\n{out.stderr[-3000:]}")
    return out


def load_state(workdir, step):
    """A checkpoint's state as a dict tree on this process's first device (any topology)."""
    path = os.path.join(workdir, "checkpoints", str(step), "state")
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    with ocp.StandardCheckpointer() as c:
        meta = c.metadata(path).item_metadata
        target = jax.tree.map(
            lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), meta
        )
        return c.restore(path, target)


def losses(workdir):
    """{step: loss} from metrics.jsonl (the last line of a step wins after a resume)."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return {r["step"]: r["loss"] for r in map(json.loads, f)}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("uninterrupted"))
    train_cli(workdir, *RUN20)
    return workdir


def test_kill_9_then_rerun_is_bitwise_identical(uninterrupted, tmp_path):
    workdir = str(tmp_path)
    killed = train_cli(workdir, *RUN20, env={loop.KILL_ENV: "12"}, check=False)
    assert killed.returncode == -9  # SIGKILL, mid-run
    assert max(losses(workdir)) == 12
    train_cli(workdir, *RUN20)  # the same command again resumes
    want, got = load_state(uninterrupted, 20), load_state(workdir, 20)
    assert sorted(got) == ["ema", "importance", "key", "opt_state", "params", "step"]
    leaves_w, leaves_g = jax.tree.leaves(want), jax.tree.leaves(got)
    assert len(leaves_w) == len(leaves_g) > 10
    for a, b in zip(leaves_w, leaves_g, strict=True):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_eight_devices_give_the_same_loss_curve(uninterrupted, tmp_path):
    train_cli(str(tmp_path), *RUN20, devices=8)
    one, eight = losses(uninterrupted), losses(str(tmp_path))
    assert sorted(one) == sorted(eight) == list(range(1, 21))
    np.testing.assert_allclose([eight[s] for s in one], [one[s] for s in one], rtol=2e-5)


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_and_checkpoint(tmp_path):
    addr = f"localhost:{free_port()}"
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jaxdiff.train",
                f"--config={SMOKE}",
                f"--workdir={tmp_path}",
                "--config.train.num_steps=4",
                "--config.train.checkpoint_every=4",
                f"--coordinator_address={addr}",
                "--num_processes=2",
                f"--process_id={i}",
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-2000:] + outs[1][-2000:]
    assert int(load_state(str(tmp_path), 4)["step"]) == 4


def one_line_error(out, code=1):
    assert out.returncode == code and "Traceback" not in out.stderr, out.stderr[-3000:]
    return out.stderr.strip().splitlines()[-1]


def test_bad_input_from_the_command_line(tmp_path):
    line = one_line_error(train_cli(str(tmp_path), "--config.optim.lrr=1", check=False), code=2)
    assert "lrr" in line
    out = train_cli(str(tmp_path), "--config.data.batch_size=12", devices=8, check=False)
    assert one_line_error(out) == (
        "error: batch size 12 is not divisible by the 8 devices; use a multiple of 8 "
        "(--config.data.batch_size)."
    )


def smoke_config(name="quickstart"):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config("smoke")


def test_unwritable_workdir_and_missing_dataset(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="cannot create workdir"):
        loop.train(smoke_config(), str(blocker / "run"))
    c = smoke_config("mnist_ddpm")
    c.data.data_dir = str(tmp_path / "no_tfds_here")
    with pytest.raises(ValueError, match="TFDS_DATA_DIR"):
        loop.train(c, str(tmp_path / "run"))


def test_a_workdir_of_another_config_is_left_alone(tmp_path, monkeypatch):
    _standins.install(monkeypatch)
    workdir = str(tmp_path)
    loop.train(smoke_config(), workdir)
    step_dir = os.path.join(workdir, "checkpoints", "1")
    before = sorted(os.listdir(step_dir))
    other = smoke_config()
    other.process.name = "linear"
    with pytest.raises(ValueError, match="different config \\(process:"):
        loop.train(other, workdir)
    assert sorted(os.listdir(step_dir)) == before
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["1", integrity.MARKER]


def test_non_finite_loss_names_the_step_and_the_checkpoint(tmp_path, monkeypatch):
    _standins.install(monkeypatch)
    c = smoke_config()
    c.train.update(num_steps=2, checkpoint_every=2)
    loop.train(c, str(tmp_path))

    def nan_loss(config, process):
        good = _standins.eps_loss(process)
        return lambda *a, **k: jax.tree.map(lambda v: v * np.nan, good(*a, **k))

    monkeypatch.setattr(loop.components, "build_loss", nan_loss)
    c.train.num_steps = 5
    with pytest.raises(loop.NonFiniteLossError) as e:
        loop.train(c, str(tmp_path))
    ckpt_dir = os.path.join(str(tmp_path), "checkpoints")
    assert str(e.value) == (
        f"loss is nan at step 3; stopped without saving. Last good checkpoint: step 2 in "
        f"{ckpt_dir}."
    )
    assert sorted(os.listdir(ckpt_dir)) == ["2", integrity.MARKER]


def test_sigterm_saves_and_stops(tmp_path, monkeypatch):
    _standins.install(monkeypatch)
    flag = threading.Event()
    flag.set()
    monkeypatch.setattr(loop.ckpt_lib, "install_sigterm_handler", lambda: flag)
    c = smoke_config()
    c.train.update(num_steps=50, checkpoint_every=100)
    state = loop.train(c, str(tmp_path))
    assert int(state.step) == 1
    assert sorted(os.listdir(os.path.join(str(tmp_path), "checkpoints"))) == ["1", integrity.MARKER]


def test_sample_command_writes_a_grid_and_arrays(uninterrupted, tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1")
    for out, extra in (("grid.png", []), ("samples.npz", ["--clip_x0=0.5"])):
        cmd = [
            sys.executable,
            "-m",
            "jaxdiff.sample",
            f"--workdir={uninterrupted}",
            "--num_steps=2",
            "--num_samples=4",
            f"--out={tmp_path / out}",
            *extra,
        ]
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    from PIL import Image

    assert Image.open(tmp_path / "grid.png").size == (4 * 19, 4 * 19)  # 2x2 tiles of 8+1 px, +1
    images = np.load(tmp_path / "samples.npz")["images"]
    assert images.shape == (4, 8, 8, 1) and np.abs(images).max() <= 0.5  # DDIM ends on x0
