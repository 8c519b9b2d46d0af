"""The rule that turns a model's default sampler and a caller's overrides into settings.

Plain dictionaries and no JAX import: shared by :func:`jaxdiff.training.components.
sampler_settings` (a run's ``config.sample``) and the ONNX Runtime sampler of
:mod:`jaxdiff.export` (the ``sampler`` entry of a graph's metadata), so both fill in
what a caller leaves out the same way.
"""


def resolve_sampler(default: dict, method=None, num_steps=None, guidance=None) -> dict:
    """{"method", "num_steps", "guidance", "options"}: ``default`` with overrides.

    Args:
      default: {"method", "num_steps", "guidance"[, "options"]}, the model's default
        sampler.
      method, num_steps: override when given (None or empty keeps the default).
      guidance: overrides when not None (0 is a valid override).

    Returns:
      A new dict. The default's options (e.g. ddim's spacing) belong to the default
      method: another ``method`` starts from no options.
    """
    same_method = method in (None, "", default["method"])
    return {
        "method": method or default["method"],
        "num_steps": num_steps or default["num_steps"],
        "guidance": default["guidance"] if guidance is None else guidance,
        "options": dict(default.get("options") or {}) if same_method else {},
    }
