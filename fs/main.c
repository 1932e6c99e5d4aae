/*
 * main.c - the llmfs daemon: options, the store, the FUSE session.
 *
 *   llmfs [--store DIR] [-f] [-d] [-o OPTS] [--threads N] [--level N] MOUNTPOINT
 */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/fs.h"
#include "fs/inval.h"
#include "fs/subtree.h"
#include "scheduler/mining_job.h"
#include "scheduler/env.h"
#include "scheduler/train_job.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: llmfs [options] MOUNTPOINT\n"
		"\n"
		"Mounts the llmfs tree (models/, .llmfs/) at MOUNTPOINT.\n"
		"\n"
		"  -s, --store DIR    store folder (default: $LLMFS_STORE, else\n"
		"                     /var/lib/llmfs for root, else\n"
		"                     $XDG_DATA_HOME/llmfs or ~/.local/share/llmfs)\n"
		"  -f, --foreground   stay in the foreground, log to stderr\n"
		"  -d, --debug        foreground, with FUSE and debug messages\n"
		"  -o OPTS            extra mount options (comma-separated)\n"
		"  -t, --threads N    compression and read-ahead workers, and as many\n"
		"                     feeders of large writes (default: cores)\n"
		"  -l, --level N      zstd level for new chunks (default 3)\n"
		"  -r, --read-ahead KB  kernel read-ahead on the mount (default 1024)\n"
		"  -p, --planner NAME the model (models/NAME/card.json) that turns\n"
		"                     free-text tasks in paths/ into steps\n"
		"  -R, --remotes FILE the registries under net/ (default:\n"
		"                     STORE/remotes.json; docs/remotes.md)\n"
		"  -T, --trusted-uid USER  model cards owned by USER (a name or\n"
		"                     uid; repeatable) may run commands and read\n"
		"                     keys, as the daemon's own (docs/security.md)\n"
		"      --pack-max BYTES  start a new pack file after this many bytes\n"
		"                     (default 256 MiB; tests use a few MiB)\n"
		"      --pack-cache BYTES  newest packs written that stay in the page\n"
		"                     cache; older ones leave it as new ones start\n"
		"                     (default an eighth of memory; 0: all stay)\n"
		"      --lazy-close   close() returns once the file is committed; it is\n"
		"                     on the disk within --flush-ms, or at fsync\n"
		"                     (default: --sync-close, once it is on the disk;\n"
		"                     docs/architecture.md)\n"
		"      --flush-ms N   with --lazy-close, bound on a closed file's wait\n"
		"                     for the disk (default 1000)\n"
		"      --train-jobs N training jobs under train/ that run at once\n"
		"                     (default 1; the others wait, queued)\n"
		"      --mining-listen HOST:PORT  where mining/'s replicas reach\n"
		"                     this daemon (default 127.0.0.1:0, any free\n"
		"                     port; mining/status names it)\n"
		"      --mining-url URL  the URL replicas are given (default\n"
		"                     http://HOST:PORT of --mining-listen)\n"
		"      --env-group GROUP  members of GROUP may make envs under envs/\n"
		"                     (default: root alone; docs/security.md)\n"
		"      --env-bind DIR env.json may bind folders under DIR into its\n"
		"                     container, read-only (repeatable; default none)\n"
		"      --env-serve PROG  the llmfs-serve program envs run (default:\n"
		"                     beside llmfs)\n"
		"  -h, --help         this text\n"
		"\n"
		"Unmount with `fusermount3 -u MOUNTPOINT`; SIGTERM does the same.\n");
}

#define MAX_TRUSTED 16

static int daemon_main(int argc, char **argv);

/* A user name or a numeric uid. */
static int parse_user(const char *s, uid_t *ret)
{
	struct passwd *pw = getpwnam(s);
	char *end;
	unsigned long v;

	if (pw) {
		*ret = pw->pw_uid;
		return 0;
	}
	errno = 0;
	v = strtoul(s, &end, 10);
	if (!*s || *end || errno || v >= (uid_t)-1)
		return -EINVAL;
	*ret = (uid_t)v;
	return 0;
}

