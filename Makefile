# The two commands: `make run` (build, fetch the demo model once, open the window) and
# `make test` (build, fetch, run every check). Both install missing apt packages as root.
DEMO_MODEL := models/SmolLM2-135M-Instruct.Q4_1.gguf
BIN := target/release/nanolab

.PHONY: run test build demo-model screenshots test-vulkan

run: build demo-model
	$(BIN) --model $(DEMO_MODEL)

build:
	scripts/setup.sh
	cargo build --release

demo-model: build
	$(BIN) models fetch smollm2-135m-instruct

test:
	scripts/setup.sh --test
	cargo build --release --all-targets
	$(BIN) models fetch smollm2-135m-instruct
	cargo fmt --check
	cargo clippy --release --all-targets -- -D warnings
	scripts/llama-tools.sh >/dev/null
	NANOLAB_TEST_MODEL=$(CURDIR)/$(DEMO_MODEL) NANOLAB_LLAMA_PERPLEXITY=$(CURDIR)/target/llama-tools/build/bin/llama-perplexity \
	  cargo test --release -- --test-threads=1

screenshots: build demo-model
	scripts/screenshots.sh

# GPU offload path on Mesa's lavapipe (software Vulkan): builds the Vulkan variant (its own
# target dir, so the CPU build stays) and runs the engine tests with every layer offloaded (the
# default when a GPU backend exists; GGML_VK_VISIBLE_DEVICES=0 because ggml skips CPU-type Vulkan
# devices such as lavapipe unless named). scripts/vulkan-sdk.sh installs lavapipe and glslc and, on
# Debian 12 whose Vulkan headers are too old, takes newer headers from Debian 13's package.
test-vulkan: demo-model
	VULKAN_SDK=$$(scripts/vulkan-sdk.sh) CARGO_TARGET_DIR=target/vulkan cargo build --release --features vulkan --all-targets
	GGML_VK_VISIBLE_DEVICES=0 target/vulkan/release/nanolab devices
	GGML_VK_VISIBLE_DEVICES=0 VULKAN_SDK=$$(scripts/vulkan-sdk.sh) CARGO_TARGET_DIR=target/vulkan NANOLAB_TEST_MODEL=$(CURDIR)/$(DEMO_MODEL) \
	  cargo test --release --features vulkan --test engine -- --test-threads=1
