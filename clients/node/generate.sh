#!/usr/bin/env bash
# Regenerates the checked-in gRPC/protobuf code in src/generated/ from
# proto/occupancy/v1/occupancy.proto with ts-proto (version pinned in
# package-lock.json) driven by protoc (Debian's protobuf-compiler).
# Deterministic: the output carries no tool versions or timestamps, and the
# output folder is rebuilt from scratch, so two runs give identical files.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
proto_root="$(cd "$here/../../proto" && pwd)"
out="$here/src/generated"

command -v protoc >/dev/null || { echo "generate.sh: protoc not found; run clients/node/install-deps.sh" >&2; exit 1; }
if [ ! -x "$here/node_modules/.bin/protoc-gen-ts_proto" ]; then
  (cd "$here" && npm ci --ignore-scripts --no-audit --no-fund)
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

protoc \
  --plugin=protoc-gen-ts_proto="$here/node_modules/.bin/protoc-gen-ts_proto" \
  --proto_path="$proto_root" \
  --ts_proto_out="$tmp" \
  --ts_proto_opt=outputServices=grpc-js,env=node,annotateFilesWithVersion=false,outputJsonMethods=false,outputPartialMethods=false,useExactTypes=false \
  "$proto_root/occupancy/v1/occupancy.proto"

rm -rf "$out"
mkdir -p "$(dirname "$out")"
mv "$tmp" "$out"
chmod 755 "$out"
find "$out" -type d -exec chmod 755 {} +
find "$out" -type f -exec chmod 644 {} +
