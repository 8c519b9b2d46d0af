"""INT8 post-training quantisation of an exported denoiser with ONNX Runtime (no JAX).

Static quantisation in the QDQ format, restricted to Conv, MatMul and Gemm (the layers
that hold the weights and the time; quantising every op, normalisations and softmax
included, lost ~27% accuracy in a probe), with per-channel int8 weights and int8
activations whose ranges are calibrated on the denoiser's real inputs: the (x, t, label)
it receives while the fp32 model samples with its default sampler (guided calls on their
doubled batch, null labels included).

Example::

  from jaxdiff.export import quantize
  quantize.quantize_int8("mnist.onnx", "mnist_int8.onnx", num_samples=32)
"""

import os
import tempfile
from typing import Any

import numpy as np

from jaxdiff.export import graph, ort_sampler

OP_TYPES = ("Conv", "MatMul", "Gemm")


def calibration_inputs(model: ort_sampler.OnnxDenoiser, num_samples: int, seed: int = 0):
    """The graph inputs seen while ``model`` draws ``num_samples`` images (default sampler).

    Returns:
      a list of feeds {"x": (B, H, W, C), "t": (B,), "label": (B,), ...}, one per network
      call. A prompt-conditioned model draws with :data:`ort_sampler.PROBE_PROMPTS`, a
      map-conditioned one with random 0/1 maps.
    """
    feeds: list[dict] = []
    model.recorder = feeds
    try:
        labels = np.arange(num_samples) % model.num_classes if model.num_classes else None
        cond: dict[str, Any] = {}
        if "tokens" in model.conditions:
            prompts = ort_sampler.PROBE_PROMPTS
            cond["prompt"] = [prompts[i % len(prompts)] for i in range(num_samples)]
        if "semantic_map" in model.conditions:
            shape = (num_samples, *model.conditions["semantic_map"]["shape"])
            cond["semantic_map"] = np.random.default_rng(seed).integers(0, 2, shape)
        model.sample(num_samples, labels, seed=seed, **cond)
    finally:
        model.recorder = None
    return feeds


class _Feeds:
    """onnxruntime's CalibrationDataReader over a list of feeds."""

    def __init__(self, feeds):
        self._iter = iter(feeds)

    def get_next(self):
        return next(self._iter, None)

    def rewind(self):  # what newer onnxruntime calibrators may call
        pass


def quantize_int8(fp32_path: str, out_path: str, num_samples: int = 32, seed: int = 0) -> str:
    """Writes the INT8 (QDQ) version of an exported fp32 denoiser, metadata kept.

    Args:
      fp32_path: a file of ``python -m jaxdiff.export``.
      out_path: the quantised file to write.
      num_samples: images whose sampling trajectories calibrate the activation ranges.
      seed: their seed.

    Returns:
      ``out_path``.
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = ort_sampler.OnnxDenoiser(fp32_path)
    feeds = calibration_inputs(model, num_samples, seed)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = os.path.join(tmp, "prepared.onnx")
        quant_pre_process(fp32_path, prepared, skip_symbolic_shape=True)
        quantize_static(
            prepared,
            out_path,
            _Feeds(feeds),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(OP_TYPES),
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            extra_options={"WeightSymmetric": True},
        )
    meta = {**model.meta, "quantized": {"dtype": "int8", "ops": list(OP_TYPES)}}
    meta["quantized"]["calibration_samples"] = num_samples
    onnx.save(graph.set_metadata(graph.compact(onnx.load(out_path)), meta), out_path)
    return out_path


def sample_difference(reference_path: str, other_path: str, num: int = 16, seed: int = 0):
    """(mean, max) |other - reference| over ``num`` images that two exports of one
    denoiser draw from the same noise with their default sampler (images in [-1, 1])."""
    reference = ort_sampler.OnnxDenoiser(reference_path)
    other = ort_sampler.OnnxDenoiser(other_path)
    want, got = reference.sample(num, seed=seed), other.sample(num, seed=seed)
    diff = np.abs(got - want)
    return float(diff.mean()), float(diff.max())
