"""Audio as images: log-mel spectrograms, their Griffin-Lim inversion, WAV files.

A waveform at :attr:`MelSpec.sample_rate` of :attr:`MelSpec.num_samples` samples becomes a
power mel spectrogram (librosa, ``center=True``) of ``n_mels`` bands x ``frames`` frames,
in decibels clipped to ``db_range`` and mapped to uint8 [0, 255] (row 0 = the lowest
band): an ordinary one-channel image, which the data pipeline maps to [-1, 1] and every
image network, process and sampler takes as it is. Going back, an image in [-1, 1] gives
the power mel spectrogram, its linear-frequency magnitudes (librosa's non-negative least
squares ``mel_to_stft``), and Griffin-Lim (``librosa.griffinlim``) a waveform with
plausible phases. Raw waveform models at audio rates are out of reach on 2 cores.

librosa comes with the ``audio`` extra (``pip install -e .[audio]``); WAV files are read and
written with the standard library.

Example::

  spec = audio.MelSpec()
  image = audio.to_image(audio.log_mel(wave, spec), spec)    # (32, 32, 1) uint8
  wave2 = audio.griffin_lim(image / 127.5 - 1.0, spec)       # (7936,) float32
  audio.write_wav("digit.wav", [wave2], spec.sample_rate)
"""

import dataclasses
import wave as wave_lib

import numpy as np


@dataclasses.dataclass(frozen=True)
class MelSpec:
    """How waveforms become spectrogram images.

    Attributes:
      sample_rate: Hz.
      n_fft: FFT window length (samples).
      hop: samples between frames.
      n_mels: mel bands (image height).
      frames: spectrogram frames (image width); clips have hop (frames - 1) samples.
      db_range: (low, high) decibels mapped to 0 and 255 (values outside are clipped).
    """

    sample_rate: int = 8000
    n_fft: int = 512
    hop: int = 256
    n_mels: int = 32
    frames: int = 32
    db_range: tuple[float, float] = (-70.0, 20.0)

    @property
    def num_samples(self) -> int:
        return self.hop * (self.frames - 1)


def _librosa():
    try:
        import librosa
    except ImportError:
        raise ImportError(
            "jaxdiff.audio needs librosa: install the audio extra (pip install -e .[audio])."
        ) from None
    return librosa


def fit_length(wave: np.ndarray, spec: MelSpec) -> np.ndarray:
    """Centres ``wave`` (L,) in ``spec.num_samples`` samples (zero-padded or trimmed)."""
    n = spec.num_samples
    wave = np.asarray(wave, np.float32)
    if len(wave) >= n:
        start = (len(wave) - n) // 2
        return wave[start : start + n]
    pad = n - len(wave)
    return np.pad(wave, (pad // 2, pad - pad // 2))


def log_mel(wave: np.ndarray, spec: MelSpec) -> np.ndarray:
    """(L,) waveform -> (n_mels, frames) power mel spectrogram in dB (10 log10, floor 1e-10).

    Raises:
      ValueError: a waveform of another length than ``spec.num_samples``.
    """
    if wave.shape != (spec.num_samples,):
        raise ValueError(
            f"waveform must be ({spec.num_samples},) samples (fit_length makes it so); "
            f"got {wave.shape}."
        )
    mel = _librosa().feature.melspectrogram(
        y=wave, sr=spec.sample_rate, n_fft=spec.n_fft, hop_length=spec.hop, n_mels=spec.n_mels
    )
    return 10.0 * np.log10(np.maximum(mel, 1e-10)).astype(np.float32)


def to_image(db: np.ndarray, spec: MelSpec) -> np.ndarray:
    """(n_mels, frames) dB -> (n_mels, frames, 1) uint8, ``db_range`` onto [0, 255]."""
    lo, hi = spec.db_range
    scaled = (np.clip(db, lo, hi) - lo) / (hi - lo)
    return np.rint(255.0 * scaled).astype(np.uint8)[..., None]


def image_to_db(image: np.ndarray, spec: MelSpec) -> np.ndarray:
    """(n_mels, frames[, 1]) image in [-1, 1] -> (n_mels, frames) dB in ``db_range``."""
    image = np.asarray(image, np.float32).reshape(spec.n_mels, spec.frames)
    lo, hi = spec.db_range
    return lo + (np.clip(image, -1.0, 1.0) + 1.0) / 2.0 * (hi - lo)


def griffin_lim(image: np.ndarray, spec: MelSpec, n_iter: int = 64, seed: int = 0) -> np.ndarray:
    """A waveform (num_samples,) float32 whose log-mel spectrogram is ``image`` (in [-1, 1]).

    Args:
      image: (n_mels, frames[, 1]) in [-1, 1].
      spec: the spectrogram's settings.
      n_iter: Griffin-Lim iterations.
      seed: seeds the initial phases.
    """
    librosa = _librosa()
    power = 10.0 ** (image_to_db(image, spec) / 10.0)
    magnitude = librosa.feature.inverse.mel_to_stft(
        power, sr=spec.sample_rate, n_fft=spec.n_fft, power=2.0
    )
    wave = librosa.griffinlim(
        magnitude,
        n_iter=n_iter,
        hop_length=spec.hop,
        n_fft=spec.n_fft,
        length=spec.num_samples,
        random_state=seed,
    )
    return wave.astype(np.float32)


def write_wav(path: str, waves, sample_rate: int, gap: float = 0.25) -> None:
    """Writes waveforms (each (L,) in [-1, 1]) one after another, ``gap`` s of silence
    between them, as a mono 16-bit PCM WAV file."""
    silence = np.zeros(int(gap * sample_rate), np.float32)
    parts = []
    for i, w in enumerate(waves):
        parts += [silence] if i else []
        parts.append(np.clip(np.asarray(w, np.float32), -1.0, 1.0))
    pcm = np.rint(np.concatenate(parts) * 32767).astype("<i2")
    with wave_lib.open(path, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(pcm.tobytes())


def read_wav(path: str) -> tuple[np.ndarray, int]:
    """(waveform (L,) float32 in [-1, 1], sample rate) of a mono 16-bit PCM WAV file.

    Raises:
      ValueError: another format (channels or sample width).
    """
    with wave_lib.open(path, "rb") as f:
        if f.getnchannels() != 1 or f.getsampwidth() != 2:
            raise ValueError(
                f"{path}: need mono 16-bit PCM; got {f.getnchannels()} channels of "
                f"{8 * f.getsampwidth()} bits."
            )
        data = np.frombuffer(f.readframes(f.getnframes()), "<i2")
        return np.maximum(data.astype(np.float32) / 32767.0, -1.0), f.getframerate()
