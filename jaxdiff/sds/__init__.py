"""Score distillation sampling (DreamFusion): 3D objects from a view-conditioned 2D prior.

- :mod:`score`: the SDS gradient w(t) (eps_hat - eps) without the denoiser's Jacobian, its
  surrogate loss, w(t), t annealing, classifier-free guidance;
- :mod:`optimize`: the loop over random views of a voxel field (``jaxdiff.render``), the
  regularisers, turntables;
- :mod:`prior`: a trained view-conditioned run or the renders' exact denoiser
  (:mod:`empirical`); :mod:`io`: GIF and weights; ``python -m jaxdiff.sds`` (see
  ``__main__``) runs it all. Guide: docs/sds.md.

Example::

  from jaxdiff import sds
  p = sds.prior.load("runs/shapes3d_views", "torus", guidance=20.0)
  params, history = sds.optimize.optimize(p.eps_fn, p.process, p.label_fn, sds.Settings())
"""

from jaxdiff.sds import empirical as empirical
from jaxdiff.sds import io as io
from jaxdiff.sds import optimize as optimize
from jaxdiff.sds import prior as prior
from jaxdiff.sds import score as score
from jaxdiff.sds.optimize import Settings as Settings
from jaxdiff.sds.score import guided_eps_fn as guided_eps_fn
from jaxdiff.sds.score import sds_gradient as sds_gradient
from jaxdiff.sds.score import sds_loss as sds_loss
