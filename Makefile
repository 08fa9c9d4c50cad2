# Monkey Troop - top-level entry points.
#
#   make          build build/troop (and the test tools)
#   make test     install missing Debian packages, build, run ctest
#   make test-asan  the same tests built with ASan+UBSan (build-asan/)
#   make test-tsan  the same tests built with ThreadSanitizer (build-tsan/)
#   make demo     run a whole troop on this machine
#   make bench    benchmarks, side by side with baselines, as ratios
#   make soak     the long-running soak test (label "slow")
#   make fuzz     libFuzzer harnesses (clang), run for FUZZ_SECONDS each
BUILD ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
CTEST_FLAGS ?= --output-on-failure
FUZZ_SECONDS ?= 30

.PHONY: all deps configure test test-asan test-tsan demo bench soak fuzz clean

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

# ThreadSanitizer: every process the tests start (coordinator, worker,
# troop up, the test programs) writes its reports to $(TSAN_BUILD)/tsan-reports;
# any report fails the run.  The proof-of-hardware suites compute their
# proofs in-process and run past their challenge deadlines under TSan's
# slowdown: they run in the other stages.
test-tsan: deps
	@test -f $(TSAN_BUILD)/CMakeCache.txt || cmake -S . -B $(TSAN_BUILD) \
	  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTROOP_TSAN=ON -DTROOP_WERROR=ON $(CMAKE_FLAGS)
	cmake --build $(TSAN_BUILD) -j$(JOBS)
	rm -rf $(TSAN_BUILD)/tsan-reports && mkdir -p $(TSAN_BUILD)/tsan-reports
	cd $(TSAN_BUILD) && ctest $(CTEST_FLAGS) -j$(JOBS) -LE 'slow|pg|netns|fuzz' \
	  -E 'test_poh$$|test_worker_poh'
	@if [ -n "$$(ls -A $(TSAN_BUILD)/tsan-reports)" ]; then \
	  echo "ThreadSanitizer reports:"; cat $(TSAN_BUILD)/tsan-reports/*; \
	  echo "test-tsan: $$(ls $(TSAN_BUILD)/tsan-reports | wc -l) process(es) reported races"; exit 1; fi

demo: configure
	cmake --build $(BUILD) -j$(JOBS)
	$(BUILD)/troop demo

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
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) build-fuzz
