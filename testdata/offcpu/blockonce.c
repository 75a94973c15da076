/*
 * blockonce: blocks once, in block_once() <- level2() <- level1() <- main(),
 * for MILLISECONDS (100 by default) in nanosleep, and exits right after: the
 * off-CPU block of a process that is gone by the time its stack could be
 * symbolized (issue #15: `sleep 1` came out as one unknown frame). Built
 * without frame pointers, so only unwind tables (or a copy of its stack
 * walked with them) give the block its callers.
 *
 * It prints one line, "blocked NS": the time it spent off CPU in the call
 * (wall time less its own CPU time), the truth to compare with.
 *
 * usage: blockonce [MILLISECONDS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static volatile unsigned long sink;

static long long ns(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

__attribute__((noinline)) long long block_once(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	long long cpu = ns(CLOCK_THREAD_CPUTIME_ID), wall = ns(CLOCK_MONOTONIC);
	nanosleep(&ts, NULL);
	long long d = (ns(CLOCK_MONOTONIC) - wall) - (ns(CLOCK_THREAD_CPUTIME_ID) - cpu);
	sink++;
	return d;
}

__attribute__((noinline)) long long level2(long ms)
{
	long long d = block_once(ms);
	sink++;
	return d;
}

__attribute__((noinline)) long long level1(long ms)
{
	long long d = level2(ms);
	sink++;
	return d;
}

int main(int argc, char **argv)
{
	printf("blocked %lld\n", level1(argc > 1 ? atol(argv[1]) : 100));
	return 0;
}
