#!/usr/bin/env bash
# The same short run at each given commit, to show that a refactor changed no figure:
#   bash scripts/same_short_run.sh 7ceaf63 HEAD
# Each commit's tree goes to a temporary folder, where download, lr_find, train and evaluate run
# on a subset of ../shared/data/cifar10.npz (2,000 / 1,000 images, width 0.125, batch 128, a
# 20-step LR range test, 2 epochs at max_lr 0.004, seed 0, CPU, fp32). Prints each output's
# sha256 per commit and the figures that differ (wall times always do). Needs the project's
# venv (make install).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
NPZ=${NPZ:-$ROOT/../shared/data/cifar10.npz}
WORK=$(mktemp -d)
FILES="data/cifar10/arrays.npz metrics/lr_find.json plots/lr_find.csv metrics/evaluate.json
  plots/confusion.csv plots/lr_schedule.csv"
for c in "$@"; do
  d=$WORK/$c; mkdir -p "$d"
  git -C "$ROOT" archive "$c" | tar -x -C "$d"
  (cd "$d" && NPZ=$NPZ "$PY" - <<'PY'
import os, yaml
p = yaml.safe_load(open("params.yaml"))
p["data"].update(source=os.environ["NPZ"], train_subset=2000, test_subset=1000)
p["model"]["width_multiplier"] = 0.125
p["lr_find"].update(num_iter=20)
p["recipe"].update(batch_size=128, device="cpu", precision="fp32")
p["train"].update(epochs=2, peak_epoch=1, max_lr=0.004)
yaml.safe_dump(p, open("params.yaml", "w"), sort_keys=False)
PY
  for s in download lr_find train evaluate; do
    echo "$c: python -m stages.$s"
    (cd "$d" && PYTHONPATH=$d OMP_NUM_THREADS=2 "$PY" -m stages.$s > $s.log 2>&1) || { cat "$d/$s.log"; exit 1; }
  done)
  (cd "$d" && sha256sum $FILES | sed "s#^#$c #")
done
"$PY" - "$WORK" "$@" <<'PY'
import json, sys
from pathlib import Path
import pandas as pd
work, commits = Path(sys.argv[1]), sys.argv[2:]
first = commits[0]
for c in commits[1:]:
    for name in ("metrics/lr_find.json", "metrics/train.json", "metrics/evaluate.json"):
        a, b = (json.loads((work / x / name).read_text()) for x in (first, c))
        diff = {k: (a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)}
        print(f"{name}, {first} vs {c}: differs in {diff or 'nothing'}")
    h = [pd.read_csv(work / x / "plots/train_history.csv").drop(columns="seconds") for x in (first, c)]
    print(f"plots/train_history.csv without seconds, {first} vs {c}: "
          f"{'identical' if h[0].equals(h[1]) else 'DIFFERENT'}")
PY
echo "runs in $WORK"
