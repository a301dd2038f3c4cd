#!/usr/bin/env bash
# `make test-vulkan`: builds the Vulkan variant (its own target dir, so the CPU build stays) and runs
# the engine and LoRA tests with every layer offloaded to Mesa's lavapipe (software Vulkan).
#
# ggml skips CPU-type Vulkan devices such as lavapipe unless named, hence GGML_VK_VISIBLE_DEVICES=0.
# Debian 12's lavapipe (Mesa 22.3.6) corrupts its heap when llama.cpp re-reserves its scheduler
# after adapter swaps; Debian 13's (Mesa 25.0.7) runs the same tests clean (docs/performance.md;
# versions in between untested). So on Debian with a Mesa older than 25 the tests run inside a
# minimal Debian 13 root made once with debootstrap (about 600 MB in
# ~/.cache/nanolab/debian13-root) from the mirror apt already uses; the test binaries built here
# run there unchanged. Elsewhere they run on the host's Mesa. Run as root (apt, chroot, mounts).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
model=$repo/models/SmolLM2-135M-Instruct.Q4_1.gguf
export VULKAN_SDK
VULKAN_SDK=$(scripts/vulkan-sdk.sh)
export CARGO_TARGET_DIR=target/vulkan
cargo build --release --features vulkan --all-targets

mesa=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers)
run=(env)
if dpkg --compare-versions "$mesa" lt 25 && grep -q '^ID=debian' /etc/os-release; then
  root=${XDG_CACHE_HOME:-$HOME/.cache}/nanolab/debian13-root
  if [[ ! -f $root/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so ]]; then
    mirror=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' | awk '$2 !~ /-/ {print $1; exit}')
    echo "test-vulkan: Mesa $mesa is too old for adapter swaps on lavapipe; making a Debian 13 root in $root from $mirror"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    rm -rf "$root"
    debootstrap --variant=minbase --include=mesa-vulkan-drivers,libvulkan1,libgomp1 trixie "$root" "$mirror" >/dev/null
  fi
  mounts=()
  cleanup() {
    for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -R "${mounts[i]}" 2>/dev/null || true; done
  }
  trap cleanup EXIT
  # The repository appears at the same path inside, so the paths compiled into the tests hold.
  mkdir -p "$root$repo"
  mount --bind "$repo" "$root$repo" && mounts+=("$root$repo")
  mount -t proc proc "$root/proc" && mounts+=("$root/proc")
  mount --rbind /dev "$root/dev" && mounts+=("$root/dev")
  mount -t tmpfs tmpfs "$root/tmp" && mounts+=("$root/tmp")
  run=(chroot "$root" env HOME=/root)
  echo "test-vulkan: running on $(chroot "$root" dpkg-query -W -f='Mesa ${Version}' mesa-vulkan-drivers) in $root"
elif dpkg --compare-versions "$mesa" lt 25; then
  echo "test-vulkan: Mesa $mesa; the adapter tests may abort inside lavapipe before Mesa 25 (docs/performance.md)"
fi

run+=(GGML_VK_VISIBLE_DEVICES=0 NANOLAB_TEST_MODEL="$model")
devices=$("${run[@]}" "$repo/target/vulkan/release/nanolab" devices --json)
echo "$devices"
# The offload path is the point: with no Vulkan device the tests would pass on the CPU, unseen.
vulkan_devices=$(echo "$devices" | python3 -c 'import json,sys
print(sum(d["name"].startswith("Vulkan") or d["backend"].startswith("Vulkan") for d in json.load(sys.stdin)["devices"]))')
[[ $vulkan_devices -ge 1 ]] || { echo "test-vulkan: llama.cpp lists no Vulkan device; nothing would be offloaded" >&2; exit 1; }
for t in engine adapters; do
  bin=$(ls -t target/vulkan/release/deps/"$t"-* | grep -v '\.d$' | head -1)
  echo "test-vulkan: $t"
  "${run[@]}" "$repo/$bin" --test-threads=1
done
