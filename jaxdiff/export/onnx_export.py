"""A model's denoiser as an ONNX graph (through jax2onnx), with what a sampler needs.

The graph is ``denoise(x, t[, label][, tokens][, semantic_map]) -> prediction``: x
(B, H, W, C) float32, t (B,) float32 times in [0, 1] (the noise-level mapping of
``config.loss.noise_level`` is inside the graph), label (B,) int32 for a class-conditional
model (``num_classes`` is the null label of classifier-free guidance), and for a latent
model (:mod:`jaxdiff.latent`) a prompt's tokens (B, L) int32 (the text encoder is inside
the graph) and/or a semantic map (B, H_map, W_map, 1) float32; the prediction is the
network's raw output (B, H, W, C) of the kind ``metadata["kind"]`` ("eps", "x0" or "v"; 2C
channels when the variance is learned). B is a symbolic axis: one file serves every batch
size.

The file's metadata (``metadata_props["jaxdiff"]``, JSON, written by
:mod:`jaxdiff.export.graph`) holds :func:`sampler_metadata`: the format version, the input
names, the image shape, the classes, the conditioning inputs with their null values, the
prediction kind, the default sampler, the source (model name and parameter hash), a latent
model's autoencoder run and, for a discrete schedule, the tables
``alphas_cumprod`` (N,) and ``log_alpha_bar`` (N + 1,) that the NumPy sampler of
:mod:`jaxdiff.export.ort_sampler` steps with.

Example::

  from jaxdiff import pretrained
  from jaxdiff.export import onnx_export
  model = pretrained.load("mnist")
  onnx_export.export_model(model.as_run(), "mnist.onnx", source={"pretrained": "mnist"})
"""

import logging
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import _settings, denoiser, latent
from jaxdiff.export import graph
from jaxdiff.schedules import DiscreteSchedule
from jaxdiff.training import components

FORMAT_VERSION = 1
OUTPUT_NAME = "prediction"


def condition_specs(config) -> dict[str, dict]:
    """The conditioning inputs after x and t: name -> {"shape" (per example), "dtype",
    "null"} (the unconditional value classifier-free guidance pairs with it).

    label (B,) int32 for a class-conditional model (null: ``num_classes``); for a latent
    model (``config.latent``, :mod:`jaxdiff.latent`), tokens (B, max_len) int32 of a
    prompt (null: the empty prompt) and/or semantic_map (B, size, size, 1) float32 (null:
    zeros).

    Raises:
      ValueError: a network with a raw cross-attention context but no ``latent`` section
        (nothing says how its context is made).
    """
    specs = {}
    if components.num_classes(config):
        specs["label"] = {"shape": [], "dtype": "int32", "null": int(config.model.num_classes)}
    s = latent.settings(config)
    if s is None and config.model.options.get("context_dim", 0):
        raise ValueError(
            "ONNX export of a raw context input is not supported: condition on prompts "
            "through a config's latent section (jaxdiff.latent)."
        )
    for name, null in (latent.null_cond(s) if s else {}).items():
        null = np.asarray(null)
        value = null.tolist() if name == "tokens" else 0.0  # a zero map: stored as a scalar
        specs[name] = {"shape": list(null.shape), "dtype": str(null.dtype), "null": value}
    return specs


def input_names(config) -> list[str]:
    """["x", "t"] and the conditioning inputs of :func:`condition_specs`."""
    return ["x", "t", *condition_specs(config)]


def denoise_fn(config, net, params, process):
    """``denoise(x, t, *conditions) -> prediction``: the function the graph computes.

    Shapes: x (B, H, W, C), t (B,), then each of :func:`condition_specs` (B, ...) ->
    (B, H, W, C or 2C).
    """
    model_fn = denoiser.make_model_fn(net.apply, params, process, config.loss.noise_level)
    names = list(condition_specs(config))

    def denoise(x, t, *conditions):
        return model_fn(x, t, **dict(zip(names, conditions, strict=True)))

    return denoise


def schedule_tables(process) -> dict:
    """{"num_train_steps", "alphas_cumprod" (N,), "log_alpha_bar" (N + 1,)} of a discrete
    schedule, float32 values as JAX computes them (empty for a continuous process)."""
    if not isinstance(process, DiscreteSchedule):
        return {}
    n = process.num_steps
    levels = jnp.arange(n + 1, dtype=jnp.float32) / n
    return {
        "num_train_steps": n,
        "alphas_cumprod": np.asarray(process.alphas_cumprod, np.float32).tolist(),
        "log_alpha_bar": np.asarray(process._log_alpha_bar(levels), np.float32).tolist(),
    }


def sampler_metadata(config, process, sampler: dict | None = None, source=None) -> dict:
    """The JSON the ONNX file carries for :mod:`jaxdiff.export.ort_sampler`.

    Args:
      config: the model's training config.
      process: its process.
      sampler: the default {"method", "num_steps", "guidance", "options"} (default: the
        config's ``sample`` section).
      source: JSON-able facts about where the weights came from (name, hash, step).
    """
    d = config.data
    return {
        "format": FORMAT_VERSION,
        "inputs": input_names(config),
        "output": OUTPUT_NAME,
        "image_shape": [d.image_size, d.image_size, d.channels],
        "num_classes": int(components.num_classes(config) or 0),
        "conditions": condition_specs(config),
        "autoencoder": latent_autoencoder(config),
        "kind": config.sample.kind,
        "learned_variance": bool(config.model.learn_sigma),
        "clip_output": config.data.source != "latents",
        "sampler": sampler or components.sampler_settings(config),
        "distill": student_record(config),
        "source": source or {},
        **schedule_tables(process),
    }


