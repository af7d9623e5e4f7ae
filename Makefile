# Thin wrapper over CMake. `make run` and `make test` do all the set-up.
#   make           release build into build/ (node: build/cadred)
#   make run       deps + build + start a node on the embedded PostgreSQL
#   make test      deps + ASan/UBSan build into build-test/ + every test (ctest)
#   make bench     deps + release build + every benchmark (bench/run-all)
#   make fuzz      libFuzzer harnesses (clang) into build-fuzz/; FUZZ_SECONDS=600
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
FUZZ_SECONDS ?= 60
CMAKE_FLAGS ?=

.PHONY: all deps build run test bench fuzz clean format tidy

all: build

deps:
	@./scripts/deps

build/CMakeCache.txt:
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)

build: deps build/CMakeCache.txt
	cmake --build build -j $(JOBS)

run: build
	./build/cadred $(ARGS)

build-test/CMakeCache.txt:
	cmake -S . -B build-test -DCMAKE_BUILD_TYPE=Debug -DCADRE_SANITIZE=ON $(CMAKE_FLAGS)

test: deps build-test/CMakeCache.txt
	cmake --build build-test -j $(JOBS)
	cd build-test && ctest --output-on-failure -j $(JOBS) --timeout 300

bench: build
	./bench/run-all build

build-fuzz/CMakeCache.txt:
	CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCADRE_FUZZ=ON $(CMAKE_FLAGS)

fuzz: deps build-fuzz/CMakeCache.txt
	cmake --build build-fuzz -j $(JOBS) --target fuzz_envelope
	mkdir -p build-fuzz/corpus
	./build-fuzz/fuzz_envelope -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -rss_limit_mb=512 \
	    build-fuzz/corpus tests/fuzz/seeds

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

tidy: build
	cppcheck --quiet --enable=warning,performance,portability --inline-suppr \
	    --suppress=missingIncludeSystem -I ipc -I engine -I db -I actors \
	    engine ipc db actors http

clean:
	rm -rf build build-test build-fuzz
