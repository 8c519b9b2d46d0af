"""Builds the colab/*.ipynb notebooks from the cell lists in colab/sources/*.py.

Each source file holds cells separated by lines ``# %%`` (code) or ``# %% [markdown]``.
Run ``python colab/build_notebooks.py`` then execute the notebooks to store their outputs:
``python colab/build_notebooks.py --execute`` (full size; CI runs them small via nbmake).
"""

import argparse
import pathlib

import nbformat

HERE = pathlib.Path(__file__).parent


def cells_from_source(text: str) -> list:
    """Splits a ``# %%``-delimited script into notebook cells."""
    cells, kind, lines = [], None, []

    def flush():
        if kind is None:
            return
        body = "\n".join(lines).strip("\n")
        if kind == "markdown":
            body = "\n".join(line.removeprefix("# ").removeprefix("#") for line in lines)
            cells.append(nbformat.v4.new_markdown_cell(body.strip("\n")))
        else:
            cells.append(nbformat.v4.new_code_cell(body))

    for line in text.splitlines():
        if line.startswith("# %%"):
            flush()
            kind, lines = ("markdown" if "[markdown]" in line else "code"), []
        else:
            lines.append(line)
    flush()
    return cells


def keep_outputs(nb, old_path: pathlib.Path) -> bool:
    """Copies outputs from the committed notebook when its code cells are unchanged."""
    if not old_path.exists():
        return False
    old = nbformat.read(old_path, as_version=4)
    code = lambda cells: [c.source for c in cells if c.cell_type == "code"]
    if code(old.cells) != code(nb.cells):
        return False
    old_code = [c for c in old.cells if c.cell_type == "code"]
    new_code = [c for c in nb.cells if c.cell_type == "code"]
    for cell, previous in zip(new_code, old_code, strict=True):
        cell.outputs, cell.execution_count = previous.outputs, previous.execution_count
    return True


def build(source: pathlib.Path, execute: bool) -> pathlib.Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = cells_from_source(source.read_text())
    out = HERE / (source.stem + ".ipynb")
    if not execute and not keep_outputs(nb, out):
        print(f"note: code of {out.name} changed; run with --execute to store outputs")
    if execute:
        from nbclient import NotebookClient

        client = NotebookClient(nb, timeout=1800, kernel_name="python3")
        client.execute(cwd=str(HERE))
    nbformat.write(nb, out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--execute", action="store_true", help="run and store outputs")
    parser.add_argument("names", nargs="*", help="source stems to build (default: all)")
    args = parser.parse_args()
    for source in sorted((HERE / "sources").glob("*.py")):
        if not args.names or source.stem in args.names:
            print("built", build(source, args.execute))


if __name__ == "__main__":
    main()
