# Monkey Troop - top-level entry points.
#
#   make          build build/troop (and the test tools)
#   make test     install missing Debian packages, build, run ctest
#   make test-asan  the same tests built with ASan+UBSan (build-asan/)
#   make demo     build troop and the engine simulator only, run a whole troop
#                 on this machine (DEMO_FLAGS: options for 'troop demo')
#   make bench    benchmarks, side by side with baselines, as ratios
#   make soak     the long-running soak test (label "slow")
#   make fuzz     libFuzzer harnesses (clang), run for FUZZ_SECONDS each
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
CTEST_FLAGS ?= --output-on-failure
FUZZ_SECONDS ?= 30
DEMO_FLAGS ?=

.PHONY: all deps configure test test-asan demo bench soak fuzz clean

all: configure
	cmake --build $(BUILD) -j$(JOBS)

deps-build:
	@scripts/install-deps.sh build

deps:
	@scripts/install-deps.sh test

configure:
	@test -f $(BUILD)/CMakeCache.txt || { scripts/install-deps.sh build && \
	  cmake -S . -B $(BUILD) -DTROOP_WERROR=ON $(CMAKE_FLAGS); }

test: deps configure
	cmake --build $(BUILD) -j$(JOBS)
	cd $(BUILD) && ctest $(CTEST_FLAGS) -j$(JOBS) -LE slow

test-asan: deps
	@test -f $(ASAN_BUILD)/CMakeCache.txt || cmake -S . -B $(ASAN_BUILD) \
	  -DCMAKE_BUILD_TYPE=Debug -DTROOP_SANITIZE=ON -DTROOP_WERROR=ON $(CMAKE_FLAGS)
	cmake --build $(ASAN_BUILD) -j$(JOBS)
	cd $(ASAN_BUILD) && ctest $(CTEST_FLAGS) -j$(JOBS) -LE 'slow|pg|netns'

demo:
	@scripts/make-demo.sh $(BUILD) $(JOBS) -- $(DEMO_FLAGS)

bench:
	@scripts/install-deps.sh bench
	@$(MAKE) --no-print-directory all
	bench/run.sh $(BUILD)

soak: deps configure
	cmake --build $(BUILD) -j$(JOBS)
	cd $(BUILD) && ctest $(CTEST_FLAGS) -L slow

fuzz:
	@scripts/install-deps.sh all
	@test -f build-fuzz/CMakeCache.txt || CC=clang cmake -S . -B build-fuzz \
	  -DCMAKE_BUILD_TYPE=Debug -DTROOP_FUZZ=ON
	cmake --build build-fuzz -j$(JOBS)
	for f in build-fuzz/fuzz/fuzz_*; do \
	  c=fuzz/corpus/$$(basename $$f | sed 's/^fuzz_//'); mkdir -p $$c; \
	  $$f -max_total_time=$(FUZZ_SECONDS) $$c || exit 1; done

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-fuzz
