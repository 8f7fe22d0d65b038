# Shared by build_image.sh, image_smoke.sh and ci_image.sh (source it; it sets no shell options).
#
# Settings (environment):
#   VOXPROOF_IMAGE      the image name (default localhost/voxproof:latest)
#   VOXPROOF_BASE_TAG   the debootstrap base image (default localhost/voxproof-base:bookworm)
#   IMAGE_ENGINE        docker | buildah (default: docker if its daemon answers, else buildah)
#   BUILDAH_ROOT        buildah storage root (default: buildah's own, /var/lib/containers/storage)
#   BUILDAH_RUNROOT     buildah state dir (default: buildah's own)
VOXPROOF_IMAGE=${VOXPROOF_IMAGE:-localhost/voxproof:latest}
VOXPROOF_BASE_TAG=${VOXPROOF_BASE_TAG:-localhost/voxproof-base:bookworm}

image_engine() {
  if [ -n "${IMAGE_ENGINE:-}" ]; then
    echo "$IMAGE_ENGINE"
  elif command -v docker >/dev/null 2>&1 && timeout 20 docker info >/dev/null 2>&1; then
    echo docker
  else
    echo buildah
  fi
}

# buildah with this project's fixed choices: vfs storage (no overlay/fuse here) and, where it runs
# something, chroot isolation (no runc/crun sandboxing available under this kernel).
bh() {
  local opts=(--storage-driver vfs)
  [ -n "${BUILDAH_ROOT:-}" ] && opts+=(--root "$BUILDAH_ROOT")
  [ -n "${BUILDAH_RUNROOT:-}" ] && opts+=(--runroot "$BUILDAH_RUNROOT")
  buildah "${opts[@]}" "$@"
}

# step <name> <command...>: run a step, print its duration; keeps a summary in STEP_TIMES.
STEP_TIMES=""
step() {
  local name=$1 start rc
  shift
  echo "== $name"
  start=$(date +%s)
  set +e
  "$@"
  rc=$?
  set -e
  STEP_TIMES+=$(printf '%-28s %5d s  %s' "$name" "$(($(date +%s) - start))" "$([ $rc = 0 ] && echo ok || echo "FAILED ($rc)")")$'\n'
  echo "== $name: $(($(date +%s) - start)) s"
  return $rc
}
