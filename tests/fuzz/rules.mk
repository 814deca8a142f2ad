# SPDX-License-Identifier: GPL-2.0
#
# Fuzzing the model readers (runtime/src/json.c, safetensors.c) with
# libFuzzer: $(BUILD)/fuzz/fuzz-model is tests/fuzz/fuzz_model.c and the
# two parsers built with clang -fsanitize=fuzzer,address,undefined.
#
#   make fuzz          build it
#   make fuzz-check    run it for FUZZ_SECONDS (default 60) seeded with the
#                      kept corpus tests/corpus/safetensors; prints
#                      "fuzz: 1 passed, 0 failed", or a FAIL line naming
#                      the crashing input and "fuzz: 0 passed, 1 failed";
#                      "fuzz: 0 passed, 0 failed, 1 skipped" where clang
#                      or its libFuzzer runtime is missing (Debian: clang,
#                      libclang-rt-14-dev).
#
# The inputs it finds are kept in $(BUILD)/fuzz/corpus between runs (the
# kept corpus is only read); a crashing input lands in
# $(BUILD)/fuzz/artifacts/: add it to tests/corpus/make-corpus.sh once
# fixed. Reproduce one with `$(BUILD)/fuzz/fuzz-model FILE`.

FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_DIR := $(BUILD)/fuzz
FUZZ_MODEL := $(FUZZ_DIR)/fuzz-model
FUZZ_SEEDS := tests/corpus/safetensors
FUZZ_SAN := -fsanitize=fuzzer,address,undefined
FUZZ_CFLAGS := -O1 -g $(FUZZ_SAN) -fno-sanitize-recover=all \
	-fno-omit-frame-pointer
FUZZ_SRCS := tests/fuzz/fuzz_model.c runtime/src/json.c \
	runtime/src/safetensors.c runtime/src/util.c

$(FUZZ_MODEL): $(FUZZ_SRCS) runtime/src/model.h runtime/include/moex.h
	@mkdir -p $(@D)
	$(FUZZ_CC) $(MOEX_CFLAGS) $(FUZZ_CFLAGS) -o $@ $(FUZZ_SRCS)

.PHONY: fuzz fuzz-check
fuzz: $(FUZZ_MODEL)

fuzz-check:
	@mkdir -p $(FUZZ_DIR); \
	if ! printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n)\n{ return (void)d, (void)n, 0; }\n' | \
		$(FUZZ_CC) -x c $(FUZZ_SAN) -o $(FUZZ_DIR)/probe - >/dev/null 2>&1; then \
		echo "SKIP fuzz-model: no $(FUZZ_CC) with libFuzzer (Debian: apt-get install clang libclang-rt-14-dev)"; \
		echo "fuzz: 0 passed, 0 failed, 1 skipped"; \
		exit 0; \
	fi; \
	rm -f $(FUZZ_DIR)/probe; \
	if ! $(MAKE) -s -f $(firstword $(MAKEFILE_LIST)) $(FUZZ_MODEL) >$(FUZZ_DIR)/build.log 2>&1; then \
		cat $(FUZZ_DIR)/build.log; \
		echo "FAIL fuzz-model: the build failed"; \
		echo "fuzz: 0 passed, 1 failed"; \
		exit 1; \
	fi; \
	rm -rf $(FUZZ_DIR)/artifacts; \
	mkdir -p $(FUZZ_DIR)/corpus $(FUZZ_DIR)/artifacts; \
	$(FUZZ_MODEL) -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
		-rss_limit_mb=2048 -max_len=16384 -print_final_stats=1 \
		-artifact_prefix=$(FUZZ_DIR)/artifacts/ \
		$(FUZZ_DIR)/corpus $(FUZZ_SEEDS) >$(FUZZ_DIR)/fuzz.log 2>&1; \
	rc=$$?; \
	runs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $(FUZZ_DIR)/fuzz.log); \
	crash=$$(ls $(FUZZ_DIR)/artifacts/* 2>/dev/null | head -n 1); \
	if [ $$rc -eq 0 ] && [ -z "$$crash" ]; then \
		echo "ok fuzz-model: $${runs:-?} inputs in $(FUZZ_SECONDS) s, no crash"; \
		echo "fuzz: 1 passed, 0 failed"; \
	else \
		tail -n 60 $(FUZZ_DIR)/fuzz.log; \
		echo "FAIL fuzz-model: exit status $$rc, crashing input $${crash:-none} (log: $(FUZZ_DIR)/fuzz.log)"; \
		echo "fuzz: 0 passed, 1 failed"; \
		exit 1; \
	fi
