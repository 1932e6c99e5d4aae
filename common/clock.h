/*
 * clock.h - the one monotonic clock (CLOCK_MONOTONIC): for timeouts,
 * deadlines, rates and durations; never for times shown as dates.
 *
 * Contract: safe from any thread; cannot fail on Linux (the clock always
 * exists), so no error is returned.
 */
#ifndef LLMFS_COMMON_CLOCK_H
#define LLMFS_COMMON_CLOCK_H

#include <stdint.h>

int64_t clock_mono_ns(void);
int64_t clock_mono_ms(void);
/* Seconds, as a double (for rates, budgets and benchmark figures). */
double clock_mono_s(void);

#endif
