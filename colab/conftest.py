"""Notebooks run in small mode under pytest (nbmake): the kernels inherit this variable."""

import os

os.environ.setdefault("JAXDIFF_NOTEBOOK_SMALL", "1")
