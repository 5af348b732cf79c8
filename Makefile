# paratwin: `make demo` and `make test` do everything on a fresh Debian 12 machine (see README.md).
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= 2
WERROR     ?= ON
CMAKE_ARGS ?=

.PHONY: all deps configure build demo test sanitize-test layering clean

all: build

deps:
	@scripts/install-deps.sh

configure: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DPARATWIN_WERROR=$(WERROR) $(CMAKE_ARGS)

build: configure
	cmake --build $(BUILD) -j $(JOBS)

# The main job on the built-in default: DeepSeek-V3.2, one 128K-token prefill per attention-DP replica, on 4 H200
# nodes; attention CP inside each node (dp 4 × cp 8 = --tp-size 32), DeepEP all-to-all over all 32 GPUs.
DEMO_FLAGS = --model deepseek-v3.2 --cluster h200-sxm --nodes 4 --tp-size 32 --dp-size 4 --enable-dp-attention \
             --attn-cp-size 8 --ep-size 32 --prompt-len 131072 --batch 4
demo: build
	$(BUILD)/cli/paratwin layout --tp-size 8 --attn-cp-size 8 --cluster h200-sxm --nodes 1 | head -20
	$(BUILD)/cli/paratwin sim $(DEMO_FLAGS) --trace $(BUILD)/demo-trace.json

# Every test this machine can run (GPU tests carry the ctest label `gpu` and are excluded).
test: build layering
	cd $(BUILD) && ctest -LE gpu --output-on-failure -j $(JOBS)

# The CPU tests again under AddressSanitizer + UndefinedBehaviorSanitizer (host code only, no CUDA).
sanitize-test: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DPARATWIN_WERROR=$(WERROR) -DPARATWIN_SANITIZE=ON \
	      -DPARATWIN_ENABLE_CUDA=OFF -DPARATWIN_BUILD_BENCH=OFF $(CMAKE_ARGS)
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 ctest -LE gpu --output-on-failure -j $(JOBS)

layering:
	@scripts/check-layering.sh
	@scripts/check-test-names.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
