"""dvc.yaml's code dependencies cannot go stale: each stage lists exactly the project modules
its script imports, directly or through other project modules (imports inside functions
count). A module missing from a stage's deps would let DVC reuse stale outputs after a change to
it; an extra one reruns the stage for nothing."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

PACKAGES = ("resnet9", "stages")


def _module_file(name: str, root: Path = ROOT) -> Path | None:
    """The source file of project module ``name`` (``resnet9.data``) under ``root``, or None if it
    is not one."""
    parts = name.split(".")
    if parts[0] not in PACKAGES:
        return None
    for candidate in (root.joinpath(*parts).with_suffix(".py"),
                      root.joinpath(*parts, "__init__.py")):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path, root: Path = ROOT) -> set[str]:
    """Project modules that the file at ``path`` imports anywhere in its body."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from resnet9 import data` imports a module; `from resnet9.data import Split` a name
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a and a.b too
                if _module_file(".".join(parts[:i]), root):
                    found.add(".".join(parts[:i]))
    return found


def imported_files(script: Path, root: Path = ROOT) -> set[str]:
    """``script`` and every project file it imports, transitively, relative to ``root``."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo.extend(_module_file(m, root) for m in _imports(path, root))
    return {p.relative_to(root).as_posix() for p in seen
            if p.name != "__init__.py" or p.parent.name != "stages"}  # stages/ is a namespace


STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_lists_exactly_the_modules_it_imports(stage):
    spec = STAGES[stage]
    script = spec["cmd"].split("python -m ", 1)[1].split()[0]
    script_file = ROOT / (script.replace(".", "/") + ".py")
    listed = {d for d in (next(iter(d)) if isinstance(d, dict) else d for d in spec["deps"])
              if d.endswith(".py")}
    needed = imported_files(script_file)
    assert not needed - listed, f"{stage}: add to its deps in dvc.yaml: {sorted(needed - listed)}"
    assert not listed - needed, f"{stage}: not imported, drop from dvc.yaml: {sorted(listed - needed)}"


def test_the_import_scan_follows_lazy_and_transitive_imports(tmp_path):
    # a stage imports a; a imports b at module level and c only inside a function
    tree = {"stages/s.py": "from resnet9 import a\n",
            "resnet9/__init__.py": "",
            "resnet9/a.py": "import numpy\nfrom resnet9.b import X\n\n"
                            "def f():\n    from resnet9 import c\n    return c\n",
            "resnet9/b.py": "X = 1\n",
            "resnet9/c.py": "import resnet9.d\n",
            "resnet9/d.py": "",
            "resnet9/unused.py": ""}
    for rel, text in tree.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert imported_files(tmp_path / "stages/s.py", tmp_path) == {
        "stages/s.py", "resnet9/__init__.py", "resnet9/a.py", "resnet9/b.py",
        "resnet9/c.py",  # lazy: inside a function
        "resnet9/d.py"}  # through the lazy one


def test_the_import_scan_on_the_train_stage():
    files = imported_files(ROOT / "stages/train.py")
    assert "resnet9/precision.py" in files  # imported by engine.py, not by the stage itself
    assert "resnet9/__init__.py" in files