def student_record(config) -> dict | None:
    """The fields of a distilled student's ``config.distill`` the ONNX sampler checks."""
    if "distill" not in config:
        return None
    return {k: config.distill.get(k) for k in _settings.STUDENT_KEYS}


def latent_autoencoder(config) -> str | None:
    """The autoencoder run that decodes a latent model's samples (None: a pixel model)."""
    s = latent.settings(config)
    return (s.autoencoder or None) if s else None


def input_specs(config) -> list:
    """jax2onnx input specs with the symbolic batch axis "B"."""
    d = config.data
    specs: list = [("B", d.image_size, d.image_size, d.channels), ("B",)]
    for spec in condition_specs(config).values():
        specs.append(jax.ShapeDtypeStruct(("B", *spec["shape"]), jnp.dtype(spec["dtype"])))
    return specs


def to_proto(config, net, params, process, *, sampler=None, source=None, extra=None):
    """The ONNX ModelProto of the denoiser, its metadata attached.

    ``extra`` holds further metadata fields (e.g. ``{"decoder": FILE}``).

    Raises:
      ImportError: jax2onnx is not installed (with the command that installs it).
    """
    proto = _convert(
        denoise_fn(config, net, params, process),
        input_specs(config),
        f"jaxdiff_{config.model.name}",
        input_names(config),
        OUTPUT_NAME,
    )
    meta = {**sampler_metadata(config, process, sampler, source), **(extra or {})}
    return graph.set_metadata(graph.compact(proto), meta)


def _convert(fn, specs: list, model_name: str, names: list[str], output: str):
    """jax2onnx's ModelProto of ``fn`` on ``specs``."""
    try:
        from jax2onnx import to_onnx  # type: ignore[import-untyped]
    except ImportError as e:
        raise ImportError(
            "ONNX export needs jax2onnx: pip install 'jaxdiff[export]' and then "
            "pip install --no-deps 'jax2onnx>=0.17' (docs/export.md says why --no-deps)."
        ) from e
    for noisy in ("jax2onnx", "onnx_ir"):  # optional plugins it cannot load; serde notes
        logging.getLogger(noisy).setLevel(logging.ERROR)
    return to_onnx(fn, specs, model_name=model_name, input_names=names, output_names=[output])


def decoder_proto(ae, latent_shape) -> Any:
    """The ONNX ModelProto of an autoencoder's decoder, metadata attached.

    The graph is ``decode(latents) -> image``: latents (B, h, w, c) float32, scaled as the
    diffusion model samples them (``ae.scale_factor`` is undone inside the graph), to
    images (B, H, W, C), unclipped.

    Args:
      ae: a loaded autoencoder (``jaxdiff.autoencoder.run.Loaded``).
      latent_shape: (h, w, c).
    """
    proto = _convert(ae.decode, [("B", *latent_shape)], "jaxdiff_decoder", ["latents"], "image")
    meta = {
        "format": FORMAT_VERSION,
        "kind": "decoder",
        "inputs": ["latents"],
        "output": "image",
        "latent_shape": list(latent_shape),
        "scale_factor": float(ae.scale_factor),
        "step": int(ae.step),
    }
    return graph.set_metadata(graph.compact(proto), meta)


def decoder_path(path: str) -> str:
    """Where :func:`export_model` writes a latent model's decoder: NAME_decoder.onnx."""
    return os.path.splitext(path)[0] + "_decoder.onnx"


def export_model(run, path: str, *, sampler=None, source=None, decoder=None) -> str:
    """Writes a restored run's (or ``Pretrained.as_run()``'s) denoiser to ``path``.

    Args:
      run: a ``training.restore.Run`` (config, net, process, params, step).
      path: the .onnx file to write.
      sampler: the default sampler to record (default: ``run.config.sample``).
      source: facts to record about the weights.
      decoder: a latent model's autoencoder (``jaxdiff.autoencoder.run.Loaded``): its
        decoder is written to :func:`decoder_path` and named in the denoiser's metadata,
        so that the ONNX Runtime sampler returns images.

    Returns:
      ``path``.
    """
    extra = None
    if decoder is not None:
        d = run.config.data
        _write(decoder_proto(decoder, (d.image_size, d.image_size, d.channels)), decoder_path(path))
        extra = {"decoder": os.path.basename(decoder_path(path))}
    proto = to_proto(
        run.config, run.net, run.params, run.process, sampler=sampler, source=source, extra=extra
    )
    return _write(proto, path)


def _write(proto, path: str) -> str:
    with open(path, "wb") as f:
        f.write(proto.SerializeToString())
    return path


def relative_error(run, onnx_path: str, batch: int = 3, seed: int = 0) -> float:
    """max |ONNX - JAX| / max |JAX| of the denoiser on ``ort_sampler.probe_inputs``."""
    from jaxdiff.export import ort_sampler

    onnx_model = ort_sampler.OnnxDenoiser(onnx_path)
    inputs = ort_sampler.probe_inputs(onnx_model.meta, batch, seed)
    want = np.asarray(
        jax.jit(denoise_fn(run.config, run.net, run.params, run.process))(*inputs.values())
    )
    got = onnx_model.raw(**inputs)
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
