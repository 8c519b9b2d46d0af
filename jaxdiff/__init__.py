"""jaxdiff: diffusion models in JAX/Flax.

The package re-exports its modules only; each module documents its own API.
"""

from jaxdiff import evaluation as evaluation
from jaxdiff import guidance as guidance
from jaxdiff import losses as losses
from jaxdiff import models as models
from jaxdiff import parametrization as parametrization
from jaxdiff import samplers as samplers
from jaxdiff import schedules as schedules
from jaxdiff import sdes as sdes
from jaxdiff import time_sampling as time_sampling

__version__ = "0.1.0"
