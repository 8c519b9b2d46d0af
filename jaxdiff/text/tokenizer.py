"""A byte-level tokenizer: every string encodes, so there is no unknown token.

Ids: 0 padding, 1 beginning of text, 2 end of text, 3 + b for a UTF-8 byte b (a vocabulary
of 259). Text is normalised first (lower case, runs of white space -> one space, stripped),
so "A  Thin seven" and "a thin seven" are one prompt. A byte-level vocabulary needs no
training; the project's "trained tokenizer" is this fixed table (the issue allows it).

Example:
  >>> from jaxdiff.text import tokenizer
  >>> tokenizer.encode("a 7", max_len=8).tolist()
  [1, 100, 35, 58, 2, 0, 0, 0]
  >>> tokenizer.decode(tokenizer.encode("A  Thin seven", max_len=20))
  'a thin seven'
"""

import numpy as np

PAD, BOS, EOS = 0, 1, 2
OFFSET = 3
VOCAB_SIZE = 256 + OFFSET


def normalize(text: str) -> str:
    """Lower case, white space collapsed and stripped."""
    return " ".join(text.lower().split())


def length(text: str) -> int:
    """Tokens a text needs: its normalised UTF-8 bytes + BOS + EOS."""
    return len(normalize(text).encode("utf-8")) + 2


def encode(text: str, max_len: int) -> np.ndarray:
    """(max_len,) int32 ids: BOS, the bytes, EOS, then padding.

    Raises:
      ValueError: the text needs more than ``max_len`` tokens (the message gives both).
    """
    if not isinstance(text, str):
        raise ValueError(f"a prompt must be a string; got {type(text).__name__}.")
    data = normalize(text).encode("utf-8")
    if len(data) + 2 > max_len:
        raise ValueError(
            f"prompt {text!r} is too long: {len(data)} characters (bytes) after normalising; "
            f"this model takes at most {max_len - 2} (max_len={max_len} tokens with the begin "
            "and end tokens). Shorten it."
        )
    ids = np.full((max_len,), PAD, np.int32)
    ids[0], ids[len(data) + 1] = BOS, EOS
    ids[1 : len(data) + 1] = np.frombuffer(data, np.uint8).astype(np.int32) + OFFSET
    return ids


def decode(ids) -> str:
    """The text of one id sequence (special ids dropped)."""
    ids = np.asarray(ids)
    data = bytes(int(i) - OFFSET for i in ids if i >= OFFSET)
    return data.decode("utf-8", errors="replace")
