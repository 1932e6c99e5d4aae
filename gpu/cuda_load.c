/*
 * gpu/cuda_load.c - the CUDA backend's entry point in builds with nvcc: the backend is a
 * module of its own (libllmfs_cuda.so: gpu/cuda_ops.cu with the CUDA runtime and cuBLAS),
 * loaded at the first call.
 *
 * Why a module: linked in, the CUDA libraries cost every process that links the engine
 * about 140 MiB of resident memory from its start (cuBLASLt's data alone is 83 MiB), the
 * daemon included, which only ever runs the engine on the CPU itself.  Loaded on demand, a
 * process pays for CUDA only when it trains on a CUDA device.
 *
 * Which file: the module is found by a path fixed at build time, never from the
 * environment (the daemon runs as root): a program of the build tree loads the build
 * tree's module, an installed one the installed module.  NULL when it cannot be loaded
 * (no module, no CUDA runtime): gpu_model_new() answers -ENODEV, as in a build without
 * CUDA.
 */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gpu/gpt_i.h"

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static const struct gpu_ops *loaded;    /* set once, under load_once */

/* Is this program a file of the build tree (under LLMFS_BUILD_ROOT)? */
static int in_build_tree(void)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	size_t root = strlen(LLMFS_BUILD_ROOT);

	if (n <= 0)
		return 0;
	exe[n] = 0;
	return strncmp(exe, LLMFS_BUILD_ROOT, root) == 0 && exe[root] == '/';
}

static void load(void)
{
	const char *path = in_build_tree() ? LLMFS_CUDA_MODULE_BUILT : LLMFS_CUDA_MODULE_INSTALLED;
	const struct gpu_ops *(*entry)(void);
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);

	if (!h)
		return;
	*(void **)&entry = dlsym(h, "gpu_cuda_ops");
	if (entry)
		loaded = entry();
	/* The module stays loaded for the process's life: the table points into it. */
}

const struct gpu_ops *gpu_cuda_ops(void)
{
	pthread_once(&load_once, load);
	return loaded;
}
