"""Prometheus metrics of the server (``GET /metrics``), in a registry of its own."""

import prometheus_client as prom

CONTENT_TYPE = prom.CONTENT_TYPE_LATEST
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 60)


class Metrics:
    """Request, image and batch counters; the batcher's own counts are read at scrape.

    Args:
      batcher: the server's :class:`~jaxdiff.serve.batcher.Batcher`.
    """

    def __init__(self, batcher):
        self.batcher = batcher
        self.registry = prom.CollectorRegistry()
        r = self.registry
        self.requests = prom.Counter(
            "jaxdiff_requests", "Requests answered, by HTTP status.", ["status"], registry=r
        )
        self.latency = prom.Histogram(
            "jaxdiff_request_seconds",
            "Time to answer a request.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rejected = prom.Counter(
            "jaxdiff_withheld_images", "Images withheld by the content filter.", registry=r
        )
        self.queue = prom.Gauge("jaxdiff_queue_depth", "Requests waiting.", registry=r)
        self.batches = prom.Gauge("jaxdiff_batches", "Engine batches run.", registry=r)
        self.images = prom.Gauge("jaxdiff_images", "Images generated.", registry=r)
        self.mean_batch = prom.Gauge("jaxdiff_mean_batch_images", "Images per batch.", registry=r)

    def finished(self, status: int, seconds: float) -> None:
        """Counts one answered request."""
        self.requests.labels(status=str(status)).inc()
        if status == 200:
            self.latency.observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        s = self.batcher.stats
        self.queue.set(self.batcher.depth)
        self.batches.set(s.batches)
        self.images.set(s.images)
        self.mean_batch.set(s.mean_batch())
        return prom.generate_latest(self.registry)
