# Monkey Troop - top-level entry points.
#
#   make          build build/troop (and the test tools)
#   make test     install missing Debian packages, build, run ctest
#   make test-asan  the same tests built with ASan+UBSan (build-asan/)
#   make test-tsan  the same tests built with ThreadSanitizer (build-tsan/)
#   make demo     build troop and the engine simulator only, run a whole troop
#                 on this machine (DEMO_FLAGS: options for 'troop demo')
#   make bench    benchmarks, side by side with baselines, as ratios
#   make soak     the long-running soak test (label "slow")
#   make fuzz     libFuzzer harnesses (clang), run for FUZZ_SECONDS each
#   make install  troop, troop(1), completions, systemd units, example
#                 configuration, the engine simulator for 'troop demo' (in
#                 PREFIX/lib/monkey-troop) under DESTDIR/PREFIX (default
#                 /usr/local);
#                 make uninstall removes them
#   make deb      a Debian package, monkey-troop_<version>_<arch>.deb, in
#                 $(BUILD)/deb/
#   make test-fresh  the README's commands and the .deb in fresh Debian 12
#                 roots (debootstrap; root or sudo)
#   make fuzz-long  a campaign: FUZZ_RUNS executions per harness (default 10
#                 million; FUZZ_ONLY=name limits it), corpora minimised after
BUILD ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
CTEST_FLAGS ?= --output-on-failure
FUZZ_SECONDS ?= 30
FUZZ_RUNS ?= 10000000
FUZZ_ONLY ?=
DEMO_FLAGS ?=

PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man/man1
UNITDIR ?= $(PREFIX)/lib/systemd/system
USERUNITDIR ?= $(PREFIX)/lib/systemd/user
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/site-functions
EXAMPLEDIR ?= $(PREFIX)/share/doc/monkey-troop/examples
# the engine simulator, for 'troop demo' (it looks in BINDIR/../lib/monkey-troop)
LIBDIR ?= $(PREFIX)/lib/monkey-troop
GEN = $(BUILD)/generated-install

.PHONY: all deps configure test test-asan test-tsan fuzz-build fuzz-long demo bench soak fuzz \
	clean troop-bin \
	install-files install uninstall deb test-fresh

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
	cd $(ASAN_BUILD) && ctest $(CTEST_FLAGS) -j$(JOBS) -LE 'slow|netns'

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

demo:
	@scripts/make-demo.sh $(BUILD) $(JOBS) -- $(DEMO_FLAGS)

bench:
	@scripts/install-deps.sh bench
	@$(MAKE) --no-print-directory all
	bench/run.sh $(BUILD)

soak: deps configure
	cmake --build $(BUILD) -j$(JOBS)
	cd $(BUILD) && ctest $(CTEST_FLAGS) -L slow

# -O1 (with the sanitizers and asserts of a Debug build): the harnesses run
# about twice as many inputs a second as at -O0.
fuzz-build:
	@scripts/install-deps.sh all
	@test -f build-fuzz/CMakeCache.txt || CC=clang cmake -S . -B build-fuzz \
	  -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS_DEBUG="-g -O1" -DTROOP_FUZZ=ON
	cmake --build build-fuzz -j$(JOBS)

# Each harness runs FUZZ_RUNS inputs on a scratch copy of its corpus; the
# new inputs are then merged (minimised) into fuzz/corpus/<name>/, which
# ctest replays.  Reports one line per harness: executions, time, corpus.
fuzz-long: fuzz-build
	@set -e; for f in build-fuzz/fuzz/fuzz_*; do \
	  n=$$(basename $$f | sed 's/^fuzz_//'); \
	  if [ -n "$(FUZZ_ONLY)" ] && ! echo " $(FUZZ_ONLY) " | grep -q " $$n "; then continue; fi; \
	  c=fuzz/corpus/$$n; w=build-fuzz/work-$$n; mkdir -p $$c; rm -rf $$w; mkdir -p $$w; \
	  t0=$$(date +%s); \
	  $$f -runs=$(FUZZ_RUNS) -print_final_stats=1 -close_fd_mask=3 $$w $$c \
	    > build-fuzz/$$n.log 2>&1 || { echo "fuzz-long: $$n FOUND A FAILURE:"; tail -40 build-fuzz/$$n.log; exit 1; }; \
	  $$f -merge=1 $$c $$w > build-fuzz/$$n.merge.log 2>&1; \
	  echo "fuzz-long: $$n $$(grep -m1 stat::number_of_executed_units build-fuzz/$$n.log | awk '{print $$2}') executions in $$(( $$(date +%s) - t0 )) s, corpus $$(ls $$c | wc -l) files"; \
	done

