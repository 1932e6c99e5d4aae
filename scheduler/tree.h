/*
 * tree: paths a job names inside the mounted tree, shared by training jobs (train_child.c)
 * and mining jobs (mining_job.c).  No state; any thread.
 */
#ifndef LLMFS_TREE_H
#define LLMFS_TREE_H

/* tree/rel in *ret (caller frees) when rel is relative with no "", "." or ".." component;
 * -EINVAL otherwise, -ENOMEM. */
int tree_path(const char *tree, const char *rel, char **ret);
/* Waits up to a minute for the tree to be mounted (its .llmfs/status answers): a daemon
 * resuming its jobs starts them before its mount is up.  0 or -ETIMEDOUT, -ENOMEM. */
int tree_wait(const char *tree);

#endif
