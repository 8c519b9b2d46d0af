"""Prompts -> token arrays for a text-conditioned model, with the checks a user needs.

- A prompt longer than the model's ``max_len`` tokens is an error that says by how much.
- Words outside the caption grammar the model was trained on (``data.captions.VOCABULARY``
  for MNIST) are encoded anyway (bytes have no unknown token) but raise a
  :class:`OutOfGrammarWarning` naming them: the model has never seen them.
- The empty prompt "" is the null condition: classifier-free guidance's unconditional half
  and the prompts dropped in training are both ``encode("")``.

Example:
  >>> from jaxdiff.text import prompts
  >>> prompts.encode_prompts(["a thin seven", ""], max_len=16).shape
  (2, 16)
"""

import re
import warnings
from collections.abc import Iterable, Sequence

import numpy as np

from jaxdiff.text import tokenizer


class OutOfGrammarWarning(UserWarning):
    """A prompt uses words the caption grammar never produces."""


def words(text: str) -> list[str]:
    """The words of a prompt (letters only, lower case), punctuation dropped."""
    return re.findall(r"[a-z]+", tokenizer.normalize(text))


def check_grammar(text: str, vocabulary: Iterable[str]) -> list[str]:
    """Warns (:class:`OutOfGrammarWarning`) about the words of ``text`` outside
    ``vocabulary``; returns them (empty when every word is known)."""
    known = set(vocabulary)
    unknown = [w for w in words(text) if w not in known]
    if unknown:
        warnings.warn(
            f"prompt {text!r}: words {sorted(set(unknown))} are outside the caption grammar "
            f"this model was trained on; known words: {' '.join(sorted(known))}.",
            OutOfGrammarWarning,
            stacklevel=2,
        )
    return unknown


def encode_prompts(
    texts: Sequence[str], max_len: int, vocabulary: Iterable[str] | None = None
) -> np.ndarray:
    """(N, max_len) int32 tokens of ``texts``, checking each.

    Args:
      texts: the prompts ("" is the null condition).
      max_len: the model's token length.
      vocabulary: the training grammar's words (None: no grammar check).

    Raises:
      ValueError: a prompt too long for ``max_len``, or not a string.
    """
    if isinstance(texts, str):
        raise ValueError("texts must be a list of prompts, not one string; wrap it: [prompt].")
    vocabulary = None if vocabulary is None else frozenset(vocabulary)
    rows = []
    for text in texts:
        rows.append(tokenizer.encode(text, max_len))
        if vocabulary is not None:
            check_grammar(text, vocabulary)
    return np.stack(rows) if rows else np.zeros((0, max_len), np.int32)


def null_tokens(max_len: int) -> np.ndarray:
    """The empty prompt's tokens (max_len,): the null condition."""
    return tokenizer.encode("", max_len)
