/*
 * subproc.c - spawn a helper program with posix_spawnp, read its stdout
 * under a deadline and a size limit, reap it.  See subproc.h.
 */
#include "subproc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "error.h"

extern char **environ;

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int remaining_ms(long long deadline)
{
	long long left = deadline - now_ms();

	if (left < 0)
		return 0;
	return left > 1000000 ? 1000000 : (int)left;
}

/* Kill (if still running) and reap the child; never leaves a zombie. */
static void kill_and_reap(pid_t pid)
{
	int st;

	kill(pid, SIGKILL);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
}

/* Wait for the child to exit until the deadline.  Returns 0 with *st set,
 * TROOP_ETIMEOUT (child killed) or TROOP_EIO. */
static int wait_until(pid_t pid, long long deadline, int *st)
{
	for (;;) {
		pid_t r = waitpid(pid, st, WNOHANG);

		if (r == pid)
			return 0;
		if (r < 0 && errno != EINTR)
			return TROOP_EIO;
		if (r == 0) {
			/* Stdout is closed, so the child is exiting; poll its
			 * exit briefly rather than blocking past the deadline. */
			if (remaining_ms(deadline) == 0) {
				kill_and_reap(pid);
				return TROOP_ETIMEOUT;
			}
			struct timespec nap = { 0, 2 * 1000 * 1000 };
			nanosleep(&nap, NULL);
		}
	}
}

int subproc_capture(char *out, size_t outlen, size_t *outn,
    const char *const argv[], int timeout_ms, int *exit_status)
{
	int fds[2] = { -1, -1 };
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	bool fa_ok = false, attr_ok = false;
	pid_t pid = -1;
	size_t n = 0;
	int rc = TROOP_EIO, st = 0;
	long long deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);

	if (outn)
		*outn = 0;
	if (exit_status)
		*exit_status = -1;
	if (!out || outlen == 0 || !argv || !argv[0])
		return troop_error_set(TROOP_EINVAL, "subproc: no program or no output buffer");
	out[0] = '\0';

	if (pipe2(fds, O_CLOEXEC) < 0) {
		rc = troop_error_set(TROOP_EIO, "%s: pipe: %s", argv[0], strerror(errno));
		goto done;
	}
	if (posix_spawn_file_actions_init(&fa) != 0)
		goto spawn_fail;
	fa_ok = true;
	if (posix_spawnattr_init(&attr) != 0)
		goto spawn_fail;
	attr_ok = true;

	/* Stdout into our pipe (dup2 clears close-on-exec on the target, the
	 * pipe ends themselves close), then stdin and stderr on /dev/null.
	 * The dup2 comes first in case the pipe landed on fd 0 or 2 because
	 * the worker runs with those closed. */
	if (posix_spawn_file_actions_adddup2(&fa, fds[1], 1) != 0 ||
	    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0) != 0 ||
	    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0) != 0)
		goto spawn_fail;

	/* The worker may block or ignore signals (SIGPIPE); the tool gets
	 * default dispositions and an empty mask. */
	sigset_t empty, defs;
	sigemptyset(&empty);
	sigemptyset(&defs);
	sigaddset(&defs, SIGPIPE);
	sigaddset(&defs, SIGINT);
	sigaddset(&defs, SIGTERM);
	if (posix_spawnattr_setsigmask(&attr, &empty) != 0 ||
	    posix_spawnattr_setsigdefault(&attr, &defs) != 0 ||
	    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF) != 0)
		goto spawn_fail;

	int serr = posix_spawnp(&pid, argv[0], &fa, &attr, (char *const *)argv, environ);
	if (serr != 0) {
		pid = -1;
		if (serr == ENOENT || serr == EACCES || serr == ENOTDIR)
			rc = troop_error_set(TROOP_ENOTFOUND, "%s: not found on PATH", argv[0]);
		else
			rc = troop_error_set(TROOP_EIO, "%s: cannot run: %s", argv[0], strerror(serr));
		goto done;
	}
	close(fds[1]);
	fds[1] = -1;

	for (;;) {
		struct pollfd pfd = { .fd = fds[0], .events = POLLIN };
		int left = remaining_ms(deadline);

		if (left == 0) {
			kill_and_reap(pid);
			pid = -1;
			rc = troop_error_set(TROOP_ETIMEOUT, "%s: no answer within %d ms",
			    argv[0], timeout_ms);
			goto done;
		}
		int pr = poll(&pfd, 1, left);
		if (pr < 0) {
			if (errno == EINTR)
				continue;
			kill_and_reap(pid);
			pid = -1;
			rc = troop_error_set(TROOP_EIO, "%s: poll: %s", argv[0], strerror(errno));
			goto done;
		}
		if (pr == 0)
			continue;  /* deadline check at the top */

		char spare;
		char *dst = n < outlen - 1 ? out + n : &spare;
		size_t room = n < outlen - 1 ? outlen - 1 - n : 1;
		ssize_t r = read(fds[0], dst, room);
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			kill_and_reap(pid);
			pid = -1;
			rc = troop_error_set(TROOP_EIO, "%s: read: %s", argv[0], strerror(errno));
			goto done;
		}
		if (r == 0)
			break;
		if (dst == &spare) {
			kill_and_reap(pid);
			pid = -1;
			rc = troop_error_set(TROOP_ETOOLARGE, "%s: output over %zu bytes",
			    argv[0], outlen - 1);
			goto done;
		}
		n += (size_t)r;
		out[n] = '\0';
	}

	rc = wait_until(pid, deadline, &st);
	pid = -1;
	if (rc == TROOP_ETIMEOUT) {
		rc = troop_error_set(rc, "%s: did not exit within %d ms", argv[0], timeout_ms);
		goto done;
	}
	if (rc != 0) {
		rc = troop_error_set(rc, "%s: cannot read exit status: %s", argv[0], strerror(errno));
		goto done;
	}
	if (exit_status) {
		if (WIFEXITED(st))
			*exit_status = WEXITSTATUS(st);
		else if (WIFSIGNALED(st))
			*exit_status = 128 + WTERMSIG(st);
	}
	rc = 0;
	goto done;

spawn_fail:
	rc = troop_error_set(TROOP_EIO, "%s: cannot prepare spawn", argv[0]);
done:
	if (pid > 0)
		kill_and_reap(pid);
	if (fa_ok)
		posix_spawn_file_actions_destroy(&fa);
	if (attr_ok)
		posix_spawnattr_destroy(&attr);
	if (fds[0] >= 0)
		close(fds[0]);
	if (fds[1] >= 0)
		close(fds[1]);
	if (outn)
		*outn = n;
	out[n] = '\0';
	return rc;
}
