#!/usr/bin/env bash
# Run a command in a buildah working container the way Lambda runs the image: read-only root
# filesystem, a writable /tmp, the image's USER (non-root), host network (so a Runtime API on
# 127.0.0.1 is reachable).
#
#   bash scripts/image_run.sh CONTAINER -- COMMAND [ARGS...]
#
# Variables forwarded into the container: AWS_LAMBDA_*, AWS_REGION, _X_AMZN_TRACE_ID, SMOKE_*,
# VOXPROOF_* and POWERTOOLS_* (the handler's settings, as template.yaml sets them).
#
# How: `buildah run` has no --read-only. In a private mount namespace (unshare -m), the
# container's rootfs is bind-mounted onto itself and remounted read-only, and fresh tmpfs are
# mounted on its /tmp (mode 1777, 512 MB like Lambda's default) and /run (mode 755: buildah must
# create /run/.containerenv there; root-owned, so the non-root process cannot write it). Then
# `buildah run --isolation chroot` uses that tree; the mounts vanish with the namespace.
# (buildah 1.28 panics in its clean-up when it must remove a mount point it made on a read-only
# root, e.g. with `--mount type=tmpfs,destination=/tmp`: hence our own tmpfs, made beforehand.)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib_image.sh
. scripts/lib_image.sh

if [ "${1:-}" = --inner ]; then
  shift
  ctr=$1 mnt=$2
  shift 3  # ctr, mnt, --
  mount --bind "$mnt" "$mnt"
  mount -o remount,bind,ro "$mnt"
  mount -t tmpfs -o mode=1777,size=512m,nosuid,nodev tmpfs "$mnt/tmp"
  mount -t tmpfs -o mode=755,size=1m,nosuid,nodev,noexec tmpfs "$mnt/run"
  envs=()
  while IFS= read -r name; do
    envs+=(-e "$name=${!name}")
  done < <(compgen -e | grep -E '^(AWS_LAMBDA_[A-Z_]+|AWS_REGION|_X_AMZN_TRACE_ID|SMOKE_[A-Z_]+|VOXPROOF_[A-Z0-9_]+|POWERTOOLS_[A-Z_]+)$' || true)
  exec buildah --storage-driver vfs ${BUILDAH_ROOT:+--root "$BUILDAH_ROOT"} ${BUILDAH_RUNROOT:+--runroot "$BUILDAH_RUNROOT"} \
    run --isolation chroot --network host "${envs[@]}" "$ctr" -- "$@"
fi

[ $# -ge 3 ] && [ "$2" = -- ] || { echo "usage: bash scripts/image_run.sh CONTAINER -- COMMAND [ARGS...]" >&2; exit 64; }
ctr=$1
shift 2
mnt=$(bh mount "$ctr")
exec unshare --mount --propagation private bash "$0" --inner "$ctr" "$mnt" -- "$@"
