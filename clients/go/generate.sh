#!/usr/bin/env bash
# Generates Go stubs for every openoes proto into ./gen (gitignored, never
# committed) with protoc, protoc-gen-go and protoc-gen-go-grpc.
#
#   ./generate.sh
#
# The protos set no go_package, so each file's import path is given here
# with M options: openoes/credit/v1/credit.proto becomes the package
# openoes.dev/clients/go/gen/openoes/credit/v1, named creditv1.
# Well-known types (google/protobuf/*.proto) come from protoc's include dir
# (Debian: libprotobuf-dev, /usr/include).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PROTO=$(cd "$HERE/../../proto" && pwd)
MODULE=$(sed -n 's/^module //p' "$HERE/go.mod")
for tool in protoc protoc-gen-go protoc-gen-go-grpc; do
  command -v "$tool" >/dev/null || { echo "generate.sh: $tool not found (Debian: apt-get install protobuf-compiler protoc-gen-go protoc-gen-go-grpc)" >&2; exit 1; }
done
cd "$PROTO"
files=$(find . -name '*.proto' | sed 's|^\./||' | sort)
opts=()
for f in $files; do
  dir=$(dirname "$f")                     # openoes/credit/v1
  name=$(basename "$(dirname "$dir")")$(basename "$dir")   # creditv1
  opts+=("--go_opt=M$f=$MODULE/gen/$dir;$name" "--go-grpc_opt=M$f=$MODULE/gen/$dir;$name")
done
rm -rf "$HERE/gen"
mkdir -p "$HERE/gen"
# shellcheck disable=SC2086
protoc -I . \
  --go_out="$HERE/gen" --go_opt=paths=source_relative \
  --go-grpc_out="$HERE/gen" --go-grpc_opt=paths=source_relative \
  "${opts[@]}" $files
