#!/usr/bin/env bash
# Builds deploy/Dockerfile with podman (Debian's package) and runs the image, without any
# container registry: the two base images are replaced by local stand-ins under the same
# names, built from Debian packages (apt's mirror is reachable; image registries are not).
#
#   - docker.io/library/rust:1.95.0-slim-bookworm: debootstrap minbase bookworm + gcc +
#     libc6-dev + ca-certificates (what the official slim image adds) + this machine's pinned
#     toolchain copied to /usr/local/{rustup,cargo} with the official image's ENV.
#   - gcr.io/distroless/cc-debian12:nonroot: only the files of libc6 and libgcc-s1, the CA
#     bundle, and passwd/group entries for nonroot (65532); no shell, like distroless.
#
# Then `podman build --format docker` (docker format keeps HEALTHCHECK) and runs: the image
# refusing 0.0.0.0 without a token (exit 64); serving with one, read-only, as 65532, all
# capabilities dropped; `podman healthcheck run` (the image's exec-form HEALTHCHECK without a
# shell); the MCP endpoint through 127.0.0.1; SIGTERM via `podman stop`.
#
# Not part of tests/run.sh: it needs root, apt packages (podman, buildah, debootstrap) and
# a second release build (~10+ minutes). Usage: tests/deploy/podman.sh  (as root)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${PODMAN_WORK:-$root/target/deploy/podman}
rust_version=$(sed -n 's/^channel = "\(.*\)"/\1/p' "$root/rust-toolchain.toml")
rust_image=docker.io/library/rust:${rust_version}-slim-bookworm
runtime_image=gcr.io/distroless/cc-debian12:nonroot
mkdir -p "$work"
# On this VM (cgroup v1/v2 hybrid, a capped RLIMIT_NOFILE) crun refuses hybrid cgroups and
# both runtimes fail to raise rlimits: use runc and explicit limits within the current ones.
podman=(podman --runtime runc)
limits=(--ulimit nofile=1024:20000 --ulimit nproc=1024:1024)
for tool in podman runc debootstrap dpkg-deb apt-get; do
  command -v "$tool" >/dev/null || { echo "podman.sh: $tool missing (apt-get install podman buildah runc debootstrap)" >&2; exit 1; }
done

if ! podman image exists "$rust_image"; then
  echo "podman.sh: building the stand-in for $rust_image" >&2
  rootfs=$work/rust-rootfs
  if [ ! -x "$rootfs/usr/bin/gcc" ]; then
    rm -rf "$rootfs"
    debootstrap --variant=minbase --include=gcc,libc6-dev,ca-certificates bookworm "$rootfs" \
      http://deb.debian.org/debian >&2
  fi
  # This machine's trust store: package registries are reached through an egress proxy whose
  # CA Debian's bundle lacks.
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  toolchain=$(rustc +"$rust_version" --print sysroot)
  mkdir -p "$rootfs/usr/local/rustup/toolchains" "$rootfs/usr/local/cargo/bin"
  rm -rf "$rootfs/usr/local/rustup/toolchains/$rust_version-x86_64-unknown-linux-gnu"
  cp -a "$toolchain/." "$rootfs/usr/local/rustup/toolchains/$rust_version-x86_64-unknown-linux-gnu/"
  printf 'version = "12"\ndefault_toolchain = "%s-x86_64-unknown-linux-gnu"\n' "$rust_version" \
    > "$rootfs/usr/local/rustup/settings.toml"
  cp "$(command -v rustup)" "$rootfs/usr/local/cargo/bin/rustup"
  for proxy in cargo rustc rustdoc; do ln -f "$rootfs/usr/local/cargo/bin/rustup" "$rootfs/usr/local/cargo/bin/$proxy"; done
  tar -C "$rootfs" -c . | podman import \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV RUSTUP_HOME=/usr/local/rustup' --change 'ENV CARGO_HOME=/usr/local/cargo' \
    --change "ENV RUST_VERSION=$rust_version" - "$rust_image" >&2
fi

if ! podman image exists "$runtime_image"; then
  echo "podman.sh: building the stand-in for $runtime_image" >&2
  debs=$work/debs
  rootfs=$work/distroless-rootfs
  rm -rf "$debs" "$rootfs"
  mkdir -p "$debs" "$rootfs/etc/ssl/certs" "$rootfs/home/nonroot" "$rootfs/tmp"
  (cd "$debs" && apt-get download libc6 libgcc-s1 >&2)
  for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$rootfs"; done
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$rootfs/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' > "$rootfs/etc/group"
  chown 65532:65532 "$rootfs/home/nonroot"
  chmod 1777 "$rootfs/tmp"
  rm -rf "$rootfs/usr/share/doc" "$rootfs/usr/share/lintian"
  if [ -e "$rootfs/bin/sh" ] || [ -e "$rootfs/usr/bin/sh" ]; then
    echo "podman.sh: the runtime stand-in must have no shell" >&2; exit 1
  fi
  tar -C "$rootfs" -c . | podman import --change 'USER 65532' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' - "$runtime_image" >&2
