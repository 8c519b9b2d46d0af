"""The HTTP app (FastAPI): generation, progressive previews, health, metrics, a web page.

Endpoints:
  POST /v1/generate  JSON :class:`~jaxdiff.serve.limits.GenerateRequest` -> JSON with one
                     base64 PNG per image (null where the content filter withheld it).
  GET  /v1/stream    the same fields as query parameters -> server-sent events:
                     ``preview`` (step, row, png, stage) as the sampler goes (a cascade's
                     stages in turn, lowest resolution first), then ``image`` per row
                     and ``done``; an ``error`` event if the batch fails.
  GET  /v1/info      the model, its classes, the limits and the quality presets.
  GET  /healthz      liveness and queue depth.
  GET  /metrics      Prometheus text.
  GET  /             the web page.

Every image that leaves the server, previews included, passes the content filter and
then gets the invisible watermark. With a token, /v1/ endpoints need
``Authorization: Bearer TOKEN`` (``?token=`` for the event stream, which browsers open
without headers).
"""

import asyncio
import base64
import contextlib
import hmac
import io
import json
import logging
import os
import time
import uuid

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, StreamingResponse
from PIL import Image

from jaxdiff.evaluation.run import to_uint8
from jaxdiff.serve import limits as limits_lib
from jaxdiff.serve import metrics as metrics_lib
from jaxdiff.serve.batcher import Batcher, QueueFull
from jaxdiff.serve.limits import Limits, RequestError

LOG = logging.getLogger("jaxdiff.serve")
PAGE = os.path.join(os.path.dirname(__file__), "page.html")


def png_base64(image: np.ndarray) -> str:
    """A uint8 image (H, W, C) as a base64 PNG."""
    buf = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def log_event(**fields) -> None:
    """One structured (JSON) log line."""
    LOG.info(json.dumps({"time": round(time.time(), 3), **fields}, sort_keys=True))


class Server:
    """What the endpoints share: the engine's batcher, the limits, the safety hooks.

    Args:
      engine: a :class:`~jaxdiff.serve.engine.Engine`.
      limits: the request caps.
      token: the bearer token the /v1/ endpoints require (None: none).
      watermark: an object with ``embed(uint8 images (N, H, W, C)) -> images``, or None.
      content_filter: an object with ``check_prompt(str)`` (raises ValueError to block)
        and ``check_images(uint8 images) -> (N,) bool`` allowed, or None.
      name: the model's name, for /v1/info and logs.
      class_names: the classes' names (prompts are matched against them).
      max_wait_s: the batcher's wait for a batch to fill.
    """

    def __init__(
        self,
        engine,
        *,
        limits: Limits | None = None,
        token: str | None = None,
        watermark=None,
        content_filter=None,
        name: str = "",
        class_names=None,
        max_wait_s: float = 0.02,
    ):
        self.engine, self.limits, self.token = engine, limits or Limits(), token
        self.watermark, self.content_filter = watermark, content_filter
        self.name, self.class_names = name, class_names
        self.batcher = Batcher(engine, max_wait_s=max_wait_s, max_queue=self.limits.max_queue)
        self.metrics = metrics_lib.Metrics(self.batcher)

    def authorised(self, request: Request) -> bool:
        if self.token is None:
            return True
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        given = given or request.query_params.get("token", "")
        return hmac.compare_digest(given.encode(), self.token.encode())

    def work_for(self, data) -> limits_lib.Work:
        """The checked work of a request (RequestError if refused)."""
        req = limits_lib.parse(data)
        if req.prompt is not None and self.content_filter is not None:
            try:  # before anything else reads the prompt
                self.content_filter.check_prompt(req.prompt)
            except ValueError as e:
                raise RequestError(400, f"prompt blocked by the content filter: {e}") from None
        return limits_lib.resolve(req, self.engine, self.limits, self.class_names)

    async def finish(self, images: np.ndarray) -> list[tuple[str | None, str | None]]:
        """(png or None, reason or None) per image: filtered, then watermarked."""
        allowed = np.ones(len(images), bool)
        if self.content_filter is not None:
            allowed = np.asarray(await asyncio.to_thread(self.content_filter.check_images, images))
        if self.watermark is not None:
            images = self.watermark.embed(images)
        self.metrics.rejected.inc(int((~allowed).sum()))
        return [
            (png_base64(im), None) if ok else (None, "withheld by the content filter")
            for im, ok in zip(images, allowed, strict=True)
        ]

    async def generate(self, work, preview=None) -> list[tuple[str | None, str | None]]:
        try:
            images = await self.batcher.submit(work, preview)
        except QueueFull as e:
            raise RequestError(503, str(e)) from None
        return await self.finish(images)