/* mkdir -p for the default store's parents. */
static int make_parents(const char *path)
{
	char buf[PATH_MAX];
	char *p;

	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	for (p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	return 0;
}

/*
 * The kernel reads ahead 128 KiB on a FUSE mount unless told otherwise;
 * sequential readers of model files gain from more (fewer, larger requests
 * while workers decode ahead).  The mount's device number comes from
 * /proc/self/mountinfo: a stat() of the mount point would wait on
 * ourselves.  Only root may write the setting; failure costs only speed.
 */
static int set_read_ahead(const char *mnt, unsigned kb)
{
	char real[PATH_MAX], line[4096], dev[32], mp[PATH_MAX], path[128];
	FILE *f;
	int found = 0;

	if (!realpath(mnt, real))
		return -errno;
	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%*d %*d %31s %*s %4095s", dev, mp) == 2 &&
		    !strcmp(mp, real) && strstr(line, " - fuse.llmfs "))
			found = 1;
		if (found)
			break;
	}
	fclose(f);
	if (!found)
		return -ENOENT;
	snprintf(path, sizeof(path), "/sys/class/bdi/%s/read_ahead_kb", dev);
	f = fopen(path, "we");
	if (!f)
		return -errno;
	fprintf(f, "%u\n", kb);
	return fclose(f) == 0 ? 0 : -errno;
}

/*
 * The soft descriptor limit is often 1024 while the hard one is far
 * higher; packs, sqlite, transfers and FUSE itself all take descriptors,
 * and running out breaks writes and GC.  Raising the soft limit needs no
 * privilege; failure leaves the old limit.
 */
static int raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -errno;
	if (rl.rlim_cur == rl.rlim_max)
		return 0;
	rl.rlim_cur = rl.rlim_max;
	return setrlimit(RLIMIT_NOFILE, &rl) < 0 ? -errno : 0;
}

static char *default_store(void)
{
	const char *env = getenv("LLMFS_STORE"), *xdg, *home;
	char *s = NULL;

	if (env && *env)
		return strdup(env);
	if (getuid() == 0)
		return strdup("/var/lib/llmfs");
	xdg = getenv("XDG_DATA_HOME");
	home = getenv("HOME");
	if (xdg && *xdg) {
		if (asprintf(&s, "%s/llmfs", xdg) < 0)
			return NULL;
	} else if (home && *home) {
		if (asprintf(&s, "%s/.local/share/llmfs", home) < 0)
			return NULL;
	}
	return s;
}

int main(int argc, char **argv)
{
	/* A training job's own process (scheduler/train_job.h), not a daemon. */
	if (argc > 1 && !strcmp(argv[1], "--train-job"))
		return train_child_main(argc, argv);
	/* A co-training replica (scheduler/mining_replica.c), not a daemon. */
	if (argc > 1 && !strcmp(argv[1], "--mining-replica"))
		return mining_replica_main(argc, argv);
	/* The process that runs one env's container (scheduler/env.h). */
	if (argc > 1 && !strcmp(argv[1], "--env-shim"))
		return env_shim_main(argc, argv);
	return daemon_main(argc, argv);
}

/* Chunks a power loss took before their lazy commit was synced (flush.c). */
static void log_lost(const struct fs_log *log, struct cas_store *st)
{
	struct cas_status s;

	if (cas_status(st, &s) == 0 && s.lost_at_open)
		fs_log(log, LOG_WARNING,
		       "%llu chunks of files closed just before the last stop did not"
		       " reach the disk: their files read EIO there until the same bytes"
		       " are written again (llmfs-fsck names them)",
		       (unsigned long long)s.lost_at_open);
}

