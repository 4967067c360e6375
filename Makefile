# Thin wrapper: the README's commands. CMake does the real work.
BUILD_DIR ?= build
BUILD_TYPE ?= Release
JOBS ?= $(shell nproc)
HTTP_PORT ?= 8080
DATA_DIR ?= ./data

.PHONY: all deps build run test bench clean

all: build

deps:
	@scripts/install-deps.sh

# After deps (order-only), also under make -j: configuring needs the packages.
$(BUILD_DIR)/build.ninja: | deps
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)

build: deps $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR) -j $(JOBS)

# Starts one node on http://127.0.0.1:$(HTTP_PORT) with RocksDB in $(DATA_DIR).
# The admin password comes from SHOP_ADMIN_PASSWORD, else it is generated and printed once.
run: build
	$(BUILD_DIR)/cluster/shopd --http-port $(HTTP_PORT) --data-dir $(DATA_DIR) --sandbox-payments

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j 2 --timeout 600

clean:
	rm -rf $(BUILD_DIR)
