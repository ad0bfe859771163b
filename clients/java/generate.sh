#!/usr/bin/env bash
# Regenerates the Java protocol classes and gRPC stubs from proto/occupancy/v1/occupancy.proto.
#
# Java's convention is to generate stubs at build time, so nothing generated is checked in: the
# protobuf-maven-plugin in pom.xml runs pinned protoc and protoc-gen-grpc-java (fetched from Maven
# Central) in Maven's generate-sources phase, writing target/generated-sources/protobuf/. This
# script only runs that phase, so the top-level clients/generate.sh can treat every language alike;
# `mvn compile`/`mvn test` do the same by themselves.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
exec mvn -q -B generate-sources "$@"
