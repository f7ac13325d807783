"""Output paths are declared once, in resnet9/paths.py: dvc.yaml's copy must match it, and the
stages must write through it rather than spell paths of their own."""

from __future__ import annotations

import re

import yaml

from resnet9 import paths

from conftest import ROOT

DVC_YAML = yaml.safe_load((ROOT / "dvc.yaml").read_text())


def _declared_outputs(spec: dict) -> set[str]:
    """The outs, metrics and plots a stage declares in dvc.yaml."""
    entries = [e for kind in ("outs", "metrics", "plots") for e in spec.get(kind, [])]
    return {next(iter(e)) if isinstance(e, dict) else e for e in entries}


def test_dvc_yaml_declares_exactly_the_outputs_of_paths_py():
    stages = DVC_YAML["stages"]
    assert set(stages) == set(paths.STAGE_OUTPUTS)
    for stage, spec in stages.items():
        declared = {p.as_posix() for p in paths.STAGE_OUTPUTS[stage]}
        assert _declared_outputs(spec) == declared, stage


def test_each_output_belongs_to_one_stage():
    every = [p for outputs in paths.STAGE_OUTPUTS.values() for p in outputs]
    assert len(every) == len(set(every))


def test_dvc_yaml_plots_and_artifacts_name_declared_files():
    declared = {p.as_posix() for outputs in paths.STAGE_OUTPUTS.values() for p in outputs}
    for entry in DVC_YAML["plots"]:
        if isinstance(entry, str):
            assert entry in declared, entry
        else:
            (spec,) = entry.values()
            assert set(spec["y"]) <= declared, spec["y"]
    for name, artifact in DVC_YAML["artifacts"].items():
        assert artifact["path"] in declared, name


def test_stage_scripts_spell_no_output_paths_of_their_own():
    literal = re.compile(r"""["'](?:data|metrics|plots)/[\w./-]+["']""")
    for script in sorted((ROOT / "stages").glob("*.py")):
        code = "\n".join(line for line in script.read_text().splitlines()
                         if not line.lstrip().startswith("#"))
        body = code.split('"""', 2)[-1]  # after the module docstring, which may name them
        assert not literal.findall(body), (script.name, literal.findall(body))
