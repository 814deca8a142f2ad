// SPDX-License-Identifier: GPL-2.0
/*
 * moex uring_cmd: every command of uapi/linux/moex.h as an io_uring
 * passthrough command (IORING_OP_URING_CMD on /dev/moexN, cmd_op = the ioctl
 * number, struct moex_uring_cmd in the command area of a 128-byte SQE).
 *
 * The command area is copied once into a local struct and only the copy is
 * checked and used: the SQE stays writable by user space. The payload then
 * runs through moex_cmd_run(), the ioctl's own dispatcher, so both paths
 * check the same things and return the same errnos. Output goes to the CQE
 * (res: the new handle of REGION_PIN, the fd of REGION_EXPORT) and, where
 * the submitter asks for it, to user memory at moex_uring_cmd.out_addr:
 * other SQE fields (sqe->addr) cannot be used, because io_uring copies only
 * the command area when it defers a request (io_uring_cmd_prep_async()).
 *
 * Every command completes during submission, except COPY on an engine that
 * completes later (DMA): it returns -EIOCBQUEUED and the engine's
 * completion, from IRQ or worker context, defers io_uring_cmd_done() to the
 * submitting task with io_uring_cmd_complete_in_task(). A COPY in flight
 * holds its regions and the device (struct moex_copy_op in copy.c), and
 * io_uring holds the file and the request until io_uring_cmd_done(). There
 * is no cancel hook (6.1 has none): the engines finish or fail every
 * request (the edu engine, a test device, 4 KiB at a time, each chunk
 * within seconds or -ETIMEDOUT, so a request's time grows with its
 * length: about 20 KiB/s under TCG), and io_uring waits for them when the
 * ring or the process goes away, so every command is completed exactly
 * once and nothing is freed under it.
 *
 * Kernel API differences are settled by driver/probe.sh at build time
 * (moex_probe.h), not by version numbers.
 */
#include <linux/errno.h>
#include <linux/fs.h>
#include <linux/ioctl.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/uio.h>

#include "moex.h"
#include "moex_probe.h"

#ifdef MOEX_HAVE_IO_URING_CMD_H
#include <linux/io_uring/cmd.h>
#else
#include <linux/io_uring.h>
#endif

/**
 * struct moex_uring_pdu - what a COPY in flight keeps in io_uring_cmd.pdu.
 * @op: the copy, whose reference the engine's completion handed over.
 * @res: the copy's result.
 * Both are stored by the engine's completion before it queues the task
 * work that reads them.
 */
struct moex_uring_pdu {
	struct moex_copy_op *op;
	int res;
};

static struct moex_uring_pdu *moex_uring_pdu(struct io_uring_cmd *cmd)
{
	BUILD_BUG_ON(sizeof(struct moex_uring_pdu) > sizeof(cmd->pdu));
	return (struct moex_uring_pdu *)cmd->pdu;
}

static_assert(sizeof(union moex_uring_area) == sizeof(struct moex_uring_cmd));
static_assert(sizeof(struct moex_info) % sizeof(u64) == 0);
static_assert(sizeof(struct moex_region_pin) % sizeof(u64) == 0);
static_assert(sizeof(struct moex_region_unpin) % sizeof(u64) == 0);
static_assert(sizeof(struct moex_region_info) % sizeof(u64) == 0);
static_assert(sizeof(struct moex_region_export) % sizeof(u64) == 0);
static_assert(sizeof(struct moex_copy) % sizeof(u64) == 0);
static_assert(sizeof(struct moex_nop) % sizeof(u64) == 0);

/* The SQE's command area (io_uring_sqe_cmd() since 6.6, cmd->cmd before). */
static const u64 *moex_uring_area(struct io_uring_cmd *cmd)
{
#ifdef MOEX_HAVE_SQE_CMD
	return io_uring_sqe_cmd(cmd->sqe);
#else
	return cmd->cmd;
#endif
}

