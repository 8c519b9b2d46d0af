"""One error style for every command (train, sample, evaluate, quickstart, fid, convert).

A user's mistake ends with one line on stderr, ``error: what was wrong; what is allowed``,
and an exit status: **2** when the command line itself is wrong (unknown flag, config field
or variant, a value out of range, a label the model lacks, an output of the wrong kind),
**1** when something it names is missing or unusable at run time (a file, the Inception
weights, a dataset, a checkpoint, an unwritable directory). Anything else is a bug and
keeps its traceback; ``--verbose`` shows the traceback of user errors too.

Example::

  FLAGS = flags.FlagValues()            # each command owns its flags (tests call several)
  _cli.define_verbose(FLAGS)

  def main(argv=None):
      _cli.run_absl(run, FLAGS, argv, prog="jaxdiff.sample")
"""

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from absl import flags

USAGE, RUNTIME = 2, 1


class UsageError(ValueError):
    """The command line is wrong (exit status 2)."""


def one_line(error: BaseException | str) -> str:
    """A message on one line (whitespace runs collapsed, surrounding quotes stripped)."""
    text = " ".join(str(error).replace("\\n", " ").replace("\\'", "'").split())
    if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]  # KeyError('name') prints quoted
    return text


def fail(message: str, code: int):
    """Prints ``error: message`` on stderr and exits with ``code``."""
    sys.stdout.flush()
    print(f"error: {one_line(message)}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def guard(fn: Callable, *args, verbose: bool = False):
    """Calls ``fn(*args)``; user errors become one line and an exit status."""
    try:
        return fn(*args)
    except UsageError as e:
        if verbose:
            traceback.print_exc()
        fail(str(e), USAGE)
    except (ValueError, OSError) as e:
        if verbose:
            traceback.print_exc()
        message = str(e)
        if isinstance(e, OSError) and e.filename and e.strerror:
            message = f"{e.filename}: {e.strerror}"
        fail(message, RUNTIME)


def require(condition: bool, message: str) -> None:
    """Raises :class:`UsageError` (exit 2) with ``message`` unless ``condition``."""
    if not condition:
        raise UsageError(message)


def check_writable_file(path: str, flag: str) -> None:
    """Raises ValueError (exit 1) unless ``path``'s folder exists and is writable.

    Nothing is created: a failed command leaves no folders behind.
    """
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"{flag}={path}: folder {folder} does not exist; create it first.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{flag}={path}: folder {folder} is not writable.")


# Log lines from libraries that every run would print and that need no action.
KNOWN_NOISE = (
    "OpenCV is not installed",  # tensorflow_datasets decodes with PIL instead: fine here
)


class _DropKnownNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(KNOWN_NOISE)


def silence_known_warnings() -> None:
    """Drops :data:`KNOWN_NOISE` from absl's log (idempotent)."""
    logger = logging.getLogger("absl")
    if not any(isinstance(f, _DropKnownNoise) for f in logger.filters):
        logger.addFilter(_DropKnownNoise())


def define_verbose(flag_values: flags.FlagValues) -> None:
    flags.DEFINE_bool("verbose", False, "Show tracebacks of errors too.", flag_values=flag_values)


def define_pretrained(flag_values: flags.FlagValues) -> None:
    """``--pretrained=NAME``: a model shipped with jaxdiff (its help lists them)."""
    from jaxdiff import pretrained

    names = ", ".join(pretrained.available("pixel") + pretrained.available("latent"))
    names = names or "(none installed)"
    help_text = f"A model shipped with jaxdiff, instead of --workdir; one of: {names}."
    flags.DEFINE_string("pretrained", None, help_text, flag_values=flag_values)


def check_run_dir(workdir: str) -> None:
    """Raises ValueError (exit 1) unless ``workdir`` holds a checkpoints folder.

    Creates nothing (restoring would create an empty ``checkpoints`` folder).
    """
    if not os.path.isdir(os.path.join(workdir, "checkpoints")):
        raise ValueError(
            f"--workdir={workdir}: no checkpoints folder there; train first (python -m "
            "jaxdiff.train) or point --workdir at a training run."
        )


