"""Text conditioning: a byte-level tokenizer, prompt checks and a small transformer encoder.

- :mod:`jaxdiff.text.tokenizer`: bytes -> ids (no unknown characters), BOS / EOS / padding.
- :mod:`jaxdiff.text.prompts`: prompts -> token arrays, with the too-long error and the
  warning for words outside a caption grammar.
- :mod:`jaxdiff.text.encoder`: ``TextEncoder`` (B, L) ids -> (B, L, D) embeddings, padding
  masked, trained jointly with the diffusion model.
- :mod:`jaxdiff.text.network`: ``ConditionedDenoiser``, a backbone that cross-attends to the
  encoded prompt and/or sees a semantic map concatenated to its input.
"""
