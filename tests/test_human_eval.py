"""Human-eval page in headless Chromium (keyboard-driven), results JSON, and the analysis."""

import json
import os

import numpy as np
import pytest

from jaxdiff.evaluation.human_eval import analyze, page

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _images(n, value, size=8):
    rng = np.random.default_rng(value)
    return rng.integers(0, 256, (n, size, size, 1), dtype=np.uint8)


def drive_page(html_path, keys, screenshot=None):
    """Opens the page, presses ``keys`` and downloads the results; returns (json, progress)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 900, "height": 560})
            tab.goto(f"file://{os.path.abspath(html_path)}")
            progress = [tab.inner_text("#progress")]
            for key in keys:
                tab.keyboard.press(key)
                progress.append(tab.inner_text("#progress"))
                if screenshot and len(progress) == 4:
                    tab.screenshot(path=screenshot)
            with tab.expect_download() as info:
                tab.keyboard.press("d")
            with open(info.value.path(), encoding="utf-8") as f:
                return json.load(f), progress
        finally:
            browser.close()


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium package")
def test_page_ten_pairs_by_keyboard(tmp_path):
    html_path = str(tmp_path / "page.html")
    pairs = page.make_page(_images(12, 1), _images(15, 2), html_path, "model", "real",
                           num_pairs=10, seed=3)  # fmt: skip
    assert {p["left"] for p in pairs} == {"A", "B"}  # both sides occur
    keys = ["ArrowLeft", "j", "f", "ArrowRight", "u", "ArrowRight", "f", "f", "j", "ArrowLeft"]
    keys += ["j", "j"]
    results, progress = drive_page(html_path, keys)
    choices = ["left", "right", "left", "right", "left", "left", "right", "left", "right", "right"]
    assert progress[0] == "Pair 1 of 10" and progress[5] == "Pair 4 of 10"  # after the undo
    assert progress[-1] == "10 of 10 done"
    assert results["format"] == page.RESULTS_FORMAT and results["num_pairs"] == 10
    assert [t["choice"] for t in results["trials"]] == choices
    assert [t["left"] for t in results["trials"]] == [p["left"] for p in pairs]
    assert [t["index_a"] for t in results["trials"]] == [p["index_a"] for p in pairs]
    expected = [p["left"] if c == "left" else "AB".replace(p["left"], "") for p, c in
                zip(pairs, choices, strict=True)]  # fmt: skip
    assert [t["winner"] for t in results["trials"]] == expected
    assert results["wins_a"] == expected.count("A")
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    summary = analyze.summarize([str(path)])
    assert summary["n"] == 10 and summary["wins_a"] == expected.count("A")


@pytest.mark.parametrize(
    "wins, n",
    [(8, 10), (0, 12), (50, 50), (37, 100), (1, 3)],
)
def test_intervals_match_scipy(wins, n):
    from scipy.stats import binomtest

    for method, name in [("wilson", "wilson"), ("clopper_pearson", "exact")]:
        ref = binomtest(wins, n).proportion_ci(0.95, method=name)
        low, high = analyze.INTERVALS[method](wins, n, 0.95)
        assert low == pytest.approx(ref.low, abs=1e-9) and high == pytest.approx(ref.high, abs=1e-9)


def test_wilson_published_value():
    # 8 successes in 10 trials, 95%: Wilson interval (0.490, 0.943).
    low, high = analyze.wilson_interval(8, 10)
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)


def _results(trials, name_a="model"):
    return {"format": page.RESULTS_FORMAT, "name_a": name_a, "name_b": "real", "trials": trials}


def test_analyze_cli_and_bad_files(tmp_path, capsys):
    t = {"pair": 0, "left": "A", "choice": "left", "winner": "A"}
    good = tmp_path / "r.json"
    good.write_text(json.dumps(_results([t] * 8 + [dict(t, choice="right", winner="B")] * 2)))
    analyze.main([str(good)])
    out = capsys.readouterr().out
    assert "8/10 pairs: win rate 0.800, 95% wilson interval [0.490, 0.943]" in out
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_results([dict(t, winner="B")])))
    with pytest.raises(ValueError, match="winner disagrees"):
        analyze.summarize([str(bad)])
    other = tmp_path / "o.json"
    other.write_text(json.dumps(_results([t], name_a="other")))
    with pytest.raises(ValueError, match="different sets"):
        analyze.summarize([str(good), str(other)])
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match="not a jaxdiff-human-eval/1 results file"):
        analyze.summarize([str(tmp_path / "x.json")])
    with pytest.raises(ValueError, match="unknown interval method 'bayes'"):
        analyze.summarize([str(good)], method="bayes")
    with pytest.raises(ValueError, match="0 <= wins <= n"):
        analyze.wilson_interval(3, 2)


def test_make_page_rejects_bad_images(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        page.make_page(np.zeros((2, 4, 4, 3)), _images(2, 0), str(tmp_path / "p.html"))
    with pytest.raises(ValueError, match="\\(N, H, W, C\\)"):
        page.make_page(np.zeros((2, 4, 4), np.uint8), _images(2, 0), str(tmp_path / "p.html"))


def test_make_pairs_balanced_without_replacement_and_seeded():
    pairs = page.make_pairs(50, 30, 2000, seed=5)
    assert pairs == page.make_pairs(50, 30, 2000, seed=5)
    assert pairs != page.make_pairs(50, 30, 2000, seed=6)
    n_left_a = sum(p["left"] == "A" for p in pairs)
    assert abs(n_left_a - 1000) < 4 * np.sqrt(2000 * 0.25)  # fair coin, 4 sigma
    first = [p["index_a"] for p in pairs[:50]]
    assert sorted(first) == list(range(50))  # every A image once before any repeats
    assert sorted(p["index_b"] for p in pairs[:30]) == list(range(30))


def test_page_is_self_contained_and_escapes_text(tmp_path):
    path = tmp_path / "p.html"
    page.make_page(_images(3, 0), _images(3, 1), str(path), question="</script><b>x</b>")
    text = path.read_text()
    assert "<b>x</b>" not in text and "&lt;b&gt;x&lt;/b&gt;" in text
    assert text.count("</script>") == 1  # the embedded JSON cannot close the script early
    assert "http://" not in text and "https://" not in text  # nothing fetched
    assert text.count("data:image/png;base64,") == 6


def test_page_and_analyze_command_lines(tmp_path, capsys):
    np.savez(str(tmp_path / "a.npz"), _images(6, 0, size=5))
    np.savez(str(tmp_path / "b.npz"), _images(6, 1, size=7))
    out = str(tmp_path / "p.html")
    page.main([str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "--out", out, "--pairs", "4"])
    assert "wrote" in capsys.readouterr().out and os.path.getsize(out) > 0
    t = {"pair": 0, "left": "B", "choice": "right", "winner": "A"}
    res = tmp_path / "r.json"
    res.write_text(json.dumps(_results([t] * 3 + [dict(t, choice="left", winner="B")])))
    analyze.main([str(res), "--method", "clopper_pearson", "--confidence", "0.9"])
    low, high = analyze.clopper_pearson_interval(3, 4, 0.9)
    assert f"3/4 pairs: win rate 0.750, 90% clopper_pearson interval [{low:.3f}, {high:.3f}]" in (
        capsys.readouterr().out
    )
