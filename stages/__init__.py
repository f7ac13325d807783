"""DVC stage scripts: ``python -m stages.<name>`` from the repository root (see dvc.yaml).

DVC runs each stage with the ``python`` first on PATH. Called by path (``.venv/bin/dvc repro``)
without the venv activated, that is another interpreter, without the project's packages: say so
in one line instead of an ImportError's traceback (``find_spec`` looks, importing nothing)."""

import sys
from importlib.util import find_spec

_missing = [name for name in ("torch", "pandas", "pydantic", "yaml") if find_spec(name) is None]
if _missing:
    sys.exit(f"stages: {sys.executable} has no {', '.join(_missing)}: run dvc with the project's "
             "venv active (source .venv/bin/activate; make repro and make quick do it)")
