"""Drives the server's web page in headless Chromium (Debian's package) and screenshots it.

Serves the model (uvicorn in this process), opens http://127.0.0.1:PORT/, picks a class,
presses Generate, waits for a progressive preview and then the final image, and saves a
screenshot. ``tests/test_serve.py`` drives the same page over a fake engine. Example::

  python -m benchmarks.serve_page --label=7 --out=docs/serve_page.png
"""

import argparse
import os

from benchmarks.serve_load import free_port, start_server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def drive(url: str, label: int, quality: str = "normal", screenshot: str | None = None) -> dict:
    """Picks ``label`` and ``quality`` on the page at ``url``, generates, waits for the image.

    Returns:
      {"previews": previews shown, "final_src": the final image's data URL prefix,
      "status": the status line, "download": whether the download link is shown}.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 760, "height": 560})
            tab.goto(url)
            tab.wait_for_selector("#label option", state="attached")
            tab.select_option("#label", str(label))
            tab.select_option("#quality", quality)
            tab.click("#go")
            tab.wait_for_function("document.getElementById('status').textContent === 'done'")
            if screenshot:
                tab.screenshot(path=screenshot)
            return {
                "previews": int(tab.evaluate("document.body.dataset.previews || 0")),
                "final_src": tab.get_attribute("#final", "src")[:22],
                "status": tab.inner_text("#status"),
                "download": tab.is_visible("#download"),
            }
        finally:
            browser.close()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="mnist")
    p.add_argument("--label", type=int, default=7)
    p.add_argument("--quality", default="normal")
    p.add_argument("--out", default="docs/serve_page.png")
    args = p.parse_args(argv)
    from jaxdiff import _xla_flags

    _xla_flags.apply_cpu_defaults()
    from jaxdiff import pretrained
    from jaxdiff.serve import app as app_lib
    from jaxdiff.serve import limits, safety_hooks
    from jaxdiff.serve.engine import Engine

    run = pretrained.load(args.model).as_run()
    server = app_lib.Server(
        Engine(run, batch_sizes=(1,)),
        name=args.model,
        watermark=safety_hooks.watermark(0),
        class_names=limits.CLASS_NAMES.get(run.config.data.name),
    )
    port = free_port()
    web, thread = start_server(server, port)
    try:
        result = drive(f"http://127.0.0.1:{port}/", args.label, args.quality, args.out)
    finally:
        web.should_exit = True
        thread.join(timeout=30)
    print(result, "->", os.path.abspath(args.out))


if __name__ == "__main__":
    main()
