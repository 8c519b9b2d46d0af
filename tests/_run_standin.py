"""Runs ``jaxdiff.train``'s command line with the private stand-in network and loss.

Usage (from the repository root): ``python tests/_run_standin.py --config=... --workdir=...``.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402

from jaxdiff import train  # noqa: E402
from jaxdiff.training import components  # noqa: E402
from tests import _standins  # noqa: E402

components.build_model = _standins.create_model
components.build_loss = lambda config, process: _standins.eps_loss(process)

if __name__ == "__main__":
    app.run(train.main)
