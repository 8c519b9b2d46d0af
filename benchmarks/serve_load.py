"""Load test of ``jaxdiff.serve`` on localhost: N concurrent requests, batched vs unbatched.

Starts the real server (uvicorn, in this process, on a free port) twice over the same
model: batched (padded batch sizes 1, 4, 16; requests wait up to --max_wait_ms for a
batch) and unbatched (batch size 1). Each time it fires --requests requests at once
(one image each, seeds 0..N-1, classes cycling, the --quality preset) and waits for all.
It checks that every request is answered exactly once with its own seed, and that the
batched images equal the unbatched ones (each a lone request) to within the stated
number of uint8 levels; with the watermark on (the server's default) it also reports the
detection rate of the served images. Bounded: every request has a timeout, and the
run stops after both passes. Example::

  python -m benchmarks.serve_load --requests=200 --out=benchmarks/results/serve_load_cpu.json
"""

import argparse
import asyncio
import base64
import io
import socket
import threading
import time

import numpy as np
from PIL import Image

from benchmarks import measure


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(server, port: int):
    """uvicorn serving ``server``'s app in a thread; returns (uvicorn.Server, thread)."""
    import uvicorn

    from jaxdiff.serve import app as app_lib

    config = uvicorn.Config(app_lib.create_app(server), port=port, log_level="warning")
    web = uvicorn.Server(config)
    thread = threading.Thread(target=web.run, daemon=True)
    thread.start()
    while not web.started:
        time.sleep(0.05)
    return web, thread


async def fire(port: int, n: int, quality: str, timeout: float) -> tuple[list, float]:
    """n concurrent POSTs; (responses as (status, body, seconds), wall seconds)."""
    import httpx

    limits = httpx.Limits(max_connections=n)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:

        async def one(i: int):
            start = time.monotonic()
            body = {"seed": i, "label": i % 10, "quality": quality}
            r = await client.post(f"http://127.0.0.1:{port}/v1/generate", json=body)
            return r.status_code, r.json(), time.monotonic() - start

        start = time.monotonic()
        out = await asyncio.gather(*(one(i) for i in range(n)))
        return list(out), time.monotonic() - start


def decode(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


def one_pass(args, batch_sizes, watermark) -> dict:
    """Serves with ``batch_sizes``, fires the load, returns the pass's numbers + images."""
    from jaxdiff import pretrained
    from jaxdiff.serve import app as app_lib
    from jaxdiff.serve import limits
    from jaxdiff.serve.engine import Engine

    engine = Engine(pretrained.load(args.model).as_run(), batch_sizes=batch_sizes)
    lim = limits.Limits(max_queue=max(256, args.requests))
    server = app_lib.Server(
        engine, limits=lim, watermark=watermark, name=args.model,
        max_wait_s=args.max_wait_ms / 1000.0,
    )  # fmt: skip
    method, num_steps = limits.QUALITY[args.quality]
    for b in engine.batch_sizes:  # compile before timing
        engine.generate(method, num_steps, [0] * b, [0] * b, [0.25] * b)
    port = free_port()
    web, thread = start_server(server, port)
    try:
        responses, wall = asyncio.run(fire(port, args.requests, args.quality, args.timeout))
    finally:
        web.should_exit = True
        thread.join(timeout=30)
    return summarise(responses, wall, server.batcher.stats)


def summarise(responses, wall: float, stats) -> dict:
    ok = [body for status, body, _ in responses if status == 200]
    seeds = sorted(body["images"][0]["seed"] for body in ok)
    latency = np.asarray([s for status, _, s in responses if status == 200])
    images = {body["images"][0]["seed"]: decode(body["images"][0]["png"]) for body in ok}
    return {
        "answered": len(ok),
        "statuses": sorted({status for status, _, _ in responses}),
        "seeds_each_once": seeds == list(range(len(responses))),
        "distinct_ids": len({body["id"] for body in ok}) == len(ok),
        "wall_s": wall,
        "throughput_images_per_s": len(ok) / wall,
        "latency_p50_s": float(np.percentile(latency, 50)),
        "latency_p99_s": float(np.percentile(latency, 99)),
        "batches": stats.batches,
        "mean_batch": stats.mean_batch(),
        "images": images,
    }


def run(args) -> dict:
    from jaxdiff.serve import safety_hooks

    watermark = safety_hooks.watermark(args.watermark_key)
    batched = one_pass(args, (1, 4, 16), watermark)
    unbatched = one_pass(args, (1,), watermark)
    a, b = batched.pop("images"), unbatched.pop("images")
    diff = max(int(np.abs(a[s].astype(int) - b[s].astype(int)).max()) for s in a)
    result = {
        "what": f"{args.requests} concurrent requests (1 image each, quality={args.quality}) "
        f"to python -m jaxdiff.serve's app on localhost, model {args.model}",
        "device": measure.device_info(),
        "command": f"python -m benchmarks.serve_load --requests={args.requests} "
        f"--quality={args.quality} --max_wait_ms={args.max_wait_ms}",
        "batched": batched,
        "unbatched": unbatched,
        "speedup_throughput": batched["throughput_images_per_s"]
        / unbatched["throughput_images_per_s"],
        "max_uint8_diff_batched_vs_lone": diff,
    }
    if watermark is not None:
        found = watermark.detect(np.stack([a[s] for s in sorted(a)])[..., None])
        result["watermark_detected"] = float(np.mean(found.present))
    return result


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="mnist")
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--quality", default="draft")
    p.add_argument("--max_wait_ms", type=float, default=20.0)
    p.add_argument("--timeout", type=float, default=600.0, help="per request, seconds")
    p.add_argument("--watermark_key", type=int, default=0, help="-1: no watermark")
    p.add_argument("--out", required=True)
    return p


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    from jaxdiff import _xla_flags

    _xla_flags.apply_cpu_defaults()
    result = run(args)
    measure.write_json(args.out, result)
    for k in ("batched", "unbatched"):
        r = result[k]
        print(
            f"{k:9s} answered {r['answered']}, mean batch {r['mean_batch']:.1f}, "
            f"p50 {r['latency_p50_s']:.2f} s, p99 {r['latency_p99_s']:.2f} s, "
            f"{r['throughput_images_per_s']:.1f} images/s"
        )
    print(f"throughput x{result['speedup_throughput']:.2f}; max diff vs lone "
          f"{result['max_uint8_diff_batched_vs_lone']} uint8 levels")  # fmt: skip


if __name__ == "__main__":
    main()
