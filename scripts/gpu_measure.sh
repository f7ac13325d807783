#!/usr/bin/env bash
# ../shared/gpu/measure.sh brought up to date with this code (issues 11 and 13 renamed keys):
# recipe.seed, metrics/lr_find.json's suggested_max_lr, checkpoints in .cache/checkpoints, the
# repo on PYTHONPATH (the GPU machine has no `pip install -e .`), and the dataset joined from
# /tmp/part.1, /tmp/part.2 (each earlier step copies its part there: docs/gpu) and .gpu3/part.3.
# Default runs (issue 19): raw range-test curves at seeds 0-9 in bf16 and fp32 (spread), a
# fixed-max_lr sweep at seed 0 (1.5e-3 to 9e-3: accuracy against max_lr at the spec), then the
# params.yaml defaults (the LR range test's rule) at seeds 0, 1 and 2. Runs that fix train.max_lr skip lr_find; download runs only when data.* changes.
# Use: after ../shared/gpu/pack.sh (which copies this file to .gpu3/measure.sh), run
#   git rev-parse --short HEAD > .gpu3/COMMIT   # the GPU machine's copy may have no .git
# Rehearsed on the CPU in ../shared/gpu/gpu-like-venv.sh's venv (no dvc, dvclive, onnx): docs/gpu.
# GPU machine, step 3 (from the project's root), after the transfer of .gpu1 (step 1), setup.sh
# with .gpu2 (step 2) and the transfer of .gpu3 (this step). Joins the dataset, then runs the pipeline's stages
# (download, lr_find, train, evaluate; no dvc needed) with params.yaml edited per run:
#   smoke  : a 2-epoch run on a 2,000-image subset, to fail fast;
#   seedN  : the full spec with the params.yaml defaults, recipe.seed N;
#   lr:X   : the defaults at seed 0 with train.max_lr fixed at X (no range test);
#   set:TAG:k=v,k=v : the defaults with the given keys (e.g. set:ls02:recipe.label_smoothing=0.2);
#   compile: train.compile true at seed 0;
#   spread : raw LR range-test curves at the spec, seeds 0-9 (SPREAD_SEEDS), in the default
#            precision (bf16) and in fp32 (benchmarks/lr_find_spread.py: issue 19's spread
#            table on the GPU; `analyze` here once the CSVs are back);
#   speed  : benchmarks/speed.py on the device at width 1.0, batch 512;
#   (runs after the first:) while BUDGET_S seconds (default 540) are not spent.
# Writes $OUT/summary.md (one line per run), $OUT/log.txt and $OUT/results.tgz (each run's
# metrics/, plots/*.csv and stage logs), and the model file of run $KEEP_MODEL (default seed0:
# the params.yaml defaults) as $OUT/model.pt.part0, part1, ... (15 MiB each: a file that comes
# back is at most 16 MiB). To make that run the committed reference, here (checks the sha256 and
# the params, puts the outputs where dvc.yaml declares them, dvc commit, then analyze and export):
#   python scripts/adopt_gpu_run.py <the folder its files came back to>
# Issue 19 part 2, step 3 (the levers at the best LR; one run each), e.g. with X the sweep's best:
#   RUNS="smoke set:adamw:train.max_lr=X,recipe.optimizer=adamw,recipe.weight_decay=0.01
#     set:adamw-nobn:train.max_lr=X,recipe.optimizer=adamw,recipe.weight_decay=0.01,recipe.decay_bn_and_bias=false
#     set:ls02:train.max_lr=X,recipe.label_smoothing=0.2 set:logit0125:train.max_lr=X,model.logit_scale=0.125"
# Env: RUNS (the default is below), BUDGET_S, BASE (overrides added to every run, e.g. for a CPU
# rehearsal), KEEP_MODEL, NPZ and R (where the dataset and the runs' files go).
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}  # the repo: no pip install -e there
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
RUNS=${RUNS:-smoke spread lr:1.5e-3 lr:2.5e-3 lr:4e-3 lr:6e-3 lr:9e-3 seed0 seed1 seed2}
BUDGET_S=${BUDGET_S:-540}
BASE=${BASE:-}
KEEP_MODEL=${KEEP_MODEL:-seed0}
SHA=a44cc18e4ad961b5158c7da062a6232fb65938b615bf013046199b823b75c43d
NPZ=${NPZ:-/tmp/cifar10.npz}  # the joined dataset (a CPU rehearsal may point at ../shared's)
R=${R:-/tmp/gpu-results}; rm -rf "$R"; mkdir -p "$R"
exec > >(tee -a "$OUT/log.txt") 2>&1
start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }

