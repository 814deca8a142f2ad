/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Running a tool under test as a subprocess (for the unit suites of
 * moexctl, moex-run and mkmodel): its exit status, stdout and stderr.
 */
#ifndef MOEX_TEST_RUNBIN_H
#define MOEX_TEST_RUNBIN_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct run {
	int status;		/* exit status, or -1 when it did not exit */
	char out[16384];
	char err[8192];
};

static void slurp(FILE *f, char *buf, size_t len)
{
	size_t n;

	rewind(f);
	n = fread(buf, 1, len - 1, f);
	buf[n] = '\0';
	fclose(f);
}

/* When set, the child runs it just before it execs the tool. */
static void (*run_bin_child_hook)(void);

/*
 * Run bin with args (NULL-terminated) and, when env is not NULL, that
 * "NAME=value" in its environment; 0 when it ran.
 */
static int run_bin(struct run *r, const char *bin, const char *env,
		   const char *const *args)
{
	char *argv[32];
	FILE *out = tmpfile(), *err = tmpfile();
	size_t i;
	pid_t pid;
	int st;

	memset(r, 0, sizeof(*r));
	r->status = -1;
	if (!out || !err) {
		if (out)
			fclose(out);
		if (err)
			fclose(err);
		return -1;
	}
	argv[0] = (char *)bin;
	for (i = 0; args[i] && i < 30; i++)
		argv[i + 1] = (char *)args[i];
	argv[i + 1] = NULL;
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		if (env)
			putenv((char *)env);
		dup2(fileno(out), STDOUT_FILENO);
		dup2(fileno(err), STDERR_FILENO);
		if (run_bin_child_hook)
			run_bin_child_hook();
		execv(bin, argv);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &st, 0) != pid) {
		fclose(out);
		fclose(err);
		return -1;
	}
	if (WIFEXITED(st))
		r->status = WEXITSTATUS(st);
	slurp(out, r->out, sizeof(r->out));
	slurp(err, r->err, sizeof(r->err));
	return 0;
}

#define RUN_BIN(r, bin, env, ...)					\
	do {								\
		const char *const args_[] = { __VA_ARGS__, NULL };	\
		CHECK_MSG(run_bin(r, bin, env, args_) == 0, "cannot run %s", \
			  bin);						\
		CHECK_MSG((r)->status != 127, "cannot exec %s", bin);	\
	} while (0)

#endif /* MOEX_TEST_RUNBIN_H */
