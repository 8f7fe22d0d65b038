#!/usr/bin/env bash
# Build the voxproof image from functions/Dockerfile.
#
#   bash scripts/build_image.sh
#
# Engine: docker where a daemon answers, else buildah (vfs storage, chroot isolation: no
# container engine, overlayfs or runc sandbox works on these machines).
#
# Base image: BASE_IMAGE if set. Else the Dockerfile's default (python:3.12-slim-bookworm) when the
# engine can pull it; where no registry is reachable (here) a Debian bookworm base is made with
# debootstrap from Debian's own packages (minbase + python3 + python3-venv) and tagged
# $VOXPROOF_BASE_TAG. REUSE_BASE=1 keeps an existing one (CI builds it every time).
#
# No torch: every function in the image runs the ONNX engine (functions/Dockerfile); the lock
# (functions/requirements.lock) holds neither torch nor coqui-tts.
#
# TLS: pip inside the build trusts BUILD_CA_BUNDLE (default: the host's bundle, which here holds
# the egress proxy's CA), passed as a build secret.
#
# Model layer: layers/model, built first with `voxproof layer build` unless it already verifies
# (`voxproof layer verify`), by LAYER_PYTHON (default .venv/bin/python, the venv scripts/dev.sh
# makes; the build needs the project's dependencies and its [build] extra, which pulls [torch], and
# the manifest pins the torch it was built with). The image build verifies it again; the image itself holds no
# layer builder (functions/Dockerfile).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=scripts/lib_image.sh
. scripts/lib_image.sh

DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SUITE=bookworm
# The CA bundle pip trusts inside the build (a build secret, never stored in the image): the host's,
# which here includes the egress proxy's CA. Empty: the base image's own bundle.
BUILD_CA_BUNDLE=${BUILD_CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}
ENGINE=$(image_engine)
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/voxproof-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

BUILD_START=$(date +%s)
say() { echo "build_image: [$(($(date +%s) - BUILD_START)) s] $*"; }

# --- the base ---------------------------------------------------------------------------------
can_pull() {
  case $ENGINE in
    docker) timeout 120 docker pull -q "$1" >/dev/null 2>&1 ;;
    buildah) timeout 120 bh pull -q "$1" >/dev/null 2>&1 ;;
  esac
}

