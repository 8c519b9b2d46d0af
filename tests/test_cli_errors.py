"""Bad input to every command: one line ``error: ...``, the right exit status, nothing written.

Exit status 2: the command line itself is wrong; 1: something it names is missing or
unusable. Most cases call the command's ``main(argv)`` in this process; a handful run the
real command in a subprocess.
"""

import io
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from jaxdiff import evaluate, quickstart, sample, train
from jaxdiff.evaluation import convert, fid
from jaxdiff.training import loop
from tests import _standins
from tests.test_train import REPO, smoke_config

pytestmark = pytest.mark.usefixtures("fast_compiles")

COMMANDS = {
    "train": train,
    "sample": sample,
    "evaluate": evaluate,
    "fid": fid,
    "convert": convert,
    "quickstart": quickstart,
}
QS = "--config=configs/quickstart.py:smoke"

# (command, arguments, exit status, text the line must contain). {U}: an unconditional
# run, {C}: a 10-class run, {T}: an empty folder of the case, {E}: files made by `extras`.
CASES = [
    (
        "train",
        [QS.replace("quickstart.py:smoke", "mnist_cfg.py:cpuu"), "--workdir={T}/r"],
        2,
        "unknown config variant 'cpuu'; valid: none (the full config), :cpu, :smoke.",
    ),
    (
        "train",
        [QS, "--workdir={T}/r", "--config.nonexistent=1"],
        2,
        "unknown config field 'nonexistent'; valid top-level fields: data, loss, model,",
    ),
    ("train", [QS, "--workdir={T}/r", "--config.optim.lrr=1"], 2, "valid fields of optim: b1"),
    (
        "train",
        [QS, "--workdir={T}/r", "--config.train.num_steps=-5"],
        2,
        "--config.train.num_steps=-5: must be >= 1",
    ),
    ("train", [QS, "--workdir={T}/r", "--config.data.batch_size=0"], 2, "must be >= 1"),
    ("train", [QS, "--workdir={T}/r", "--config.train.checkpoint_every=0"], 2, "must be >= 1"),
    (
        "train",
        [QS, "--workdir={T}/r", "--config.sample.guidance=3"],
        2,
        "guidance needs a class-conditional model",
    ),
    ("train", [QS, "--workdir={T}/r", "--config.loss.label_dropout=1.5"], 2, "in [0, 1)"),
    ("train", [QS, "--workdir={T}/r", "--config.prng_impl=xorshift"], 2, "valid: threefry2x32"),
    ("train", [QS, "--workdir={T}/r", "--config.train.num_steps=abc"], 2, "invalid literal"),
    ("train", ["--config=configs/nope.py", "--workdir={T}/r"], 2, "no such config file"),
    ("train", [QS, "--workdir={T}/r", "--bogus=1"], 2, "Unknown command line flag 'bogus'"),
    ("train", [QS], 2, "--workdir must have a value"),
    ("train", [QS, "--workdir={T}/r", "extra"], 2, "unexpected arguments ['extra']"),
    ("train", [QS, "--workdir={E}/file/r"], 1, "cannot create workdir"),
    (
        "train",
        [
            "--config=configs/mnist_ddpm.py:smoke",
            "--workdir={T}/r",
            "--config.data.data_dir={T}/no_tfds",
        ],
        1,
        "TFDS_DATA_DIR",
    ),
    (
        "train",
        [QS, "--workdir={U}", "--config.process.name=linear"],
        1,
        "holds a checkpoint of a different config (process:",
    ),
    (
        "sample",
        ["--workdir={C}", "--out={T}/x.png", "--label=12"],
        2,
        "--label=12: this model has 10 classes; use 0..9.",
    ),
    ("sample", ["--workdir={C}", "--out={T}/x.png", "--label=-1"], 2, "use 0..9"),
    ("sample", ["--workdir={C}", "--out={T}/x.png", "--guidance=-1"], 2, "must be >= 0"),
    (
        "sample",
        ["--workdir={U}", "--out={T}/x.png", "--guidance=3"],
        2,
        "--guidance=3.0: this model is unconditional",
    ),
    ("sample", ["--workdir={U}", "--out={T}/x.png", "--label=3"], 2, "unconditional"),
    ("sample", ["--workdir={U}", "--out={T}/x.png", "--num_samples=0"], 2, "must be >= 1"),
    ("sample", ["--workdir={U}", "--out={T}/x.png", "--num_steps=-5"], 2, "must be >= 1"),
    (
        "sample",
        ["--workdir={U}", "--out={T}/x.png", "--method=bogus"],
        2,
        "unknown sampler; valid: ",
    ),
    ("sample", ["--workdir={U}", "--out={T}/x.jpg"], 2, "must end in .png or .npz"),
    ("sample", ["--workdir={U}", "--out={T}/no/x.png"], 1, "does not exist; create it first"),
    ("sample", ["--workdir={T}/none", "--out={T}/x.png"], 1, "no checkpoints folder there"),
    ("sample", ["--workdir={U}"], 2, "--out must have a value"),
    ("sample", ["--workdir={U}", "--out={T}/x.png", "--spacing=odd"], 2, "spacing"),
    ("sample", ["--workdir={U}", "--out={T}/x.png", "--num_samples=abc"], 2, "num_samples"),
    ("sample", ["--workdir={U}", "--out={T}/x.png", "--batch_size=0"], 2, "must be >= 1"),
    ("sample", ["--pretrained=mnits", "--out={T}/x.png"], 2, "no such shipped model; valid:"),
    ("sample", ["--workdir={U}", "--pretrained=mnist", "--out={T}/x.png"], 2, "exactly one of"),
    ("sample", ["--out={T}/x.png"], 2, "exactly one of --workdir"),
    ("evaluate", ["--workdir={U}", "--metrics=fid,bogus"], 2, "valid metrics: ['fid', 'kid'"),
    ("evaluate", ["--workdir={U}", "--metrics=is"], 2, "--classifier_dir is needed"),
    ("evaluate", ["--workdir={U}", "--metrics=fid"], 1, "no converted FID Inception weights"),
    ("evaluate", ["--workdir={U}", "--num_samples=1"], 2, "must be >= 2"),
    ("evaluate", ["--workdir={U}", "--shard_size=0"], 2, "must be >= 1"),
    ("evaluate", ["--workdir={T}/none", "--metrics=bpd"], 1, "no checkpoints folder there"),
    ("evaluate", ["--workdir={U}", "--features=pixels"], 2, "features"),
    ("evaluate", ["--workdir={U}", "--metrics=bpd", "--option=sigma_min"], 2, "not KEY=VALUE"),
    ("evaluate", ["--metrics=bpd"], 2, "give exactly one of --workdir"),
    ("evaluate", ["--pretrained=nope", "--metrics=bpd"], 2, "no such shipped model; valid"),
    (
        "evaluate",
        ["--workdir={U}", "--features=classifier", "--classifier_dir={T}/no"],
        1,
        "no such folder",
    ),
    ("evaluate", ["--workdir={U}", "--metrics=bpd", "--guidance=3"], 2, "unconditional"),
    ("evaluate", ["--workdir={U}", "--metrics=bpd", "--method=bogus"], 2, "unknown sampler"),
    ("fid", ["{T}/missing.npz", "{E}/stats.npz"], 1, "missing.npz: no such file."),
    ("fid", ["{E}/notes.txt", "{E}/stats.npz"], 2, "expected tfds:NAME:SPLIT"),
    ("fid", ["{E}/text.npz", "{E}/stats.npz"], 1, "not usable as images"),
    ("fid", ["{E}/flat.npz", "{E}/stats.npz"], 1, "not usable as images"),
    ("fid", ["{E}/objects.npz", "{E}/stats.npz"], 1, "not usable as images"),
    ("fid", ["{E}/stats.npz", "{E}/stats.npz", "--batch_size=0"], 2, "must be >= 1"),
    ("fid", ["tfds:mnist", "{E}/stats.npz"], 2, "expected tfds:NAME:SPLIT[:N[:DATA_DIR]]"),
    ("fid", ["{E}/stats.npz"], 2, "the following arguments are required: b"),
    ("fid", ["{E}/stats.npz", "{E}/stats.npz", "--save_stats={T}/no/s.npz"], 1, "does not exist"),
    ("convert", [], 2, "give a SOURCE file"),
    ("convert", ["{T}/missing.pt"], 1, "missing.pt: no such file."),
    ("convert", ["{E}/notes.txt"], 1, "notes.txt"),
    ("convert", ["{E}/evil.pt"], 1, "refusing to load global posix.system"),
    ("convert", ["{E}/notes.txt", "--out={T}/x.txt"], 2, "must end in .npz"),
    ("convert", ["--bogus"], 2, "unrecognized arguments: --bogus"),
    ("quickstart", ["--num_samples=1"], 2, "--num_samples=1: must be >= 2."),
    ("quickstart", ["--workdir={E}/file/r"], 1, "cannot create workdir"),
    ("quickstart", ["--bogus=1"], 2, "Unknown command line flag 'bogus'"),
]
# These run as real commands too.
SUBPROCESS = [
    i
    for i, case in enumerate(CASES)
    if case[3].startswith(("unknown config variant", "--config.train.num_steps=-5", "give a"))
    or case[3] in ("no checkpoints folder there", "missing.npz: no such file.")
]


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/jaxdiff_pwned_cli",))


