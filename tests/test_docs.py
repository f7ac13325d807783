"""The prose stays true where a machine can tell: every relative link in README.md and docs/
points at a file that exists, and every #anchor at a heading of that file (GitHub's slugs)."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import ROOT

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to
    hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(md: Path) -> set[str]:
    text = FENCE.sub("", md.read_text())
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M)}


def broken_links(md: Path) -> list[str]:
    """``md``'s relative links whose file or anchor does not exist, as ``file: target (why)``."""
    broken = []
    for target in LINK.findall(FENCE.sub("", md.read_text())):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (md.parent / path).resolve() if path else md
        if not dest.exists():
            broken.append(f"{md.name}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{md.name}: {target} (no heading #{anchor})")
    return broken


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_every_relative_link_in_the_readme_and_docs_resolves():
    broken = [b for md in documents() for b in broken_links(md)]
    assert broken == []


def test_a_planted_broken_link_or_anchor_is_caught(tmp_path):
    (tmp_path / "there.md").write_text("# A heading, with `code`\n")
    page = tmp_path / "page.md"
    page.write_text("[ok](there.md#a-heading-with-code) [gone](missing.md) "
                    "[bad anchor](there.md#nope) ![img](x.png) [web](https://example.com)\n"
                    "```\n[in code](not-checked.md)\n```\n")
    assert broken_links(page) == ["page.md: missing.md (no such file)",
                                  "page.md: there.md#nope (no heading #nope)",
                                  "page.md: x.png (no such file)"]


# ---- the command lines of docs/ ------------------------------------------------------------

# Every command line of a ```bash block in docs/ (a line continued with \ is one command), matched
# by a regex, with where it is run or why not. The README's own commands are run by
# tests/test_pipeline_e2e.py (README_COMMANDS); a docs command with no entry here fails.
DOCS_COMMANDS: list[tuple[str, str]] = [
    (r"dvc exp show --drop '\.\*' --keep 'Experiment\|State",
     "tests/test_live.py reads the same columns of a running experiment"),
    (r"dvc queue logs <name>", "tests/test_pipeline_e2e.py reads dvc queue logs of queued runs"),
    (r"dvc plots diff <name>", "tests/test_live.py: dvc plots diff of a running queued run"),
    (r"python -m resnet9\.predict ", "tests/test_predict.py runs each form (files, globs, "
                                     "--top-k, --json, --gradcam, --model, --device, --info)"),
    (r"dvc push\b", "tests/test_pipeline_e2e.py pushes to a local remote"),
    (r"git tag -a resnet9-cifar10@", "tests/test_pipeline_e2e.py tags a registered version"),
    (r"dvc artifacts get ", "tests/test_pipeline_e2e.py gets the registered model"),
    (r"RESNET9_APP_MODEL=.* python -m pytest -q tests/test_app_browser\.py",
     "the browser test itself (make test runs it; the variables only pick the model and the "
     "screenshot's path)"),
    (r"bash \.\./shared/gpu/", "a GPU rehearsal's record (docs/gpu/): ../shared's own scripts"),
    (r"PATH=/tmp/gpu-like/bin", "a GPU rehearsal's record; tests/test_gpu_kit.py runs "
                                "scripts/gpu_measure.sh"),
    (r"dvc exp run --queue ", "tests/test_compare.py queues the same grid and a failing run"),
    (r"dvc queue start -j", "tests/test_compare.py and tests/test_pipeline_e2e.py start queues"),
    (r"dvc remote add -d team ssh://", "tests/test_team.py runs the team recipe (local sshd)"),
    (r"git commit -m \"Team DVC remote\"", "tests/test_team.py runs the team recipe"),
    (r"dvc exp run --pull --allow-missing", "tests/test_team.py runs it (scripts/sweep/task.sh)"),
    (r"dvc exp (push|pull) |dvc exp apply <name> &&", "tests/test_team.py runs the team recipe"),
    (r"dvc metrics diff <name> <other-name>", "tests/test_team.py runs the team recipe"),
    (r"bash scripts/spec_run\.sh ", "tests/test_spec_run.py runs it on a tiny params.yaml"),
    (r"python scripts/adopt_spec_run\.py ", "tests/test_spec_run.py adopts the run it made"),
    (r"python scripts/spec_report\.py ", "tests/test_spec_run.py reports on the run it made"),
    (r"python scripts/keep_spec_run\.py ", "tests/test_spec_run.py keeps the run it made"),
    (r"python scripts/recommit\.py ", "tests/test_recommit.py records a change in a fresh clone"),
    (r"OMP_NUM_THREADS=1 taskset -c \d bash scripts/spec_run\.sh ",
     "tests/test_spec_run.py runs spec_run.sh with OMP_NUM_THREADS=1 (not pinned to a core)"),
]


def docs_commands() -> list[tuple[str, str]]:
    """(file, command) for every command line of the ```bash blocks in docs/."""
    found = []
    for md in sorted((ROOT / "docs").rglob("*.md")):
        in_bash, pending = False, ""
        for line in md.read_text().splitlines():
            if line.startswith("```"):
                in_bash, pending = line.strip() == "```bash", ""
                continue
            if not in_bash or not line.strip() or line.lstrip().startswith("#"):
                continue
            pending += line.rstrip("\\").strip() + " "
            if not line.rstrip().endswith("\\"):
                found.append((md.relative_to(ROOT).as_posix(), pending.split(" #")[0].strip()))
                pending = ""
    return found


def test_every_docs_command_is_run_somewhere_or_says_why_not():
    commands = docs_commands()
    assert len(commands) >= 15, commands
    unmatched = [f"{md}: {cmd}" for md, cmd in commands
                 if sum(bool(re.match(p, cmd)) for p, _ in DOCS_COMMANDS) != 1]
    assert unmatched == []


def test_every_module_is_in_the_layout_table():
    """The README's Layout sends a reader to docs/code-layout.md for the modules."""
    table = (ROOT / "docs" / "code-layout.md").read_text()
    missing = [m.name for m in sorted((ROOT / "resnet9").glob("*.py"))
               if m.name != "__init__.py" and f"`{m.name}`" not in table]
    assert missing == []
