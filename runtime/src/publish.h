/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * publish.h - the per-expert load a running model publishes (libmoex
 * internal; moexctl reads the same format).
 *
 * While a model is open, libmoex keeps one small file per model in
 * $MOEX_STATS_DIR (default /dev/shm; empty: publishing is off), named
 * moex-<pid>-<n>.load, mapped MAP_SHARED and updated in place after every
 * layer run: a fixed header, then for each loaded layer six u64 (tokens
 * run, layer runs, and the GPU expert cache's hits, misses, streamed and
 * filled bytes: zero on the CPU) and one u64 per routed expert (tokens
 * routed to it).
 * The counters only grow; they are written with relaxed atomic adds, so a
 * reader sees each 64-bit value whole. The file appears fully written
 * (made under a temporary name, then renamed) and is removed when the
 * model is closed. The publisher holds flock(LOCK_EX) on it while the
 * model is open (a child it forks shares the lock until it execs); a file
 * that no process holds locked, or whose pid is not alive, was left by a
 * process that died, and readers skip it. Byte order: the host's.
 *
 *   off  size
 *     0     8  magic "MOEXLOAD"
 *     8     4  version (MOEX_LOAD_VERSION)
 *    12     4  header size in bytes (MOEX_LOAD_HDR_SIZE): counters start here
 *    16     4  pid of the publisher
 *    20     4  first layer (the model's layer index of slot 0)
 *    24     4  layers
 *    28     4  routed experts per layer
 *    32     8  updates: layer runs published so far (all layers)
 *    40   216  model directory, NUL-terminated (truncated)
 *   256        layer slot i (i < layers), each (6 + experts) u64:
 *              tokens, runs, gpu_hits, gpu_misses, stream_bytes,
 *              fill_bytes, count[0..experts)
 *
 * Version 3 (libmoex 0.5) is version 2 with the publisher's lock; readers
 * take version 2 too, alive while its pid is. Version 2 (libmoex 0.4)
 * added the four GPU words; version 1 had none.
 */
#ifndef LIBMOEX_PUBLISH_H
#define LIBMOEX_PUBLISH_H

#include <stddef.h>
#include <stdint.h>

#define MOEX_LOAD_MAGIC		"MOEXLOAD"
#define MOEX_LOAD_VERSION	3u
#define MOEX_LOAD_VERSION_UNLOCKED	2u	/* the same without the lock */
#define MOEX_LOAD_HDR_SIZE	256u
#define MOEX_LOAD_MODEL_LEN	216u
#define MOEX_LOAD_DEFAULT_DIR	"/dev/shm"
/* A file name: MOEX_LOAD_PREFIX "<pid>-<n>" MOEX_LOAD_SUFFIX. */
#define MOEX_LOAD_PREFIX	"moex-"
#define MOEX_LOAD_SUFFIX	".load"
/* Bounds a reader enforces (and the publisher stays within). */
#define MOEX_LOAD_MAX_LAYERS	4096u
#define MOEX_LOAD_MAX_EXPERTS	65536u

struct moex_load_header {
	char magic[8];
	uint32_t version;
	uint32_t header_size;
	uint32_t pid;
	uint32_t first_layer;
	uint32_t layers;
	uint32_t experts;
	uint64_t updates;
	char model[MOEX_LOAD_MODEL_LEN];
};

_Static_assert(sizeof(struct moex_load_header) == MOEX_LOAD_HDR_SIZE,
	       "the load file's header is 256 bytes");

/* The words of a layer slot: its counters, then the per-expert counts. */
enum {
	MOEX_LOAD_TOKENS,
	MOEX_LOAD_RUNS,
	MOEX_LOAD_GPU_HITS,
	MOEX_LOAD_GPU_MISSES,
	MOEX_LOAD_STREAM_BYTES,
	MOEX_LOAD_FILL_BYTES,
	MOEX_LOAD_COUNTS,	/* count[0] */
};

/* u64 words per layer slot. */
#define MOEX_LOAD_SLOT_WORDS(experts) \
	((uint64_t)MOEX_LOAD_COUNTS + (uint64_t)(experts))

#ifdef LIBMOEX_INTERNAL_H	/* the library's side */

struct moex_pub;
struct moex_moe;

/*
 * Publish the load of a model (its directory, first layer, layers and
 * routed experts per layer). Best effort: *out is NULL when publishing is
 * off or the file cannot be made (a model runs the same either way).
 */
void moex__pub_open(const char *model, uint32_t first_layer, uint32_t layers,
		    uint32_t experts, struct moex_pub **out);

/* Layer slot i of p (NULL when p is NULL). */
uint64_t *moex__pub_slot(struct moex_pub *p, uint32_t i);

/* Unmap and remove the file; p may be NULL. */
void moex__pub_close(struct moex_pub *p);

/* Add one run of ntok tokens with counts[experts] to a layer slot. */
void moex__pub_add(uint64_t *slot, uint64_t *updates, uint32_t experts,
		   size_t ntok, const uint32_t *counts);

/* Set a layer slot's GPU expert-cache counters (running totals). */
void moex__pub_gpu(uint64_t *slot, uint64_t hits, uint64_t misses,
		   uint64_t stream_bytes, uint64_t fill_bytes);

/* The updates word of p (NULL when p is NULL). */
uint64_t *moex__pub_updates(struct moex_pub *p);

/*
 * moe.c: from now on, every moex_moe_run() of moe adds its counts to slot
 * (and bumps *updates); NULL stops it.
 */
int moex__moe_publish(struct moex_moe *moe, uint64_t *slot, uint64_t *updates);

#endif /* LIBMOEX_INTERNAL_H */

#endif /* LIBMOEX_PUBLISH_H */
