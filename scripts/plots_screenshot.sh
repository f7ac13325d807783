#!/usr/bin/env bash
# The results page: `dvc plots show`, rendered offline in headless Chromium, screenshotted.
#
#   scripts/plots_screenshot.sh [out_dir]     -> out_dir/index.html, out_dir/screenshot.png
#   PLOTS="diff exp-a exp-b" scripts/plots_screenshot.sh out_dir   # the page of dvc plots diff
#
# out_dir: absolute, or relative to the directory you run the script from (default: dvc_plots
# in the repository). Needs Debian's chromium (apt-get install chromium) and, the first time,
# npm: the page's vega, vega-lite and vega-embed come from the npm registry into .cache/vega/
# instead of the CDN the page names. dvc: .venv/bin/dvc, else the one on PATH.
# Prints how many vega plots rendered and how many images loaded. Exit status 0 when every
# plot rendered; 1 otherwise, or when a step failed: always with a line on stderr saying which.
set -euo pipefail
me=plots_screenshot.sh
die() { echo "$me: error: $*" >&2; exit 1; }
# set -e alone would end the script without a word: name the command that failed.
trap 'rc=$?; echo "$me: error: line $LINENO: \`$BASH_COMMAND\` failed (exit $rc)" >&2' ERR

[ $# -le 1 ] || die "expected at most one argument, the output directory (got $#)"
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1-$root/dvc_plots}
[ -n "$out" ] || die "the output directory is an empty string: give a path, or none for dvc_plots"
# Absolute from here on: the script works in the repository root, and Chromium needs file:// URLs.
case $out in /*) ;; *) out=$PWD/$out ;; esac
cd "$root"

vendor=.cache/vega
declare -A pkgs=([vega]=5.20.2 [vega-lite]=5.2.0 [vega-embed]=6.18.2)
dvc=dvc
if [ -x .venv/bin/dvc ]; then dvc=.venv/bin/dvc; fi
command -v "$dvc" > /dev/null \
  || die "dvc not found (.venv/bin/dvc or on PATH): run \`make install\`"
chromium=$(command -v chromium || command -v chromium-browser) \
  || die "chromium not found: apt-get install chromium"

if [ ! -f "$vendor/node_modules/vega-embed/build/vega-embed.min.js" ]; then
  command -v npm > /dev/null \
    || die "npm not found (needed once, to fetch vega into $vendor): apt-get install npm"
  mkdir -p "$vendor"
  npm install --prefix "$vendor" --no-audit --no-fund --silent --legacy-peer-deps \
    "vega@${pkgs[vega]}" "vega-lite@${pkgs[vega-lite]}" "vega-embed@${pkgs[vega-embed]}" \
    || die "npm could not install vega, vega-lite and vega-embed into $vendor (offline?)"
fi
# PLOTS: the dvc plots command and its arguments (default show; e.g. PLOTS="diff exp-a exp-b")
read -r -a plots <<< "${PLOTS:-show}"
"$dvc" plots "${plots[@]}" -o "$out" > /dev/null || die "\`dvc plots ${plots[*]} -o $out\` failed"
[ -f "$out/index.html" ] || die "\`dvc plots ${plots[*]}\` wrote no $out/index.html"
mkdir -p "$out/vendor"
for p in "${!pkgs[@]}"; do
  cp "$vendor/node_modules/$p/build/$p.min.js" "$out/vendor/"
  sed -i "s#https://cdn.jsdelivr.net/npm/$p@${pkgs[$p]}#vendor/$p.min.js#" "$out/index.html"
done

profile=$(mktemp -d)
log=$(mktemp)
trap 'rm -rf "$profile" "$log"' EXIT
chrome=("$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run
        --disable-background-networking --disable-component-update --disable-sync
        --user-data-dir="$profile" --hide-scrollbars --virtual-time-budget=20000)
page="file://$out/index.html"
shot="$out/screenshot.png"
rm -f "$shot"  # so that a stale one is not taken for this run's
# Chromium's chatter goes to a log, shown only when it fails.
"${chrome[@]}" --window-size=1500,7000 --screenshot="$shot" "$page" 2> "$log" \
  || { tail -n 20 "$log" >&2; die "chromium could not screenshot $page"; }
[ -s "$shot" ] || { tail -n 20 "$log" >&2; die "chromium wrote no $shot"; }
dom=$("${chrome[@]}" --dump-dom "$page" 2> "$log") \
  || { tail -n 20 "$log" >&2; die "chromium could not load $page"; }
specs=$(grep -c "vegaEmbed(" "$out/index.html" || true)
# `|| true`: no match is a count of 0, not a failed pipeline (pipefail).
rendered=$({ grep -o '<canvas\|<svg class="marks"' <<< "$dom" || true; } | wc -l)
images=$({ grep -o '<img' <<< "$dom" || true; } | wc -l)
echo "plots page: $specs vega plots, $rendered rendered; $images images; wrote $shot"
[ "$rendered" -ge "$specs" ] || die "only $rendered of $specs vega plots rendered"
[ "$images" -gt 0 ] || die "no images on the page"
