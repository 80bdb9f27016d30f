# The README's commands. `make run` and `make test` install missing Debian
# packages first (scripts/bootstrap).

JOBS ?= $(shell nproc 2>/dev/null || echo 2)
BUILD ?= build
TEST_BUILD ?= build-test
PREFIX ?= /usr/local

.PHONY: all build run test bench install format check-format fuzz clean bootstrap

all: build

bootstrap:
	@scripts/bootstrap

build:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: bootstrap
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) --target herd
	./$(BUILD)/herd demo

# The test build is the CI build: warnings are errors, and the whole suite
# runs under AddressSanitizer + UndefinedBehaviorSanitizer with leak checks.
test: bootstrap check-format
	@cmake -S . -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=Debug -DHERD_WERROR=ON -DHERD_SANITIZE=ON >/dev/null
	@cmake --build $(TEST_BUILD) -j $(JOBS)
	@scripts/fuzz-smoke $(TEST_BUILD)
	./$(TEST_BUILD)/run-tests

bench: bootstrap build
	@bench/run $(BUILD)

install: build
	cmake --install $(BUILD)

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

check-format:
	@bad=$$(for f in $$(git ls-files '*.c' '*.h'); do \
	  clang-format --dry-run -Werror $$f >/dev/null 2>&1 || echo $$f; done); \
	if [ -n "$$bad" ]; then echo "not clang-formatted (run 'make format'):"; \
	  echo "$$bad"; exit 1; fi

fuzz: bootstrap
	@scripts/fuzz-smoke $(TEST_BUILD) 60

clean:
	rm -rf $(BUILD) $(TEST_BUILD) build-fuzz
