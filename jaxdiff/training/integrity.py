"""Checkpoint manifests: content checksums written after a save, verified before a restore.

A step directory ``checkpoints/<step>/`` is *committed* when it holds ``MANIFEST``
(:data:`MANIFEST`): a JSON file with the step, the PRNG implementation of the state's key,
and the size and sha256 of every other file in the directory. It is written (atomically,
fsync'ed) only once orbax has finished the save. A directory that has ever held a manifest
carries the marker file :data:`MARKER`; in such a directory a step without a manifest is
incomplete. A directory with neither (written before manifests existed) is *legacy*: its
steps are restored unverified, as before.

Example::

  write_manifest(step_dir, step=10, prng_impl="threefry2x32")
  problem = verify(step_dir, step=10)   # None, or "state/d/ab12: truncated (43715 -> 20 bytes)"
"""

import hashlib
import json
import os

MANIFEST = "jaxdiff_manifest.json"
MARKER = "jaxdiff_manifests"  # in the checkpoint root: this directory's steps carry manifests
FORMAT = 1
SET_ASIDE = ".damaged"  # suffix of a step directory that failed verification


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(step_dir: str) -> list[str]:
    """Relative paths of every file under ``step_dir`` except the manifest, sorted."""
    out = []
    for root, _, names in os.walk(step_dir):
        for name in names:
            rel = os.path.relpath(os.path.join(root, name), step_dir)
            if rel != MANIFEST and not rel.startswith(MANIFEST):
                out.append(rel)
    return sorted(out)


def _write_json_atomic(path: str, obj: dict, before_rename=None) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    if before_rename is not None:
        before_rename()  # testing hook: a kill between the write and the commit
    os.replace(tmp, path)
    fd = os.open(os.path.dirname(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def mark_directory(root: str) -> None:
    """Marks ``root`` as a directory whose steps carry manifests (idempotent)."""
    path = os.path.join(root, MARKER)
    if not os.path.exists(path):
        _write_json_atomic(path, {"format": FORMAT, "manifest": MANIFEST})


def is_legacy(root: str, step_dirs: list[str]) -> bool:
    """True if ``root`` has no marker and none of ``step_dirs`` holds a manifest."""
    if os.path.exists(os.path.join(root, MARKER)):
        return False
    return not any(os.path.exists(os.path.join(d, MANIFEST)) for d in step_dirs)


def write_manifest(
    step_dir: str, step: int, prng_impl: str, legacy: bool = False, before_rename=None
) -> dict:
    """Checksums every file of a finished save into ``step_dir/MANIFEST``; returns it.

    Args:
      step_dir: the step's directory (orbax has finished writing it).
      step: its training step.
      prng_impl: the PRNG implementation of the saved key.
      legacy: the step was written before manifests existed (adopted as it is).
      before_rename: testing hook called between writing and committing the manifest.
    """
    files = {
        rel: {"size": os.path.getsize(os.path.join(step_dir, rel)), "sha256": _sha256(p)}
        for rel in _files(step_dir)
        for p in [os.path.join(step_dir, rel)]
    }
    manifest = {
        "format": FORMAT,
        "step": int(step),
        "prng_impl": prng_impl,
        "legacy": legacy,
        "files": files,
    }
    _write_json_atomic(os.path.join(step_dir, MANIFEST), manifest, before_rename)
    return manifest


def read_manifest(step_dir: str) -> dict:
    """The manifest of ``step_dir``; raises ValueError (one line) if missing or unreadable."""
    path = os.path.join(step_dir, MANIFEST)
    if not os.path.exists(path):
        raise ValueError(f"{MANIFEST}: missing (the save never completed)")
    try:
        with open(path) as f:
            manifest = json.load(f)
        manifest["files"].items()
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{MANIFEST}: unreadable ({type(e).__name__})") from None
    return manifest


def verify(step_dir: str, step: int) -> str | None:
    """None if ``step_dir`` matches its manifest, else one line: which file, what failed."""
    try:
        manifest = read_manifest(step_dir)
    except ValueError as e:
        return str(e)
    if manifest.get("step") != step:
        return f"{MANIFEST}: records step {manifest.get('step')!r}, not {step}"
    for rel, want in sorted(manifest["files"].items()):
        path = os.path.join(step_dir, rel)
        if not os.path.isfile(path):
            return f"{rel}: missing"
        size = os.path.getsize(path)
        if size != want["size"]:
            kind = "truncated" if size < want["size"] else "grown"
            return f"{rel}: {kind} ({want['size']} -> {size} bytes)"
        if _sha256(path) != want["sha256"]:
            return f"{rel}: content changed (sha256 mismatch, same size)"
    return None


def set_aside(step_dir: str) -> str:
    """Renames a damaged step directory to ``<step>.damaged[-k]``; returns the new path."""
    target, k = step_dir + SET_ASIDE, 1
    while os.path.exists(target):
        k += 1
        target = f"{step_dir}{SET_ASIDE}-{k}"
    os.rename(step_dir, target)
    return target