def create_app(server: Server) -> FastAPI:
    """The FastAPI app of a :class:`Server` (the batcher runs while the app does)."""

    @contextlib.asynccontextmanager
    async def lifespan(app):
        server.batcher.start()
        yield
        await server.batcher.stop()

    app = FastAPI(title="jaxdiff", lifespan=lifespan)
    app.state.server = server
    _add_generation_routes(app, server)
    _add_service_routes(app, server)
    return app


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _read_json(request: Request, max_bytes: int):
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise RequestError(413, f"the request body is larger than {max_bytes} bytes.")
    try:
        return json.loads(body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RequestError(400, f"malformed JSON: {e}.") from None


def _add_generation_routes(app: FastAPI, server: Server) -> None:
    @app.post("/v1/generate")
    async def generate(request: Request):
        rid, start = uuid.uuid4().hex[:12], time.monotonic()
        try:
            if not server.authorised(request):
                raise RequestError(401, "missing or wrong bearer token.")
            work = server.work_for(await _read_json(request, server.limits.max_body_bytes))
            results = await server.generate(work)
        except RequestError as e:
            server.metrics.finished(e.status, time.monotonic() - start)
            log_event(event="request", id=rid, status=e.status, error=str(e))
            return _error(e.status, str(e))
        seconds = time.monotonic() - start
        server.metrics.finished(200, seconds)
        log_event(event="request", id=rid, status=200, images=len(results), seconds=seconds)
        return _response(rid, work, results)

    @app.get("/v1/stream")
    async def stream(request: Request):
        params = {k: v for k, v in request.query_params.items() if k != "token"}
        try:
            if not server.authorised(request):
                raise RequestError(401, "missing or wrong bearer token.")
            work = server.work_for(params)
        except RequestError as e:
            server.metrics.finished(e.status, 0.0)
            return _error(e.status, str(e))
        events = _stream_events(server, work)
        return StreamingResponse(events, media_type="text/event-stream")


def _response(rid: str, work, results) -> dict:
    return {
        "id": rid,
        "method": work.method,
        "num_steps": work.num_steps,
        "guidance": work.guidance,
        "images": [
            {"seed": s, "label": y, "png": png, "withheld": why}
            for (png, why), s, y in zip(results, work.seeds, work.labels, strict=True)
        ],
    }


def _sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


async def _stream_events(server: Server, work):
    """Server-sent events of one request: previews as they come, then the images."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    def preview(step, row, x0, stage=0):  # called from the engine's thread
        loop.call_soon_threadsafe(queue.put_nowait, (step, row, x0, stage))

    start = time.monotonic()
    task = asyncio.ensure_future(server.generate(work, preview))
    while not task.done() or not queue.empty():
        getter = asyncio.ensure_future(queue.get())
        await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
        if not getter.done():
            getter.cancel()
            continue
        step, row, x0, stage = getter.result()
        ((png, _),) = await server.finish(to_uint8(x0))
        if png is not None:
            yield _sse("preview", {"step": step, "row": row, "png": png, "stage": stage})
    try:
        results = task.result()
    except RequestError as e:
        yield _sse("error", {"status": e.status, "message": str(e)})
        return
    except Exception as e:  # the batch failed: say so on the stream
        yield _sse("error", {"status": 500, "message": f"generation failed: {e}"})
        return
    for row, (png, why) in enumerate(results):
        yield _sse("image", {"row": row, "png": png, "withheld": why})
    server.metrics.finished(200, time.monotonic() - start)
    yield _sse("done", {"method": work.method, "num_steps": work.num_steps})


def _add_service_routes(app: FastAPI, server: Server) -> None:
    @app.get("/healthz")
    async def healthz():
        return {"status": "ok", "model": server.name, "queue": server.batcher.depth}

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(server.metrics.render(), media_type=metrics_lib.CONTENT_TYPE)

    @app.get("/v1/info")
    async def info(request: Request):
        if not server.authorised(request):
            return _error(401, "missing or wrong bearer token.")
        return _info(server)

    @app.get("/", response_class=HTMLResponse)
    async def page():
        with open(PAGE, encoding="utf-8") as f:
            return f.read()


def _info(server: Server) -> dict:
    e, lim = server.engine, server.limits
    method, num_steps, _ = e.settings(None, None)
    return {
        "model": server.name,
        "num_classes": e.num_classes,
        "class_names": server.class_names,
        "image_shape": list(e.stage_shapes[-1]),
        "stage_shapes": [list(shape) for shape in e.stage_shapes],
        "default": {"method": method, "num_steps": num_steps, "guidance": e.config.sample.guidance},
        "quality": {k: {"method": m, "num_steps": n} for k, (m, n) in limits_lib.QUALITY.items()},
        "limits": {
            "max_images": min(lim.max_images, e.max_batch),
            "max_steps": lim.max_steps,
            "max_guidance": lim.max_guidance,
        },
        "watermark": server.watermark is not None,
    }
