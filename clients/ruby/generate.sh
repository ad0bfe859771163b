#!/usr/bin/env bash
# Regenerates the checked-in Ruby stubs under lib/occupancy/v1/ from
# proto/occupancy/v1/occupancy.proto. Deterministic and idempotent: the output
# depends only on the proto and the two pinned generators below, and this
# script refuses any other version (CI regenerates and diffs).
#
#  * occupancy_pb.rb: protoc 31.1 (Maven Central com.google.protobuf:protoc:4.31.1,
#    sha256-checked), fetched into clients/ruby/.tools by install-deps.sh. It
#    emits the serialized-descriptor form (DescriptorPool#add_serialized_file),
#    which loads with google-protobuf 4.x and also with 3.21 (Debian bookworm's
#    ruby-google-protobuf; checked by the suite), so one file serves both.
#  * occupancy_services_pb.rb: grpc_ruby_plugin from Debian bookworm's
#    protobuf-compiler-grpc 1.51.1. Its output (the GRPC::GenericService DSL)
#    is the same in every grpc release and loads with grpc 1.51 and later.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

PROTOC_VERSION=4.31.1          # the Maven artifact's version; `protoc --version` says 31.1
PROTOC_SHA256=caaf8517e57c57d34a7d6f0544172d9051abf58556aa35c70d3fb0d824b8cfbb
GRPC_PLUGIN_PACKAGE_VERSION=1.51.1   # Debian protobuf-compiler-grpc, upstream part of the version

protoc="$here/.tools/protoc-$PROTOC_VERSION-linux-x86_64.exe"
if [[ ! -x "$protoc" ]]; then
  echo "generate.sh: $protoc not found: run clients/ruby/install-deps.sh" >&2
  exit 1
fi
if [[ "$(sha256sum "$protoc" | cut -d' ' -f1)" != "$PROTOC_SHA256" ]]; then
  echo "generate.sh: $protoc does not have the pinned sha256 $PROTOC_SHA256; delete it and run install-deps.sh" >&2
  exit 1
fi
plugin="$(command -v grpc_ruby_plugin || true)"
have_plugin="$(dpkg-query -W -f='${Version}' protobuf-compiler-grpc 2>/dev/null || true)"
if [[ -z "$plugin" || "$have_plugin" != "$GRPC_PLUGIN_PACKAGE_VERSION"-* ]]; then
  echo "generate.sh: need grpc_ruby_plugin from Debian protobuf-compiler-grpc $GRPC_PLUGIN_PACKAGE_VERSION," \
       "found '${have_plugin:-none}' (run clients/ruby/install-deps.sh)" >&2
  exit 1
fi

out="$here/lib"
rm -f "$out/occupancy/v1/occupancy_pb.rb" "$out/occupancy/v1/occupancy_services_pb.rb"
cd "$root/proto"
"$protoc" \
  -I . \
  --ruby_out="$out" \
  --plugin=protoc-gen-grpc="$plugin" \
  --grpc_out="$out" \
  occupancy/v1/occupancy.proto
