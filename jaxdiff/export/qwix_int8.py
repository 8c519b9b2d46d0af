"""INT8 post-training quantisation in JAX with qwix: the network keeps running in jaxdiff.

Two modes (``qwix.PtqProvider`` rules over every layer of the network):

- ``"w8a8"``: int8 weights (per channel) and int8 activations (a dynamic range per
  example, asymmetric: min/max with a zero point) for every dense, einsum and convolution
  layer but :data:`FLOAT_LAYERS` (the first and last convolutions and the 1x1 shortcuts),
  which stay in float. qwix's PTQ computes a convolution in one type,
  so convolutions need int8 activations too. The weights are ~3.5x smaller, and on a CPU
  with int8 dot products the network runs faster than in fp32.
- ``"dense"``: int8 weights of the dense and einsum layers only, with activations left
  in float. This covers attention and the time and label embeddings, but the U-Nets keep
  most of their weights in convolutions.

Example::

  from jaxdiff import pretrained
  from jaxdiff.export import qwix_int8
  model = qwix_int8.quantize_pretrained(pretrained.load("mnist"), "w8a8")
  images = model.sample(jax.random.key(0), 16)

Needs the ``export`` extra (``pip install "jaxdiff[export]"``, which installs qwix).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

MODES = ("w8a8", "dense")
# left in float: the U-Nets' first and last convolutions, and the 1x1 shortcuts, whose
# inputs (a concatenated skip connection in the up path) mix channels of unlike scales;
# 3% of the weights, and quantised about half the error (docs/export.md)
FLOAT_LAYERS = "conv_in|conv_out|.*shortcut"


def rules(mode: str) -> list:
    """The qwix rules of ``mode``.

    Raises:
      ValueError: an unknown mode (listing the valid ones).
    """
    import qwix

    if mode not in MODES:
        raise ValueError(f"Unknown qwix quantisation mode {mode!r}; valid: {list(MODES)}.")
    if mode == "w8a8":
        return [
            qwix.QtRule(module_path=FLOAT_LAYERS),  # no qtype: left in float
            # attention's activation x activation einsums: one operand may be asymmetric
            qwix.QtRule(op_names=("einsum",), weight_qtype="int8", act_qtype="int8"),
            qwix.QtRule(weight_qtype="int8", act_qtype="int8", act_calibration_method="minmax"),
        ]
    return [qwix.QtRule(module_path=".*", op_names=("dot_general", "einsum"), weight_qtype="int8")]


def quantize(net, params, example: dict, mode: str = "w8a8"):
    """(quantised network, its int8 parameters).

    Args:
      net: a Flax Linen network ``net.apply(variables, x, noise_level, **cond)``.
      params: its float parameters.
      example: one batch of inputs {"x": (B, H, W, C), "noise_level": (B,), ...cond}.
      mode: one of :data:`MODES`.
    """
    import qwix

    qnet = qwix.quantize_model(net, qwix.PtqProvider(rules(mode)))
    inputs = dict(example)
    x, level = inputs.pop("x"), inputs.pop("noise_level")
    abstract = jax.eval_shape(lambda: qnet.init(jax.random.key(0), x, level, **inputs))
    return qnet, qwix.quantize_params(params, abstract["params"])


def example_inputs(config, batch: int = 2) -> dict:
    """Zeros shaped like a run's network inputs (for :func:`quantize`)."""
    d = config.data
    example = {
        "x": jnp.zeros((batch, d.image_size, d.image_size, d.channels)),
        "noise_level": jnp.zeros((batch,)),
    }
    if config.model.num_classes:
        example["label"] = jnp.zeros((batch,), jnp.int32)
    return example


def nbytes(params) -> int:
    """Bytes of a parameter tree (int8 values, their scales and the float leaves)."""
    return int(sum(np.asarray(leaf).nbytes for leaf in jax.tree.leaves(params)))


def quantize_pretrained(model, mode: str = "w8a8"):
    """A shipped model (``pretrained.load``) whose network runs in int8 (same API)."""
    qnet, qparams = quantize(model.net, model.params, example_inputs(model.config), mode)
    return dataclasses.replace(model, net=qnet, params=qparams)


def quantize_run(run, mode: str = "w8a8"):
    """A ``training.restore.Run`` whose network runs in int8 (for the run tools)."""
    qnet, qparams = quantize(run.net, run.params, example_inputs(run.config), mode)
    return run._replace(net=qnet, params=qparams)
