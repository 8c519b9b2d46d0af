"""jaxdiff: diffusion models in JAX/Flax.

The package re-exports its modules only; each module documents its own API.
"""

from jaxdiff import parametrization as parametrization
from jaxdiff import schedules as schedules
from jaxdiff import sdes as sdes

__version__ = "0.1.0"
