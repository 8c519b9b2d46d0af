"""Deployable denoisers: ONNX export and a sampler on ONNX Runtime and NumPy alone.

- :mod:`jaxdiff.export.onnx_export` (needs JAX and jax2onnx): writes a model's denoiser
  ``(x, t, label) -> prediction`` as an ONNX graph with a dynamic batch axis, and beside the
  graph (in its metadata) what a sampler needs: the prediction kind, the discrete
  schedule's alpha_bar table, the classes and the default sampler.
- :mod:`jaxdiff.export.ort_sampler` (needs only numpy and onnxruntime): loads such a file
  and samples with DDIM or DPM-Solver++(2M), classifier-free guidance included, visiting
  the same noise levels as jaxdiff's samplers.

Command line: ``python -m jaxdiff.export --pretrained=mnist --out=mnist.onnx``.

This package imports nothing on its own, so ``jaxdiff.export.ort_sampler`` runs where
JAX is not installed.
"""
