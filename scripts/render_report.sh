#!/usr/bin/env bash
# Render a report.html in headless Chromium to a PNG, as a reader would see it.
#   scripts/render_report.sh runs/optimizer/report.html [out.png] [width] [height]
# Needs chromium (Debian: apt-get install -y chromium). No network: the report is self-contained.
set -euo pipefail
html=${1:?usage: scripts/render_report.sh REPORT.html [OUT.png] [WIDTH] [HEIGHT]}
out=${2:-${html%.html}.png}
width=${3:-1200}
height=${4:-2000}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
    echo "render_report.sh: chromium not found (apt-get install -y chromium)" >&2
    exit 3
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
html_abs=$(cd "$(dirname "$html")" && pwd)/$(basename "$html")
out_abs=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --screenshot="$out_abs" --window-size="$width,$height" \
    "file://$html_abs" >/dev/null 2>&1
test -s "$out_abs"
echo "$out_abs"