make_debootstrap_base() {
  if [ "${REUSE_BASE:-0}" = 1 ] && bh inspect --type image "$VOXPROOF_BASE_TAG" >/dev/null 2>&1; then
    say "reusing $VOXPROOF_BASE_TAG (REUSE_BASE=1)"
    return
  fi
  command -v debootstrap >/dev/null || { echo "build_image: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
  local rootfs="$WORK/rootfs" ctr mnt
  say "debootstrap $DEBIAN_SUITE minbase + python3 python3-venv from $DEBIAN_MIRROR"
  debootstrap --variant=minbase --include=python3,python3-venv "$DEBIAN_SUITE" "$rootfs" "$DEBIAN_MIRROR" \
    >"$WORK/debootstrap.log" 2>&1 || { tail -30 "$WORK/debootstrap.log" >&2; exit 1; }
  # What an image never needs: downloaded .debs, apt lists, docs, man pages, locales, device nodes.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/* "$rootfs"/dev/*
  find "$rootfs"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'C.*' -exec rm -rf {} +
  printf 'deb %s %s main\ndeb http://deb.debian.org/debian-security %s-security main\n' \
    "$DEBIAN_MIRROR" "$DEBIAN_SUITE" "$DEBIAN_SUITE" >"$rootfs/etc/apt/sources.list"
  ctr=$(bh from scratch)
  mnt=$(bh mount "$ctr")
  tar -C "$rootfs" -cf - . | tar -C "$mnt" -xpf -
  bh umount "$ctr" >/dev/null
  bh config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
    --cmd /bin/bash --label "org.opencontainers.image.description=Debian $DEBIAN_SUITE minbase + python3 (debootstrap)" "$ctr"
  bh commit --rm -q "$ctr" "$VOXPROOF_BASE_TAG" >/dev/null
  rm -rf "$rootfs"
  say "base $VOXPROOF_BASE_TAG: $(bh images --format '{{.Size}}' "$VOXPROOF_BASE_TAG")"
}

choose_base() {
  if [ -n "${BASE_IMAGE:-}" ]; then
    say "base: $BASE_IMAGE (BASE_IMAGE)"
  elif [ "$ENGINE" = docker ] && can_pull python:3.12-slim-bookworm; then
    BASE_IMAGE=python:3.12-slim-bookworm
    say "base: $BASE_IMAGE (pulled)"
  elif [ "$ENGINE" = buildah ] && [ "${TRY_PULL:-0}" = 1 ] && can_pull docker.io/library/python:3.12-slim-bookworm; then
    BASE_IMAGE=docker.io/library/python:3.12-slim-bookworm
    say "base: $BASE_IMAGE (pulled)"
  else
    [ "$ENGINE" = buildah ] || { echo "build_image: no base reachable with docker; set BASE_IMAGE" >&2; exit 1; }
    make_debootstrap_base
    BASE_IMAGE=$VOXPROOF_BASE_TAG
  fi
}


# --- the model layer ----------------------------------------------------------------------------
model_layer() {
  local py=${LAYER_PYTHON:-.venv/bin/python}
  [ -x "$py" ] || py=python3
  if PYTHONPATH=functions "$py" -m voxproof layer verify layers/model >/dev/null 2>&1; then
    say "model layer: layers/model verifies"
  else
    say "model layer: building with $py -m voxproof layer build"
    PYTHONPATH=functions "$py" -m voxproof layer build --out layers/model
  fi
}

# --- the context --------------------------------------------------------------------------------
assemble_context() {
  local ctx="$WORK/context"
  mkdir -p "$ctx/functions" "$ctx/layers"
  cp pyproject.toml README.md "$ctx/"
  cp functions/Dockerfile functions/*.lock functions/image-excludes.txt "$ctx/functions/"
  (cd functions && tar --exclude=__pycache__ --exclude='*.pyc' -cf - voxproof) | tar -C "$ctx/functions" -xf -

  model_layer
  cp -r layers/model "$ctx/layers/model"
  chmod -R a+rX,go-w "$ctx/layers/model"
  CONTEXT=$ctx
}

# --- the build ----------------------------------------------------------------------------------
build() {
  local args=(--build-arg "BASE_IMAGE=$BASE_IMAGE" -f "$CONTEXT/functions/Dockerfile" -t "$VOXPROOF_IMAGE")
  [ -n "$BUILD_CA_BUNDLE" ] && args+=(--secret "id=cacert,src=$BUILD_CA_BUNDLE")
  say "building $VOXPROOF_IMAGE with $ENGINE (lock functions/requirements.lock)"
  case $ENGINE in
    docker) docker build "${args[@]}" "$CONTEXT" ;;
    # --layers=false (buildah's default, said explicitly): one committed layer per stage, which
    # matters on vfs, where every layer is a full copy of the filesystem below it.
    buildah) bh bud --isolation chroot --layers=false --network host "${args[@]}" "$CONTEXT" ;;
  esac
  say "built"
}

report() {
  case $ENGINE in
    docker) say "image $VOXPROOF_IMAGE: $(docker image inspect -f '{{.Size}}' "$VOXPROOF_IMAGE") bytes" ;;
    buildah)
      # A rebuild leaves the previous image untagged: on vfs that is gigabytes of disk.
      bh rmi --prune >/dev/null 2>&1 || true
      say "image $VOXPROOF_IMAGE: $(bh images --format '{{.Size}}' "$VOXPROOF_IMAGE")"
      ;;
  esac
}

choose_base
assemble_context
build
report
