"""Spoken digits synthesised offline with espeak-ng, as log-mel spectrogram images.

Utterance ``i`` of a split says the digit ``i % 10`` ("zero" .. "nine") in a voice drawn
with ``numpy.random.default_rng([split seed, i])``: one of 6 English accents x 12 voice
variants, pitch 20..80 (espeak's 0..99 scale) and speed 120..220 words per minute.
espeak-ng (Debian package ``espeak-ng``) writes 22.05 kHz audio; it is resampled to 8 kHz,
trimmed of silence, peak-normalised to 0.9 and centred in 0.992 s, and becomes a 32x32
log-mel image (``jaxdiff.audio.MelSpec``). The same counts give the same arrays.

Build the data set once (about 30 ms an utterance: ~3 minutes for 6,000)::

  python -m jaxdiff.data.spoken_digits --out=data/spoken_digits --num_train=5000 --num_test=1000

It writes ``OUT/spoken_digits-{train,test}-v1.npz`` with ``images`` (N, 32, 32, 1) uint8,
``labels`` (N,), ``waves`` (N, 7936) int16 and the voice settings of each utterance; a
config reads them with ``data.source="spoken_digits"`` and ``data.data_dir=OUT``.
"""

import argparse
import os
import shutil
import subprocess
import tempfile

import numpy as np

from jaxdiff import audio
from jaxdiff.data.sources import ArraySource

VERSION = 1
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m7", "f1", "f2", "f3", "f4", "f5", "klatt")
PITCH = (20, 80)
SPEED = (120, 220)
SPLIT_SEEDS = {"train": 0, "test": 1}
SPEC = audio.MelSpec()


def check_espeak() -> str:
    """The espeak-ng executable's path.

    Raises:
      RuntimeError: espeak-ng is not installed (says how to install it).
    """
    path = shutil.which("espeak-ng")
    if path is None:
        raise RuntimeError("espeak-ng is not installed: `apt-get install -y espeak-ng` (Debian).")
    return path


def voice_settings(split: str, index: int) -> dict:
    """{"digit", "voice", "pitch", "speed"} of utterance ``index`` of ``split``."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"unknown spoken-digits split {split!r}; valid: {sorted(SPLIT_SEEDS)}.")
    rng = np.random.default_rng([SPLIT_SEEDS[split], index])
    accent = ACCENTS[rng.integers(len(ACCENTS))]
    variant = VARIANTS[rng.integers(len(VARIANTS))]
    return {
        "digit": index % 10,
        "voice": f"{accent}+{variant}",
        "pitch": int(rng.integers(PITCH[0], PITCH[1] + 1)),
        "speed": int(rng.integers(SPEED[0], SPEED[1] + 1)),
    }


def speak(word: str, voice: str, pitch: int, speed: int) -> tuple[np.ndarray, int]:
    """(waveform float32, sample rate) of espeak-ng saying ``word``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "word.wav")
        command = [check_espeak(), "-v", voice, "-p", str(pitch), "-s", str(speed)]
        subprocess.run(command + ["-w", path, word], check=True, capture_output=True)
        return audio.read_wav(path)


def prepare(wave: np.ndarray, rate: int, spec: audio.MelSpec = SPEC) -> np.ndarray:
    """Resamples to ``spec.sample_rate``, trims silence (below 2% of the peak), peak-normalises
    to 0.9 and centres in ``spec.num_samples`` samples."""
    from scipy.signal import resample_poly

    g = np.gcd(rate, spec.sample_rate)
    wave = resample_poly(wave, spec.sample_rate // g, rate // g).astype(np.float32)
    loud = np.flatnonzero(np.abs(wave) > 0.02 * np.abs(wave).max())
    wave = wave[loud[0] : loud[-1] + 1]
    return audio.fit_length(0.9 * wave / np.abs(wave).max(), spec)


def utterance(split: str, index: int) -> tuple[np.ndarray, dict]:
    """(waveform (num_samples,) float32, voice settings) of utterance ``index``."""
    s = voice_settings(split, index)
    wave, rate = speak(WORDS[s["digit"]], s["voice"], s["pitch"], s["speed"])
    return prepare(wave, rate), s


def generate(split: str, count: int) -> dict:
    """The arrays of a split of ``count`` utterances (see the module docstring)."""
    waves, settings = zip(*(utterance(split, i) for i in range(count)), strict=True)
    images = np.stack([audio.to_image(audio.log_mel(w, SPEC), SPEC) for w in waves])
    return {
        "images": images,
        "labels": np.array([s["digit"] for s in settings], np.int32),
        "waves": np.rint(np.stack(waves) * 32767).astype(np.int16),
        "voices": np.array([s["voice"] for s in settings]),
        "pitch": np.array([s["pitch"] for s in settings], np.int32),
        "speed": np.array([s["speed"] for s in settings], np.int32),
    }


def path(data_dir: str, split: str) -> str:
    return os.path.join(data_dir, f"spoken_digits-{split}-v{VERSION}.npz")


def build(out: str, num_train: int, num_test: int) -> None:
    """Writes both splits under ``out`` (created)."""
    os.makedirs(out, exist_ok=True)
    for split, count in (("train", num_train), ("test", num_test)):
        if count < 1:
            raise ValueError(f"--num_{split}={count}: must be >= 1.")
        target = path(out, split)
        np.savez(target + ".tmp.npz", **generate(split, count))
        os.replace(target + ".tmp.npz", target)  # never a half-written file
        print(f"wrote {count} utterances to {target}")


def load(data_dir: str | None, split: str) -> dict:
    """The arrays of a built split.

    Raises:
      ValueError: not built there (says how to build it).
    """
    file = path(data_dir or "", split)
    if not data_dir or not os.path.exists(file):
        raise ValueError(
            f"spoken digits not found at {file!r}: build them with `python -m "
            "jaxdiff.data.spoken_digits --out=DIR` and set --config.data.data_dir=DIR."
        )
    with np.load(file) as f:
        return {k: f[k] for k in f.files}


def source(
    name: str = "spoken_digits", split: str = "train", data_dir: str | None = None, **unused
) -> ArraySource:
    """The log-mel images (32, 32, 1) uint8 and digit labels of a built split."""
    arrays = load(data_dir, split)
    return ArraySource(arrays["images"], arrays["labels"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="Directory for the .npz files.")
    parser.add_argument("--num_train", type=int, default=5000)
    parser.add_argument("--num_test", type=int, default=1000)
    args = parser.parse_args(argv)
    build(args.out, args.num_train, args.num_test)


if __name__ == "__main__":
    main()
