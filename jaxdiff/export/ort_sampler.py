"""Sampling an exported denoiser on ONNX Runtime with NumPy alone (no JAX import).

Loads a file written by :mod:`jaxdiff.export.onnx_export` and samples with

- ``ddim`` (Song et al. 2021, eta = 0): x_s = sqrt(ab_s) x0 + sqrt(1 - ab_s) eps on the
  schedule's training steps chosen by a diffusers spacing (default "trailing"), then to
  alpha_bar = 1;
- ``dpm_solver++`` (Lu et al. 2022, 2M): uniform in log-SNR from t = 1 to t = 1e-3, each
  time moved to the nearest level of the schedule,

with classifier-free guidance (1 + w) p(x | y) - w p(x | null) on one call of the doubled
batch. Both visit the same levels as ``jaxdiff.samplers.sample`` does on the same
schedule and take the same steps, so from the same x_init they give the same images up to
float rounding (tests/test_export.py measures it).

Example::

  from jaxdiff.export.ort_sampler import OnnxDenoiser
  model = OnnxDenoiser("mnist.onnx")
  images = model.sample(16, label=7, seed=0)  # (16, 28, 28, 1) in [-1, 1]
"""

import json
import os
from typing import Any

import numpy as np

from jaxdiff import _settings, _spacing, pretrained
from jaxdiff.export import graph

METHODS = ("ddim", "dpm_solver++")
FORMAT_VERSION = 1
DPM_T_END = 1e-3  # jaxdiff's DPMSolverOptions.t_end
# prompts of probe inputs and INT8 calibration (the MNIST caption grammar's words; "" null)
PROBE_PROMPTS = ("a thin seven", "a bold two on the left", "a small right-leaning four", "")


