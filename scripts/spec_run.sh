#!/usr/bin/env bash
# A spec run on this machine's CPU (issue 29): the shipped params.yaml at recipe.seed SEED, run by
# real `dvc repro` in a clone of this checkout's last commit, in the background at the lowest CPU
# priority, every line of its log and every redraw of a progress bar stamped with the time (UTC)
# it began. Hours on a 2-core CPU, so a run outlives the session that starts it only in part: the
# same command again resumes it on the same machine (dvc repro skips the finished stages; train
# goes on from its checkpoint; a new machine keeps no /tmp, so there the run starts over); while
# it runs, or once it has finished, it says how far it is (once finished, its
# scripts/spec_report.py row) and starts nothing. It refuses to resume on a CPU whose native bf16
# differs from the run's first one.
#   bash scripts/spec_run.sh 0          # start, resume, or show progress of seed 0
#   bash scripts/spec_run.sh 1          # seed 1, in its own clone
# SPEC_DIR: the clone (default /tmp/resnet9-spec-seed<SEED>); its log: <clone>/spec_run.log.
# SOURCE: data.source in the clone (default this checkout's ../shared/data/cifar10.npz; offline,
#   it gives the same dataset bytes as the official URL: the README, "Set-up").
# SET: more overrides, "key=value key=value" (the tests shrink the run with it).
# VENV: a venv to use instead of the clone's own (`make install` there, by default).
# Making the finished run the committed reference: scripts/adopt_spec_run.py (docs/pipeline.md,
# "A reference run on a CPU").
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SEED=${1:-}
[[ $SEED =~ ^[0-9]+$ ]] || { echo "spec_run: SEED must be a non-negative integer, got '$SEED'" >&2; exit 2; }
DIR=${SPEC_DIR:-/tmp/resnet9-spec-seed$SEED}
SOURCE=${SOURCE:-$ROOT/../shared/data/cifar10.npz}
LOG=$DIR/spec_run.log

running_pid() {  # the pid of this clone's run, if it is alive
  local pid
  pid=$(cat "$DIR/spec_run.pid" 2>/dev/null) || return 1
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# Finished: its last line is written just before its process exits, so this comes first.
if [[ $(tail -n 1 "$LOG" 2>/dev/null) =~ ^end\ .*\ rc\ 0$ ]]; then
  echo "spec_run: seed $SEED finished ($DIR); its log's last lines:"
  tail -n 3 "$LOG"
  echo "spec_run: its figures (scripts/spec_report.py):"
  "${VENV:-$DIR/.venv}/bin/python" "$ROOT/scripts/spec_report.py" "$DIR"
  exit 0
fi

if pid=$(running_pid); then
  echo "spec_run: seed $SEED runs (pid $pid, $DIR); its log's last lines:"
  # a progress bar redraws itself with \r: its latest state, with its stamp (a line written
  # before the redraws were stamped: the line's stamp)
  tail -n 3 "$LOG" | awk -F'\r' '{ n = NF; while (n > 1 && $n == "") n--
    print ($n ~ /^[0-9][0-9]:[0-9][0-9]:[0-9][0-9] / ? "" : substr($1, 1, 9)) $n }'
  "${VENV:-$DIR/.venv}/bin/python" "$ROOT/scripts/spec_report.py" "$DIR"
  exit 0
fi

if [[ ! -d $DIR ]]; then
  git clone -q "$ROOT" "$DIR"
  # This script's own files, so that the run's provenance says git_dirty false
  printf '%s\n' install.log spec_run.log spec_run.pid >> "$DIR/.git/info/exclude"
  echo "spec_run: cloned $(git -C "$DIR" rev-parse --short HEAD) into $DIR"
fi
cd "$DIR"
if [[ -n ${VENV:-} ]]; then
  ACTIVATE=$VENV/bin/activate
else
  make install > "$DIR/install.log" 2>&1 || { tail -n 20 "$DIR/install.log"; exit 1; }
  ACTIVATE=$DIR/.venv/bin/activate
fi
[[ -f $SOURCE ]] || { echo "spec_run: SOURCE $SOURCE: no such file" >&2; exit 2; }

# recipe.precision auto trains in bf16 on a CPU with native bf16 and in fp32 elsewhere, so a run
# resumed on the other kind of CPU would mix precisions: refused. The run's first session
# recorded its answer (a log from before that field: its CPU flags).
NATIVE=$("$(dirname "$ACTIVATE")/python" -c \
  'from resnet9.precision import cpu_native_bf16; print("yes" if cpu_native_bf16() else "no")')