def define_model_source(flag_values: flags.FlagValues) -> None:
    """``--workdir=DIR`` (a training run) and ``--pretrained=NAME`` (a shipped model)."""
    flags.DEFINE_string("workdir", None, "A training run's directory.", flag_values=flag_values)
    define_pretrained(flag_values)


def require_one_model_source(workdir: str | None, pretrained_name: str | None) -> None:
    """Raises :class:`UsageError` unless exactly one of --workdir and --pretrained is given."""
    require(
        (workdir is None) != (pretrained_name is None),
        "give exactly one of --workdir (a training run) and --pretrained (a shipped model).",
    )


def load_model_run(workdir: str | None, pretrained_name: str | None, params: str = "ema"):
    """The :class:`~jaxdiff.training.restore.Run` of --pretrained or of --workdir (checked)."""
    from jaxdiff import pretrained
    from jaxdiff.training import restore

    require_one_model_source(workdir, pretrained_name)
    if pretrained_name:
        check_pretrained(pretrained_name)
        return pretrained.load(pretrained_name).as_run()
    assert workdir is not None  # require_one_model_source
    check_run_dir(workdir)
    return restore.load_run(workdir, params)


def check_pretrained(name: str, kinds: tuple[str, ...] = ("pixel",)) -> None:
    """Raises :class:`UsageError` unless ``name`` is a shipped model of one of ``kinds``
    (``pretrained.KINDS``); the message lists the valid ones."""
    from jaxdiff import pretrained

    names = [n for kind in kinds for n in pretrained.available(kind)]
    require(
        name in names, f"--pretrained={name}: no such shipped model; valid: {', '.join(names)}."
    )


def _help(flag_values: flags.FlagValues, prog: str, doc: str, extra: str) -> str:
    flag_help = flag_values.get_help(include_special_flags=False)
    return f"{doc.strip()}\n\n{extra}usage: python -m {prog} [flags]\n\n{flag_help}\n"


def parse_absl(
    flag_values: flags.FlagValues, argv: Sequence[str], prog: str, after=None, before=None
) -> None:
    """Parses ``argv`` (without the program name) into ``flag_values``; bad flags exit 2.

    Args:
      flag_values: the command's own flags (parsed afresh each call).
      argv: the arguments.
      prog: the command, for messages.
      after: called after parsing (e.g. to check values) inside the same error style.
      before: called before parsing (e.g. to check a config file and its overrides).
    """
    flags.FLAGS.mark_as_parsed()  # absl's global flags: libraries (grain) read them
    flag_values.unparse_flags()
    for name in [n for n in flag_values if "." in n]:  # config overrides of an earlier parse
        delattr(flag_values, name)
    try:
        if before is not None:
            before()
        saved, sys.argv = sys.argv, [prog, *argv]  # ml_collections reads overrides there
        try:
            rest = flag_values([prog, *argv])
        finally:
            sys.argv = saved
        if len(rest) > 1:
            raise UsageError(f"unexpected arguments {rest[1:]}; {prog} takes only --flags.")
        if after is not None:
            after()
    except UsageError as e:
        fail(str(e), USAGE)
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError, OSError) as e:
        fail(f"bad flag: {one_line(e)} (see python -m {prog} --help)", USAGE)


def run_absl(
    fn: Callable[[], None],
    flag_values: flags.FlagValues,
    argv: Sequence[str] | None,
    prog: str,
    doc: str = "",
    help_extra: str = "",
    after=None,
    before=None,
) -> None:
    """A command's main: ``--help``, flag parsing, then ``fn()`` under :func:`guard`."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a in ("--help", "-h", "--helpfull", "--helpshort", "-?") for a in argv):
        print(_help(flag_values, prog, doc, help_extra))
        raise SystemExit(0)
    parse_absl(flag_values, argv, prog, after, before)
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)
    silence_known_warnings()
    guard(fn, verbose=bool(flag_values["verbose"].value))


class ArgumentParser(argparse.ArgumentParser):
    """argparse with ``--verbose`` and errors in one line (exit 2)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        silence_known_warnings()
        self.add_argument("--verbose", action="store_true", help="show tracebacks of errors")

    def error(self, message):
        fail(f"{message} (see {self.prog} --help)", USAGE)
