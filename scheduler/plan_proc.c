/* plan_proc: see plan_proc.h for the contract. */
#include "plan_proc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "plan_util.h"

extern char **environ;

static int spawn(char *const argv[], int in_fd, int out_fd, pid_t *ret_pid)
{
	posix_spawn_file_actions_t fa;
	int rc;

	rc = posix_spawn_file_actions_init(&fa);
	if (rc)
		return -rc;
	rc = posix_spawn_file_actions_adddup2(&fa, in_fd, 0);
	if (!rc)
		rc = posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
	if (!rc)
		rc = posix_spawn_file_actions_addopen(&fa, 2, "/dev/null",
						      O_WRONLY, 0);
	if (!rc)
		rc = posix_spawnp(ret_pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	return -rc;
}

int plan_proc_run(char *const argv[], const char *input, size_t input_len,
		  double timeout_s, size_t max_out, const atomic_int *cancel,
		  char **ret_out, size_t *ret_len, int *ret_status)
{
	int sv[2] = { -1, -1 }, po[2] = { -1, -1 }, rc, status = 0;
	struct plan_buf out;
	double deadline = plan_now() + timeout_s;
	size_t sent = 0;
	pid_t pid = -1;

	plan_buf_init(&out);
	if (!argv || !argv[0])
		return -EINVAL;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ||
	    pipe2(po, O_CLOEXEC) < 0) {
		rc = -errno;
		goto out;
	}
	rc = spawn(argv, sv[1], po[1], &pid);
	if (rc < 0) {
		pid = -1;
		goto out;
	}
	close(sv[1]);
	close(po[1]);
	sv[1] = po[1] = -1;
	if (!input_len)
		shutdown(sv[0], SHUT_WR);
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	for (;;) {
		struct pollfd pf[2] = {
			{ .fd = po[0], .events = POLLIN },
			{ .fd = sent < input_len ? sv[0] : -1,
			  .events = POLLOUT },
		};
		double left = deadline - plan_now();
		char buf[16384];
		ssize_t n;

		if (left <= 0) {
			rc = -ETIMEDOUT;
			goto kill;
		}
		if (cancel && atomic_load(cancel)) {
			rc = -ECANCELED;
			goto kill;
		}
		if (left > 0.05)
			left = 0.05;
		if (poll(pf, 2, (int)(left * 1000) + 1) < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			goto kill;
		}
		if (pf[1].revents & (POLLOUT | POLLERR | POLLHUP)) {
			n = send(sv[0], input + sent, input_len - sent,
				 MSG_NOSIGNAL);
			if (n > 0)
				sent += (size_t)n;
			/* A reader that went away simply gets no more input. */
			if (n < 0 && errno != EAGAIN && errno != EINTR)
				sent = input_len;
			if (sent == input_len)
				shutdown(sv[0], SHUT_WR);
		}
		if (pf[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			n = read(po[0], buf, sizeof(buf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			if (out.len + (size_t)n > max_out) {
				rc = -EFBIG;
				goto kill;
			}
			rc = plan_buf_append(&out, buf, (size_t)n);
			if (rc < 0)
				goto kill;
		}
	}
	/* stdout closed: the program is exiting, but it may still hang. */
	while ((rc = waitpid(pid, &status, WNOHANG)) == 0) {
		if (plan_now() >= deadline) {
			rc = -ETIMEDOUT;
			goto kill;
		}
		if (cancel && atomic_load(cancel)) {
			rc = -ECANCELED;
			goto kill;
		}
		usleep(2000);
	}
	rc = rc < 0 ? -errno : 0;
	pid = -1;
	goto out;
kill:
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	pid = -1;
out:
	if (sv[0] >= 0)
		close(sv[0]);
	if (sv[1] >= 0)
		close(sv[1]);
	if (po[0] >= 0)
		close(po[0]);
	if (po[1] >= 0)
		close(po[1]);
	if (rc == 0 || rc == -ETIMEDOUT || rc == -EFBIG) {
		if (ret_len)
			*ret_len = out.len;
		*ret_out = plan_buf_steal(&out);
		if (!*ret_out)
			return -ENOMEM;
		if (ret_status)
			*ret_status = status;
		return rc;
	}
	plan_buf_release(&out);
	return rc;
}
