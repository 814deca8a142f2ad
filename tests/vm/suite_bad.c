// SPDX-License-Identifier: GPL-2.0
/*
 * moex-vm-suite: the bad-input table. Each row is one test: it builds a
 * fixture (an open file with regions A and B, read-only region R, a handle
 * that was unpinned, a spare buffer and a few special address ranges),
 * takes a valid payload for the command, breaks exactly one thing in it,
 * and checks the errno, that the ten stats files moved exactly as the row
 * says (for argument-validation failures: not at all), that VmPin did not
 * change (unless the row says so) and that no file descriptor appeared.
 *
 * The fixture is built through libmoex; the rows stay raw ioctls because
 * they send malformed structs (reserved fields, unknown flags, bad sizes)
 * that libmoex never builds, and some (unaligned or empty pins, zero-length
 * copies) libmoex would refuse itself before the driver sees them.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <termios.h>
#include <unistd.h>

#include "suite.h"

#define RLEN (64 * KIB)

union payload {
	struct moex_info info;
	struct moex_region_pin pin;
	struct moex_region_unpin unpin;
	struct moex_region_info rinfo;
	struct moex_region_export exp;
	struct moex_copy copy;
	struct moex_nop nop;
	unsigned char raw[256];
};

struct fixture {
	struct moex_device *md;	/* the regions are set up through libmoex */
	int fd;			/* its descriptor: the rows are raw ioctls */
	uint32_t ha, hb, hr, gone;
	char *spare;		/* RLEN bytes, RW, never pinned */
	char *hole;		/* RLEN bytes, not mapped */
	char *half;		/* 2 * RLEN: first half mapped, second not */
	char *rdonly;		/* RLEN bytes, PROT_READ, touched */
	char *none;		/* RLEN bytes, PROT_NONE */
};

enum argkind { ARG_OK, ARG_NULL, ARG_UNMAPPED, ARG_RDONLY };

struct bad_row {
	int dev;		/* 0, or 1 for the edu device */
	unsigned long req;
	void (*mut)(union payload *p, const struct fixture *fx);
	enum argkind arg;
	int want;
	struct stats delta;
	long long vmpin_kb;	/* expected VmPin change */
};