if [ ! -f "$NPZ" ] || ! echo "$SHA  $NPZ" | sha256sum -c --status; then
  cat /tmp/part.1 /tmp/part.2 .gpu3/part.3 > "$NPZ" 2>/dev/null  # steps 1-2 left parts 1-2 in /tmp
fi
echo "$SHA  $NPZ" | sha256sum -c || { echo "measure: dataset parts missing or wrong (were .gpu1 and .gpu2 transferred in steps 1 and 2, each within 30 s of the last?)"; ls -la .gpu1 .gpu2 .gpu3; exit 1; }
cp params.yaml "$R/params.orig.yaml"
echo "# GPU runs, $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || cat .gpu3/COMMIT 2>/dev/null || echo '?')" > "$OUT/summary.md"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >> "$OUT/summary.md" 2>/dev/null
python3 -c "import torch;print('torch', torch.__version__)" >> "$OUT/summary.md"

set_params() {  # key=value ... applied to the original params.yaml
  python3 - "$R/params.orig.yaml" "$@" <<'PY'
import sys, yaml
p = yaml.safe_load(open(sys.argv[1]))
for kv in sys.argv[2:]:
    key, value = kv.split("=", 1)
    section, name = key.split(".", 1)
    p[section][name] = yaml.safe_load(value)
yaml.safe_dump(p, open("params.yaml", "w"), sort_keys=False)
PY
}

