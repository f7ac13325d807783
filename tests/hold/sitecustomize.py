"""A hold for tests of a running train stage (tests/test_live.py), outside the project's code.

Put on a subprocess's path with ``PYTHONPATH`` and ``$RESNET9_LIVE_HOLD_FILE`` set, it wraps
:class:`resnet9.live.LiveLog` when that module is first imported: after each epoch's progress
files are written, the run waits while the file named there exists, so that a test reads a run
that is certainly still going. Python imports ``sitecustomize`` at start-up; every other process
(DVC's own) only gets a finder that passes over the names it does not know.
"""

import importlib.abc
import importlib.util
import os
import sys
import time

HOLD_ENV = "RESNET9_LIVE_HOLD_FILE"


class _HoldAfterEachEpoch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "resnet9.live":
            return None
        sys.meta_path.remove(self)  # the real spec, found without this finder
        spec = importlib.util.find_spec(name)
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            after_epoch = module.LiveLog.__call__

            def held(self, epoch, result):
                after_epoch(self, epoch, result)
                while os.path.exists(os.environ[HOLD_ENV]):
                    time.sleep(0.1)

            module.LiveLog.__call__ = held

        spec.loader.exec_module = exec_module
        return spec


if os.environ.get(HOLD_ENV):
    sys.meta_path.insert(0, _HoldAfterEachEpoch())