fuzz: fuzz-build
	for f in build-fuzz/fuzz/fuzz_*; do \
	  c=fuzz/corpus/$$(basename $$f | sed 's/^fuzz_//'); mkdir -p $$c; \
	  $$f -max_total_time=$(FUZZ_SECONDS) $$c || exit 1; done

# troop alone, then what is made from its --help texts: the man page,
# completions, example environment files, and the units with BINDIR.
troop-bin: configure
	cmake --build $(BUILD) -j$(JOBS) --target troop engine-sim

install-files: troop-bin
	@mkdir -p $(GEN)
	scripts/gen-man.sh $(BUILD)/troop > $(GEN)/troop.1
	scripts/gen-completions.sh $(BUILD)/troop bash > $(GEN)/troop.bash
	scripts/gen-completions.sh $(BUILD)/troop zsh > $(GEN)/_troop
	scripts/gen-env-example.sh $(BUILD)/troop coordinator > $(GEN)/coordinator.env
	scripts/gen-env-example.sh $(BUILD)/troop worker > $(GEN)/worker.env
	for u in troop-coordinator troop-worker troop-up; do \
	  sed 's|/usr/local/bin/troop|$(BINDIR)/troop|g' deploy/$$u.service > $(GEN)/$$u.service; \
	done

install: install-files
	install -Dm755 $(BUILD)/troop $(DESTDIR)$(BINDIR)/troop
	install -Dm755 $(BUILD)/engine-sim $(DESTDIR)$(LIBDIR)/engine-sim
	install -Dm644 $(GEN)/troop.1 $(DESTDIR)$(MANDIR)/troop.1
	install -Dm644 $(GEN)/troop.bash $(DESTDIR)$(BASHCOMPDIR)/troop
	install -Dm644 $(GEN)/_troop $(DESTDIR)$(ZSHCOMPDIR)/_troop
	install -Dm644 $(GEN)/troop-coordinator.service $(DESTDIR)$(UNITDIR)/troop-coordinator.service
	install -Dm644 $(GEN)/troop-worker.service $(DESTDIR)$(UNITDIR)/troop-worker.service
	install -Dm644 $(GEN)/troop-up.service $(DESTDIR)$(USERUNITDIR)/troop-up.service
	install -Dm644 $(GEN)/coordinator.env $(DESTDIR)$(EXAMPLEDIR)/coordinator.env
	install -Dm644 $(GEN)/worker.env $(DESTDIR)$(EXAMPLEDIR)/worker.env

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/troop $(DESTDIR)$(LIBDIR)/engine-sim $(DESTDIR)$(MANDIR)/troop.1 \
	  $(DESTDIR)$(BASHCOMPDIR)/troop $(DESTDIR)$(ZSHCOMPDIR)/_troop \
	  $(DESTDIR)$(UNITDIR)/troop-coordinator.service \
	  $(DESTDIR)$(UNITDIR)/troop-worker.service \
	  $(DESTDIR)$(USERUNITDIR)/troop-up.service \
	  $(DESTDIR)$(EXAMPLEDIR)/coordinator.env $(DESTDIR)$(EXAMPLEDIR)/worker.env
	-rmdir $(DESTDIR)$(EXAMPLEDIR) $(DESTDIR)$(PREFIX)/share/doc/monkey-troop \
	  $(DESTDIR)$(LIBDIR) 2>/dev/null

# The package is built from a copy of the tree (tracked and untracked,
# not ignored files) so that dpkg-buildpackage's outputs, which go to the
# parent directory, stay in $(BUILD)/deb.
deb:
	@scripts/install-deps.sh deb
	rm -rf $(BUILD)/deb
	mkdir -p $(BUILD)/deb/src
	git ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar -xf - -C $(BUILD)/deb/src
	cd $(BUILD)/deb/src && dpkg-buildpackage -us -uc -b -j$(JOBS) >../build.log 2>&1 || \
	  { tail -40 ../build.log; echo "make deb: failed; see $(BUILD)/deb/build.log"; exit 1; }
	@ls $(BUILD)/deb/*.deb

# The README's two commands, and the .deb, in fresh Debian 12 roots
# (debootstrap; needs root or sudo, and network access).
test-fresh:
	@scripts/install-deps.sh fresh
	@BUILD=$(BUILD) scripts/test-fresh.sh all

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) build-fuzz
