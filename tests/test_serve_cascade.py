"""A served cascade (``python -m jaxdiff.serve --sr=...``): rows stay independent through
the SR stages, and the event stream shows the low-resolution stage before the high one."""

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install -e '.[serve]'")
import numpy as np  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from jaxdiff import cascade  # noqa: E402
from jaxdiff.serve import app as app_lib  # noqa: E402
from jaxdiff.serve.cascade_engine import CascadeEngine  # noqa: E402
from tests.test_cascade import model  # noqa: E402
from tests.test_serve import png_value_image, sse_events  # noqa: E402

pytestmark = pytest.mark.usefixtures("fast_module_compiles")


@pytest.fixture(scope="module")
def engine():
    sr = cascade.Stage(model("fashion_mnist_sr28", seed=1), num_steps=2)
    # one padded batch size: one compile a stage
    return CascadeEngine(model("fashion_mnist_base14"), [sr], batch_sizes=(4,))


def test_rows_of_a_cascade_batch_equal_the_lone_requests(engine):
    seen = []
    lone = [engine.generate("ddim", 2, [s], [y], [0.5]) for s, y in [(5, 3), (9, 1)]]
    batch = engine.generate(
        "ddim", 2, [5, 9, 11], [3, 1, 7], [0.5] * 3,
        previews=[None, lambda step, x0, stage: seen.append((stage, x0.shape)), None],
    )  # fmt: skip
    assert batch.shape == (3, 28, 28, 1) and engine.stage_shapes == [(14, 14, 1), (28, 28, 1)]
    for i, alone in enumerate(lone):  # one uint8 level, as in test_serve
        assert np.abs(batch[i].astype(int) - alone[0].astype(int)).max() <= 1
    assert not np.array_equal(batch[0], batch[1])
    stages = [stage for stage, _ in seen]
    assert stages == sorted(stages) and set(stages) == {0, 1}  # the base's previews first
    assert {shape for stage, shape in seen} == {(1, 14, 14, 1), (1, 28, 28, 1)}


def test_the_stream_shows_the_low_resolution_stage_first(engine):
    server = app_lib.Server(engine, name="cascade")
    with TestClient(app_lib.create_app(server)) as c:
        info = c.get("/v1/info").json()
        r = c.get("/v1/stream?label=2&seed=4&method=ddim&num_steps=2")
    assert info["image_shape"] == [28, 28, 1] and info["stage_shapes"][0] == [14, 14, 1]
    events = sse_events(r.text)
    previews = [data for kind, data in events if kind == "preview"]
    sizes = [png_value_image(p["png"]).shape[:2] for p in previews]
    assert [p["stage"] for p in previews] == sorted(p["stage"] for p in previews)
    assert sizes[0] == (14, 14) and sizes[-1] == (28, 28)
    assert [kind for kind, _ in events][-2:] == ["image", "done"]
    assert png_value_image(events[-2][1]["png"]).shape[:2] == (28, 28)


def test_stages_that_do_not_chain_are_refused(engine):
    base28 = model("fashion_mnist_sr28", init=False)  # an SR model is no base
    with pytest.raises(ValueError, match="takes \\(14, 14, 1\\) low-resolution images"):
        CascadeEngine(engine.run, [cascade.Stage(base28), cascade.Stage(base28)])
    with pytest.raises(ValueError, match="no truncated"):
        CascadeEngine(engine.run, [cascade.Stage(engine.stages[0].model, truncated=True)])
