"""jaxdiff.evaluation: sample-quality metrics, computed in JAX / numpy.

Modules (import them directly; this package imports nothing heavy):

* ``inception``: Flax FID Inception-v3 (2015-12-05) and its reference preprocessing.
* ``torch_reader``, ``convert``: torch-free, code-free reading of PyTorch weight files;
  ``python -m jaxdiff.evaluation.convert``.
* ``fid``: features, float64 statistics, Frechet distance, KID;
  ``python -m jaxdiff.evaluation.fid``.
* ``inception_score``: IS over any logits function.
* ``classifier``: small MNIST / Fashion-MNIST CNN (logits and features), orbax checkpoints.
* ``human_eval``: A-vs-B judgement page and its analysis.

See docs/evaluation.md.
"""
