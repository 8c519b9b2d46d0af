"""Class-conditional audio diffusion: spoken digits as 32x32 log-mel spectrogram images.

Commands (the data set first: espeak-ng, ~3 minutes; docs/audio.md)::

  python -m jaxdiff.data.spoken_digits --out=data/spoken_digits --num_train=5000 --num_test=1000
  timeout -s TERM 100m python -m jaxdiff.train --config=configs/spoken_digits.py \\
      --workdir=runs/spoken_digits --config.data.data_dir=data/spoken_digits
  python -m jaxdiff.sample --workdir=runs/spoken_digits --num_samples=10 --out=digits.wav

Spectrograms (8 kHz audio, 0.992 s, 32 mel bands x 32 frames, -70..20 dB onto [-1, 1]) are
images to the U-Net, the processes and the samplers; ``.wav`` output inverts them with
Griffin-Lim (librosa, the ``audio`` extra). Recipe of the shipped image models
(``training.config.release``: cosine schedule of 1,024 steps, v-prediction, label dropout
0.1, Adam 1e-3, EMAs 0.999 / 0.9999, batch 64) with ``unet_28x28`` attending at 8x8
(32 -> 16 -> 8), 1.6M parameters.

Expected: samples that the in-repo spoken-digit classifier (``python -m
jaxdiff.evaluation.spoken_digits``) labels as the requested digit >= 80% of the time. Measured
(docs/audio.md): one 90-minute run on 2 CPU cores reached step 3,582 of the planned 6,000
(1.4-1.6 s a step); its EMA samples (DDIM 50, w = 1) were labelled right 1,000 times of
1,000, Frechet distance in the classifier's features 111 (real: 3.2). Shipped as
``pretrained.load("spoken_digits")``.
``:smoke`` runs one tiny step.
"""

from jaxdiff.training import config as base

VARIANTS = ("smoke",)  # --config=configs/X.py:VARIANT


def get_config(arg=None):
    arg = base.check_variant(arg, VARIANTS)
    c = base.release("mnist")
    c.data.update(source="spoken_digits", name="spoken_digits", image_size=32, channels=1)
    c.model.options.update(attn_resolutions=(8,))
    c.train.update(num_steps=6_000, keep_every=1_000, sample_every=1_000)
    c.sample.update(method="ddim", num_steps=50, guidance=1.0, num_samples=20)
    return base.smoke(c, **base.SMOKE_UNET) if arg == "smoke" else c