class OnnxDenoiser:
    """An exported denoiser on ONNX Runtime and the samplers that drive it.

    Args:
      path: an .onnx file written by ``python -m jaxdiff.export``.
      threads: intra-op threads of ONNX Runtime (0: its default, all cores).

    Attributes:
      meta: the metadata the exporter wrote (kind, schedule tables, default sampler, ...).

    Raises:
      FileNotFoundError: no such file.
      ValueError: not a readable ONNX model, not written by jaxdiff's exporter, a format
        this version cannot read, or a graph whose inputs do not match its metadata.
    """

    def __init__(self, path: str, threads: int = 0):
        self.session = _open_session(path, threads)
        self.meta = _read_metadata(self.session, path)
        _check_inputs(self.session, self.meta, path)
        self.path, self.threads = path, threads
        self.recorder: list | None = None  # a list: every call's inputs are appended
        self._decoder: Any = None  # a latent model's decoder session, opened when first used

    @property
    def decoder_path(self) -> str | None:
        """A latent model's decoder file (exported beside it), or None."""
        name = self.meta.get("decoder")
        return os.path.join(os.path.dirname(self.path), name) if name else None

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """A latent model's latents (B, h, w, c) -> images (B, H, W, C) in [-1, 1].

        Raises:
          ValueError: the model was exported without a decoder.
          FileNotFoundError: its decoder file is not beside it.
        """
        if self.decoder_path is None:
            raise ValueError(
                f"{self.path} has no decoder: export the latent model with its autoencoder "
                "run (config.latent.autoencoder) present, or sample with decode=False."
            )
        if self._decoder is None:
            self._decoder = _open_session(self.decoder_path, self.threads)
        feeds = {"latents": np.asarray(latents, np.float32)}
        images = self._decoder.run(["image"], feeds)[0]
        return np.clip(images, -1.0, 1.0)

    @property
    def num_classes(self) -> int:
        """Number of classes (0: unconditional)."""
        return int(self.meta["num_classes"])

    @property
    def conditions(self) -> dict[str, dict]:
        """The conditioning inputs: name -> {"shape" (per example), "dtype", "null"}."""
        if "conditions" in self.meta:
            return self.meta["conditions"]
        if not self.num_classes:  # files of the first exporter: a label at most
            return {}
        return {"label": {"shape": [], "dtype": "int32", "null": self.num_classes}}

    def raw(self, x: np.ndarray, t: np.ndarray, label=None, **cond) -> np.ndarray:
        """The graph's prediction (B, H, W, C or 2C) at x (B, H, W, C), t (B,) and the
        conditioning inputs (label (B,), tokens (B, L), semantic_map (B, H, W, 1))."""
        cond = {"label": label, **cond} if label is not None else cond
        feeds = {"x": np.asarray(x, np.float32), "t": np.asarray(t, np.float32)}
        for name, spec in self.conditions.items():
            feeds[name] = np.asarray(cond[name], spec["dtype"])
        if self.recorder is not None:
            self.recorder.append(feeds)
        return self.session.run([self.meta["output"]], feeds)[0]

    def prediction(self, x, level: int, cond: dict, guidance: float) -> np.ndarray:
        """The guided prediction (B, H, W, C) at schedule level ``level`` (time level / N).

        ``cond`` holds each conditioning input (B, ...); guidance pairs it with the null
        values of :attr:`conditions`: (1 + w) p(x | cond) - w p(x | null).
        """
        batch, channels = x.shape[0], x.shape[-1]
        t = np.full((batch,), level / self.meta["num_train_steps"], np.float32)
        if not (self.conditions and guidance):
            return self.raw(x, t, **cond)[..., :channels]
        both = {k: np.concatenate([v, self._null(k, v)]) for k, v in cond.items()}
        out = self.raw(np.concatenate([x, x]), np.concatenate([t, t]), **both)
        conditional, uncond = out[:batch, ..., :channels], out[batch:, ..., :channels]
        return (1.0 + guidance) * conditional - guidance * uncond

    def _null(self, name: str, value: np.ndarray) -> np.ndarray:
        """The null value of a conditioning input, shaped like its (B, ...) value."""
        null = np.asarray(self.conditions[name]["null"], value.dtype)
        return np.broadcast_to(null, value.shape)

    def sample(
        self,
        num: int | None = None,
        label=None,
        *,
        prompt=None,
        semantic_map=None,
        decode: bool | None = None,
        x_init: np.ndarray | None = None,
        seed: int = 0,
        method: str | None = None,
        num_steps: int | None = None,
        guidance: float | None = None,
        spacing: str | None = None,
    ) -> np.ndarray:
        """Draws images (num, H, W, C), in [-1, 1] for pixel models.

        Args:
          num: number of images (default: x_init's batch).
          label: an int or (num,) ints in [0, num_classes) (default 0, 1, 2, ... cycling).
          prompt: a text-conditioned model's prompt, one string or (num,) strings
            (default: the empty prompt, the unconditional one).
          semantic_map: a map-conditioned model's map (H_map, W_map, 1) or
            (num, H_map, W_map, 1) in {0, 1} (default: the null, all-zero map).
          decode: a latent model's latents go through its exported decoder (default: when
            it has one); False returns the latents.
          x_init: the starting noise (num, H, W, C) (default: N(0, I) from ``seed``, NumPy's
            generator, so not the noise JAX would draw).
          seed: seed of x_init when it is not given.
          method, num_steps, guidance: override the exported defaults
            (``meta["sampler"]``); method one of :data:`METHODS`.
          spacing: ddim's spacing of training steps ("trailing", "leading", "linspace").

        Returns:
          Images, or a latent model's latents when it has no decoder or ``decode=False``.

        Raises:
          ValueError: an unknown method, a label out of range, a shape mismatch, a model
            without a discrete schedule, settings a distilled student is not valid for, a
            condition the model does not take, a prompt too long.
        """
        settings = self._settings(method, num_steps, guidance, spacing)
        x = self._initial(num, x_init, seed)
        cond = self._conditioning(x.shape[0], label, prompt, semantic_map)
        levels = self.levels(settings["method"], settings["num_steps"], settings["spacing"])
        step = {"ddim": self._ddim, "dpm_solver++": self._dpm_solver_pp}[settings["method"]]
        x = step(x, levels, cond, float(settings["guidance"]))
        if decode or (decode is None and self.decoder_path):
            return self.decode(x)
        return np.clip(x, -1.0, 1.0) if self.meta.get("clip_output", True) else x

    def levels(self, method: str, num_steps: int, spacing: str = "trailing") -> np.ndarray:
        """The schedule levels (num_steps + 1,) a method visits, descending to its end."""
        n = self.meta["num_train_steps"]
        if method == "ddim":
            return np.append(_spacing.spaced_indices(0, n - 1, num_steps, spacing) + 1, 0)
        return log_snr_levels(np.asarray(self.meta["log_alpha_bar"], np.float64), num_steps)

    def _settings(self, method, num_steps, guidance, spacing) -> dict:
        if "num_train_steps" not in self.meta:
            raise ValueError(
                f"{self.path}: its process is continuous; the ONNX Runtime sampler needs a "
                "discrete schedule (process.kind='schedule')."
            )
        settings = _settings.resolve_sampler(self.meta["sampler"], method, num_steps, guidance)
        if spacing:
            settings["options"]["spacing"] = spacing
        _settings.check_student(self.meta.get("distill"), settings)
        if settings["method"] not in METHODS:
            raise ValueError(
                f"Unknown method {settings['method']!r}; the ONNX sampler has {list(METHODS)}."
            )
        settings["num_steps"] = int(settings["num_steps"])
        settings["spacing"] = spacing or settings["options"].get("spacing") or "trailing"
        return settings

    def _initial(self, num, x_init, seed) -> np.ndarray:
        shape = tuple(self.meta["image_shape"])
        if x_init is None:
            if not num or num < 1:
                raise ValueError(f"num must be an integer >= 1; got {num!r}.")
            return np.random.default_rng(seed).standard_normal((num, *shape)).astype(np.float32)
        x_init = np.asarray(x_init, np.float32)
        if x_init.shape[1:] != shape or (num and x_init.shape[0] != num):
            raise ValueError(f"x_init must have shape ({num or 'B'}, {shape}); got {x_init.shape}.")
        return x_init

    def _conditioning(self, num: int, label, prompt, semantic_map) -> dict:
        """{name: (num, ...)} of the model's conditioning inputs (a request's or null)."""
        given = {"tokens": prompt, "semantic_map": semantic_map}
        for name, value in given.items():
            if value is not None and name not in self.conditions:
                raise ValueError(
                    f"{self.path} takes no {name}; its inputs are {self.meta['inputs']}."
                )
        labels = pretrained.class_labels(num, label, self.num_classes, self.path)
        cond = {} if labels is None else {"label": labels}
        if "tokens" in self.conditions:
            cond["tokens"] = self._tokens(num, "" if prompt is None else prompt)
        if "semantic_map" in self.conditions:
            cond["semantic_map"] = self._map(num, semantic_map)
        return cond

    def _tokens(self, num: int, prompt) -> np.ndarray:
        from jaxdiff.text import prompts

        texts = [prompt] * num if isinstance(prompt, str) else list(prompt)
        if len(texts) != num:
            raise ValueError(f"prompt: one string or {num} strings; got {len(texts)}.")
        return prompts.encode_prompts(texts, self.conditions["tokens"]["shape"][0])

    def _map(self, num: int, semantic_map) -> np.ndarray:
        shape = tuple(self.conditions["semantic_map"]["shape"])
        if semantic_map is None:
            return np.zeros((num, *shape), np.float32)
        semantic_map = np.asarray(semantic_map, np.float32)
        if semantic_map.shape not in (shape, (num, *shape)):
            raise ValueError(
                f"semantic_map must have shape {shape} or {(num, *shape)}; "
                f"got {semantic_map.shape}."
            )
        return np.broadcast_to(semantic_map, (num, *shape))

    def _x0_eps(self, x, level, cond, guidance):
        """(x0, eps) from the guided prediction of meta["kind"] at a level."""
        pred = self.prediction(x, level, cond, guidance)
        scale, sigma = self._marginal(level)
        kind = self.meta["kind"]
        if kind == "v":
            norm = scale * scale + sigma * sigma
            return (scale * x - sigma * pred) / norm, (sigma * x + scale * pred) / norm
        if kind == "eps":
            return (x - sigma * pred) / scale, pred
        if kind == "x0":
            return pred, (x - scale * pred) / sigma
        raise ValueError(f"prediction kind {kind!r} is not supported by the ONNX sampler.")

    def _marginal(self, level: int) -> tuple[np.float32, np.float32]:
        """(scale, sigma) at a level, as jaxdiff's DiscreteSchedule.marginal."""
        log_ab = np.float32(self.meta["log_alpha_bar"][level])
        return np.exp(np.float32(0.5) * log_ab), np.sqrt(-np.expm1(log_ab))

    def _alpha_bar(self, level: int) -> np.float32:
        return np.float32(1.0 if level == 0 else self.meta["alphas_cumprod"][level - 1])

    def _ddim(self, x, levels, cond, guidance):
        for t, s in zip(levels[:-1], levels[1:], strict=True):
            x0, eps = self._x0_eps(x, int(t), cond, guidance)
            ab_s = self._alpha_bar(int(s))
            x = np.sqrt(ab_s) * x0 + np.sqrt(np.maximum(1.0 - ab_s, 0.0)) * eps
        return x.astype(np.float32)

    def _dpm_solver_pp(self, x, levels, cond, guidance):
        d_prev, lam_prev = None, None
        for t, s in zip(levels[:-1], levels[1:], strict=True):
            (_, sigma_t), (scale_s, sigma_s) = self._marginal(int(t)), self._marginal(int(s))
            lam_t, lam_s = self._lam(int(t)), self._lam(int(s))
            d, _ = self._x0_eps(x, int(t), cond, guidance)
            h = lam_s - lam_t
            if d_prev is None or not np.isfinite(h):
                d_mix = d
            else:
                r = (lam_t - lam_prev) / h
                d_mix = (1.0 + 0.5 / r) * d - (0.5 / r) * d_prev
            with np.errstate(divide="ignore"):
                x = (sigma_s / sigma_t) * x - scale_s * np.expm1(-h) * d_mix
            d_prev, lam_prev = d, lam_t
        return x.astype(np.float32)

    def _lam(self, level: int) -> np.float32:
        scale, sigma = self._marginal(level)
        with np.errstate(divide="ignore"):
            return np.log(scale) - np.log(sigma)


