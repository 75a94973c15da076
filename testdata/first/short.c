/*
 * short: runs for MILLISECONDS (50 by default) in hot(), called through
 * level3() <- level2() <- level1() <- main(), from its first instruction:
 * no warm-up, so the profiler meets it only as it runs. Built with -O2
 * -fomit-frame-pointer it has no frame pointers, so only unwind tables (or
 * a copy of its stack walked with them) give its samples their callers.
 * Tests of a process's first samples (issue #15) run it hundreds of times.
 *
 * usage: short [MILLISECONDS]
 */
#include <stdlib.h>
#include <time.h>

static volatile unsigned long sink;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Every level works after its call, so no call becomes a tail jump. */
__attribute__((noinline)) unsigned long hot(unsigned long x)
{
	for (int i = 0; i < 20000; i++)
		x = x * 6364136223846793005UL + 1442695040888963407UL;
	return x;
}

__attribute__((noinline)) unsigned long level3(unsigned long x)
{
	return hot(x ^ 3) + sink;
}

__attribute__((noinline)) unsigned long level2(unsigned long x)
{
	return level3(x ^ 2) * 3 + sink;
}

__attribute__((noinline)) unsigned long level1(unsigned long x)
{
	return level2(x ^ 1) * 5 + sink;
}

int main(int argc, char **argv)
{
	double end = now() + (argc > 1 ? atof(argv[1]) : 50) / 1e3;
	while (now() < end)
		sink += level1(sink);
	return 0;
}
