#!/usr/bin/env bash
# Smoke-test the built image: its ENTRYPOINT (python -m awslambdaric) and CMD handler, run with
# `buildah run --isolation chroot` on a read-only root as the image's non-root user, against the
# loopback Lambda Runtime API (tests/integration/lambda_runtime.py) on the host.
#
#   bash scripts/image_smoke.sh            # the image $VOXPROOF_IMAGE (localhost/voxproof:latest)
#
# SMOKE_INVENTORY=DIR also writes, from the same working container, what the image holds:
# DIR/python-packages.json ([name, version] per installed distribution), DIR/python-version,
# DIR/dpkg.tsv (Debian packages) and DIR/image-id, for the SBOM and the lock comparison.
#
# Networking: chroot isolation shares the host's network namespace, so 127.0.0.1:PORT inside the
# container is the host's loopback (checked by every request the runtime answers).
# Docker engines: the same driver works with a launcher running `docker run --read-only --tmpfs
# /tmp --network host`; only buildah is wired here (no Docker engine on these machines).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib_image.sh
. scripts/lib_image.sh
PY=${PYTHON:-python3}

ctr=$(bh from -q --name "voxproof-smoke-$$" "$VOXPROOF_IMAGE")
cleanup() { bh umount "$ctr" >/dev/null 2>&1 || true; bh rm "$ctr" >/dev/null 2>&1 || true; }
trap cleanup EXIT

# The probe goes into this working container's /var/task (the image is untouched).
mnt=$(bh mount "$ctr")
install -m 0644 scripts/image_smoke_probe.py "$mnt/var/task/image_smoke_probe.py"

config() {  # config Entrypoint|Cmd|User: the image's OCI config field, as JSON
  bh inspect --type image "$VOXPROOF_IMAGE" | "$PY" -c "import json, sys; print(json.dumps(json.load(sys.stdin)['OCIv1']['config'].get('$1')))"
}
entrypoint=$(config Entrypoint)
cmd=$(config Cmd)
echo "image_smoke: $VOXPROOF_IMAGE entrypoint $entrypoint cmd $cmd user $(config User)"

"$PY" scripts/image_smoke.py --launcher "bash scripts/image_run.sh $ctr --" --entrypoint "$entrypoint" --cmd "$cmd"

if [ -n "${SMOKE_INVENTORY:-}" ]; then
  mkdir -p "$SMOKE_INVENTORY"
  bh run --isolation chroot "$ctr" -- python -c 'import importlib.metadata as m, json; print(json.dumps(sorted([d.metadata["Name"], d.version] for d in m.distributions())))' >"$SMOKE_INVENTORY/python-packages.json"
  bh run --isolation chroot "$ctr" -- python -c 'import platform; print(platform.python_version())' >"$SMOKE_INVENTORY/python-version"
  bh run --isolation chroot "$ctr" -- dpkg-query -W -f '${Package}\t${Version}\t${Architecture}\n' >"$SMOKE_INVENTORY/dpkg.tsv"
  bh inspect --type image --format '{{.FromImageID}}' "$VOXPROOF_IMAGE" >"$SMOKE_INVENTORY/image-id"
  echo "image_smoke: inventory in $SMOKE_INVENTORY"
fi