def log_snr_levels(log_alpha_bar: np.ndarray, num_steps: int, t_end: float = DPM_T_END):
    """DPM-Solver's grid on a discrete schedule: levels (num_steps + 1,), descending.

    Times uniform in log-SNR from level N to the level nearest ``t_end``, each moved to the
    nearest level and separated as ``jaxdiff.samplers.grids.on_levels`` does.

    Args:
      log_alpha_bar: (N + 1,) log alpha_bar at levels 0..N (0 at level 0).
      num_steps: the number of intervals.
      t_end: the last time before rounding.

    Raises:
      ValueError: more steps than the schedule has levels in the span.
    """
    n = log_alpha_bar.size - 1
    end = int(np.clip(np.round(t_end * n), 1, n))
    lam = lambda log_ab: log_ab - np.log(-np.expm1(log_ab))  # log(ab / (1 - ab))
    lams = np.linspace(lam(log_alpha_bar[n]), lam(log_alpha_bar[end]), num_steps + 1)
    target = -np.log1p(np.exp(-lams))  # log alpha_bar of each log-SNR
    times = np.interp(target, log_alpha_bar[::-1], np.arange(n, -1, -1) / n)
    levels = np.clip(np.round(times * n), 1, n)
    levels[0], levels[-1] = n, end
    levels = _spacing.separate_levels(levels)
    if np.any(np.diff(levels) >= 0) or levels[-1] < 1:
        raise ValueError(f"{num_steps} steps need more levels than the schedule's {n}.")
    return levels.astype(np.int64)


