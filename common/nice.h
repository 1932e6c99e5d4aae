/*
 * nice.h - the calling thread yields the CPU to the others of its process.
 *
 * Contract: thread_nice(by) raises the calling thread's own nice value by
 * `by` (Linux keeps one per thread; PRIO_PROCESS with the thread's id),
 * capped at 19.  Best effort: a thread that cannot be reniced runs as it
 * is.  No allocation; safe from any thread.
 */
#ifndef LLMFS_COMMON_NICE_H
#define LLMFS_COMMON_NICE_H

void thread_nice(int by);

#endif
