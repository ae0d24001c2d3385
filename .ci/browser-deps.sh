#!/usr/bin/env bash
# What the dashboard's browser test (tests/api/dashboard.rs) needs: Debian's chromium and
# chromium-driver, installed with apt when missing, and playwright-core (pinned, no
# dependencies of its own, no browser download) installed with npm under the target
# directory, where the test looks for it.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
[ -x /usr/bin/chromedriver ] || need_apt+=(chromium-driver)
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing ${need_apt[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

version=1.65.1
dir="${CARGO_TARGET_DIR:-target}/browser"
installed=$(node -p "require(require('path').resolve('$dir/node_modules/playwright-core/package.json')).version" 2>/dev/null || true)
if [ "$installed" != "$version" ]; then
  echo "== installing playwright-core $version in $dir"
  mkdir -p "$dir"
  # playwright-core never downloads a browser; the test drives /usr/bin/chromium.
  npm install --prefix "$dir" --no-audit --no-fund --silent "playwright-core@$version"
fi
