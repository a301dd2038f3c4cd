#!/usr/bin/env bash
# Prepares what `make test-vulkan` needs to build llama.cpp's Vulkan backend and run it on Mesa's
# lavapipe (software Vulkan): the loader, lavapipe and glslc from the distribution, and Vulkan
# headers new enough for llama.cpp (>= 1.3.275). Debian 12 ships 1.3.239, so there the headers
# come from Debian 13's libvulkan-dev package (headers only; the system loader is used) into
# target/vulkan-sdk. Prints the folder to use as VULKAN_SDK. Run as root (apt).
set -euo pipefail
cd "$(dirname "$0")/.."
SDK=$PWD/target/vulkan-sdk
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libvulkan1 mesa-vulkan-drivers glslc spirv-headers >/dev/null
have=$(dpkg-query -W -f='${Version}' libvulkan-dev 2>/dev/null || true)
if [[ -n "$have" ]] && dpkg --compare-versions "${have%%-*}" ge 1.3.275; then
  echo "/usr"
  exit 0
fi
if [[ ! -f "$SDK/include/vulkan/vulkan.h" ]]; then
  work=$(mktemp -d)
  mkdir -p "$work/lists"
  # Debian 13 from the mirror apt already uses.
  mirror=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' | awk '$2 !~ /-/ {print $1; exit}')
  echo "deb [trusted=yes] $mirror trixie main" > "$work/sources.list"
  apt_opts=(-o Dir::Etc::SourceList="$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
            -o Dir::State::Lists="$work/lists" -o APT::Get::List-Cleanup=0)
  apt-get "${apt_opts[@]}" update -qq >/dev/null
  (cd "$work" && apt-get "${apt_opts[@]}" download libvulkan-dev >/dev/null 2>&1)
  dpkg-deb -x "$work"/libvulkan-dev_*.deb "$work/x"
  mkdir -p "$SDK/include" "$SDK/lib"
  cp -r "$work/x/usr/include/." "$SDK/include/"
  ln -sf "$(ldconfig -p | awk '/libvulkan.so.1 /{print $NF; exit}')" "$SDK/lib/libvulkan.so"
  rm -rf "$work"
fi
echo "$SDK"