def make_extras(folder):
    """Files the cases point at: a blocking file, odd .npz files, a malicious torch zip."""
    os.makedirs(folder)
    open(os.path.join(folder, "file"), "w").close()
    open(os.path.join(folder, "notes.txt"), "w").write("not images\n")
    open(os.path.join(folder, "text.npz"), "w").write("not a zip\n")
    np.savez(os.path.join(folder, "flat.npz"), images=np.zeros((4, 5), np.uint8))
    np.savez(os.path.join(folder, "objects.npz"), images=np.array([{"a": 1}], dtype=object))
    fid.save_statistics(os.path.join(folder, "stats.npz"), np.zeros(3), np.eye(3))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"w": _Evil()}, protocol=2))
    open(os.path.join(folder, "evil.pt"), "wb").write(buf.getvalue())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{"U": an unconditional run, "C": a 10-class run, "E": extras} (tiny stand-in nets)."""
    root = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as mp:
        _standins.install(mp)
        loop.train(smoke_config(), str(root / "U"))
        c = smoke_config()
        c.model.num_classes = 10
        loop.train(c, str(root / "C"))
    make_extras(str(root / "E"))
    return {k: str(root / k) for k in "UCE"}


def snapshot(*folders):
    return {
        os.path.join(d, f): os.path.getsize(os.path.join(d, f))
        for folder in folders
        for d, dirs, files in os.walk(folder)
        for f in files + [x + "/" for x in dirs]
        if os.path.exists(os.path.join(d, f))
    }


def fill(args, runs, tmp):
    return [a.format(T=tmp, **runs) for a in args]


def check_line(stderr, code, got_code, expected):
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert got_code == code, stderr
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]


@pytest.mark.parametrize(
    "index", range(len(CASES)), ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_bad_input_in_process(index, runs, tmp_path, capsys, monkeypatch):
    command, args, code, expected = CASES[index]
    _standins.install(monkeypatch)
    monkeypatch.setenv("JAXDIFF_INCEPTION", str(tmp_path / "no_weights.npz"))
    monkeypatch.setenv("JAXDIFF_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(REPO)
    before = snapshot(tmp_path, *runs.values())
    with pytest.raises(SystemExit) as e:
        COMMANDS[command].main(fill(args, runs, str(tmp_path)))
    check_line(capsys.readouterr().err, code, e.value.code, expected)
    assert snapshot(tmp_path, *runs.values()) == before  # nothing written, nothing left
    assert not os.path.exists("/tmp/jaxdiff_pwned_cli")


@pytest.mark.parametrize("index", SUBPROCESS)
def test_bad_input_as_real_commands(index, runs, tmp_path):
    command, args, code, expected = CASES[index]
    module = COMMANDS[command].__name__
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        JAXDIFF_INCEPTION=str(tmp_path / "none.npz"),
        JAXDIFF_CACHE=str(tmp_path / "cache"),
    )
    cmd = [sys.executable, "-m", module, *fill(args, runs, str(tmp_path))]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    check_line(out.stderr, code, out.returncode, expected)
    assert os.listdir(tmp_path) == []


def test_there_are_at_least_forty_cases_over_every_command():
    assert len(CASES) >= 40
    assert {c[0] for c in CASES} == set(COMMANDS)


def test_verbose_shows_the_traceback(runs, tmp_path, capsys):
    with pytest.raises(SystemExit):
        sample.main([f"--workdir={tmp_path}/none", f"--out={tmp_path}/x.png", "--verbose"])
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("error: ")


@pytest.mark.parametrize("name", sorted(f[:-3] for f in os.listdir(os.path.join(REPO, "configs"))))
def test_every_config_refuses_an_unknown_variant(name):
    import importlib.util

    from jaxdiff._cli import UsageError

    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    valid = ", ".join(f":{v}" for v in module.VARIANTS)
    with pytest.raises(UsageError, match=f"unknown config variant 'bogus'; valid: .*{valid}"):
        module.get_config("bogus")
    assert "smoke" in module.VARIANTS


def test_known_noise_is_dropped_from_absl_logs():
    import logging

    from jaxdiff import _cli

    _cli.silence_known_warnings()
    _cli.silence_known_warnings()  # idempotent
    logger = logging.getLogger("absl")
    assert sum(isinstance(f, _cli._DropKnownNoise) for f in logger.filters) == 1
    record = logging.LogRecord(
        "absl", logging.WARNING, "", 0, "OpenCV is not installed. We", (), None
    )
    assert not logger.filter(record)
    record.msg = "something else"
    assert logger.filter(record)
