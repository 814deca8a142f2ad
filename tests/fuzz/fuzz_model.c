// SPDX-License-Identifier: GPL-2.0
/*
 * fuzz_model: a libFuzzer target for the model readers. Each input is
 * given to the strict JSON parser as is, and to the safetensors header
 * reader as a whole file (through a memfd, so the reads are the real
 * pread(2) path), then everything they returned is walked and freed:
 * AddressSanitizer and UndefinedBehaviorSanitizer do the checking.
 *
 * Built by tests/fuzz/rules.mk with clang -fsanitize=fuzzer,address,undefined
 * and seeded with tests/corpus/safetensors.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../runtime/src/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int memfd = -1;

/* Touch every node, so that a bad pointer in the tree is found. */
static size_t walk(const struct moex_json *j, int depth)
{
	size_t n = 1, i;
	uint64_t u;
	double d;

	if (depth > 65)
		abort();	/* the parser promised 64 */
	switch (j->type) {
	case MOEX_JSON_STRING:
		if (strlen(j->str) != j->len)
			abort();	/* no NUL inside a string */
		break;
	case MOEX_JSON_NUMBER:
		(void)moex__json_u64(j, &u);
		(void)moex__json_double(j, &d);
		break;
	case MOEX_JSON_OBJECT:
		for (i = 0; i < j->len; i++) {
			if (moex__json_get(j, j->keys[i]) != &j->items[i])
				abort();	/* keys are unique */
		}
		/* fall through */
	case MOEX_JSON_ARRAY:
		for (i = 0; i < j->len; i++)
			n += walk(&j->items[i], depth + 1);
		break;
	default:
		break;
	}
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct moex_st_tensor *t = NULL;
	struct moex_json root;
	uint32_t n = 0, i;
	char err[256];
	int ret;

	ret = moex__json_parse((const char *)data, size, &root, err, sizeof(err));
	if (!ret) {
		walk(&root, 0);
		moex__json_free(&root);
	} else if (ret != -EINVAL && ret != -ENOMEM) {
		abort();
	}

	if (memfd < 0) {
		memfd = memfd_create("fuzz", MFD_CLOEXEC);
		if (memfd < 0)
			abort();
	}
	if (ftruncate(memfd, 0) ||
	    (size && pwrite(memfd, data, size, 0) != (ssize_t)size))
		abort();
	ret = moex__st_read_header(memfd, size, "fuzz", 3, &t, &n, err,
				   sizeof(err));
	if (ret && ret != -EINVAL && ret != -ENOMEM)
		abort();
	if (ret && n)
		abort();	/* a failed header appends nothing */
	for (i = 0; i < n; i++) {
		/* What the checks promise about every tensor read. */
		if (t[i].file != 3 || t[i].ndim > MOEX_ST_MAX_DIMS ||
		    t[i].offset < 8 || t[i].offset > size ||
		    t[i].nbytes > size - t[i].offset || !t[i].name[0])
			abort();
		free(t[i].name);
	}
	free(t);
	return 0;
}
