"""The inference server (``jaxdiff.serve``): batching that keeps each request's images,
limits and clear 4xx answers, a bounded queue, tokens, streaming previews, metrics, and
bulk generation over two processes equal to one."""

import asyncio
import base64
import io
import json
import os
import socket
import subprocess
import sys
import time

import ml_collections
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install -e '.[serve]'")
from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from jaxdiff.serve import app as app_lib  # noqa: E402
from jaxdiff.serve import batcher as batcher_lib  # noqa: E402
from jaxdiff.serve import bulk, limits  # noqa: E402
from jaxdiff.serve.engine import Engine  # noqa: E402
from tests.test_pretrained import _smoke_run  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class FakeEngine:
    """The engine's interface without a network: image i is filled with a value that
    identifies its (seed, label), so lost, swapped or duplicated rows show."""

    num_classes, batch_sizes = 10, [1, 4, 16]
    max_batch, stage_shapes = 16, [(28, 28, 1)]

    def __init__(self, delay: float = 0.0):
        self.delay, self.batches = delay, []
        self.config = ml_collections.ConfigDict(
            {"sample": {"guidance": 0.25}, "data": {"image_size": 28, "channels": 1}}
        )

    def settings(self, method, num_steps):
        if method not in (None, "ddim", "dpm_solver++"):
            raise ValueError(f"Unknown method {method!r}; valid: ['ddim', 'dpm_solver++'].")
        return method or "dpm_solver++", num_steps or 20, {}

    def generate(self, method, num_steps, seeds, labels, weights, previews=None):
        time.sleep(self.delay)
        self.batches.append((method, num_steps, len(seeds)))
        for fn in previews or []:
            if fn is not None:
                fn(0, np.zeros((1, 28, 28, 1), np.float32))
        values = [fingerprint(s, y) for s, y in zip(seeds, labels, strict=True)]
        return np.stack([np.full((28, 28, 1), v, np.uint8) for v in values])


def fingerprint(seed: int, label: int) -> int:
    return (seed * 10 + label) % 251


