"""How every stage script runs: one-line errors, a non-zero exit, clean interruption."""

from __future__ import annotations

import signal
import sys
from typing import Callable

from resnet9 import PipelineError


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run_stage(stage: str, main: Callable[[], None]) -> None:
    """Run ``main`` as stage ``stage`` and exit.

    A :class:`PipelineError` prints ``<stage>: error: <message>`` and exits 1. SIGINT and SIGTERM
    stop the stage at once with exit 130 / 143; outputs are written atomically, so none of
    them is left looking complete.
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
        sys.exit(143 if name == "SIGTERM" else 130)
