#!/usr/bin/env bash
# The results page: `dvc plots show`, rendered offline in headless Chromium, screenshotted.
#
#   scripts/plots_screenshot.sh [out_dir]     -> out_dir/index.html, out_dir/screenshot.png
#
# Needs Debian's chromium (apt-get install chromium) and npm: the page's vega, vega-lite and
# vega-embed come from the npm registry into .cache/vega/ instead of the CDN the page names.
# Prints how many vega plots rendered and how many images loaded; exits 1 if any did not.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-dvc_plots}
vendor=.cache/vega
declare -A pkgs=([vega]=5.20.2 [vega-lite]=5.2.0 [vega-embed]=6.18.2)

if [ ! -f "$vendor/node_modules/vega-embed/build/vega-embed.min.js" ]; then
  mkdir -p "$vendor"
  npm install --prefix "$vendor" --no-audit --no-fund --silent --legacy-peer-deps \
    "vega@${pkgs[vega]}" "vega-lite@${pkgs[vega-lite]}" "vega-embed@${pkgs[vega-embed]}"
fi
dvc plots show -o "$out" > /dev/null
mkdir -p "$out/vendor"
for p in "${!pkgs[@]}"; do
  cp "$vendor/node_modules/$p/build/$p.min.js" "$out/vendor/"
  sed -i "s#https://cdn.jsdelivr.net/npm/$p@${pkgs[$p]}#vendor/$p.min.js#" "$out/index.html"
done

chrome=(chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run
        --disable-background-networking --disable-component-update --disable-sync
        --user-data-dir="$(mktemp -d)" --hide-scrollbars --virtual-time-budget=20000)
page="file://$PWD/$out/index.html"
"${chrome[@]}" --window-size=1500,7000 --screenshot="$PWD/$out/screenshot.png" "$page" 2>/dev/null
dom=$("${chrome[@]}" --dump-dom "$page" 2>/dev/null)
specs=$(grep -c "vegaEmbed(" "$out/index.html" || true)
rendered=$(grep -o '<canvas\|<svg class="marks"' <<< "$dom" | wc -l)
images=$(grep -o '<img' <<< "$dom" | wc -l)
echo "plots page: $specs vega plots, $rendered rendered; $images images; wrote $out/screenshot.png"
[ "$rendered" -ge "$specs" ] && [ "$images" -gt 0 ]
