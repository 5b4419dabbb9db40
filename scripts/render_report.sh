#!/usr/bin/env bash
# Screenshot a study report with headless Chromium, to check that it renders (offline).
#
#   scripts/render_report.sh STUDY_DIR_OR_REPORT_HTML [OUT.png] [WIDTH] [HEIGHT]
#
# Needs Debian's chromium (apt-get install -y chromium). Network use is switched off as far as
# Chromium allows (no background networking, no component updates, a throw-away profile), and the
# report itself references nothing outside the file, so the page renders exactly as it would on an
# offline laptop. The screenshot is WIDTHxHEIGHT CSS pixels of the top of the page (default
# 1400x6000, enough for the summary, the axis plots and the Pareto fronts of a small study).
set -euo pipefail

target=${1:?usage: render_report.sh STUDY_DIR_OR_REPORT_HTML [OUT.png] [WIDTH] [HEIGHT]}
if [[ -d "$target" ]]; then
    target="$target/report.html"
fi
if [[ ! -f "$target" ]]; then
    echo "render_report.sh: no report at $target (run 'llem report STUDY_DIR' first)" >&2
    exit 2
fi
report=$(realpath "$target")
out=$(realpath -m "${2:-${report%.html}.png}")
width=${3:-1400}
height=${4:-6000}

browser=""
for candidate in chromium chromium-browser google-chrome; do
    if command -v "$candidate" >/dev/null 2>&1; then
        browser=$candidate
        break
    fi
done
if [[ -z "$browser" ]]; then
    echo "render_report.sh: no Chromium found; install it with: apt-get install -y chromium" >&2
    exit 2
fi

profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT

"$browser" --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --no-first-run --disable-sync --disable-default-apps \
    --hide-scrollbars --user-data-dir="$profile" \
    --window-size="${width},${height}" --screenshot="$out" "file://$report" \
    >"$profile/chromium.log" 2>&1 || {
    echo "render_report.sh: chromium failed:" >&2
    cat "$profile/chromium.log" >&2
    exit 1
}
if [[ ! -s "$out" ]]; then
    echo "render_report.sh: chromium wrote no screenshot" >&2
    cat "$profile/chromium.log" >&2
    exit 1
fi
echo "$out"
