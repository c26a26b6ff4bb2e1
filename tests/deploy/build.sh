#!/usr/bin/env bash
# Runs deploy/Dockerfile's build stage the way `docker build` would, without a container
# engine: a clean clone of the committed tree (HEAD), cut down to the build context that
# deploy/Dockerfile.dockerignore keeps, then the stage's RUN lines with its ENV
# (`cargo fetch --locked`, `cargo build --release --locked --package toolgate`, the
# `--version` smoke run). Prints the path of the binary the image would contain on stdout.
#
# The release build takes about 8 minutes on 2 cores, so it happens once per run: the
# context's target/ directory (the analogue of the Dockerfile's cache mount) is kept between
# runs and tests/run.sh hands the binary to the e2e tests as TOOLGATE_CONTAINER_BIN.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$root/target/deploy
mkdir -p "$work"
rm -rf "$work/checkout"
git clone --quiet --no-local "$root" "$work/checkout"
echo "deploy build: clean clone of $(git -C "$work/checkout" rev-parse --short HEAD)" >&2
mkdir -p "$work/context"
find "$work/context" -mindepth 1 -maxdepth 1 ! -name target -exec rm -rf {} +
python3 "$root/tests/deploy/dockerfile.py" context "$work/checkout/deploy/Dockerfile" \
  "$work/checkout" "$work/context" >/dev/null
start=$(date +%s)
python3 "$root/tests/deploy/dockerfile.py" build "$work/checkout/deploy/Dockerfile" "$work/context" >&2
echo "deploy build: build stage finished in $(( $(date +%s) - start )) s" >&2
binary=$(python3 - "$work/checkout/deploy/Dockerfile" "$root/tests/deploy/dockerfile.py" <<'PY'
import json, subprocess, sys
image = json.loads(subprocess.run([sys.executable, sys.argv[2], "image", sys.argv[1]],
                                  check=True, capture_output=True).stdout)
[copy] = [c for c in image["copies"] if c["dst"] == image["entrypoint"][0]]
print(copy["src_relative_to_workdir"])
PY
)
test -x "$work/context/$binary"
echo "$work/context/$binary"
