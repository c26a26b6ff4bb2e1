#!/usr/bin/env bash
# The whole test suite, as the README names it: installs the pinned third-party peers
# (npm / PyPI, under target/peers), builds the workspace once, then runs every test.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export TOOLGATE_PEERS=${TOOLGATE_PEERS:-$root/target/peers}
bash tests/peers/install.sh
# One build serves both the unit tests and the end-to-end tests of the binary.
cargo build --workspace --all-targets --locked
export TOOLGATE_BIN=${TOOLGATE_BIN:-$root/target/debug/toolgate}
# deploy/Dockerfile's build stage in a clean clone (release build, ~8 min on 2 cores, once per
# run); the deploy tests run the binary the image would contain.
# (A plain assignment, so `set -e` stops the run when that build fails.)
if [ -z "${TOOLGATE_CONTAINER_BIN:-}" ]; then
  TOOLGATE_CONTAINER_BIN=$(bash tests/deploy/build.sh)
fi
export TOOLGATE_CONTAINER_BIN
# The runner's own summary lines are per test binary; one total at the end is easier to read.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "%d passed, %d failed\n", passed, failed }' "$log"
exit "$status"
