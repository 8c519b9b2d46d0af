"""Trained models shipped with jaxdiff: ``pretrained.load("mnist").sample(key, 16)``.

Each model is two files in ``jaxdiff/weights/``: ``NAME.safetensors`` (the EMA parameters,
flattened to "/"-joined keys, readable without JAX by ``safetensors.numpy``) and
``NAME.json`` (the training config that rebuilds the network and the process, the default
sampler and guidance, the PRNG implementation, a SHA-256 of the parameters, and how the
model was trained and measured). docs/pretrained.md has the numbers.

Example::

  from jaxdiff import pretrained
  model = pretrained.load("mnist")
  images = model.sample(jax.random.key(0), 10, label=jnp.arange(10))  # (10, 28, 28, 1)
"""

import dataclasses
import functools
import hashlib
import json
import os
from typing import Any

import numpy as np

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
SEPARATOR = "/"


KINDS = ("pixel", "latent", "autoencoder")


def available(kind: str | None = "pixel") -> list[str]:
    """Names of the shipped models (those with both a .json and a .safetensors file).

    Args:
      kind: "pixel" (the default: diffusion models in pixel space, ``load(name).sample``),
        "latent" (text / map models: ``text2img.load(name)``), "autoencoder"
        (``autoencoder.run.load(name)``), or None for all of them.
    """
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind={kind!r}: must be one of {KINDS} or None.")
    if not os.path.isdir(WEIGHTS_DIR):
        return []
    names = {f[: -len(".json")] for f in os.listdir(WEIGHTS_DIR) if f.endswith(".json")}
    names = {n for n in names if os.path.exists(_path(n, ".safetensors"))}
    return sorted(n for n in names if kind is None or model_kind(n) == kind)


