#!/usr/bin/env bash
# One task of a sweep: what each SLURM array task (sweep.sbatch) and each SkyPilot job
# (sweep.sky.yaml) runs.
#   REPO=<git url> bash scripts/sweep/task.sh INDEX
# Clones REPO (the team's git remote; its committed .dvc/config names the DVC remote), runs line
# INDEX (0-based) of the sweep file as `dvc exp run --pull --allow-missing -S ...` (stages whose
# inputs did not change are skipped, their missing outputs pulled only when a later stage needs
# them), then `dvc exp push origin`: the experiment to the git remote, its outputs to the DVC
# remote. Anyone then sees it with `dvc exp pull origin` and `dvc exp show`.
#   SWEEP    the sweep file, relative to the clone (default scripts/sweep/sweep.txt): one task
#            per line, space-separated params.yaml overrides key=value; '#' starts a comment
#   WORKDIR  where to clone (default ${TMPDIR:-/tmp}/resnet9-sweep-INDEX; must not exist)
# Needs dvc on PATH (the project's requirements.txt, plus dvc[ssh]/dvc[s3]/... for the remote),
# and a git identity (user.name, user.email) for the experiment's commit.
set -euo pipefail
INDEX=${1:?usage: REPO=<git url> bash scripts/sweep/task.sh INDEX}
: "${REPO:?REPO: the project's git URL (the team's git remote)}"
WORKDIR=${WORKDIR:-${TMPDIR:-/tmp}/resnet9-sweep-$INDEX}
SWEEP=${SWEEP:-scripts/sweep/sweep.txt}

git clone --quiet "$REPO" "$WORKDIR"
cd "$WORKDIR"
line=$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$SWEEP" | sed -n "$((INDEX + 1))p")
if [ -z "$line" ]; then
  echo "sweep task $INDEX: $SWEEP has only $(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$SWEEP" | wc -l) tasks (0-based INDEX)" >&2
  exit 2
fi
overrides=()
for kv in $line; do overrides+=(-S "$kv"); done
echo "sweep task $INDEX in $WORKDIR: dvc exp run --pull --allow-missing ${overrides[*]}"
dvc exp run --pull --allow-missing "${overrides[@]}"
dvc exp push origin
