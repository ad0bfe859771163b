#!/usr/bin/env bash
# Regenerates the checked-in Python stubs for occupancy/v1/occupancy.proto into
# src/occupancy_client/_generated/. Deterministic: the protoc bundled with the
# pinned grpcio-tools always produces the same bytes, so CI can diff the result.
#
# Usage: clients/python/generate.sh   (from any directory; PYTHON overrides python3)
set -euo pipefail

GRPCIO_TOOLS_VERSION="1.74.0" # keep in sync with install-deps.sh and pyproject.toml

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
proto_root="$(cd "$here/../../proto" && pwd)"
python="${PYTHON:-python3}"
out="$here/src/occupancy_client/_generated"

installed="$("$python" -c 'from importlib.metadata import version; print(version("grpcio-tools"))' 2>/dev/null || true)"
if [[ "$installed" != "$GRPCIO_TOOLS_VERSION" ]]; then
  echo "generate.sh: need grpcio-tools==$GRPCIO_TOOLS_VERSION for $python (found '${installed:-none}');" >&2
  echo "run clients/python/install-deps.sh first" >&2
  exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

well_known="$("$python" -c 'import os, grpc_tools; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')"
(
  cd "$proto_root"
  "$python" -m grpc_tools.protoc \
    -I . -I "$well_known" \
    --python_out="$tmp" --pyi_out="$tmp" --grpc_python_out="$tmp" \
    occupancy/v1/occupancy.proto
)

# grpcio-tools writes `from occupancy.v1 import occupancy_pb2`, an absolute
# import of a top-level `occupancy` package that does not exist once the stubs
# live inside occupancy_client. Make it relative; the proto's registered file
# name stays the canonical occupancy/v1/occupancy.proto.
grpc_file="$tmp/occupancy/v1/occupancy_pb2_grpc.py"
sed -E -i 's/^from occupancy\.v1 import (occupancy_pb2) as /from . import \1 as /' "$grpc_file"
if grep -rnE '^(from|import) occupancy(\.|$| )' "$tmp/occupancy" ; then
  echo "generate.sh: an absolute import of the generated package survived the rewrite;" \
       "the grpcio-tools output format changed, update the sed expression" >&2
  exit 1
fi
if ! grep -q '^from \. import occupancy_pb2 as ' "$grpc_file"; then
  echo "generate.sh: expected import of occupancy_pb2 not found in $grpc_file" >&2
  exit 1
fi

init_doc='"""Generated code; do not edit. Regenerate with clients/python/generate.sh."""'
for d in "$tmp" "$tmp/occupancy" "$tmp/occupancy/v1"; do
  printf '%s\n' "$init_doc" > "$d/__init__.py"
done

rm -rf "$out"
mkdir -p "$(dirname "$out")"
cp -R "$tmp" "$out"
chmod -R u=rwX,go=rX "$out"
echo "generated $(cd "$here" && find src/occupancy_client/_generated -type f | sort | tr '\n' ' ')"
