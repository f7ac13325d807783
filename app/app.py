"""Hugging Face Space entry point (Spaces run ``python app.py``): the demo of
:mod:`resnet9.app`, unchanged, with this folder's model file and example images.

``make space`` assembles the Space beside it: this file, ``requirements.txt``, ``README.md``
(the Space's settings), ``examples/``, the ``resnet9`` package and ``data/model.pt``. Spaces
set ``GRADIO_SERVER_NAME``/``GRADIO_SERVER_PORT`` (0.0.0.0:7860), which the app follows; any
argument of ``python -m resnet9.app`` works here too (``python app.py --port 7861``).
"""

import sys
from pathlib import Path

from resnet9 import app

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    sys.exit(app.main(["--model", str(HERE / "data" / "model.pt"),
                       "--examples", str(HERE / "examples"), *sys.argv[1:]]))
