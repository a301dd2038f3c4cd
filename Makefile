# The two commands: `make run` (build, fetch the demo model once, open the window) and
# `make test` (build, fetch, run every check). Both install missing apt packages as root.
DEMO_MODEL := models/SmolLM2-135M-Instruct.Q4_1.gguf
BIN := target/release/nanolab

.PHONY: run test build dist demo-model screenshots test-vulkan test-cuda

run: build demo-model
	$(BIN) --model $(DEMO_MODEL)

build:
	scripts/setup.sh
	cargo build --release

# The portable variant for shipping to other machines: no target-cpu=native, so llama.cpp is
# built with GGML_NATIVE=OFF (its baseline kernels plus runtime-detected ones), in target/dist.
# An empty RUSTFLAGS overrides .cargo/config.toml's native flags.
dist:
	scripts/setup.sh
	RUSTFLAGS= cargo build --release --target-dir target/dist
	@echo "portable build: target/dist/release/nanolab"

demo-model: build
	$(BIN) models fetch smollm2-135m-instruct

test:
	scripts/setup.sh --test
	cargo build --release --all-targets
	$(BIN) models fetch smollm2-135m-instruct
	cargo fmt --check
	scripts/check-layers.sh
	cargo clippy --release --all-targets -- -D warnings
	scripts/llama-tools.sh llama-server >/dev/null
	cargo test --release

screenshots: build demo-model
	scripts/screenshots.sh

# GPU offload path on Mesa's lavapipe (software Vulkan): builds the Vulkan variant in target/vulkan
# and runs the engine and LoRA tests with every layer offloaded (scripts/test-vulkan.sh says how,
# including the Debian 13 root it uses where the host's Mesa is older than 24).
test-vulkan: demo-model
	scripts/test-vulkan.sh

# CUDA variant in target/cuda with a toolkit from CUDA_PATH or NVIDIA's CUDA 13 wheels on PyPI; runs
# the engine and LoRA tests offloaded on an NVIDIA GPU, on the CPU where there is none
# (scripts/test-cuda.sh says how it is linked and for which GPU architectures).
test-cuda: demo-model
	scripts/test-cuda.sh
