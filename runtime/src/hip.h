/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * hip.h - the GPU plugin's functions as libmoex holds them (hip.c loads
 * them), for the "hip" backend (moe_hip.c).
 */
#ifndef LIBMOEX_HIP_H
#define LIBMOEX_HIP_H

#include "moek_hip.h"

/* name, then the member it fills: one line per function of moek_hip.h */
#define MOEX_HIP_SYMS(X)						\
	X(moek_hip_abi, abi)						\
	X(moek_hip_device_count, device_count)				\
	X(moek_hip_device_name, device_name)				\
	X(moek_hip_create, create)					\
	X(moek_hip_destroy, destroy)					\
	X(moek_hip_use, use)						\
	X(moek_hip_set_tile, set_tile)					\
	X(moek_hip_set_gemv, set_gemv)					\
	X(moek_hip_malloc, malloc)					\
	X(moek_hip_free, free)						\
	X(moek_hip_upload, upload)					\
	X(moek_hip_download, download)					\
	X(moek_hip_memset, memset)					\
	X(moek_hip_host_register, host_register)			\
	X(moek_hip_host_unregister, host_unregister)			\
	X(moek_hip_sync, sync)						\
	X(moek_hip_stream_create, stream_create)			\
	X(moek_hip_stream_destroy, stream_destroy)			\
	X(moek_hip_event_create, event_create)				\
	X(moek_hip_event_destroy, event_destroy)			\
	X(moek_hip_event_record, event_record)				\
	X(moek_hip_event_sync, event_sync)				\
	X(moek_hip_event_elapsed, event_elapsed)			\
	X(moek_hip_stream_wait, stream_wait)				\
	X(moek_hip_copy_async, copy_async)				\
	X(moek_hip_host_alloc, host_alloc)				\
	X(moek_hip_host_free, host_free)				\
	X(moek_hip_host_alias, host_alias)				\
	X(moek_hip_mem_info, mem_info)					\
	X(moek_hip_host_fn_launch, host_fn_launch)			\
	X(moek_hip_copy_kernel, copy_kernel)				\
	X(moek_hip_layer, layer)					\
	X(moek_hip_layer_counts, layer_counts)				\
	X(moek_hip_route, route)					\
	X(moek_hip_align, align)					\
	X(moek_hip_act_quant, act_quant)				\
	X(moek_hip_ffn, ffn)

/* One pointer per function, typed as moek_hip.h declares it. */
struct moex_hip_api {
#define MOEX_HIP_MEMBER(name, member) __typeof__(name) *member;
	MOEX_HIP_SYMS(MOEX_HIP_MEMBER)
#undef MOEX_HIP_MEMBER
};

/*
 * The plugin, loaded on the first call: NULL and *err (-ENODEV: no
 * plugin, a plugin of another ABI, or no GPU) when it cannot be used;
 * moex__hip_why() then says which, for a message.
 */
const struct moex_hip_api *moex__hip(int *err);
const char *moex__hip_why(void);

/* *dev: the GPU $MOEX_GPU names (0 where unset); -EINVAL (not a number)
 * or -ENODEV (no such GPU), said on standard error. */
int moex__hip_pick_gpu(const struct moex_hip_api *api, int *dev);

#endif /* LIBMOEX_HIP_H */
