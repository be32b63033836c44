#!/usr/bin/env bash
# Fetch the `tritonserver` binary (with its Python backend) that the nvidia-pytriton wheel ships,
# for tests/export/test_triton_server.py. Only the binary: nvidia-pytriton itself needs numpy<2 and
# is NOT installed into the environment. The wheel's own tree is kept, so the RPATHs of the binary
# and the Python backend ($ORIGIN/../../../nvidia_pytriton.libs) resolve without LD_LIBRARY_PATH:
#
#   .venv/tritonserver/pytriton/tritonserver/bin/tritonserver
#   .venv/tritonserver/pytriton/tritonserver/backends/python/
#   .venv/tritonserver/pytriton/tritonserver/python_backend_stubs/3.X/triton_python_backend_stub
#   .venv/tritonserver/nvidia_pytriton.libs/
#
# Usage: tests/export/get_tritonserver.sh [VENV]   (default .venv; idempotent, ~55 MB download)
set -euo pipefail
VENV="${1:-.venv}"
VERSION="0.7.0"
DEST="$VENV/tritonserver"
STAMP="$DEST/.nvidia-pytriton-$VERSION"
if [ -f "$STAMP" ] && [ -x "$DEST/pytriton/tritonserver/bin/tritonserver" ]; then
  echo "tritonserver from nvidia-pytriton $VERSION already in $DEST"
  exit 0
fi
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) ;;
  *) echo "nvidia-pytriton ships tritonserver for Linux x86_64 only; skipping" >&2; exit 0 ;;
esac
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
"$VENV/bin/python" -m pip download -q --no-deps "nvidia-pytriton==$VERSION" -d "$TMP"
WHEEL="$(ls "$TMP"/nvidia_pytriton-"$VERSION"-*.whl)"
rm -rf "$DEST"
mkdir -p "$DEST"
"$VENV/bin/python" - "$WHEEL" "$DEST" <<'EOF'
import os
import sys
import zipfile

wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as zf:
    for info in zf.infolist():
        name = info.filename
        if not (name.startswith("pytriton/tritonserver/") or name.startswith("nvidia_pytriton.libs/")):
            continue
        path = zf.extract(info, dest)
        mode = (info.external_attr >> 16) & 0o777
        if mode:
            os.chmod(path, mode)
EOF
chmod +x "$DEST/pytriton/tritonserver/bin/tritonserver" \
  "$DEST"/pytriton/tritonserver/python_backend_stubs/*/triton_python_backend_stub
touch "$STAMP"
echo "tritonserver from nvidia-pytriton $VERSION extracted to $DEST"
