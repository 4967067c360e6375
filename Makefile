# Thin wrapper: the README's commands. CMake does the real work.
BUILD_DIR ?= build
BUILD_TYPE ?= Release
JOBS ?= $(shell nproc)
# make run HTTP_PORT=9000 DATA_DIR=/tmp/shop: passed to shopd only when set (on make's
# command line or in the environment, where they win over SHOP_HTTP_PORT and SHOP_DATA_DIR);
# otherwise the SHOP_* variables, --config and shopd's defaults (8080, ./data) apply.
HTTP_PORT ?=
DATA_DIR ?=

.PHONY: all deps build run test test-sanitize bench clean

all: build

deps:
	@scripts/install-deps.sh

# After deps (order-only), also under make -j: configuring needs the packages.
$(BUILD_DIR)/build.ninja: | deps
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)

build: deps $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR) -j $(JOBS)

# Starts one node, by default on http://127.0.0.1:8080 with RocksDB in ./data. The admin
# password comes from SHOP_ADMIN_PASSWORD, else it is generated and printed once.
run: build
	$(BUILD_DIR)/cluster/shopd $(if $(HTTP_PORT),--http-port $(HTTP_PORT)) \
	  $(if $(DATA_DIR),--data-dir $(DATA_DIR)) --sandbox-payments

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j 2 --timeout 600

# Every test again, shopd included, under AddressSanitizer and UBSan (any
# finding fails the test). Its own build directory; slower, not in `make test`.
SANITIZE_DIR ?= build-sanitize
test-sanitize: deps
	cmake -S . -B $(SANITIZE_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSHOP_SANITIZE=ON
	cmake --build $(SANITIZE_DIR) -j $(JOBS)
	cd $(SANITIZE_DIR) && ASAN_OPTIONS=detect_leaks=0 \
	  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:suppressions=$(CURDIR)/tests/ubsan.supp \
	  ctest --output-on-failure -j 2 --timeout 1200

clean:
	rm -rf $(BUILD_DIR)