static int fixture_make(int dev, struct fixture *fx)
{
	char *a, *b, *r, *g;

	memset(fx, 0, sizeof(*fx));
	OPEN_DEV(dev, &fx->md);
	fx->fd = mdev_fd(fx->md);
	a = buf_4k(RLEN);
	b = buf_4k(RLEN);
	r = buf_4k(RLEN);
	g = buf_4k(RLEN);
	fx->spare = buf_4k(RLEN);
	fx->half = buf_4k(2 * RLEN);
	fx->rdonly = buf_4k(RLEN);
	fx->none = xmap(RLEN, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	fx->hole = buf_hole(RLEN);
	CHECK(a && b && r && g && fx->spare && fx->half && fx->rdonly &&
	      fx->none && fx->hole, "mmap: %s", strerror(errno));
	CHECK(!munmap(fx->half + RLEN, RLEN), "munmap: %s", strerror(errno));
	CHECK(!mprotect(fx->rdonly, RLEN, PROT_READ), "mprotect: %s",
	      strerror(errno));
	CHECK_OK(do_pin(fx->md, a, RLEN, 0, &fx->ha));
	CHECK_OK(do_pin(fx->md, b, RLEN, 0, &fx->hb));
	CHECK_OK(do_pin(fx->md, r, RLEN, MOEX_PIN_READONLY, &fx->hr));
	CHECK_OK(do_pin(fx->md, g, RLEN, 0, &fx->gone));
	CHECK_OK(do_unpin(fx->md, fx->gone));
	return T_PASS;
}

/* A valid payload for @req on the fixture. */
static void payload_base(unsigned long req, union payload *p,
			 const struct fixture *fx)
{
	memset(p, 0, sizeof(*p));
	switch (req) {
	case MOEX_IOCTL_REGION_PIN:
		p->pin.addr = (uintptr_t)fx->spare;
		p->pin.length = RLEN;
		break;
	case MOEX_IOCTL_REGION_UNPIN:
		p->unpin.handle = fx->ha;
		break;
	case MOEX_IOCTL_REGION_INFO:
		p->rinfo.handle = fx->ha;
		break;
	case MOEX_IOCTL_REGION_EXPORT:
		p->exp.handle = fx->ha;
		break;
	case MOEX_IOCTL_COPY:
		p->copy.src_handle = fx->ha;
		p->copy.dst_handle = fx->hb;
		p->copy.length = 4096;
		break;
	default:
		break;
	}
}

/* The lowest free descriptor number. */
static int lowest_free_fd(void)
{
	int fd = dup(0);

	if (fd < 0)
		fd = dup(1);
	if (fd >= 0)
		close(fd);
	return fd;
}

static int t_bad(const struct test *t)
{
	const struct bad_row *row = t->arg;
	struct fixture fx;
	union payload p;
	struct stats s0;
	long long vm0, vm1;
	void *argp = &p;
	int dev = 0, err, fd0, fd1;

	if (row->dev) {
		if (g_edu < 0)
			return skip("no edu device (/dev/moexN with engine edu)");
		dev = g_edu;
	}
	TRY(fixture_make(dev, &fx));
	payload_base(row->req, &p, &fx);
	if (row->mut)
		row->mut(&p, &fx);
	switch (row->arg) {
	case ARG_NULL:
		argp = NULL;
		break;
	case ARG_UNMAPPED:
		argp = fx.hole;
		break;
	case ARG_RDONLY:
		/* the payload is readable, but the reply cannot be written */
		MAP(argp, buf_4k(g_page));
		memcpy(argp, &p, sizeof(p) < g_page ? sizeof(p) : g_page);
		CHECK(!mprotect(argp, g_page, PROT_READ), "mprotect: %s",
		      strerror(errno));
		break;
	default:
		break;
	}

	STATS(dev, &s0);
	vm0 = vmpin_kb(0);
	fd0 = lowest_free_fd();
	err = xioctl(fx.fd, row->req, argp);
	fd1 = lowest_free_fd();
	vm1 = vmpin_kb(0);
	CHECK(err == row->want, "ioctl on /dev/moex%d: expected %s, got %s",
	      dev, errname(row->want), errname(err));
	EXPECT_STATS(dev, &s0, &row->delta);
	CHECK(vm1 - vm0 == row->vmpin_kb,
	      "VmPin moved by %+lld kB, expected %+lld kB", vm1 - vm0,
	      row->vmpin_kb);
	CHECK(fd0 == fd1, "a file descriptor appeared (lowest free fd %d, was %d)",
	      fd1, fd0);
	/* a pin that failed, or was taken back, leaves no page pinned */
	if (row->req == MOEX_IOCTL_REGION_PIN) {
		EXPECT_PINNED(fx.spare, RLEN, 0, " of the spare buffer");
		EXPECT_PINNED(fx.half, RLEN, 0, " of the half-mapped buffer");
		EXPECT_PINNED(fx.rdonly, RLEN, 0, " of the read-only buffer");
	}
	return T_PASS;
}

/* ---- mutators: each breaks exactly one thing ---------------------------------- */
#define MUT(name, stmt)							\
	static void name(union payload *p, const struct fixture *fx)	\
	{								\
		(void)p;						\
		(void)fx;						\
		stmt;							\
	}

MUT(m_none, (void)0)
MUT(m_info_flags, p->info.flags = 1)
MUT(m_info_flags_high, p->info.flags = 0x80000000u)
MUT(m_info_res0, p->info.reserved[0] = 1)
MUT(m_info_res1, p->info.reserved[1] = 1ULL << 63)

MUT(m_pin_len0, p->pin.length = 0)
MUT(m_pin_addr_unaligned, p->pin.addr += 8)
MUT(m_pin_addr_half_page, p->pin.addr += 2048)
MUT(m_pin_len_unaligned, p->pin.length = RLEN - 1)
MUT(m_pin_len_plus1, p->pin.length = RLEN + 1)
MUT(m_pin_wrap, { p->pin.addr = 0xfffffffffffff000ULL; p->pin.length = 0x2000; })
MUT(m_pin_wrap_huge, p->pin.length = 0 - (uint64_t)4096 * 16)
/* 2^32 pages of 4 KiB from 1 GiB: 16 TiB, inside user space */
MUT(m_pin_e2big, { p->pin.addr = 1ULL << 30; p->pin.length = 1ULL << 44; })
MUT(m_pin_kernel, { p->pin.addr = 0xffff888000000000ULL; p->pin.length = 4096; })
MUT(m_pin_flag1, p->pin.flags = 1u << 1)
MUT(m_pin_flag31, p->pin.flags = MOEX_PIN_READONLY | 1u << 31)
MUT(m_pin_res0, p->pin.reserved[0] = 1)
MUT(m_pin_res1, p->pin.reserved[1] = 1)
MUT(m_pin_hole, p->pin.addr = (uintptr_t)fx->hole)
MUT(m_pin_half, { p->pin.addr = (uintptr_t)fx->half; p->pin.length = 2 * RLEN; })
MUT(m_pin_rdonly, p->pin.addr = (uintptr_t)fx->rdonly)
MUT(m_pin_none, p->pin.addr = (uintptr_t)fx->none)
MUT(m_pin_none_ro, { p->pin.addr = (uintptr_t)fx->none; p->pin.flags = MOEX_PIN_READONLY; })

/* A range that ends past the last user address (4- or 5-level paging). */
static void m_pin_beyond(union payload *p, const struct fixture *fx)
{
	static int la57 = -1;
	char buf[65536];

	(void)fx;
	if (la57 < 0) {
		int n = read_file("/proc/cpuinfo", buf, sizeof(buf));

		la57 = n > 0 && strstr(buf, " la57") ? 1 : 0;
	}
	if (la57) {
		p->pin.addr = (1ULL << 56) - 4096;
		p->pin.length = 2 * 4096;
	} else {
		p->pin.addr = (1ULL << 47) - 2 * 4096;
		p->pin.length = 3 * 4096;
	}
}

MUT(m_unpin_unknown, p->unpin.handle = 0x7ffff000)
MUT(m_unpin_zero, p->unpin.handle = 0)
MUT(m_unpin_gone, p->unpin.handle = fx->gone)
MUT(m_unpin_flags, p->unpin.flags = 1)
MUT(m_unpin_res0, p->unpin.reserved[0] = 1)
MUT(m_unpin_res1, p->unpin.reserved[1] = 1)

MUT(m_rinfo_unknown, p->rinfo.handle = 0x7ffff000)
MUT(m_rinfo_zero, p->rinfo.handle = 0)
MUT(m_rinfo_gone, p->rinfo.handle = fx->gone)
MUT(m_rinfo_flags, p->rinfo.flags = 1)
MUT(m_rinfo_res0, p->rinfo.reserved[0] = 1)
MUT(m_rinfo_res1, p->rinfo.reserved[1] = 1)

MUT(m_exp_unknown, p->exp.handle = 0x7ffff000)
MUT(m_exp_zero, p->exp.handle = 0)
MUT(m_exp_gone, p->exp.handle = fx->gone)
MUT(m_exp_flags, p->exp.flags = 1)
MUT(m_exp_pad, p->exp.pad = 1)
MUT(m_exp_res0, p->exp.reserved[0] = 1)
MUT(m_exp_res1, p->exp.reserved[1] = 1)

MUT(m_copy_src_unknown, p->copy.src_handle = 0x7ffff000)
MUT(m_copy_dst_unknown, p->copy.dst_handle = 0x7ffff000)
MUT(m_copy_src_zero, p->copy.src_handle = 0)
MUT(m_copy_dst_gone, p->copy.dst_handle = fx->gone)
MUT(m_copy_len0, p->copy.length = 0)
MUT(m_copy_src_range, { p->copy.src_offset = RLEN - 4095; p->copy.length = 4096; })
MUT(m_copy_dst_range, { p->copy.dst_offset = RLEN - 1; p->copy.length = 2; })
MUT(m_copy_src_past, { p->copy.src_offset = RLEN; p->copy.length = 1; })
MUT(m_copy_dst_past, { p->copy.dst_offset = RLEN + 4096; p->copy.length = 1; })
MUT(m_copy_len_big, p->copy.length = RLEN + 1)
MUT(m_copy_src_wrap, { p->copy.src_offset = UINT64_MAX - 100; p->copy.length = 200; })
MUT(m_copy_dst_wrap, { p->copy.dst_offset = UINT64_MAX - 100; p->copy.length = 200; })
MUT(m_copy_len_wrap, { p->copy.src_offset = 100; p->copy.length = UINT64_MAX; })
MUT(m_copy_ro_dst, p->copy.dst_handle = fx->hr)
MUT(m_copy_overlap, { p->copy.dst_handle = fx->ha; p->copy.src_offset = 0;
		      p->copy.dst_offset = 2048; p->copy.length = 4096; })
MUT(m_copy_overlap_same, { p->copy.dst_handle = fx->ha; p->copy.length = 1; })
MUT(m_copy_overlap_tail, { p->copy.dst_handle = fx->ha; p->copy.src_offset = 8191;
			   p->copy.dst_offset = 4096; p->copy.length = 4096; })
MUT(m_copy_flags, p->copy.flags = 1u << 7)
MUT(m_copy_flag_src_fixed, p->copy.flags = 1)
MUT(m_copy_flag_dst_fixed, p->copy.flags = 2)
MUT(m_copy_pad, p->copy.pad = 1)
MUT(m_copy_res0, p->copy.reserved[0] = 1)
MUT(m_copy_res1, p->copy.reserved[1] = 1)

MUT(m_nop_flags, p->nop.flags = 1)
MUT(m_nop_pad, p->nop.pad = 1)
MUT(m_nop_res, p->nop.reserved[1] = 1)

#define D0		{ .v = { 0 } }
#define DPF		{ .v = { [ST_PIN_FAILURES] = 1 } }

#define ROW(nm, dv, rq, mt, ak, wt, dl, vk)				\
	{ nm, t_bad,							\
	  &(const struct bad_row){ dv, rq, mt, ak, wt, dl, vk }, TF_MODULE }
#define BAD(nm, rq, mt, wt)	ROW(nm, 0, rq, mt, ARG_OK, wt, D0, 0)

#define I_INFO	MOEX_IOCTL_INFO
#define I_PIN	MOEX_IOCTL_REGION_PIN
#define I_UNPIN	MOEX_IOCTL_REGION_UNPIN
#define I_RINFO	MOEX_IOCTL_REGION_INFO
#define I_EXP	MOEX_IOCTL_REGION_EXPORT
#define I_COPY	MOEX_IOCTL_COPY
#define I_NOP	MOEX_IOCTL_NOP

const struct test suite_bad_tests[] = {
	BAD("bad_info_flags", I_INFO, m_info_flags, EINVAL),
	BAD("bad_info_flags_high", I_INFO, m_info_flags_high, EINVAL),
	BAD("bad_info_reserved0", I_INFO, m_info_res0, EINVAL),
	BAD("bad_info_reserved1", I_INFO, m_info_res1, EINVAL),
	ROW("bad_info_null_arg", 0, I_INFO, m_none, ARG_NULL, EFAULT, D0, 0),
	ROW("bad_info_readonly_arg", 0, I_INFO, m_none, ARG_RDONLY, EFAULT, D0, 0),

	BAD("bad_pin_length_0", I_PIN, m_pin_len0, EINVAL),
	BAD("bad_pin_addr_unaligned", I_PIN, m_pin_addr_unaligned, EINVAL),
	BAD("bad_pin_addr_half_page", I_PIN, m_pin_addr_half_page, EINVAL),
	BAD("bad_pin_length_unaligned", I_PIN, m_pin_len_unaligned, EINVAL),
	BAD("bad_pin_length_page_plus_1", I_PIN, m_pin_len_plus1, EINVAL),
	BAD("bad_pin_wrap", I_PIN, m_pin_wrap, EOVERFLOW),
	BAD("bad_pin_wrap_length", I_PIN, m_pin_wrap_huge, EOVERFLOW),
	BAD("bad_pin_2_to_32_pages", I_PIN, m_pin_e2big, E2BIG),
	BAD("bad_pin_kernel_address", I_PIN, m_pin_kernel, EFAULT),
	BAD("bad_pin_beyond_user_space", I_PIN, m_pin_beyond, EFAULT),
	BAD("bad_pin_unknown_flag", I_PIN, m_pin_flag1, EINVAL),
	BAD("bad_pin_unknown_flag31", I_PIN, m_pin_flag31, EINVAL),
	BAD("bad_pin_reserved0", I_PIN, m_pin_res0, EINVAL),
	BAD("bad_pin_reserved1", I_PIN, m_pin_res1, EINVAL),
	ROW("bad_pin_null_arg", 0, I_PIN, m_none, ARG_NULL, EFAULT, D0, 0),
	ROW("bad_pin_unmapped_arg", 0, I_PIN, m_none, ARG_UNMAPPED, EFAULT, D0, 0),
	/* pins, then cannot write the handle back: must leave no trace */
	ROW("bad_pin_readonly_arg", 0, I_PIN, m_none, ARG_RDONLY, EFAULT, D0, 0),
	/* failures found while pinning: pin_failures moves, nothing else */
	ROW("pin_fail_unmapped", 0, I_PIN, m_pin_hole, ARG_OK, EFAULT, DPF, 0),
	ROW("pin_fail_partly_unmapped", 0, I_PIN, m_pin_half, ARG_OK, EFAULT, DPF, 0),
	ROW("pin_fail_prot_read", 0, I_PIN, m_pin_rdonly, ARG_OK, EFAULT, DPF, 0),
	ROW("pin_fail_prot_none", 0, I_PIN, m_pin_none, ARG_OK, EFAULT, DPF, 0),
	ROW("pin_fail_prot_none_readonly", 0, I_PIN, m_pin_none_ro, ARG_OK, EFAULT, DPF, 0),

	BAD("bad_unpin_unknown_handle", I_UNPIN, m_unpin_unknown, ENOENT),
	BAD("bad_unpin_handle_0", I_UNPIN, m_unpin_zero, ENOENT),
	BAD("bad_unpin_unpinned_handle", I_UNPIN, m_unpin_gone, ENOENT),
	BAD("bad_unpin_flags", I_UNPIN, m_unpin_flags, EINVAL),
	BAD("bad_unpin_reserved0", I_UNPIN, m_unpin_res0, EINVAL),
	BAD("bad_unpin_reserved1", I_UNPIN, m_unpin_res1, EINVAL),
	ROW("bad_unpin_null_arg", 0, I_UNPIN, m_none, ARG_NULL, EFAULT, D0, 0),

	BAD("bad_region_info_unknown_handle", I_RINFO, m_rinfo_unknown, ENOENT),
	BAD("bad_region_info_handle_0", I_RINFO, m_rinfo_zero, ENOENT),
	BAD("bad_region_info_unpinned_handle", I_RINFO, m_rinfo_gone, ENOENT),
	BAD("bad_region_info_flags", I_RINFO, m_rinfo_flags, EINVAL),
	BAD("bad_region_info_reserved0", I_RINFO, m_rinfo_res0, EINVAL),
	BAD("bad_region_info_reserved1", I_RINFO, m_rinfo_res1, EINVAL),
	ROW("bad_region_info_null_arg", 0, I_RINFO, m_none, ARG_NULL, EFAULT, D0, 0),
	ROW("bad_region_info_readonly_arg", 0, I_RINFO, m_none, ARG_RDONLY, EFAULT, D0, 0),

	BAD("bad_export_unknown_handle", I_EXP, m_exp_unknown, ENOENT),
	BAD("bad_export_handle_0", I_EXP, m_exp_zero, ENOENT),
	BAD("bad_export_unpinned_handle", I_EXP, m_exp_gone, ENOENT),
	BAD("bad_export_flags", I_EXP, m_exp_flags, EINVAL),
	BAD("bad_export_pad", I_EXP, m_exp_pad, EINVAL),
	BAD("bad_export_reserved0", I_EXP, m_exp_res0, EINVAL),
	BAD("bad_export_reserved1", I_EXP, m_exp_res1, EINVAL),
	ROW("bad_export_null_arg", 0, I_EXP, m_none, ARG_NULL, EFAULT, D0, 0),
	ROW("bad_export_readonly_arg", 0, I_EXP, m_none, ARG_RDONLY, EFAULT, D0, 0),

	BAD("bad_copy_unknown_src", I_COPY, m_copy_src_unknown, ENOENT),
	BAD("bad_copy_unknown_dst", I_COPY, m_copy_dst_unknown, ENOENT),
	BAD("bad_copy_src_handle_0", I_COPY, m_copy_src_zero, ENOENT),
	BAD("bad_copy_unpinned_dst", I_COPY, m_copy_dst_gone, ENOENT),
	BAD("bad_copy_length_0", I_COPY, m_copy_len0, EINVAL),
	BAD("bad_copy_src_range", I_COPY, m_copy_src_range, ERANGE),
	BAD("bad_copy_dst_range", I_COPY, m_copy_dst_range, ERANGE),
	BAD("bad_copy_src_offset_at_end", I_COPY, m_copy_src_past, ERANGE),
	BAD("bad_copy_dst_offset_past_end", I_COPY, m_copy_dst_past, ERANGE),
	BAD("bad_copy_length_past_end", I_COPY, m_copy_len_big, ERANGE),
	BAD("bad_copy_src_wrap", I_COPY, m_copy_src_wrap, ERANGE),
	BAD("bad_copy_dst_wrap", I_COPY, m_copy_dst_wrap, ERANGE),
	BAD("bad_copy_length_wrap", I_COPY, m_copy_len_wrap, ERANGE),
	BAD("bad_copy_readonly_dst", I_COPY, m_copy_ro_dst, EACCES),
	BAD("bad_copy_overlap", I_COPY, m_copy_overlap, EINVAL),
	BAD("bad_copy_overlap_same_range", I_COPY, m_copy_overlap_same, EINVAL),
	BAD("bad_copy_overlap_one_byte", I_COPY, m_copy_overlap_tail, EINVAL),
	BAD("bad_copy_flags", I_COPY, m_copy_flags, EINVAL),
	BAD("bad_copy_flag_src_fixed", I_COPY, m_copy_flag_src_fixed, EINVAL),
	BAD("bad_copy_flag_dst_fixed", I_COPY, m_copy_flag_dst_fixed, EINVAL),
	BAD("bad_copy_pad", I_COPY, m_copy_pad, EINVAL),
	BAD("bad_copy_reserved0", I_COPY, m_copy_res0, EINVAL),
	BAD("bad_copy_reserved1", I_COPY, m_copy_res1, EINVAL),
	ROW("bad_copy_null_arg", 0, I_COPY, m_none, ARG_NULL, EFAULT, D0, 0),
	ROW("bad_copy_unmapped_arg", 0, I_COPY, m_none, ARG_UNMAPPED, EFAULT, D0, 0),

	BAD("bad_nop_flags", I_NOP, m_nop_flags, EINVAL),
	BAD("bad_nop_pad", I_NOP, m_nop_pad, EINVAL),
	BAD("bad_nop_reserved", I_NOP, m_nop_res, EINVAL),

	BAD("bad_ioctl_unknown_nr", _IOWR(MOEX_IOC_MAGIC, 0x3f, struct moex_info),
	    m_none, ENOTTY),
	BAD("bad_ioctl_wrong_size", _IOWR(MOEX_IOC_MAGIC, 0x00, struct moex_copy),
	    m_none, ENOTTY),
	BAD("bad_ioctl_wrong_direction", _IOR(MOEX_IOC_MAGIC, 0x01,
					      struct moex_region_pin),
	    m_none, ENOTTY),
	BAD("bad_ioctl_other_magic", _IOWR('x', 0x00, struct moex_info), m_none,
	    ENOTTY),
	BAD("bad_ioctl_tty", TCGETS, m_none, ENOTTY),

	/* the same checks on the edu device */
	ROW("bad_edu_pin_unknown_flag", 1, I_PIN, m_pin_flag1, ARG_OK, EINVAL, D0, 0),
	ROW("bad_edu_pin_wrap", 1, I_PIN, m_pin_wrap, ARG_OK, EOVERFLOW, D0, 0),
	ROW("pin_fail_edu_unmapped", 1, I_PIN, m_pin_hole, ARG_OK, EFAULT, DPF, 0),
	ROW("bad_edu_copy_src_range", 1, I_COPY, m_copy_src_range, ARG_OK, ERANGE, D0, 0),
	ROW("bad_edu_copy_readonly_dst", 1, I_COPY, m_copy_ro_dst, ARG_OK, EACCES, D0, 0),
	ROW("bad_edu_copy_overlap", 1, I_COPY, m_copy_overlap, ARG_OK, EINVAL, D0, 0),
	ROW("bad_edu_export_unknown_handle", 1, I_EXP, m_exp_unknown, ARG_OK, ENOENT, D0, 0),
	{ NULL, NULL, NULL, 0 }
};
