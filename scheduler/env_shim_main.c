/*
 * llmfs-env-shim: the shim of scheduler/env.h as a program of its own, so that starting one
 * does not load what the daemon links for training (CUDA, BLAS: a few hundred milliseconds
 * of dynamic loading).  The daemon runs it as "llmfs-env-shim --env-shim ..." when it finds
 * it beside itself, else itself with "--env-shim".
 */
#include "env.h"

int main(int argc, char **argv)
{
	return env_shim_main(argc, argv);
}