def model_kind(name: str) -> str:
    """ "pixel", "latent" or "autoencoder": what the shipped model ``name`` is (its config)."""
    path = _path(name, ".json")
    return _record_kind(path, os.stat(path).st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _record_kind(path: str, mtime_ns: int) -> str:
    """The kind of the record at ``path``, read once per version (``mtime_ns``)."""
    with open(path, encoding="utf-8") as f:
        return config_kind(json.load(f)["config"])


def config_kind(config) -> str:
    """ "autoencoder", "latent" or "pixel": what a training config (dict or ConfigDict)
    trains."""
    if "autoencoder" in config:
        return "autoencoder"
    return "latent" if "latent" in config else "pixel"


def _path(name: str, suffix: str) -> str:
    return os.path.join(WEIGHTS_DIR, name + suffix)


def flatten(params: Any) -> dict[str, np.ndarray]:
    """{"a/b/kernel": array} of a nested dict of arrays (sorted keys)."""
    out: dict[str, np.ndarray] = {}

    def walk(tree, prefix):
        for k in sorted(tree):
            v = tree[k]
            key = f"{prefix}{SEPARATOR}{k}" if prefix else str(k)
            if isinstance(v, dict) or hasattr(v, "items"):
                walk(dict(v), key)
            else:
                out[key] = np.asarray(v)

    walk(dict(params), "")
    return out


def unflatten(flat: dict[str, np.ndarray]) -> dict:
    """The inverse of :func:`flatten`."""
    tree: dict = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split(SEPARATOR)
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


def params_sha256(flat: dict[str, np.ndarray]) -> str:
    """SHA-256 over sorted keys, dtypes, shapes and bytes of a flattened parameter dict."""
    h = hashlib.sha256()
    for key in sorted(flat):
        a = np.ascontiguousarray(flat[key])
        h.update(f"{key}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def read_weights(name: str) -> tuple[dict[str, np.ndarray], dict]:
    """(flat float32 parameters, the JSON record) of a shipped model; no JAX needed.

    Raises:
      ValueError: an unknown name (listing the valid ones) or weights whose SHA-256 is not
        the recorded one.
    """
    from safetensors.numpy import load_file

    if name not in available(None):
        raise ValueError(f"unknown pretrained model {name!r}; available: {available(None)}.")
    with open(_path(name, ".json"), encoding="utf-8") as f:
        record = json.load(f)
    stored = load_file(_path(name, ".safetensors"))
    digest = params_sha256(stored)
    if digest != record["params_sha256"]:
        raise ValueError(
            f"{_path(name, '.safetensors')} does not match its record (SHA-256 {digest[:12]} "
            f"vs {record['params_sha256'][:12]}); reinstall jaxdiff."
        )
    return {k: v.astype(np.float32) for k, v in stored.items()}, record


@dataclasses.dataclass(frozen=True, eq=False)  # compared and hashed by identity (sampler cache)
class Pretrained:
    """A shipped model: network, parameters, process and sampling defaults.

    Attributes:
      name: the model's name.
      config: the training config (ml_collections.ConfigDict) that made it, its ``sample``
        section set to the shipped default sampler (``record["sampler"]``).
      net: the network (a flax module).
      params: the EMA parameters (nested dict of float32 jax arrays).
      process: the diffusion process it was trained with.
      record: the JSON record (training, metrics, defaults).
    """

    name: str
    config: Any
    net: Any
    params: Any
    process: Any
    record: dict

    @property
    def num_classes(self) -> int:
        """Number of classes (0: unconditional)."""
        return int(self.config.model.num_classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one sample."""
        d = self.config.data
        return (d.image_size, d.image_size, d.channels)

    def sample(
        self,
        key,
        num: int,
        label=None,
        *,
        method: str | None = None,
        num_steps: int | None = None,
        guidance: float | None = None,
        params=None,
        **options,
    ):
        """Draws ``num`` images in [-1, 1], shape (num, H, W, C).

        Args:
          key: a PRNG key.
          num: number of images.
          label: class of each image: an int, or an int array of shape (num,); default
            0, 1, 2, ... cycling (conditional models only).
          method, num_steps, guidance: override the shipped defaults
            (``record["sampler"]``).
          params: parameters to sample with instead of the shipped ones (same tree, e.g.
            an earlier checkpoint of the same run); default ``self.params``.
          **options: other ``samplers.sample`` options (e.g. spacing, clip_x0).

        Raises:
          ValueError: a label outside [0, num_classes), a label for an unconditional model,
            or bad sampler arguments.
        """

        labels = self.labels_for(num, label)
        fn = _compiled_sampler(self, method, num_steps, guidance, tuple(sorted(options.items())))
        return fn(self.params if params is None else params, key, labels)

    def as_run(self):
        """This model as a ``training.restore.Run`` (config copied; step from the record).

        What the tools written for training runs take (``jaxdiff.evaluate``, the samplers'
        ``components.make_sampler``); editing the copy's config leaves the model alone.
        """
        import ml_collections

        from jaxdiff.training import restore

        config = ml_collections.ConfigDict(self.config.to_dict())
        step = int(self.record.get("step", 0))
        return restore.Run(config, self.net, self.process, self.params, step)

    def labels_for(self, num: int, label):
        """The (num,) int32 labels that .sample uses for ``label`` (None if unconditional)."""
        import jax.numpy as jnp

        labels = class_labels(num, label, self.num_classes, f"model {self.name!r}")
        return None if labels is None else jnp.asarray(labels)


def class_labels(num: int, label, num_classes: int, what: str = "this model"):
    """The (num,) int32 labels of a request: ``label`` broadcast, or 0, 1, 2, ... cycling.

    Args:
      num: number of images.
      label: None, an int, or ints of shape (num,).
      num_classes: the model's classes (0: unconditional).
      what: the model's name for messages.

    Returns:
      a NumPy int32 array (num,), or None for an unconditional model.

    Raises:
      ValueError: a label for an unconditional model, or a label outside [0, num_classes).
    """
    if not num_classes:
        if label is not None:
            raise ValueError(f"{what} is unconditional; pass label=None.")
        return None
    if label is None:
        return np.arange(num, dtype=np.int32) % num_classes
    labels = np.broadcast_to(np.asarray(label, np.int64), (num,))
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"labels must be in [0, {num_classes}) for {what}; "
            f"got {sorted(set(labels.tolist()))[:10]}."
        )
    return labels.astype(np.int32)


@functools.lru_cache(maxsize=32)
def _compiled_sampler(model: Pretrained, method, num_steps, guidance, options: tuple):
    from jaxdiff.training import components

    return components.jitted_sampler(
        model, method=method, num_steps=num_steps, guidance=guidance, **dict(options)
    )


def with_sampler(config, sampler: dict):
    """A copy of ``config`` whose ``sample`` section is ``sampler`` (a record's sampler)."""
    import ml_collections

    config = ml_collections.ConfigDict(config.to_dict())
    config.sample.update({k: sampler[k] for k in ("method", "num_steps", "guidance")})
    config.sample.options = ml_collections.ConfigDict(dict(sampler.get("options", {})))
    return config


@functools.lru_cache(maxsize=8)
def load(name: str) -> Pretrained:
    """Loads a shipped model by name (:func:`available` lists them).

    Raises:
      ValueError: an unknown name (the message lists the valid ones).
    """
    import jax
    import ml_collections

    from jaxdiff.training import components

    flat, record = read_weights(name)
    if config_kind(record["config"]) == "autoencoder":
        raise ValueError(
            f"{name!r} is an autoencoder, not a diffusion model: load it with "
            "jaxdiff.autoencoder.run.load(name)."
        )
    config = with_sampler(ml_collections.ConfigDict(record["config"]), record["sampler"])
    params = jax.tree.map(jax.numpy.asarray, unflatten(flat))
    return Pretrained(
        name=name,
        config=config,
        net=components.build_model(config),
        params=params,
        process=components.build_process(config),
        record=record,
    )


def load_run(source: str, params: str = "ema", step: int | None = None):
    """A ``training.restore.Run`` from a shipped model's name or a training run's directory
    (its newest checkpoint, or the one of ``step``).

    Args:
      source: a name from :func:`available`, or a workdir with ``checkpoints/``.
      params: a run's "ema" or "raw" weights (a shipped model has only its EMA).
      step: a run's kept checkpoint (None: the newest); a shipped model has one step.

    Raises:
      ValueError: neither a shipped name nor a run (the message lists the names), or
        ``params="raw"`` for a shipped model.
    """
    if source in available(None):
        if params != "ema" or step is not None:
            raise ValueError(
                f"{source!r} is a shipped model: only its EMA weights ship, of its last step."
            )
        return load(source).as_run()
    if os.path.isdir(os.path.join(source, "checkpoints")):
        from jaxdiff.training import restore

        return restore.load_run(source, params, step)
    raise ValueError(
        f"{source!r} is neither a shipped model ({', '.join(available(None)) or 'none'}) "
        "nor a training workdir (a folder with checkpoints/)."
    )


def save(
    name: str, run, *, dtype: str = "float16", sampler=None, notes=None, out_dir=None, extra=None
):
    """Writes a restored run's parameters as a shipped model: NAME.safetensors + NAME.json.

    Args:
      name: the model's name (``load(name)``).
      run: a ``training.restore.Run`` (config, params, step).
      dtype: storage dtype of the weights ("float16" or "float32"); loading casts to float32.
      sampler: default sampler {"method", "num_steps", "guidance", "options"} (default: the
        config's ``sample`` section; {} for a model that does not sample, an autoencoder).
      notes: JSON-able facts to record (command, hours, CPU, library versions, metrics).
      out_dir: where to write (default: the package's weights/ folder).
      extra: more JSON-able record fields (an autoencoder's ``scale_factor``).

    Returns:
      The path of the .json record.
    """
    from safetensors.numpy import save_file

    out_dir = out_dir or WEIGHTS_DIR
    os.makedirs(out_dir, exist_ok=True)
    flat = {k: np.asarray(v).astype(dtype) for k, v in flatten(run.params).items()}
    config = json.loads(json.dumps(run.config.to_dict()))
    config["data"]["data_dir"] = ""  # the training machine's path means nothing elsewhere
    if os.path.isabs(config["data"].get("path", "")):  # a latent run's .npz: where docs put it
        config["data"]["path"] = os.path.join("runs", os.path.basename(config["data"]["path"]))
    record = {
        "name": name,
        "step": int(run.step),
        "config": config,
        "sampler": default_sampler(run.config) if sampler is None else sampler,
        "prng_impl": config.get("prng_impl", "threefry2x32"),
        "stored_dtype": dtype,
        "num_params": int(sum(a.size for a in flat.values())),
        "params_sha256": params_sha256(flat),
        "notes": notes or {},
        **(extra or {}),
    }
    save_file(flat, os.path.join(out_dir, name + ".safetensors"))
    path = os.path.join(out_dir, name + ".json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1, sort_keys=True)
    return path


def main(argv=None) -> None:
    """``python -m jaxdiff.pretrained --workdir=DIR --name=NAME``: ship a run's EMA weights
    (a diffusion run, a latent text / map run or an autoencoder run)."""
    import argparse

    from jaxdiff import _xla_flags

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--workdir", required=True, help="a training run's directory")
    p.add_argument("--name", required=True, help="the model's name, e.g. mnist")
    p.add_argument("--params", default="ema", help='"ema", "raw" or an EMA decay, e.g. 0.9999')
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    p.add_argument("--notes", default="", help="a JSON file of facts to record")
    p.add_argument("--method", default="", help="default sampler (default: the config's)")
    p.add_argument("--num_steps", type=int, default=0, help="its steps (with --method)")
    p.add_argument("--guidance", type=float, default=None, help="default guidance w")
    p.add_argument(
        "--autoencoder", default="", help="a latent run: the shipped autoencoder it decodes with"
    )
    p.add_argument("--out_dir", default=WEIGHTS_DIR)
    args = p.parse_args(argv)
    _xla_flags.prepare()
    notes = {}
    if args.notes:
        with open(args.notes, encoding="utf-8") as f:
            notes = json.load(f)
    print(f"wrote {_ship(args, notes)}")


def _ship(args, notes: dict) -> str:
    """Saves the run ``args.workdir`` as ``args.name``; returns the record's path."""
    from jaxdiff.autoencoder import run as ae_run
    from jaxdiff.training import restore

    options = dict(dtype=args.dtype, notes=notes, out_dir=args.out_dir)
    if ae_run.is_autoencoder_run(args.workdir):
        ae = ae_run.load(args.workdir, args.params)
        extra = {"scale_factor": float(ae.scale_factor)}
        return save(args.name, ae, sampler={}, extra=extra, **options)
    run = restore.load_run(args.workdir, args.params)
    if args.autoencoder:
        if "latent" not in run.config:
            raise SystemExit(f"--autoencoder: {args.workdir} is not a latent run.")
        if args.autoencoder not in available("autoencoder"):
            raise SystemExit(
                f"--autoencoder={args.autoencoder}: not a shipped autoencoder; shipped: "
                f"{available('autoencoder')}. Ship it first (same command, its workdir)."
            )
        run.config.latent.autoencoder = args.autoencoder
    sampler = default_sampler(run.config, args.method, args.num_steps, args.guidance)
    return save(args.name, run, sampler=sampler, **options)


def default_sampler(config, method: str = "", num_steps: int = 0, guidance=None) -> dict:
    """The record's {"method", "num_steps", "guidance", "options"}: the config's sampler
    with the given overrides (another method drops the config's method options)."""
    from jaxdiff.training import components

    if method not in ("", config.sample.method) and not num_steps:
        raise ValueError(f"--method={method}: give --num_steps too.")
    return components.sampler_settings(config, method, num_steps, guidance)


if __name__ == "__main__":
    main()
