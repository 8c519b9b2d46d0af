"""What a request may ask for, and how it becomes engine work.

A request is JSON (``POST /v1/generate``) or a query string (``GET /v1/stream``) with the
fields of :class:`GenerateRequest`. :func:`resolve` checks it against the server's
:class:`Limits` and the model and returns a :class:`Work`, or raises :class:`RequestError`
with the HTTP status and a message that says what was wrong and what is allowed.

Adaptive sampling: ``quality`` picks the sampler and its steps from :data:`QUALITY`,
read off the measured quality-vs-NFE table of the shipped MNIST model
(``benchmarks/results/serve_quality_mnist_cpu.json``, docs/serving.md): "draft" is the
cheapest setting within 1.5x of the default's classifier distance and half a point of its
accuracy, "normal" is the model's shipped default, "best" the setting with the lowest
measured distance.
"""

import dataclasses
import re

import pydantic

# quality -> (method, num_steps); "normal" -> the model's default sampler
QUALITY = {"draft": ("dpm_solver++", 8), "normal": (None, None), "best": ("dpm_solver++", 50)}

CLASS_NAMES = {
    "mnist": ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"],
    "fashion_mnist": [
        "t-shirt",
        "trouser",
        "pullover",
        "dress",
        "coat",
        "sandal",
        "shirt",
        "sneaker",
        "bag",
        "ankle boot",
    ],
}


class RequestError(ValueError):
    """A request the server refuses: ``status`` (4xx or 503) and a message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclasses.dataclass(frozen=True)
class Limits:
    """The server's caps.

    Attributes:
      max_images: images per request.
      max_steps: sampler steps per request.
      max_guidance: the largest guidance weight w.
      max_body_bytes: the largest request body.
      max_queue: requests waiting or running; more are answered 503.
      max_prompt_chars: the longest prompt.
    """

    max_images: int = 16
    max_steps: int = 100
    max_guidance: float = 10.0
    max_body_bytes: int = 4096
    max_queue: int = 256
    max_prompt_chars: int = 200


class GenerateRequest(pydantic.BaseModel):
    """One request: ``num_images`` images of one class (or prompt), seeds seed, seed+1, ..."""

    model_config = pydantic.ConfigDict(extra="forbid")

    label: int | None = None
    prompt: str | None = None
    seed: int = pydantic.Field(0, ge=0, le=2**31 - 1)
    num_images: int = pydantic.Field(1, ge=1)
    guidance: float | None = pydantic.Field(None, ge=0.0, allow_inf_nan=False)
    quality: str | None = None
    method: str | None = None
    num_steps: int | None = pydantic.Field(None, ge=1)


@dataclasses.dataclass(frozen=True)
class Work:
    """A checked request: what the engine runs and what the filter sees."""

    method: str
    num_steps: int
    seeds: tuple[int, ...]
    labels: tuple[int, ...]
    guidance: float
    prompt: str | None


def parse(data) -> GenerateRequest:
    """A :class:`GenerateRequest` from decoded JSON or query parameters (422 if invalid)."""
    if not isinstance(data, dict):
        raise RequestError(422, f"the request must be a JSON object; got {type(data).__name__}.")
    try:
        return GenerateRequest.model_validate(data)
    except pydantic.ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc'])) or 'request'}: {err['msg']}" for err in e.errors()
        )
        raise RequestError(422, f"invalid request: {problems}.") from None


def resolve(req: GenerateRequest, engine, limits: Limits, class_names=None) -> Work:
    """Checks ``req`` against ``limits`` and the engine's model; the :class:`Work` to run."""
    if req.num_images > min(limits.max_images, engine.max_batch):
        cap = min(limits.max_images, engine.max_batch)
        raise RequestError(422, f"num_images must be in [1, {cap}]; got {req.num_images}.")
    method, num_steps = _sampler(req, engine)
    if num_steps > limits.max_steps:
        raise RequestError(422, f"num_steps must be in [1, {limits.max_steps}]; got {num_steps}.")
    w = engine.config.sample.guidance if req.guidance is None else req.guidance
    if not 0.0 <= w <= limits.max_guidance:
        raise RequestError(422, f"guidance must be in [0, {limits.max_guidance}]; got {w}.")
    label = _label(req, engine.num_classes, class_names, limits)
    seeds = tuple(req.seed + i for i in range(req.num_images))
    return Work(method, num_steps, seeds, (label,) * req.num_images, float(w), req.prompt)


def _sampler(req: GenerateRequest, engine) -> tuple[str, int]:
    method, num_steps = req.method, req.num_steps
    if req.quality is not None:
        if req.quality not in QUALITY:
            raise RequestError(422, f"quality must be one of {list(QUALITY)}; got {req.quality!r}.")
        if method or num_steps:
            raise RequestError(422, "give either quality or method/num_steps, not both.")
        method, num_steps = QUALITY[req.quality]
    try:
        method, num_steps, _ = engine.settings(method, num_steps)
    except ValueError as e:
        raise RequestError(422, str(e)) from None
    return method, num_steps


def _label(req: GenerateRequest, num_classes: int, class_names, limits: Limits) -> int:
    """The request's class: ``label``, or the class a prompt names, or 0."""
    if req.prompt is not None and len(req.prompt) > limits.max_prompt_chars:
        raise RequestError(422, f"prompt is longer than {limits.max_prompt_chars} characters.")
    if not num_classes:
        if req.label is not None:
            raise RequestError(422, "this model is unconditional: it takes no label.")
        return 0
    if req.label is not None and req.prompt is not None:
        raise RequestError(422, "give either label or prompt, not both.")
    if req.prompt is not None:
        return class_from_prompt(req.prompt, class_names or [])
    label = 0 if req.label is None else req.label
    if not 0 <= label < num_classes:
        raise RequestError(422, f"label must be in [0, {num_classes}); got {label}.")
    return label


def class_from_prompt(prompt: str, class_names: list[str]) -> int:
    """The class a prompt names (a class name or a digit), or a 422 listing the names."""
    text = prompt.lower()
    for i, name in enumerate(class_names):
        if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) or re.search(
            rf"(?<!\w){i}(?!\w)", text
        ):
            return i
    raise RequestError(
        422,
        f"the prompt names no class of this model; it should contain one of {class_names} "
        "(or the class index).",
    )