static void moex_uring_done(struct io_uring_cmd *cmd, int res,
			    unsigned int issue_flags)
{
#ifdef MOEX_HAVE_CMD_DONE_ISSUE_FLAGS
	io_uring_cmd_done(cmd, res, 0, issue_flags);
#else
	io_uring_cmd_done(cmd, res, 0);
#endif
}

static int moex_uring_import_fixed(u64 ubuf, u64 len, int rw,
				   struct iov_iter *iter,
				   struct io_uring_cmd *cmd,
				   unsigned int issue_flags)
{
#ifdef MOEX_HAVE_IMPORT_FIXED_ISSUE_FLAGS
	return io_uring_cmd_import_fixed(ubuf, len, rw, iter, cmd, issue_flags);
#else
	return io_uring_cmd_import_fixed(ubuf, len, rw, iter, cmd);
#endif
}

/*
 * Task work of a COPY that went async, in process context: release the
 * copy (its regions) first, then post the CQE, so user space that reaps it
 * and unpins finds nothing pinned on the copy's behalf.
 */
static void moex_uring_copy_finish(struct io_uring_cmd *cmd,
				   unsigned int issue_flags)
{
	struct moex_uring_pdu *pdu = moex_uring_pdu(cmd);

	moex_copy_op_put(pdu->op);
	moex_uring_done(cmd, pdu->res, issue_flags);
}

#if defined(MOEX_HAVE_TW_ISSUE_FLAGS)
static void moex_uring_copy_tw(struct io_uring_cmd *cmd,
			       unsigned int issue_flags)
{
	moex_uring_copy_finish(cmd, issue_flags);
}
#elif defined(MOEX_HAVE_TW_NO_FLAGS)
static void moex_uring_copy_tw(struct io_uring_cmd *cmd)
{
	moex_uring_copy_finish(cmd, 0);
}
#else
#error "moex: unknown io_uring_cmd_complete_in_task() callback type (driver/probe.sh)"
#endif

/* The engine finished a COPY that returned -EIOCBQUEUED (any context). */
static void moex_uring_copy_notify(void *cookie, struct moex_copy_op *op,
				   int err)
{
	struct io_uring_cmd *cmd = cookie;

	moex_uring_pdu(cmd)->op = op;
	moex_uring_pdu(cmd)->res = err;
	io_uring_cmd_complete_in_task(cmd, moex_uring_copy_tw);
}

static int moex_uring_copy(struct io_uring_cmd *cmd, struct moex_file *mf,
			   const struct moex_copy *arg,
			   unsigned int issue_flags)
{
	bool fixed = cmd->flags & IORING_URING_CMD_FIXED;
	bool src_fixed = arg->flags & MOEX_COPY_SRC_FIXED;
	struct iov_iter iter;
	int ret;

	ret = moex_copy_check(arg, MOEX_COPY_FLAGS_ALL);
	if (ret)
		return ret;
	/* a fixed side in the payload if and only if the SQE names a buffer */
	if (fixed != !!(arg->flags & MOEX_COPY_FLAGS_ALL))
		return -EINVAL;
	if (!fixed)
		return moex_copy_async(mf, arg, moex_uring_copy_notify, cmd);

	/* -EFAULT when the range is not inside the registered buffer */
	ret = moex_uring_import_fixed(src_fixed ? arg->src_offset :
						  arg->dst_offset,
				      arg->length, src_fixed ? WRITE : READ,
				      &iter, cmd, issue_flags);
	if (ret)
		return ret;
	return moex_copy_fixed(mf, arg, &iter);
}

/* moex_cmd_run()'s reply: copy the output to out_addr, if there is one. */
static int moex_uring_reply(void *ctx, const void *payload, size_t size)
{
	u64 out = *(u64 *)ctx;

	if (!out)
		return 0;
	return copy_to_user(u64_to_user_ptr(out), payload, size) ? -EFAULT : 0;
}

