"""The rules that turn a model's default sampler and a caller's overrides into settings,
and that refuse settings a distilled student is not valid for.

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


STUDENT_KEYS = ("method", "student_steps", "guidance", "levels")  # what the check reads


def check_student(distill, settings: dict) -> None:
    """Raises ValueError unless ``settings`` suit a distilled student.

    A consistency model samples only with the ``consistency`` method. A progressive-
    distillation student of S steps learned one DDIM step between neighbours of its grid
    (levels ``distill["levels"]``) with guidance already distilled in: DDIM, S steps,
    trailing spacing, w = 0 is the only sampler it is valid for.

    Args:
      distill: the student's ``distill`` record (a dict or ConfigDict with
        :data:`STUDENT_KEYS`); None for a model that is not a student.
      settings: :func:`resolve_sampler`'s result.
    """
    if not distill:
        return
    if distill.get("method", "progressive") != "progressive":
        if (settings["method"], float(settings["guidance"])) != ("consistency", 0.0):
            raise ValueError(
                "this model is a consistency model: sample it with method='consistency' "
                f"and guidance=0; got method={settings['method']!r}, "
                f"guidance={settings['guidance']}."
            )
        return
    steps = distill["student_steps"]
    wanted = ("ddim", steps, 0.0, "trailing")
    got = (
        settings["method"],
        settings["num_steps"],
        float(settings["guidance"]),
        settings["options"].get("spacing", "trailing"),
    )
    if got != wanted:
        raise ValueError(
            f"this model is a distilled student of {steps} steps, valid only on its own grid "
            f"(levels {list(distill['levels'])}): sample it with method='ddim', "
            f"num_steps={steps}, guidance=0 (w={distill['guidance']} is built in) and "
            f"trailing spacing; got method={got[0]!r}, num_steps={got[1]}, "
            f"guidance={got[2]}, spacing={got[3]!r}."
        )


def config_section(config, name: str, valid) -> dict | None:
    """The fields of the optional section ``config.<name>`` as a dict, or None if absent.

    Raises:
      ValueError: a field not in ``valid`` (the message lists the valid ones).
    """
    if name not in config:
        return None
    fields = dict(config[name])
    unknown = sorted(set(fields) - set(valid))
    if unknown:
        raise ValueError(f"{name}: unknown fields {unknown}; valid: {sorted(valid)}.")
    return fields