def png_value_image(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


def png_value(b64: str) -> int:
    return int(png_value_image(b64).flat[0])


def client(engine=None, **server_args) -> TestClient:
    server = app_lib.Server(engine or FakeEngine(), name="fake", **server_args)
    return TestClient(app_lib.create_app(server))


# ----------------------------------------------------------------------------- the engine


def test_a_requests_rows_in_a_batch_equal_the_lone_request():
    engine = Engine(_smoke_run(), batch_sizes=(4,))  # one compile: lone requests are padded
    seen = []
    lone = [
        engine.generate("ddim", 2, [s], [y], [w])
        for s, y, w in [(5, 3, 0.25), (9, 1, 2.0), (11, 7, 0.0)]
    ]
    batch = engine.generate(
        "ddim",
        2,
        [5, 9, 11],
        [3, 1, 7],
        [0.25, 2.0, 0.0],
        previews=[None, lambda step, x0, stage: seen.append((stage, x0.shape)), None],
    )
    assert batch.shape == (3, 28, 28, 1) and batch.dtype == np.uint8
    # other rows beside it (padding or requests): one uint8 level at most (the sharded test
    # below compares across batch sizes, where XLA promises no bitwise equality)
    for i, alone in enumerate(lone):
        assert np.abs(batch[i].astype(int) - alone[0].astype(int)).max() <= 1
    assert not np.array_equal(batch[0], batch[1])  # seeds, classes and w do reach the rows
    assert seen and all(entry == (0, (1, 28, 28, 1)) for entry in seen)
    assert engine.padded_size(3) == 4
    with pytest.raises(ValueError, match="exceeds the largest batch size 4"):
        engine.padded_size(5)


SHARDED_ENGINE = """
import jax, numpy as np
from jaxdiff.serve.engine import Engine
from tests.test_pretrained import _smoke_run
engine = Engine(_smoke_run(), batch_sizes=(1, 3))
assert len(jax.local_devices()) == 2 and engine.batch_sizes == [2, 4], engine.batch_sizes
pair = engine.generate("ddim", 2, [5, 9, 11], [3, 1, 7], [0.25, 2.0, 0.0])
lone = engine.generate("ddim", 2, [9], [1], [2.0])
assert np.abs(pair[1].astype(int) - lone[0].astype(int)).max() <= 1
print("ok", pair.shape)
"""


@pytest.mark.slow  # CI time: a 2-device subprocess; sharded training runs in CI
def test_the_engine_shards_the_batch_over_local_devices():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    out = subprocess.run(
        [sys.executable, "-c", SHARDED_ENGINE], cwd=REPO, env=env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0 and "ok (3, 28, 28, 1)" in out.stdout, out.stderr[-2000:]


# ---------------------------------------------------------------------------- the batcher


def run_async(coro):
    return asyncio.run(coro)


def work(seed, label=0, method="dpm_solver++", steps=20, n=1):
    seeds = tuple(seed + i for i in range(n))
    return limits.Work(method, steps, seeds, (label,) * n, 0.25, None)


def test_concurrent_requests_share_batches_and_keep_their_images():
    engine = FakeEngine(delay=0.05)

    async def main():
        b = batcher_lib.Batcher(engine, max_wait_s=0.05)
        b.start()
        jobs = [b.submit(work(seed, seed % 10)) for seed in range(40)]
        out = await asyncio.gather(*jobs)
        await b.stop()
        return b, out

    b, out = run_async(main())
    got = [int(images[0].flat[0]) for images in out]
    assert got == [fingerprint(s, s % 10) for s in range(40)]  # none lost, swapped, doubled
    assert sum(n for *_, n in engine.batches) == 40 and len(engine.batches) < 40
    assert max(n for *_, n in engine.batches) <= 16 and b.stats.mean_batch() > 1


def test_a_batch_holds_one_compiled_program():
    engine = FakeEngine()

    async def main():
        b = batcher_lib.Batcher(engine, max_wait_s=0.05)
        b.start()
        jobs = [b.submit(work(s, steps=10 if s % 2 else 20)) for s in range(12)]
        await asyncio.gather(*jobs)
        await b.stop()

    run_async(main())
    steps_per_batch = {(m, s) for m, s, _ in engine.batches}
    assert steps_per_batch == {("dpm_solver++", 10), ("dpm_solver++", 20)}
    assert sum(n for *_, n in engine.batches) == 12


def test_a_full_queue_refuses_at_once():
    async def main():
        b = batcher_lib.Batcher(FakeEngine(delay=0.3), max_queue=2)
        b.start()
        first = asyncio.ensure_future(b.submit(work(0)))
        await asyncio.sleep(0.1)  # the first batch runs; two more wait
        waiting = [asyncio.ensure_future(b.submit(work(s))) for s in (1, 2)]
        await asyncio.sleep(0.01)
        start = time.monotonic()
        with pytest.raises(batcher_lib.QueueFull, match="server is full"):
            await b.submit(work(3))
        refused_in = time.monotonic() - start
        await asyncio.gather(first, *waiting)
        await b.stop()
        return refused_in

    assert run_async(main()) < 0.05


# ------------------------------------------------------------------------------- the app


def test_a_good_request_gets_its_images():
    with client() as c:
        r = c.post("/v1/generate", json={"label": 3, "seed": 4, "num_images": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [png_value(im["png"]) for im in body["images"]] == [
        fingerprint(4, 3),
        fingerprint(5, 3),
    ]
    assert body["method"] == "dpm_solver++" and body["guidance"] == 0.25


@pytest.mark.parametrize(
    "body, status, message",
    [
        ("{not json", 400, "malformed JSON"),
        (json.dumps({"label": 10}), 422, r"label must be in \[0, 10\)"),
        (json.dumps({"num_steps": -3}), 422, "num_steps"),
        (json.dumps({"num_steps": 1000}), 422, r"num_steps must be in \[1, 100\]"),
        (json.dumps({"guidance": 1e9}), 422, r"guidance must be in \[0, 10.0\]"),
        (json.dumps({"guidance": -1}), 422, "guidance"),
        (json.dumps({"num_images": 99}), 422, r"num_images must be in \[1, 16\]"),
        (json.dumps({"method": "heun"}), 422, "Unknown method 'heun'"),
        (json.dumps({"quality": "ultra"}), 422, "quality must be one of"),
        (json.dumps({"quality": "draft", "num_steps": 4}), 422, "either quality or"),
        (json.dumps({"colour": "red"}), 422, "colour"),
        (json.dumps([1, 2]), 422, "must be a JSON object"),
        (json.dumps({"prompt": "x" * 5000}), 413, "larger than 4096 bytes"),
        (json.dumps({"prompt": "a tree"}), 422, "names no class"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_message_and_the_server_stays_up(body, status, message):
    with client() as c:
        r = c.post("/v1/generate", content=body, headers={"content-type": "application/json"})
        assert r.status_code == status, r.text
        assert pytest.importorskip("re").search(message, r.json()["error"]), r.json()
        assert c.post("/v1/generate", json={"label": 1}).status_code == 200


def test_a_full_queue_answers_503():
    with client(limits=limits.Limits(max_queue=0)) as c:
        r = c.post("/v1/generate", json={"label": 1})
    assert r.status_code == 503 and "server is full" in r.json()["error"]


def test_a_token_guards_the_api():
    with client(token="s3cret") as c:
        assert c.post("/v1/generate", json={}).status_code == 401
        assert c.get("/v1/info").status_code == 401
        auth = {"Authorization": "Bearer s3cret"}
        assert c.post("/v1/generate", json={}, headers=auth).status_code == 200
        assert c.get("/v1/stream?label=2&token=s3cret").status_code == 200
        assert c.get("/healthz").status_code == 200  # liveness stays open


def sse_events(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_the_stream_sends_previews_then_the_image():
    with client() as c:
        r = c.get("/v1/stream?label=6&seed=2&quality=draft")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    kinds = [k for k, _ in events]
    assert kinds[0] == "preview" and kinds[-2:] == ["image", "done"]
    assert png_value(events[-2][1]["png"]) == fingerprint(2, 6)
    assert events[-1][1] == {"method": "dpm_solver++", "num_steps": 8}  # quality=draft


class BlockSevens:
    """A content filter that refuses the word "forbidden" and withholds class-7 images."""

    def check_prompt(self, prompt):
        if "forbidden" in prompt:
            raise ValueError("'forbidden' is on the block list")

    def check_images(self, images):
        return np.asarray([int(im.flat[0]) % 10 != 7 for im in images])


class AddOne:
    def embed(self, images):
        return images + 1


def test_the_filter_and_the_watermark_see_every_image():
    with client(content_filter=BlockSevens(), watermark=AddOne(), class_names=None) as c:
        r = c.post("/v1/generate", json={"label": 7, "num_images": 2})
        assert r.status_code == 200
        assert all(im["png"] is None and im["withheld"] for im in r.json()["images"])
        r = c.post("/v1/generate", json={"label": 2})
        assert png_value(r.json()["images"][0]["png"]) == fingerprint(0, 2) + 1
        r = c.post("/v1/generate", json={"prompt": "a forbidden thing"})
        assert r.status_code == 400 and "block list" in r.json()["error"]


def test_served_images_carry_the_watermark_previews_included():
    from jaxdiff.safety.watermark import Watermark

    mark = Watermark(key=3)
    with client(watermark=mark) as c:
        body = c.post("/v1/generate", json={"label": 2, "num_images": 4}).json()
        events = sse_events(c.get("/v1/stream?label=5").text)
    served = [png_value_image(im["png"]) for im in body["images"]]
    served += [png_value_image(d["png"]) for kind, d in events if kind in ("preview", "image")]
    assert len(served) == 6
    found = mark.detect(np.stack(served))
    assert found.present.all(), found.statistic
    assert not Watermark(key=4).detect(np.stack(served)).present.any()


def test_a_prompt_names_a_class():
    names = limits.CLASS_NAMES["fashion_mnist"]
    assert limits.class_from_prompt("a red Sneaker", names) == 7
    assert limits.class_from_prompt("an ankle boot", names) == 9
    assert limits.class_from_prompt("a t-shirt", names) == 0
    assert limits.class_from_prompt("a shirt", names) == 6
    assert limits.class_from_prompt("the digit 4", limits.CLASS_NAMES["mnist"]) == 4
    with client(class_names=limits.CLASS_NAMES["mnist"]) as c:
        r = c.post("/v1/generate", json={"prompt": "a seven", "seed": 1})
    assert png_value(r.json()["images"][0]["png"]) == fingerprint(1, 7)


def test_health_metrics_info_and_the_page():
    with client() as c:
        c.post("/v1/generate", json={"label": 1})
        c.post("/v1/generate", json={"label": 99})
        health = c.get("/healthz").json()
        metrics = c.get("/metrics").text
        info = c.get("/v1/info").json()
        page = c.get("/").text
    assert health == {"status": "ok", "model": "fake", "queue": 0}
    assert 'jaxdiff_requests_total{status="200"} 1.0' in metrics
    assert 'jaxdiff_requests_total{status="422"} 1.0' in metrics
    assert "jaxdiff_images 1.0" in metrics
    assert info["num_classes"] == 10 and info["quality"]["draft"]["num_steps"] == 8
    assert info["image_shape"] == [28, 28, 1] and info["stage_shapes"] == [[28, 28, 1]]
    assert "EventSource" in page and "/v1/stream" in page


@pytest.mark.skipif(not os.path.exists("/usr/bin/chromium"), reason="needs Debian's chromium")
def test_the_page_shows_a_preview_then_the_image(tmp_path):
    pytest.importorskip("playwright.sync_api")
    from benchmarks import serve_load, serve_page

    server = app_lib.Server(
        FakeEngine(delay=0.2), name="fake", class_names=limits.CLASS_NAMES["mnist"]
    )
    port = serve_load.free_port()
    web, thread = serve_load.start_server(server, port)
    try:
        shot = tmp_path / "page.png"
        got = serve_page.drive(f"http://127.0.0.1:{port}/", 3, "draft", str(shot))
    finally:
        web.should_exit = True
        thread.join(timeout=30)
    assert got["previews"] >= 1 and got["status"] == "done" and got["download"]
    assert got["final_src"].startswith("data:image/png;base64") and shot.stat().st_size > 1000
    assert server.batcher.stats.images == 1


# ---------------------------------------------------------------------------- the command


def test_binding_beyond_localhost_needs_a_token(capsys, monkeypatch):
    from jaxdiff.serve import __main__ as serve_main

    monkeypatch.delenv("JAXDIFF_SERVE_TOKEN", raising=False)
    with pytest.raises(SystemExit) as e:
        serve_main.main(["--pretrained=mnist", "--host=0.0.0.0"])
    assert e.value.code == 2
    assert "binds beyond this machine: give a bearer token" in capsys.readouterr().err


@pytest.mark.parametrize("module", ["jaxdiff.serve.__main__", "jaxdiff.serve.bulk"])
def test_a_workdir_without_checkpoints_is_named(module, tmp_path, capsys):
    import importlib

    command = importlib.import_module(module)
    argv = [f"--workdir={tmp_path}", f"--out_dir={tmp_path / 'out'}"][
        : 2 if "bulk" in module else 1
    ]
    with pytest.raises(SystemExit) as e:
        command.main(argv)
    assert e.value.code == 1
    assert f"--workdir={tmp_path}: no checkpoints folder there" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------- bulk generation


def test_each_shard_belongs_to_exactly_one_process():
    parts = [bulk.my_shards(1001, 100, p, 3) for p in range(3)]
    assert sorted(sum(parts, [])) == list(range(11))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bulk_command(out_dir, *extra):
    return [
        sys.executable, "-m", "jaxdiff.serve.bulk", "--pretrained=mnist", f"--out_dir={out_dir}",
        "--num_samples=7", "--shard_size=2", "--method=ddim", "--num_steps=2", *extra,
    ]  # fmt: skip


def test_two_processes_draw_the_same_images_as_one(tmp_path):
    env = dict(os.environ)
    one, two, port = tmp_path / "one", tmp_path / "two", free_port()
    commands = [bulk_command(one)] + [
        bulk_command(two, f"--coordinator=127.0.0.1:{port}", "--num_processes=2",
                     f"--process_id={p}")
        for p in (0, 1)
    ]  # fmt: skip
    procs = [  # all three at once: the single-process job runs beside the pair
        subprocess.Popen(c, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for c in commands
    ]
    for p in procs:
        out = p.communicate(timeout=300)[0].decode()
        assert p.returncode == 0, out
    a = json.loads((one / "manifest.json").read_text())
    b = json.loads((two / "manifest.json").read_text())
    assert len(a["shard_sha256"]) == 4 and a["shard_sha256"] == b["shard_sha256"]
    for i in range(4):
        with np.load(one / f"shard_{i:05d}.npz") as x, np.load(two / f"shard_{i:05d}.npz") as y:
            np.testing.assert_array_equal(x["images"], y["images"])
