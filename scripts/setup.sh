#!/usr/bin/env bash
# Installs what nanolab needs on Debian/Ubuntu (as root) or prints the exact apt line (otherwise).
# Usage: scripts/setup.sh [--test]   (--test adds what the test suite needs: Xvfb, xdotool, strace,
# the Python venv target/py-openai with the official openai client for the serve tests, and
# target/py-fixtures with torch, transformers and peft for the architecture fixture tests)
set -euo pipefail

pkgs=(cmake libclang-dev pkg-config python3-pip
      libx11-6 libxcursor1 libxrandr2 libxi6 libxkbcommon-x11-0 libgl1 libegl1 libgl1-mesa-dri)
if [[ "${1:-}" == "--test" ]]; then
  pkgs+=(xvfb xauth python3-xlib xdotool strace python3-venv)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    echo "setup: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: missing system packages. Run:" >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi
if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; install Rust with rustup (https://rustup.rs) and retry" >&2
  exit 1
fi
if [[ "${1:-}" == "--test" ]]; then
  # The serve tests talk to `nanolab serve` with the official openai client, pinned in
  # tests/serve/requirements.txt.
  # venv VENV REQUIREMENTS WHAT [PIP_FLAGS...]: made once, remade when the pins change.
  venv() {
    local venv=$1 req=$2 what=$3
    shift 3
    if [[ ! -x "$venv/bin/python" ]] || ! cmp -s "$req" "$venv/requirements.txt"; then
      echo "setup: making $venv ($what)"
      rm -rf "$venv"
      mkdir -p target
      python3 -m venv "$venv"
      "$venv/bin/pip" install -q --disable-pip-version-check "$@" -r "$req"
      cp "$req" "$venv/requirements.txt"
    fi
  }
  venv target/py-openai tests/serve/requirements.txt "openai client for the serve tests"
  # torch, transformers and peft for the architecture fixtures (tests/arch_fixtures.rs); PyPI's
  # Linux torch brings NVIDIA's runtime libraries (about 3 GiB), which it loads even on the CPU.
  venv target/py-fixtures tests/fixtures/archs/requirements.txt "torch, transformers, peft for the fixture tests"
fi