pipeline() {  # tag key=value ...
  local tag=$1; shift
  local dir=$R/$tag; mkdir -p "$dir"
  set_params data.source=$NPZ "$@" $BASE || { echo "| $tag | params failed |" >> "$OUT/summary.md"; return 1; }
  cp params.yaml "$dir/"
  rm -rf .cache/checkpoints metrics plots/*.csv  # what this run brings back is its own
  local line="| $tag |" ok=1 stages="" data_now
  # download only when data.* changed since the last run; lr_find only when train.max_lr is auto
  data_now=$(python3 -c "import yaml; print(yaml.safe_load(open('params.yaml'))['data'])")
  if [ "$data_now" != "$(cat "$R/data.last" 2>/dev/null)" ] || [ ! -f data/cifar10/arrays.npz ]; then
    stages="download"; rm -f "$R/data.last"
  fi
  python3 -c "import sys, yaml; sys.exit(yaml.safe_load(open('params.yaml'))['train']['max_lr'] != 'auto')" \
    && stages="$stages lr_find"
  stages="$stages train evaluate"
  for stage in download lr_find train evaluate; do  # a cell per stage: "-" where skipped
    [[ " $stages " == *" $stage "* ]] || { line="$line $stage - |"; continue; }
    local t0=$(date +%s.%N)
    if ! python3 -m stages.$stage > "$dir/$stage.log" 2>&1; then
      echo "[$tag] $stage FAILED:"; tail -25 "$dir/$stage.log"; ok=0
      line="$line $stage FAILED |"; break
    fi
    local t=$(python3 -c "import time;print(f'{time.time()-$t0:.1f}')")
    line="$line $stage ${t}s |"
    [ "$stage" = download ] && echo "$data_now" > "$R/data.last"
    echo "[$tag] $stage ${t}s: $(tail -1 "$dir/$stage.log")"
  done
  cp -r metrics "$dir/" 2>/dev/null; cp plots/*.csv plots/lr_find.png "$dir/" 2>/dev/null
  if [ $ok = 1 ] && [ "$tag" = "$KEEP_MODEL" ]; then  # the reference candidate's model file
    rm -f "$OUT"/model.pt.part*
    split -b 15M -d -a 1 data/model.pt "$OUT/model.pt.part"
    sha256sum data/model.pt | sed "s#data/model.pt#model.pt ($tag)#" >> "$OUT/summary.md"
  fi
  if [ $ok = 1 ]; then
    line="$line $(python3 - <<'PY'
import json, pandas as pd
e = json.load(open("metrics/evaluate.json")); t = json.load(open("metrics/train.json"))
h = pd.read_csv("plots/train_history.csv")
print(f"max_lr {t['max_lr']:.3g} | top-1 {e['accuracy']:.4f} | tta {e.get('tta_accuracy', float('nan')):.4f} "
      f"| epochs {len(h)} | sum of epoch s {h['seconds'].sum():.1f} | last epoch s {h['seconds'].iloc[-1]:.2f} |")
PY
)"
  fi
  echo "$line" | tee -a "$OUT/summary.md"
  [ $ok = 1 ]
}

for run in $RUNS; do
  if [ "$run" != smoke ] && [ "$(elapsed)" -ge "$BUDGET_S" ]; then
    echo "| $run | skipped: ${BUDGET_S}s budget spent |" | tee -a "$OUT/summary.md"; continue
  fi
  case $run in
    smoke)   pipeline smoke data.train_subset=2000 data.test_subset=1000 train.epochs=2 \
               train.peak_epoch=1 lr_find.num_iter=20 || { echo "smoke failed: stopping"; break; } ;;
    seed*)   pipeline $run recipe.seed=${run#seed} ;;
    lr:*)    pipeline "lr${run#lr:}" recipe.seed=0 train.max_lr=${run#lr:} ;;
    set:*)   rest=${run#set:}; keys=${rest#*:}
             pipeline "${rest%%:*}" recipe.seed=0 ${keys//,/ } ;;  # TAG, then k=v,k=v
    compile) pipeline compile recipe.seed=0 train.compile=true ;;
    spread)  rm -f "$R/data.last"  # the full dataset (an earlier run may have left a subset)
             set_params data.source=$NPZ $BASE && python3 -m stages.download > "$R/spread-download.log" 2>&1
             for prec in auto fp32; do
               set_params data.source=$NPZ recipe.precision=$prec $BASE
               python3 benchmarks/lr_find_spread.py run --name "gpu-$prec" --seeds ${SPREAD_SEEDS:-0 1 2 3 4 5 6 7 8 9} \
                 > "$R/spread-$prec.log" 2>&1
               tr '\r' '\n' < "$R/spread-$prec.log" | grep -v '%|' | tail -2  # not the progress bars
             done
             mkdir -p "$R/lr_find" && cp -r benchmarks/results/lr_find/gpu-* "$R/lr_find/"
             echo "| spread | $(ls "$R"/lr_find/gpu-*/seed*.csv | wc -l) curves in results.tgz lr_find/ |" >> "$OUT/summary.md" ;;
    speed)   dev=cuda; [[ "$BASE" == *device=cpu* ]] && dev=cpu
             python3 benchmarks/speed.py --device $dev --width ${SPEED_WIDTH:-1.0} --batch-size 512 ${SPEED_ARGS:---steps 60 --warmup 10} \
               --data $NPZ --out "$R/speed.csv" > "$R/speed.log" 2>&1; tail -8 "$R/speed.log"
             echo "| speed | $(tail -4 "$R/speed.log" | tr '\n' ' ') |" >> "$OUT/summary.md" ;;
    *)       echo "unknown run $run" ;;
  esac
done
cp "$R/params.orig.yaml" params.yaml
tar -czf "$OUT/results.tgz" -C "$R" .
echo "total $(elapsed)s"; cat "$OUT/summary.md"
