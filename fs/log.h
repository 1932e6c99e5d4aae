/*
 * log.h - the daemon's one place for messages.
 *
 * Every message of the running daemon goes through fs_log().  The one
 * other writer is fs/main.c, before the daemon detaches and before its
 * struct fs_log exists or so that a refusal reaches the terminal: the
 * usage (stdout for --help, stderr for a wrong command line), option
 * errors and startup failures (no store, the store refused, fs_init()
 * failed, the mount failed) on stderr.
 *
 * Contract: a struct fs_log is set up once before threads start and then
 * only read, so any thread may log.  Messages go to stderr in the
 * foreground and to syslog otherwise; the level is checked before the
 * message is formatted.  Library code (backend/, scheduler/, gpu/) never
 * logs: it returns -errno and the daemon decides what to say.
 */
#ifndef LLMFS_LOG_H
#define LLMFS_LOG_H

#include <syslog.h>

struct fs_log {
	int level;      /* LOG_ERR .. LOG_DEBUG */
	int use_syslog;
};

void fs_log_init(struct fs_log *log, int level, int use_syslog);

#define fs_log(log, prio, ...)                                  \
	do {                                                    \
		if ((prio) <= (log)->level)                     \
			fs_log_write((log), (prio), __VA_ARGS__); \
	} while (0)

void fs_log_write(const struct fs_log *log, int prio, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
