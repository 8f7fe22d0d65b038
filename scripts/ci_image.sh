#!/usr/bin/env bash
# The image half of CI: lock check, build, smoke, SBOM, image-versus-lock, vulnerability audit.
#
#   bash scripts/ci_image.sh          # everything, in that order
#   bash scripts/ci_image.sh audit    # only the supply-chain audit (needs no image)
#
# Prints each step's duration and a summary. Outputs go to build/ci/ (git-ignored):
#   sbom.cdx.json      CycloneDX 1.6: the image's Python packages (from the lock, with hashes)
#                      plus its Debian packages and the image id
#   audit.json         the audit verdict (PASS / FAIL / UNCHECKED) and what it found
#   inventory/         what the image holds (python-packages.json, dpkg.tsv, python-version)
# Needs root (debootstrap, buildah, mount namespaces). apt packages: buildah debootstrap.
# AUDIT_STRICT=1 makes an audit that could reach no vulnerability data fail (see supply_chain.py).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib_image.sh
. scripts/lib_image.sh
OUT=build/ci
TOOLS=${TOOLS_VENV:-$OUT/tools}
start_all=$(date +%s)
mkdir -p "$OUT"

tools() {  # uv, pip-audit, cyclonedx-bom from their own hash lock, in a venv of their own
  rm -rf "$TOOLS"
  python3 -m venv "$TOOLS"
  "$TOOLS/bin/pip" install -q --require-hashes --no-deps -r scripts/ship-tools.lock
}

sbom() {
  local python
  python=$(cat "$OUT/inventory/python-version")
  "$TOOLS/bin/python" scripts/supply_chain.py subset functions/requirements.lock --python "$python" -o "$OUT/image-requirements.txt"
  "$TOOLS/bin/cyclonedx-py" requirements "$OUT/image-requirements.txt" --pyproject pyproject.toml \
    --output-reproducible -o "$OUT/sbom.cdx.json" 2>/dev/null
  "$TOOLS/bin/python" scripts/supply_chain.py sbom-os "$OUT/sbom.cdx.json" "$OUT/inventory/dpkg.tsv" \
    --image-id "$(cat "$OUT/inventory/image-id")"
}

compare() {
  "$TOOLS/bin/python" scripts/supply_chain.py compare functions/requirements.lock \
    "$OUT/inventory/python-packages.json" --python "$(cat "$OUT/inventory/python-version")"
}

audit() {
  local python=3.11.2
  [ -f "$OUT/inventory/python-version" ] && python=$(cat "$OUT/inventory/python-version")
  "$TOOLS/bin/python" scripts/supply_chain.py audit functions/requirements.lock --python "$python" \
    --ignore functions/audit-ignore.toml --pip-audit "$TOOLS/bin/pip-audit" -o "$OUT/audit.json"
}

summary() {
  echo
  echo "== image CI summary"
  printf '%s' "$STEP_TIMES"
  [ "${1:-}" = full ] && echo "image $VOXPROOF_IMAGE: $(bh images --format '{{.Size}}' "$VOXPROOF_IMAGE")"
  [ -f "$OUT/audit.json" ] && echo "supply-chain audit: $("$TOOLS/bin/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["status"])' "$OUT/audit.json")"
  echo "total $(($(date +%s) - start_all)) s"
}

if [ "${1:-}" = audit ]; then
  step "tools (hash-locked)" tools
  step "audit (pip-audit)" audit
  summary
  exit 0
fi

trap 'summary' ERR
step "tools (hash-locked)" tools
step "lock matches pyproject" env UV="$TOOLS/bin/uv" bash scripts/lock.sh --check
step "build image" bash scripts/build_image.sh
step "smoke (buildah run, ro root)" env SMOKE_INVENTORY="$OUT/inventory" bash scripts/image_smoke.sh
step "sbom (CycloneDX)" sbom
step "image == lock" compare
step "audit (pip-audit)" audit
trap - ERR
summary full
