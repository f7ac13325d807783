"""ResNet-9 on CIFAR-10: the library behind the DVC stages in ``stages/``.

Its modules, each small and with one job, are listed once: README.md, "Layout".
"""

import os

# albumentations asks PyPI for a newer release when imported: a network call in every stage,
# and a warning on an offline machine. requirements.txt pins the version, so it only costs time.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


class PipelineError(Exception):
    """Base class of the errors a stage reports as one line and a non-zero exit."""
