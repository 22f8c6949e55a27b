#!/usr/bin/env bash
# Builds ./vendor (gitignored) from Debian's Go packages, so that `go build`
# works offline with no module proxy: each module the gRPC stack needs is a
# symlink into /usr/share/gocode/src, and vendor/modules.txt says which
# packages each provides. With vendor/ present, go (for a go.mod at go 1.14
# or later) builds with -mod=vendor by default.
#
#   apt-get install golang-go golang-google-grpc-dev golang-google-protobuf-dev \
#     golang-github-golang-protobuf-1-5-dev protobuf-compiler protoc-gen-go protoc-gen-go-grpc
#   ./vendor-debian.sh
#
# Online, skip this and run `go mod tidy` instead (then delete vendor/).
# Fails if Debian's grpc or protobuf is not the version go.mod requires.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=${GOCODE:-/usr/share/gocode}/src
# The modules Debian's grpc, protobuf and their dependencies live in.
# Direct dependencies (in go.mod) first.
DIRECT="google.golang.org/grpc google.golang.org/protobuf"
INDIRECT="github.com/golang/protobuf golang.org/x/net golang.org/x/sys golang.org/x/text google.golang.org/genproto"

required() { sed -n "s|^[[:space:]]*$1 \(v[^ ]*\).*|\1|p" "$HERE/go.mod"; }
# Upstream version of the Debian package holding a module: 1:0.7.0+dfsg-1 -> v0.7.0.
debian_version() {
  local pkg ver
  pkg=$(dpkg-query -S "$SRC/$1" 2>/dev/null | head -1 | cut -d: -f1) || true
  [ -n "$pkg" ] || { echo "unpackaged"; return; }
  ver=$(dpkg-query -W -f '${Version}' "$pkg")
  ver=${ver#*:}; ver=${ver%-*}; ver=${ver%%+*}
  if [[ $ver =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then echo "v$ver"; else echo "v0.0.0-debian.$(tr -c "0-9A-Za-z.\n" . <<<"$ver")"; fi
}
# Packages of a module: directories with non-test Go files, no testdata.
packages() {
  (cd "$SRC" && find "$1" -name '*.go' ! -name '*_test.go' -printf '%h\n' | grep -v '/testdata\(/\|$\)' | sort -u)
}
go_directive() { sed -n 's/^go \([0-9.]*\).*/\1/p' "$SRC/$1/go.mod" 2>/dev/null | head -1; }

rm -rf "$HERE/vendor"
mkdir -p "$HERE/vendor"
{
  for m in $DIRECT $INDIRECT; do
    [ -d "$SRC/$m" ] || { echo "vendor-debian.sh: $SRC/$m missing (see the apt-get line at the top)" >&2; exit 1; }
    have=$(debian_version "$m")
    annotations=()
    if [[ " $DIRECT " == *" $m "* ]]; then
      want=$(required "$m")
      if [ "$want" != "$have" ]; then
        echo "vendor-debian.sh: go.mod requires $m $want, Debian has $have: change go.mod to match" >&2
        exit 1
      fi
      annotations+=(explicit)
    fi
    # Each vendored module is compiled at its own language version.
    gv=$(go_directive "$m")
    [ -n "$gv" ] && annotations+=("go $gv")
    echo "# $m $have"
    [ ${#annotations[@]} -gt 0 ] && (IFS=';'; echo "## ${annotations[*]}" | sed 's/;/; /g')
    packages "$m"
    mkdir -p "$HERE/vendor/$(dirname "$m")"
    ln -s "$SRC/$m" "$HERE/vendor/$m"
  done
} >"$HERE/vendor/modules.txt"
