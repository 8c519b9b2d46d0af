"""Side-by-side human judgement: a self-contained HTML page and the analysis of its results.

``page.make_page`` writes the page from two image sets; raters choose with the keyboard and
download a JSON file; ``python -m jaxdiff.evaluation.human_eval.analyze results.json``
prints the win rate with a binomial confidence interval.
"""
