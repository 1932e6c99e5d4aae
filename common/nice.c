/*
 * nice.c - a thread's own nice value.
 */
#include <errno.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/nice.h"

void thread_nice(int by)
{
	id_t tid = (id_t)gettid();
	int now;

	errno = 0;
	now = getpriority(PRIO_PROCESS, tid);
	if (errno == 0)
		(void)setpriority(PRIO_PROCESS, tid, now + by > 19 ? 19 : now + by);
}