static int daemon_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "store", required_argument, NULL, 's' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "debug", no_argument, NULL, 'd' },
		{ "threads", required_argument, NULL, 't' },
		{ "level", required_argument, NULL, 'l' },
		{ "read-ahead", required_argument, NULL, 'r' },
		{ "planner", required_argument, NULL, 'p' },
		{ "remotes", required_argument, NULL, 'R' },
		{ "trusted-uid", required_argument, NULL, 'T' },
		{ "pack-max", required_argument, NULL, 'P' },
		{ "pack-cache", required_argument, NULL, 'K' },
		{ "train-jobs", required_argument, NULL, 'J' },
		{ "mining-listen", required_argument, NULL, 'M' },
		{ "mining-url", required_argument, NULL, 'U' },
		{ "env-group", required_argument, NULL, 'G' },
		{ "env-bind", required_argument, NULL, 'B' },
		{ "env-serve", required_argument, NULL, 'S' },
		{ "sync-close", no_argument, NULL, 'C' },
		{ "lazy-close", no_argument, NULL, 'Z' },
		{ "flush-ms", required_argument, NULL, 'F' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct cas_options copt = { .close_sync = 1 };
	struct fuse_loop_config *loop = NULL;
	struct fuse_session *se = NULL;
	struct cas_store *st = NULL;
	struct fs_log log;
	struct fs fs;
	char *store = NULL, *mnt, err[1024], opts[1024], *remotes = NULL, *tree = NULL;
	struct fs_options fopt = { 0 };
	sigset_t stop_sigs;
	const char *extra = NULL, *planner = NULL;
	int foreground = 0, debug = 0, c, rc = 1, r, fs_up = 0;
	unsigned read_ahead = 1024;
	uid_t trusted[MAX_TRUSTED];
	size_t n_trusted = 0;
	const char *env_binds[MAX_TRUSTED];

	while ((c = getopt_long(argc, argv, "s:fdo:t:l:r:p:R:T:h", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			free(store);
			store = strdup(optarg);
			break;
		case 'f':
			foreground = 1;
			break;
		case 'd':
			foreground = debug = 1;
			break;
		case 'o':
			extra = optarg;
			break;
		case 't':
			copt.threads = atoi(optarg);
			break;
		case 'l':
			copt.level = atoi(optarg);
			break;
		case 'r':
			read_ahead = (unsigned)atoi(optarg);
			break;
		case 'p':
			planner = optarg;
			break;
		case 'R':
			free(remotes);
			remotes = strdup(optarg);
			break;
		case 'T':
			if (n_trusted == MAX_TRUSTED ||
			    parse_user(optarg, &trusted[n_trusted]) < 0) {
				fprintf(stderr, "llmfs: --trusted-uid %s: not a "
					"user (at most %d)\n", optarg, MAX_TRUSTED);
				return 2;
			}
			n_trusted++;
			break;
		case 'P': {
			/* Small packs let tests cross the pack limit with a few MiB. */
			char *end;

			errno = 0;
			copt.pack_max = strtoull(optarg, &end, 0);
			if (errno || end == optarg || *end || copt.pack_max < (1u << 20)) {
				fprintf(stderr, "llmfs: --pack-max %s: not a size of "
					"1 MiB or more\n", optarg);
				return 2;
			}
			break;
		}
		case 'K': {
			char *end;

			errno = 0;
			copt.pack_cache = strtoull(optarg, &end, 0);
			if (errno || end == optarg || *end) {
				fprintf(stderr, "llmfs: --pack-cache %s: not a size in "
					"bytes\n", optarg);
				return 2;
			}
			if (copt.pack_cache == 0)
				copt.pack_cache = UINT64_MAX;
			break;
		}
		case 'C':
			copt.close_sync = 1;
			break;
		case 'Z':
			copt.close_sync = 0;
			break;
		case 'F': {
			char *end;
			unsigned long n;

			errno = 0;
			n = strtoul(optarg, &end, 10);
			if (errno || end == optarg || *end || n < 1 || n > 60000) {
				fprintf(stderr, "llmfs: --flush-ms %s: not a number from 1 "
					"to 60000\n", optarg);
				return 2;
			}
			copt.flush_ms = (int)n;
			break;
		}
		case 'J': {
			char *end;
			unsigned long n;

			errno = 0;
			n = strtoul(optarg, &end, 10);
			if (errno || end == optarg || *end || n < 1 || n > 64) {
				fprintf(stderr, "llmfs: --train-jobs %s: not a number from 1 "
					"to 64\n", optarg);
				return 2;
			}
			fopt.train_jobs = (unsigned)n;
			break;
		}
		case 'M':
			fopt.mining_listen = optarg;
			break;
		case 'U':
			if (strncmp(optarg, "http://", 7) && strncmp(optarg, "https://", 8)) {
				fprintf(stderr, "llmfs: --mining-url %s: not an http:// URL\n",
					optarg);
				return 2;
			}
			fopt.mining_url = optarg;
			break;
		case 'G': {
			struct group *g = getgrnam(optarg);
			char *end;
			unsigned long v;

			errno = 0;
			v = g ? g->gr_gid : strtoul(optarg, &end, 10);
			if (!g && (!*optarg || *end || errno || v >= (gid_t)-1)) {
				fprintf(stderr, "llmfs: --env-group %s: not a group\n", optarg);
				return 2;
			}
			fopt.has_env_group = 1;
			fopt.env_group = (gid_t)v;
			break;
		}
		case 'B':
			if (fopt.n_env_binds == MAX_TRUSTED || optarg[0] != '/') {
				fprintf(stderr, "llmfs: --env-bind %s: not an absolute folder "
					"(at most %d)\n", optarg, MAX_TRUSTED);
				return 2;
			}
			env_binds[fopt.n_env_binds++] = optarg;
			fopt.env_binds = env_binds;
			break;
		case 'S':
			fopt.env_serve = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 2;
	}
	mnt = argv[optind];
	if (!store)
		store = default_store();
	if (!store) {
		fprintf(stderr, "llmfs: no store given and no $HOME to put one in\n");
		return 2;
	}
	fs_log_init(&log, debug ? LOG_DEBUG : LOG_INFO, !foreground);
	r = raise_nofile();
	if (r < 0)
		fs_log(&log, LOG_WARNING, "cannot raise the open-file limit: %s",
		       strerror(-r));
	if (!remotes && asprintf(&remotes, "%s/remotes.json", store) < 0)
		remotes = NULL;
	if (!remotes) {
		fprintf(stderr, "llmfs: out of memory\n");
		return 1;
	}

	/*
	 * Open the store once in the foreground so that a refusal (a second
	 * daemon, a newer format) reaches the terminal; the workers are
	 * started again after fuse_daemonize() forks.
	 */
	/*
	 * The threads made from here on (the store's, the subtrees') block the
	 * signals that stop the daemon, so that the kernel gives them to the
	 * main thread, whose wait in the FUSE loop they end: a signal taken by
	 * a thread sleeping in poll() would leave the loop running until the
	 * next request.  The main thread takes them again before the loop.
	 */
	sigemptyset(&stop_sigs);
	sigaddset(&stop_sigs, SIGHUP);
	sigaddset(&stop_sigs, SIGINT);
	sigaddset(&stop_sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop_sigs, NULL);
	make_parents(store);
	r = cas_store_open(store, &copt, &st, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "llmfs: %s\n", err);
		goto out;
	}
	if (foreground)
		fs_log(&log, LOG_INFO, "store %s opened", cas_store_dir(st));

	snprintf(opts, sizeof(opts),
		 "-ofsname=llmfs,subtype=llmfs,default_permissions%s%s%s",
		 getuid() == 0 ? ",allow_other" : "", extra ? "," : "",
		 extra ? extra : "");
	if (fuse_opt_add_arg(&args, argv[0]) || fuse_opt_add_arg(&args, opts) ||
	    (debug && fuse_opt_add_arg(&args, "-d"))) {
		fprintf(stderr, "llmfs: out of memory\n");
		goto out;
	}
	fopt.planner = planner;
	fopt.remotes = remotes;
	fopt.mountpoint = tree = realpath(mnt, NULL);
	r = fs_init(&fs, st, &log, &fopt, trusted, n_trusted);
	if (r < 0) {
		fprintf(stderr, "llmfs: %s\n", strerror(-r));
		goto out;
	}
	fs_up = 1;
	se = fuse_session_new(&args, fs_ops(), sizeof(*fs_ops()), &fs);
	if (!se)
		goto out;
	if (fuse_set_signal_handlers(se) != 0)
		goto out;
	if (fuse_session_mount(se, mnt) != 0) {
		fprintf(stderr, "llmfs: cannot mount at %s\n", mnt);
		goto out_signals;
	}
	if (read_ahead) {
		r = set_read_ahead(mnt, read_ahead);
		if (r < 0)
			fs_log(&log, LOG_DEBUG, "cannot set read-ahead: %s", strerror(-r));
	}
	if (!foreground) {
		/* Threads do not survive the fork: close and reopen around it. */
		fs_release(&fs);
		fs_up = 0;
		cas_store_close(st);
		st = NULL;
		if (fuse_daemonize(0) != 0)
			goto out_unmount;
		r = cas_store_open(store, &copt, &st, err, sizeof(err));
		if (r < 0) {
			fs_log(&log, LOG_ERR, "%s", err);
			goto out_unmount;
		}
		r = fs_init(&fs, st, &log, &fopt, trusted, n_trusted);
		if (r < 0)
			goto out_unmount;
		fs_up = 1;
	}
	fs_inval_session(&fs, se);
	fs_log(&log, LOG_INFO, "mounted %s on %s", cas_store_dir(st), mnt);
	log_lost(&log, st);
	/*
	 * No request holds a worker while it waits (a result read waits on a
	 * list, fs/paths.c): the threads serve concurrent store and network
	 * requests.
	 */
	loop = fuse_loop_cfg_create();
	if (!loop)
		goto out_unmount;
	fuse_loop_cfg_set_max_threads(loop, 64);
	fuse_loop_cfg_set_idle_threads(loop, 8);
	/* A signal that ends the loop (SIGTERM, SIGHUP) is a clean stop. */
	pthread_sigmask(SIG_UNBLOCK, &stop_sigs, NULL);
	rc = fuse_session_loop_mt(se, loop) < 0;
	fuse_loop_cfg_destroy(loop);
	fs_log(&log, LOG_INFO, "unmounting %s", mnt);
out_unmount:
	if (fs_up)
		fs_inval_session(&fs, NULL);
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out:
	if (se)
		fuse_session_destroy(se);
	if (fs_up)
		fs_release(&fs);
	cas_store_close(st);
	fuse_opt_free_args(&args);
	free(store);
	free(remotes);
	free(tree);
	return rc;
}
