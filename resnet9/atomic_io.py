"""Atomic writes and reads of every file a stage produces.

A write goes to a temporary file beside its target and is renamed over it only once complete
(``os.replace`` is atomic on POSIX), so an interrupted stage never leaves an output that looks
valid.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd


@contextlib.contextmanager
def atomic_path(path: Path | str, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``.

    Works for files and for directories (a directory target is replaced as a whole). On any
    exception the temporary is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=path.parent)
    os.close(fd)
    os.unlink(tmp)
    tmp = Path(tmp)
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def write_with(path: Path | str, writer: Callable[[Path], Any], suffix: str = "") -> Path:
    """Call ``writer(tmp_path)`` and atomically move the result to ``path``; return ``path``."""
    with atomic_path(path, suffix) as tmp:
        writer(tmp)
    return Path(path)


def write_json(path: Path | str, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    return write_with(path, lambda p: p.write_text(json.dumps(obj, indent=2) + "\n"))


def read_json(path: Path | str) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text())


def write_csv(path: Path | str, frame: pd.DataFrame) -> Path:
    """Write a DataFrame as CSV without its index, atomically."""
    return write_with(path, lambda p: frame.to_csv(p, index=False))


def write_text(path: Path | str, content: str) -> Path:
    """Write a text file, atomically."""
    return write_with(path, lambda p: p.write_text(content))


def save_torch(path: Path | str, obj: Any) -> Path:
    """``torch.save`` atomically."""
    import torch

    return write_with(path, lambda p: torch.save(obj, p))


def load_torch(path: Path | str) -> Any:
    """``torch.load`` a file this package wrote (plain tensors, dicts, numbers, strings)."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)