fi

echo "podman.sh: podman build" >&2
start=$(date +%s)
"${podman[@]}" build --pull=never --format docker --network host "${limits[@]}" \
  --ignorefile "$root/deploy/Dockerfile.dockerignore" \
  -f "$root/deploy/Dockerfile" -t toolgate:0.1.0 "$root" >&2
echo "podman.sh: image built in $(( $(date +%s) - start )) s" >&2
podman image inspect toolgate:0.1.0 --format '{{.Config.User}} {{.Config.Entrypoint}} {{.Config.Cmd}} {{json .Config.Healthcheck}} {{json .Config.Labels}}'
podman image ls toolgate:0.1.0

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
containers=()
cleanup() {
  for c in "${containers[@]}"; do podman rm -f "$c" >/dev/null 2>&1 || true; done
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

# Without a token: refused, exit 64.
set +e
"${podman[@]}" run "${limits[@]}" --rm --network none --read-only --cap-drop ALL --security-opt no-new-privileges \
  -e COMPOSIO_API_KEY=sk_sandbox_demo -e TOOLGATE_USER_ID=podman toolgate:0.1.0 2>"$work/no-token.err"
code=$?
set -e
cat "$work/no-token.err" >&2
[ "$code" = 64 ] || { echo "podman.sh: expected exit 64 without a token, got $code" >&2; exit 1; }
echo "podman.sh: without a token: exit 64 (ok)" >&2

# With a token, against the sandbox (run from the image's own binary on the host network).
sandbox_port=$(free_port)
"${podman[@]}" run "${limits[@]}" -d --name toolgate-podman-sandbox --network host --entrypoint /usr/local/bin/toolgate \
  toolgate:0.1.0 sandbox --listen "127.0.0.1:$sandbox_port" >/dev/null
containers+=(toolgate-podman-sandbox)
port=$(free_port)
token=podman-test-token-0123456789
"${podman[@]}" run "${limits[@]}" -d --name toolgate-podman --network host --read-only --cap-drop ALL \
  --security-opt no-new-privileges \
  -e COMPOSIO_API_KEY=sk_sandbox_demo -e "COMPOSIO_BASE_URL=http://127.0.0.1:$sandbox_port" \
  -e TOOLGATE_USER_ID=podman -e "TOOLGATE_TOKEN=$token" -e "TOOLGATE_LISTEN=0.0.0.0:$port" \
  toolgate:0.1.0 >/dev/null
containers+=(toolgate-podman)
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/readyz"; echo
"${podman[@]}" healthcheck run toolgate-podman && echo "podman.sh: HEALTHCHECK (exec form, no shell): healthy" >&2
"${podman[@]}" exec toolgate-podman /usr/local/bin/toolgate healthcheck --ready && echo "podman.sh: healthcheck --ready: ready" >&2
if "${podman[@]}" exec toolgate-podman /bin/sh -c true 2>/dev/null; then
  echo "podman.sh: the image has a shell" >&2; exit 1
fi
"${podman[@]}" exec toolgate-podman id 2>/dev/null && { echo "podman.sh: unexpected coreutils" >&2; exit 1; } || true
status=$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/mcp" -H 'Content-Type: application/json' \
  -H 'Accept: application/json, text/event-stream' -d '{"jsonrpc":"2.0","id":1,"method":"ping"}')
[ "$status" = 401 ] || { echo "podman.sh: expected 401 without the token, got $status" >&2; exit 1; }
curl -fsS -D - "http://127.0.0.1:$port/mcp" -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
  -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"podman","version":"0"}}}'
echo
"${podman[@]}" top toolgate-podman user huser args
start=$(date +%s%N)
"${podman[@]}" stop -t 20 toolgate-podman >/dev/null
echo "podman.sh: podman stop (SIGTERM) took $(( ($(date +%s%N) - start) / 1000000 )) ms; exit code $(podman inspect toolgate-podman --format '{{.State.ExitCode}}')" >&2
podman logs toolgate-podman 2>&1 | tail -5
echo "podman.sh: all checks passed" >&2