def probe_inputs(meta: dict, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random graph inputs: x ~ N(0, 1) (batch, H, W, C), t ~ U(0, 1), labels in
    [0, num_classes] (the null label included) for a conditional model, byte tokens of a
    random prompt, a random 0/1 semantic map."""
    from jaxdiff.text import tokenizer

    rng = np.random.default_rng(seed)
    feeds = {
        "x": rng.standard_normal((batch, *meta["image_shape"])).astype(np.float32),
        "t": rng.uniform(0.0, 1.0, batch).astype(np.float32),
    }
    if meta["num_classes"]:
        feeds["label"] = rng.integers(0, meta["num_classes"] + 1, batch).astype(np.int32)
    for name, spec in meta.get("conditions", {}).items():
        if name == "tokens":
            texts = [PROBE_PROMPTS[i] for i in rng.integers(0, len(PROBE_PROMPTS), batch)]
            feeds[name] = np.stack([tokenizer.encode(t, spec["shape"][0]) for t in texts])
        elif name == "semantic_map":
            feeds[name] = rng.integers(0, 2, (batch, *spec["shape"])).astype(np.float32)
    return feeds


def _open_session(path: str, threads: int):
    """An ONNX Runtime CPU session of ``path`` (clear errors for a missing or bad file)."""
    import onnxruntime as ort

    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such ONNX file.")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own types for unreadable graphs
        raise ValueError(f"{path} is not a readable ONNX model: {e}") from None


def _read_metadata(session, path: str) -> dict:
    custom = session.get_modelmeta().custom_metadata_map
    if graph.METADATA_KEY not in custom:
        raise ValueError(
            f"{path} has no jaxdiff metadata: export it with python -m jaxdiff.export."
        )
    meta = json.loads(custom[graph.METADATA_KEY])
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: metadata format {meta.get('format')!r}; this jaxdiff reads "
            f"format {FORMAT_VERSION}. Re-export the model."
        )
    return meta


def _check_inputs(session, meta: dict, path: str) -> None:
    got = {i.name: i.shape for i in session.get_inputs()}
    if sorted(got) != sorted(meta["inputs"]):
        raise ValueError(
            f"{path}: the graph's inputs {sorted(got)} do not match its metadata "
            f"{sorted(meta['inputs'])}."
        )
    image = got["x"][1:]
    if list(image) != list(meta["image_shape"]):
        raise ValueError(
            f"{path}: the graph takes images of shape {image}, its metadata says "
            f"{meta['image_shape']}."
        )
