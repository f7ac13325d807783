"""How every stage script runs: one-line errors, a non-zero exit, clean interruption, and a
one-line breakdown of where its time went."""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Callable

from resnet9 import PipelineError


class Interrupted(KeyboardInterrupt):
    """A stage stopped by ``signal_name`` (``SIGINT``, ``SIGTERM``), with ``hint``: what
    running it again does (train: from which epoch it resumes)."""

    def __init__(self, signal_name: str, hint: str) -> None:
        super().__init__(signal_name)
        self.hint = hint


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run_stage(stage: str, main: Callable[[], None]) -> None:
    """Run ``main`` as stage ``stage`` and exit.

    A :class:`PipelineError` prints ``<stage>: error: <message>`` and exits 1. SIGINT and SIGTERM
    stop the stage at once with exit 130 / 143; outputs are written atomically, so none of
    them is left looking complete. An :class:`Interrupted` adds a line with its hint.
    """
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        main()
    except PipelineError as err:
        print(f"{stage}: error: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt as err:
        name = str(err) or "SIGINT"
        print(f"{stage}: interrupted by {name}; no output was completed", file=sys.stderr)
        if isinstance(err, Interrupted):
            print(f"{stage}: {err.hint}", file=sys.stderr)
        sys.exit(143 if name == "SIGTERM" else 130)


def process_start() -> float:
    """When this process started, in seconds since the epoch (``time.time()``'s clock), so that
    the interpreter's start and every import count: on Linux its start in clock ticks since
    boot (``/proc/self/stat``) against the time since boot; elsewhere, when this module was
    imported."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
        return time.time() - age
    except (OSError, ValueError, IndexError, AttributeError):
        return _IMPORTED


_IMPORTED = time.time()


class StageClock:
    """Wall seconds of a stage's phases, counted from the process start: each :meth:`lap`
    charges the time since the previous one (or the start) to a phase. The first lap, taken
    when ``main`` begins, is the interpreter's start and the imports."""

    def __init__(self) -> None:
        self.last = process_start()
        self.start = self.last
        self.phases: dict[str, float] = {}

    def lap(self, phase: str) -> None:
        """Charge the seconds since the last lap to ``phase`` (added to it if it has some)."""
        now = time.time()
        self.phases[phase] = self.phases.get(phase, 0.0) + now - self.last
        self.last = now

    def seconds(self) -> dict[str, float]:
        """Each phase's seconds, rounded to 0.01 s, and their ``total``, in lap order."""
        out = {name: round(value, 2) for name, value in self.phases.items()}
        return {**out, "total": round(sum(self.phases.values()), 2)}

    def line(self, stage: str) -> str:
        """``<stage>: 12.3 s = imports 3.1 + data 0.4 + ...``"""
        parts = " + ".join(f"{name} {value:.1f}" for name, value in self.phases.items())
        return f"{stage}: {sum(self.phases.values()):.1f} s = {parts}"
