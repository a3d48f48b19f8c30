"""``robust-lab``: the dashboard and every command line of the lab under one name.

    robust-lab                      the dashboard (streamlit run app.py), options after it go to Streamlit
    robust-lab serve --replicas 2   one replica per core behind nginx (robust_core.serve)
    robust-lab train|evaluate|sweep|minimal-norm|classviz|imagenet|precomputed|shipped|data|challenges ...

Each subcommand is the module's own command line (``python -m robust_core.<module>`` is the same): ``robust-lab
evaluate --help`` says what it takes."""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

# Subcommand -> the module whose ``main(argv)`` it runs.
COMMANDS = {
    "serve": "robust_core.serve",
    "train": "robust_core.train",
    "evaluate": "robust_core.evaluate",
    "sweep": "robust_core.sweep.cli",
    "minimal-norm": "robust_core.minimal_norm",
    "classviz": "robust_core.classviz.__main__",
    "imagenet": "robust_core.imagenet.__main__",
    "precomputed": "robust_core.precomputed",
    "shipped": "robust_core.shipped",
    "data": "robust_core.data",
    "challenges": "robust_core.challenges.__main__",
}
# The dashboard's entry script and its settings (.streamlit/config.toml) live in the checkout the package was
# installed from (pip install -e .): Streamlit reads its settings from the folder it is started in.
CHECKOUT = Path(__file__).resolve().parents[1]


def dashboard(streamlit_args: list[str]) -> int:
    app = CHECKOUT / "app.py"
    if not app.is_file():
        print(f"robust-lab: no app.py beside the robust_core package ({CHECKOUT}). The dashboard runs from a checkout "
              "of the repository: clone it, then `pip install -e .` in it.", file=sys.stderr)
        return 1
    command = [sys.executable, "-m", "streamlit", "run", str(app), *streamlit_args]
    return subprocess.call(command, cwd=CHECKOUT, env=os.environ.copy())


def models_of_one_dataset(store, texts) -> tuple[list[str], str]:
    """For a command given ``--model`` several times: the store ids of ``texts`` (ids or unique prefixes) and the
    dataset of their models; ValueError for an unknown or ambiguous prefix, or models of different datasets."""
    ids = [store.resolve(text) for text in texts]
    datasets = {store.get(i).meta["config"]["dataset"] for i in ids}
    if len(datasets) > 1:
        raise ValueError(f"the models are trained on different datasets: {sorted(datasets)}")
    return ids, datasets.pop()


def write_results(path: str, results: dict) -> None:
    """A command's ``--json`` file: its results as indented JSON, and a line saying where they are."""
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    print(f"written to {path}")


def usage() -> str:
    return __doc__.split("\n\n")[1]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if not argv or argv[0].startswith("-") or argv[0] == "dashboard":
        return dashboard(argv[1:] if argv and argv[0] == "dashboard" else argv)
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"robust-lab: unknown command {command!r}; one of: dashboard, {', '.join(COMMANDS)}\n{usage()}",
              file=sys.stderr)
        return 2
    return int(importlib.import_module(COMMANDS[command]).main(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
