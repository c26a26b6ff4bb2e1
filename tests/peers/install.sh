#!/usr/bin/env bash
# Installs the pinned third-party MCP peers the test suite drives, under target/peers.
# Fails loudly when a peer cannot be installed: the suite never skips a peer's tests.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
peers=${TOOLGATE_PEERS:-$root/target/peers}
pins="$root/tests/peers/package.json $root/tests/peers/package-lock.json $root/tests/peers/requirements.txt $0"
# The browser test drives Debian's Chromium headless (not an npm download of a browser).
if ! command -v chromium >/dev/null 2>&1; then
  echo "peers: installing chromium (apt)" >&2
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >&2
fi
stamp_want=$(cat $pins | sha256sum | cut -c1-16)
if [ -f "$peers/.stamp" ] && [ "$(cat "$peers/.stamp")" = "$stamp_want" ]; then
  echo "peers: up to date in $peers" >&2
  exit 0
fi
mkdir -p "$peers/node"
echo "peers: installing npm packages (pinned in tests/peers/package.json and its lock)" >&2
# The lock pins the packages' own dependencies too; npm fetches each by name from the registry.
cp "$root/tests/peers/package.json" "$root/tests/peers/package-lock.json" "$peers/node/"
(cd "$peers/node" && npm install --no-audit --no-fund --loglevel=error)
echo "peers: installing Python packages (pinned in tests/peers/requirements.txt)" >&2
python3 -m venv "$peers/venv"
"$peers/venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/tests/peers/requirements.txt"
echo "$stamp_want" > "$peers/.stamp"
echo "peers: installed in $peers" >&2
