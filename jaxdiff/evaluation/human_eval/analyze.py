"""Win rate of set A over set B from human-judgement results, with a binomial interval.

Command line::

  python -m jaxdiff.evaluation.human_eval.analyze results.json [more.json ...] \
      [--confidence 0.95] [--method wilson|clopper_pearson]

Several result files (several raters) are pooled. In a model-vs-real test, a win rate near
50% means raters cannot tell the model's samples from real data.
"""

import argparse
import json
from statistics import NormalDist

from jaxdiff.evaluation.human_eval.page import RESULTS_FORMAT


def wilson_interval(wins: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion.

    Args:
      wins: successes (0 <= wins <= n).
      n: trials (> 0).
      confidence: two-sided level in (0, 1).

    Returns:
      (low, high).
    """
    _check(wins, n, confidence)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = wins / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5 / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def clopper_pearson_interval(wins: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval from beta quantiles (needs scipy).

    Args:
      wins: successes (0 <= wins <= n).
      n: trials (> 0).
      confidence: two-sided level in (0, 1).

    Returns:
      (low, high).
    """
    from scipy.stats import beta

    _check(wins, n, confidence)
    alpha = 1 - confidence
    low = 0.0 if wins == 0 else float(beta.ppf(alpha / 2, wins, n - wins + 1))
    high = 1.0 if wins == n else float(beta.ppf(1 - alpha / 2, wins + 1, n - wins))
    return low, high


INTERVALS = {"wilson": wilson_interval, "clopper_pearson": clopper_pearson_interval}


def _check(wins: int, n: int, confidence: float) -> None:
    if n <= 0 or not 0 <= wins <= n:
        raise ValueError(f"need 0 <= wins <= n and n > 0, got wins={wins}, n={n}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def load_results(path: str) -> dict:
    """Reads and checks one results file written by the page."""
    with open(path, encoding="utf-8") as f:
        results = json.load(f)
    if not isinstance(results, dict) or results.get("format") != RESULTS_FORMAT:
        raise ValueError(f"{path} is not a {RESULTS_FORMAT} results file")
    for t in results["trials"]:
        if t["winner"] not in ("A", "B") or t["choice"] not in ("left", "right"):
            raise ValueError(f"{path}: malformed trial {t}")
        if (t["choice"] == "left") != (t["winner"] == t["left"]):
            raise ValueError(f"{path}: trial {t['pair']} winner disagrees with side and choice")
    return results


def summarize(paths: list[str], confidence: float = 0.95, method: str = "wilson") -> dict:
    """Pools result files and returns wins, trials, win rate of A and its interval."""
    if method not in INTERVALS:
        raise ValueError(f"unknown interval method {method!r}; valid: {sorted(INTERVALS)}")
    files = [load_results(p) for p in paths]
    names = {(r["name_a"], r["name_b"]) for r in files}
    if len(names) != 1:
        raise ValueError(f"results compare different sets: {sorted(names)}")
    wins = sum(t["winner"] == "A" for r in files for t in r["trials"])
    n = sum(len(r["trials"]) for r in files)
    if n == 0:
        raise ValueError("no judged pairs in the results")
    low, high = INTERVALS[method](wins, n, confidence)
    name_a, name_b = names.pop()
    return {"name_a": name_a, "name_b": name_b, "wins_a": wins, "n": n,
            "win_rate_a": wins / n, "low": low, "high": high, "confidence": confidence,
            "method": method}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", nargs="+", help="JSON files downloaded from the page")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--method", default="wilson", choices=sorted(INTERVALS))
    args = parser.parse_args(argv)
    s = summarize(args.results, args.confidence, args.method)
    print(
        f"{s['name_a']} preferred over {s['name_b']} in {s['wins_a']}/{s['n']} pairs: "
        f"win rate {s['win_rate_a']:.3f}, {100 * s['confidence']:.0f}% {s['method']} interval "
        f"[{s['low']:.3f}, {s['high']:.3f}]"
    )


if __name__ == "__main__":
    main()
