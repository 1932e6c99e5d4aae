/*
 * log.c - stderr or syslog.
 */
#include <stdarg.h>
#include <stdio.h>

#include "fs/log.h"

void fs_log_init(struct fs_log *log, int level, int use_syslog)
{
	log->level = level;
	log->use_syslog = use_syslog;
	if (use_syslog)
		openlog("llmfs", LOG_PID, LOG_DAEMON);
}

void fs_log_write(const struct fs_log *log, int prio, const char *fmt, ...)
{
	static const char *const names[] = { "emerg", "alert", "crit", "error",
					     "warning", "notice", "info", "debug" };
	va_list ap;

	va_start(ap, fmt);
	if (log->use_syslog) {
		vsyslog(prio, fmt, ap);
	} else {
		fprintf(stderr, "llmfs: %s: ", names[prio & 7]);
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
	}
	va_end(ap);
}