/**
 * moex_uring_decode() - copy and check an SQE's command area.
 * @sqe_words: the SQE's command area, shared with user space.
 * @nr: the command (cmd_op).
 * @sqe128: whether the SQE is a 128-byte one (IO_URING_F_SQE128).
 * @a: set to the local copy of the command area.
 *
 * Reads the shared SQE once, a word at a time (no memcpy: this is the hot
 * path of every command); only the local copy is used afterwards.
 *
 * Return: 0; -EINVAL for a 64-byte SQE (its command area has 16 bytes, so
 * nothing is read), -ENOTTY for an unknown command, -EINVAL when a byte
 * after the payload struct is not zero or out_addr is set for a command
 * without output.
 */
MOEX_STATIC_UNLESS_KUNIT int moex_uring_decode(const u64 *sqe_words,
					       unsigned int nr, bool sqe128,
					       union moex_uring_area *a)
{
	unsigned int i;
	u64 stray = 0;
	size_t size;

	if (!sqe128)
		return -EINVAL;
	if (!moex_cmd_known(nr))
		return -ENOTTY;

	for (i = 0; i < ARRAY_SIZE(a->words); i++)
		a->words[i] = READ_ONCE(sqe_words[i]);
	size = _IOC_SIZE(nr);	/* a multiple of 8 (moex_uring_area) */
	for (i = size / sizeof(u64); i < ARRAY_SIZE(a->area.payload); i++)
		stray |= a->words[i];
	if (stray)
		return -EINVAL;
	if (a->area.out_addr && !(_IOC_DIR(nr) & _IOC_READ))
		return -EINVAL;
	return 0;
}

/**
 * moex_uring_cmd() - file_operations.uring_cmd of /dev/moexN.
 * @cmd: the command; cmd_op is a MOEX_IOCTL_* number.
 * @issue_flags: IO_URING_F_* flags of this issue.
 *
 * Checks, in this order: a 128-byte SQE (-EINVAL), a known command
 * (-ENOTTY), zero bytes after the payload struct and no out_addr for a
 * command without output (-EINVAL), a registered buffer only for COPY
 * (-EINVAL), a writable out_addr (-EFAULT); then the command's own checks,
 * as for the ioctl.
 *
 * Return: the CQE's res, 0 or a negative errno; -EAGAIN to be issued again
 * from io_uring's worker threads; or -EIOCBQUEUED for a COPY in flight and
 * for a positive res (the new handle of REGION_PIN, the fd of
 * REGION_EXPORT), which was posted with io_uring_cmd_done() already.
 */
int moex_uring_cmd(struct io_uring_cmd *cmd, unsigned int issue_flags)
{
	struct moex_file *mf = cmd->file->private_data;
	unsigned int nr = cmd->cmd_op;
	union moex_uring_area a;
	size_t size;
	int ret;

	/* a 64-byte SQE has 16 bytes of command area: never read past them */
	ret = moex_uring_decode(moex_uring_area(cmd), nr,
				issue_flags & IO_URING_F_SQE128, &a);
	if (ret)
		return ret;
	size = _IOC_SIZE(nr);

	if (nr == MOEX_IOCTL_COPY)
		return moex_uring_copy(cmd, mf, &a.p.copy, issue_flags);
	if (cmd->flags & IORING_URING_CMD_FIXED)
		return -EINVAL;
	/* pinning may take long: let io_uring's worker threads do it */
	if (nr == MOEX_IOCTL_REGION_PIN && issue_flags & IO_URING_F_NONBLOCK)
		return -EAGAIN;
	if (a.area.out_addr &&
	    clear_user(u64_to_user_ptr(a.area.out_addr), size))
		return -EFAULT;

	ret = moex_cmd_run(mf, nr, &a.p, moex_uring_reply, &a.area.out_addr);
	if (ret)
		return ret;
	if (nr == MOEX_IOCTL_REGION_PIN)
		ret = a.p.pin.handle;	/* 1 to INT_MAX (region.c) */
	else if (nr == MOEX_IOCTL_REGION_EXPORT)
		ret = a.p.exp.fd;
	else
		return 0;
	/*
	 * A positive result is posted here: 6.1's io_uring treats a positive
	 * return as an error inline and never completes it from io-wq.
	 */
	moex_uring_done(cmd, ret, issue_flags);
	return -EIOCBQUEUED;
}
