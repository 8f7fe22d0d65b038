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
# Torch (the lock pins torch==2.13.0+cpu by sha256): the wheel from TORCH_WHEELS (default
# /opt/wheels) when it holds the pinned file for the base's Python, else TORCH_INDEX (the PyTorch
# CPU index) when reachable, else PyPI's CUDA build via functions/requirements-pypi-torch.lock
# (several GB: said loudly).
#
# TLS: pip inside the build trusts BUILD_CA_BUNDLE (default: the host's bundle, which here holds
# the egress proxy's CA), passed as a build secret.
#
# Model layer: layers/model, built first with `voxproof layer build` unless it already verifies
# (`voxproof layer verify`), by LAYER_PYTHON (default .venv/bin/python, the venv scripts/dev.sh
# makes; the build needs the project's dependencies and its [build] extra, and the manifest pins
# the torch it was built with). The image build verifies it again; the image itself holds no
# layer builder (functions/Dockerfile).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=scripts/lib_image.sh
. scripts/lib_image.sh

DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SUITE=bookworm
TORCH_INDEX=${TORCH_INDEX-https://download.pytorch.org/whl/cpu}
TORCH_WHEELS=${TORCH_WHEELS:-/opt/wheels}
# The CA bundle pip trusts inside the build (a build secret, never stored in the image): the host's,
# which here includes the egress proxy's CA. Empty: the base image's own bundle.
BUILD_CA_BUNDLE=${BUILD_CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}
ENGINE=$(image_engine)
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/voxproof-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

BUILD_START=$(date +%s)
say() { echo "build_image: [$(($(date +%s) - BUILD_START)) s] $*"; }
loud() { printf '\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n!!! %s\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\n' "$*"; }

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

base_python_tag() {  # cp311, cp312, ... of the base's python3
  local ctr tag
  case $ENGINE in
    docker) docker run --rm --entrypoint python3 "$BASE_IMAGE" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")' ;;
    buildah)
      ctr=$(bh from -q "$BASE_IMAGE")
      tag=$(bh run --isolation chroot "$ctr" -- python3 -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
      bh rm "$ctr" >/dev/null
      echo "$tag"
      ;;
  esac
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
LOCK=functions/requirements.lock
assemble_context() {
  local ctx="$WORK/context" torch_pin pytag wheel
  mkdir -p "$ctx/functions" "$ctx/layers" "$ctx/wheels"
  cp pyproject.toml README.md "$ctx/"
  cp functions/Dockerfile functions/*.lock functions/image-excludes.txt "$ctx/functions/"
  (cd functions && tar --exclude=__pycache__ --exclude='*.pyc' -cf - voxproof) | tar -C "$ctx/functions" -xf -

  model_layer
  cp -r layers/model "$ctx/layers/model"
  chmod -R a+rX,go-w "$ctx/layers/model"

  torch_pin=$(sed -n 's/^torch==\([^ ]*\).*/\1/p' "$LOCK")
  pytag=$(base_python_tag)
  wheel=$(compgen -G "$TORCH_WHEELS/torch-${torch_pin}-${pytag}-${pytag}-*.whl" | head -1 || true)
  if [ -n "$wheel" ]; then
    say "torch $torch_pin: $(basename "$wheel") from $TORCH_WHEELS (checked against the lock's sha256)"
    ln "$wheel" "$ctx/wheels/" 2>/dev/null || cp "$wheel" "$ctx/wheels/"
    TORCH_INDEX=""  # not needed; pip would retry an unreachable index for every package
  elif [ -n "$TORCH_INDEX" ] && curl -fsS -o /dev/null --max-time 15 "$TORCH_INDEX/torch/"; then
    say "torch $torch_pin for $pytag: from $TORCH_INDEX"
  else
    say "TORCH_INDEX $TORCH_INDEX unreachable"
    LOCK=functions/requirements-pypi-torch.lock
    TORCH_INDEX=""
    loud "FALLBACK: no CPU torch for $pytag (not in $TORCH_WHEELS, TORCH_INDEX unreachable): PyPI's CUDA torch, several GB"
  fi
  CONTEXT=$ctx
}

# --- the build ----------------------------------------------------------------------------------
build() {
  local args=(--build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "TORCH_INDEX=$TORCH_INDEX"
    --build-arg "LOCK=$LOCK" -f "$CONTEXT/functions/Dockerfile" -t "$VOXPROOF_IMAGE")
  [ -n "$BUILD_CA_BUNDLE" ] && args+=(--secret "id=cacert,src=$BUILD_CA_BUNDLE")
  say "building $VOXPROOF_IMAGE with $ENGINE (lock $LOCK)"
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
