"""Checkpoint integrity: manifests, damaged checkpoints set aside, legacy directories.

Every kind of file of the newest checkpoint is truncated, garbled (same size) or deleted:
verification names the file, the step is set aside (renamed) and the run falls back to
the previous good step, finishing bitwise equal to a run resumed from that step.
"""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from jaxdiff.training import checkpoint, integrity, loop
from tests import _standins
from tests.test_train import smoke_config

FAULTS = ("truncate", "garble", "delete")
pytestmark = pytest.mark.usefixtures("fast_compiles")


def kind_of(rel: str) -> str:
    """A file's kind: its path with content-addressed (hash) names replaced by '*'."""
    head, name = os.path.split(rel)
    return os.path.join(head, "*") if len(name) == 32 and head.endswith("d") else rel


def files_by_kind(step_dir: str) -> dict[str, str]:
    """{kind: the largest file of that kind} in a step directory."""
    out = {}
    for root, _, names in os.walk(step_dir):
        for name in names:
            rel = os.path.relpath(os.path.join(root, name), step_dir)
            size = os.path.getsize(os.path.join(step_dir, rel))
            k = kind_of(rel)
            if k not in out or size > os.path.getsize(os.path.join(step_dir, out[k])):
                out[k] = rel
    return out


def damage(path: str, fault: str) -> None:
    if fault == "delete":
        os.remove(path)
        return
    data = bytearray(open(path, "rb").read())
    if fault == "truncate":
        data = data[: len(data) // 2]
    else:  # garble: same size, different bytes in the middle
        mid = len(data) // 2
        data[mid : mid + 8] = bytes(b ^ 0xA5 for b in data[mid : mid + 8])
    with open(path, "wb") as f:
        f.write(data)


def config(num_steps):
    c = smoke_config()
    c.train.update(num_steps=num_steps, checkpoint_every=5, keep_last=3)
    return c


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(workdir with committed steps 5 and 10, the state a run resumed from step 5 ends at)."""
    with pytest.MonkeyPatch.context() as mp:
        _standins.install(mp)
        previous = jax.config.read("jax_disable_most_optimizations")
        jax.config.update("jax_disable_most_optimizations", True)
        base = str(tmp_path_factory.mktemp("base"))
        loop.train(config(10), base)
        ref = str(tmp_path_factory.mktemp("ref"))
        shutil.copytree(base, ref, dirs_exist_ok=True)
        shutil.rmtree(os.path.join(ref, "checkpoints", "10"))
        want = loop.train(config(15), ref)
        jax.config.update("jax_disable_most_optimizations", previous)
    return base, want


def assert_bitwise_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb) > 5
    for x, y in zip(la, lb, strict=True):
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()


def test_saves_are_committed_with_a_manifest(trained):
    base, _ = trained
    root = os.path.join(base, "checkpoints")
    assert os.path.exists(os.path.join(root, integrity.MARKER))
    for step in (5, 10):
        manifest = integrity.read_manifest(os.path.join(root, str(step)))
        assert manifest["step"] == step and manifest["prng_impl"] == "threefry2x32"
        assert "meta/metadata" in manifest["files"]
        assert integrity.verify(os.path.join(root, str(step)), step) is None


def kinds(trained):
    return sorted(files_by_kind(os.path.join(trained[0], "checkpoints", "10")))


def test_every_kind_of_damage_is_found_and_named(trained, tmp_path):
    """Verification alone (no training): every kind of file x every fault."""
    base, _ = trained
    assert len(kinds(trained)) >= 12
    for kind in kinds(trained):
        for fault in FAULTS:
            root = str(tmp_path / f"{fault}_{kind.replace('/', '_')}")
            shutil.copytree(os.path.join(base, "checkpoints"), root)
            rel = files_by_kind(os.path.join(root, "10"))[kind]
            damage(os.path.join(root, "10", rel), fault)
            lines = []
            ckpt = checkpoint.Checkpointer(root, report=lines.append)
            assert ckpt.latest_step() == 5  # readers skip it without touching it
            assert ckpt.recover() == 5
            ckpt.close()
            assert len(lines) == 1 and "\n" not in lines[0]
            named = integrity.MANIFEST if kind == integrity.MANIFEST else rel
            assert lines[0].startswith(f"checkpoint step 10 failed verification ({named}")
            assert lines[0].endswith("falling back to step 5.")
            assert sorted(os.listdir(root)) == ["10.damaged", "5", integrity.MARKER]


def resume_after(trained, tmp_path, kind, fault, capsys, monkeypatch):
    base, want = trained
    workdir = str(tmp_path / "run")
    shutil.copytree(base, workdir)
    rel = files_by_kind(os.path.join(workdir, "checkpoints", "10"))[kind]
    damage(os.path.join(workdir, "checkpoints", "10", rel), fault)
    _standins.install(monkeypatch)
    capsys.readouterr()
    got = loop.train(config(15), workdir)
    lines = [x for x in capsys.readouterr().out.strip().splitlines() if "compiling" not in x]
    assert len(lines) == 3 and lines[2].startswith("done at step 15: "), lines
    assert lines[0].startswith("checkpoint step 10 failed verification (")
    assert lines[1].startswith("resumed from step 5")
    assert_bitwise_equal(want, got)


FAST = [
    ("meta/metadata", "garble"),
    ("state/ocdbt.process_0/d/*", "truncate"),
    ("data/process_0-of-1.json", "delete"),
    (integrity.MANIFEST, "garble"),
]


@pytest.mark.parametrize("kind, fault", FAST)
def test_a_damaged_newest_checkpoint_falls_back_and_finishes_bitwise(
    trained, tmp_path, kind, fault, capsys, monkeypatch
):
    resume_after(trained, tmp_path, kind, fault, capsys, monkeypatch)


@pytest.mark.slow
def test_every_kind_of_damage_falls_back_and_finishes_bitwise(trained, tmp_path_factory):
    for kind in kinds(trained):
        for fault in FAULTS:
            with pytest.MonkeyPatch.context() as mp:
                capsys = _Capture(mp)
                resume_after(trained, tmp_path_factory.mktemp("d"), kind, fault, capsys, mp)


class _Capture:
    """capsys for a loop of cases (pytest's capsys is one per test): patches loop.say."""

    def __init__(self, mp):
        self.lines = []
        mp.setattr(loop, "say", self.lines.append)

    def readouterr(self):
        out, self.lines[:] = "\n".join(self.lines), []
        return type("Out", (), {"out": out})


def test_a_legacy_directory_restores_unverified_with_one_line(trained, tmp_path, capsys):
    base, _ = trained
    root = str(tmp_path / "checkpoints")
    shutil.copytree(os.path.join(base, "checkpoints"), root)
    os.remove(os.path.join(root, integrity.MARKER))
    for step in (5, 10):
        os.remove(os.path.join(root, str(step), integrity.MANIFEST))
    lines = []
    ckpt = checkpoint.Checkpointer(root, report=lines.append)
    assert ckpt.legacy and ckpt.latest_step() == 10
    assert ckpt.recover() == 10
    assert lines == [
        f"checkpoints in {root} predate manifests (legacy): restoring step 10 unverified."
    ]
    ckpt.close()


def test_in_a_manifest_directory_a_step_without_one_is_incomplete(trained, tmp_path):
    base, _ = trained
    root = str(tmp_path / "checkpoints")
    shutil.copytree(os.path.join(base, "checkpoints"), root)
    os.remove(os.path.join(root, "10", integrity.MANIFEST))
    lines = []
    ckpt = checkpoint.Checkpointer(root, report=lines.append)
    assert not ckpt.legacy and ckpt.latest_step() == 5
    assert ckpt.recover() == 5
    assert "jaxdiff_manifest.json: missing (the save never completed)" in lines[0]
    ckpt.close()


def test_the_previous_good_step_is_kept_until_a_newer_one_commits(tmp_path):
    from tests.test_checkpoint import make_state

    ckpt = checkpoint.Checkpointer(str(tmp_path), keep_last=1, async_save=True)
    st = make_state()
    ckpt.save(1, st)
    ckpt.wait()
    ckpt.save(2, st)  # in flight: step 1 must survive it
    assert 1 in ckpt.all_steps()
    ckpt.save(3, st)
    ckpt.close()
    assert ckpt.all_steps() == [2, 3]  # keep_last is at least 2 committed steps
    manifest = json.load(open(os.path.join(str(tmp_path), "3", integrity.MANIFEST)))
    assert manifest["step"] == 3


def test_a_checkpoint_of_another_prng_impl_is_refused(tmp_path):
    from jaxdiff.training import state as state_lib
    from tests.test_checkpoint import make_state

    ckpt = checkpoint.Checkpointer(str(tmp_path), async_save=False)
    ckpt.save(1, make_state())
    abstract = state_lib.abstract(make_state(), state_lib.replicated(state_lib.make_mesh()))
    with pytest.raises(ValueError, match="holds a threefry2x32 key; this run uses rbg"):
        ckpt.restore(1, abstract.replace(prng_impl="rbg"))
    ckpt.close()


def test_a_legacy_checkpoint_that_cannot_be_read_is_set_aside_too(
    trained, tmp_path, capsys, monkeypatch
):
    """Without manifests, a corrupted meta JSON is found when read: set aside, fall back."""
    base, want = trained
    workdir = str(tmp_path / "run")
    shutil.copytree(base, workdir)
    root = os.path.join(workdir, "checkpoints")
    os.remove(os.path.join(root, integrity.MARKER))
    for step in (5, 10):
        os.remove(os.path.join(root, str(step), integrity.MANIFEST))
    meta = os.path.join(root, "10", "meta", "metadata")
    open(meta, "w").write(open(meta).read().replace(",", ";", 1))
    _standins.install(monkeypatch)
    capsys.readouterr()
    got = loop.train(config(15), workdir)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].endswith("restoring step 10 unverified.")
    assert lines[1].startswith("checkpoint step 10 failed verification (meta: ")
    assert lines[1].endswith("falling back to step 5."), lines[1]
    assert lines[3].startswith("resumed from step 5")
    assert_bitwise_equal(want, got)
