"""Input pipelines: random-access sources (TFDS, embedded digits, latents) and grain datasets."""

from jaxdiff.data import pipeline as pipeline
from jaxdiff.data import sources as sources
from jaxdiff.data.pipeline import make_dataset as make_dataset
