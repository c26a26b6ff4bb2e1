#!/usr/bin/env bash
# The whole test suite, as the README names it: installs the pinned third-party peers
# (npm / PyPI, under target/peers), builds the release binary once through deploy/Dockerfile's
# build stage in a clean clone of the working tree (tests/deploy/build.sh), then runs every
# test: the unit tests in the dev profile, and every end-to-end test against that one release
# binary, the one the container image ships.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export TOOLGATE_PEERS=${TOOLGATE_PEERS:-$root/target/peers}
bash tests/peers/install.sh
# (A plain assignment, so `set -e` stops the run when that build fails.)
if [ -z "${TOOLGATE_CONTAINER_BIN:-}" ]; then
  TOOLGATE_CONTAINER_BIN=$(bash tests/deploy/build.sh)
fi
export TOOLGATE_CONTAINER_BIN
# The e2e tests run the image's binary too: no second build of the binary in the dev profile.
export TOOLGATE_BIN=${TOOLGATE_BIN:-$TOOLGATE_CONTAINER_BIN}
# The runner's own summary lines are per test binary; one total at the end is easier to read.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "%d passed, %d failed\n", passed, failed }' "$log"
exit "$status"