BEFORE=$(awk '
  /^start / && match($0, /native bf16 (yes|no)/) { print substr($0, RSTART + 12, RLENGTH - 12)
                                                     exit }
  /^start .*bf16-related flags: none of/ { print "no"; exit }
  /^start .*bf16-related flags:/ { print (/avx512_bf16|amx_bf16/ ? "yes" : "no"); exit }
  ' "$LOG" 2>/dev/null || true)
if [[ -n $BEFORE && $BEFORE != "$NATIVE" ]]; then
  declare -A PRECISION=([yes]=bf16 [no]=fp32)
  echo "spec_run: seed $SEED started on a CPU with native bf16: $BEFORE" \
       "(so ${PRECISION[$BEFORE]} under recipe.precision auto); this CPU: $NATIVE" \
       "(${PRECISION[$NATIVE]}). Resumed here, the run would mix precisions: resume it on a CPU" \
       "like its first, or start another seed here." >&2
  exit 2
fi

# The overrides, written into the clone's params.yaml with its comments kept (ruamel.yaml, from DVC).
SOURCE=$(realpath "$SOURCE") SEED=$SEED SET=${SET:-} "$(dirname "$ACTIVATE")/python" - <<'PY'
import os
import yaml
from ruamel.yaml import YAML

rt = YAML()
params = rt.load(open("params.yaml"))
overrides = {"data.source": os.environ["SOURCE"], "recipe.seed": int(os.environ["SEED"])}
for item in os.environ["SET"].split():
    key, _, value = item.partition("=")
    overrides[key] = yaml.safe_load(value)
for key, value in overrides.items():
    section, _, name = key.partition(".")
    if section not in params or name not in params[section]:
        raise SystemExit(f"spec_run: {key}: no such key in params.yaml")
    params[section][name] = value
rt.dump(params, open("params.yaml", "w"))
print("spec_run: params.yaml:", ", ".join(f"{k}={v}" for k, v in overrides.items()))
PY

# A session's end cut the last line short (a progress bar): the next session's lines start anew.
if [[ -s $LOG && -n $(tail -c 1 "$LOG") ]]; then echo >> "$LOG"; fi
echo "spec_run: $( [[ -s $LOG ]] && echo resuming || echo starting ) seed $SEED" \
     "at $(git rev-parse --short HEAD) in $DIR; log: $LOG"
setsid bash -c '
  # setsid gave this process its own autogroup: nice 19 on it is what yields the CPU to other
  # sessions. Written from inside, since from outside it could race setsid and renice the caller.
  nice=$({ echo 19 > /proc/self/autogroup; } 2>/dev/null && echo 19 || echo "unchanged (refused)")
  # Each line and each redraw of a progress bar (after \r) starts with the UTC time it began,
  # written as it comes: a bar shows its progress in the log while its line is still open.
  printf -v nl "\n"; printf -v cr "\r"
  stamp() {
    local c new=1
    while IFS= read -r -d "" -n 1 c; do
      (( new )) && printf "%s " "$(date -u +%T)"
      printf "%s" "$c"
      [[ $c == "$nl" || $c == "$cr" ]] && new=1 || new=0
    done
    (( new )) || echo  # so that the end line is a line of its own
  }
  flags=$(grep -o -w -E "avx512f|avx512_bf16|amx_bf16" /proc/cpuinfo | sort -u | tr "\n" " ")
  echo "start $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD)" \
       "cpu $(lscpu | sed -n "s/^Model name: *//p") x $(getconf _NPROCESSORS_ONLN)," \
       "native bf16 $2, autogroup nice $nice," \
       "OMP_NUM_THREADS ${OMP_NUM_THREADS:-unset}, cores $(taskset -cp $$ | sed "s/.*: //")," \
       "bf16-related flags: ${flags:-none of avx512f, avx512_bf16, amx_bf16}"
  source "$1"
  dvc repro 2>&1 | stamp
  echo "end $(date -u +%FT%TZ) rc ${PIPESTATUS[0]}"
' spec_run "$ACTIVATE" "$NATIVE" >> "$LOG" 2>&1 < /dev/null &
echo $! > spec_run.pid
echo "spec_run: pid $!; the same command shows its progress"
