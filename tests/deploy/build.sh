#!/usr/bin/env bash
# Runs deploy/Dockerfile's build stage the way `docker build .` would, without a container
# engine: a clean clone of a snapshot of the working tree (what `docker build .` sees:
# committed files plus uncommitted edits and new files, nothing .gitignore excludes), cut
# down to the build context that deploy/Dockerfile.dockerignore keeps, then the stage's RUN
# lines with its ENV (`cargo fetch --locked`, `cargo build --release --locked --package
# toolgate`, the `--version` smoke run). Prints the path of the binary the image would contain
# on stdout; tests/run.sh runs the whole suite against that one binary.
#
# The context directory (and its target/, the analogue of the Dockerfile's cache mount) is
# kept between runs and only files whose content changed are rewritten, so a warm run only
# rebuilds the crates that changed. A cold release build takes about 8 to 10 minutes on 2 cores.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$root/target/deploy
mkdir -p "$work"
# The snapshot: a throwaway index, so the real index, HEAD and branches are untouched.
index=$work/snapshot.index
ref=refs/toolgate/deploy-snapshot
trap 'rm -f "$index"; git -C "$root" update-ref -d "$ref" 2>/dev/null || true' EXIT
rm -f "$index"
GIT_INDEX_FILE=$index git -C "$root" add -A
tree=$(GIT_INDEX_FILE=$index git -C "$root" write-tree)
commit=$(GIT_AUTHOR_NAME=toolgate-tests GIT_AUTHOR_EMAIL=tests@toolgate.invalid \
  GIT_COMMITTER_NAME=toolgate-tests GIT_COMMITTER_EMAIL=tests@toolgate.invalid \
  git -C "$root" commit-tree "$tree" -m "tests/deploy/build.sh: working-tree snapshot")
git -C "$root" update-ref "$ref" "$commit"
rm -rf "$work/checkout"
git clone --quiet --no-local --no-checkout "$root" "$work/checkout"
git -C "$work/checkout" fetch --quiet origin "$ref"
git -C "$work/checkout" checkout --quiet --detach FETCH_HEAD
echo "deploy build: clean clone of the working tree (HEAD $(git -C "$root" rev-parse --short HEAD), tree ${tree:0:12})" >&2
mkdir -p "$work/context"
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
