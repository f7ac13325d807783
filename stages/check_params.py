"""Stage check_params: every section of params.yaml validated before any other stage runs.

DVC deletes a stage's outputs before it runs the stage's command, so a stage that refuses a
bad value of its own params has already lost its last good outputs (train: the model). This
stage runs first, since every other stage depends on its output, and that output is
``persist: true``, so DVC never deletes it: ``dvc exp run -S train.epochs=abc`` stops here,
with one line naming the key, and every output of the last run stays in place.

The output's content never changes, so rerunning this stage (any change to params.yaml does)
reruns nothing else. Outputs: dvc.yaml, resnet9/paths.py.
"""

from resnet9 import atomic_io, params
from resnet9.paths import PARAMS_CHECKED
from stages import runner

# Constant on purpose: a dependency of every stage whose hash must not change (module docstring).
CONTENT = "params.yaml: every section valid (resnet9/params.py)\n"


def main() -> None:
    params.load(*params.SECTIONS)
    atomic_io.write_text(PARAMS_CHECKED, CONTENT)
    print(f"check_params: {len(params.SECTIONS)} sections valid ({', '.join(params.SECTIONS)});"
          f" wrote {PARAMS_CHECKED}")


if __name__ == "__main__":
    runner.run_stage("check_params", main)
