/*
 * chain: spends its time in hot(), called through level3() <- level2() <-
 * level1() <- main(), so that every sample of hot() has one known stack.
 * Built with -O2 -fomit-frame-pointer it has no frame pointers at all; built
 * with -O1 -fno-omit-frame-pointer -momit-leaf-frame-pointer it keeps them
 * everywhere but in the leaf hot(). Tests compare table and frame-pointer
 * unwinding on it.
 *
 * It first spins for a while in warmup(), so that the profiler has seen the
 * process and loaded its tables before hot() runs.
 *
 * usage: chain SECONDS
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
	for (int i = 0; i < 100000; i++)
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

__attribute__((noinline)) void warmup(double seconds)
{
	double end = now() + seconds;
	while (now() < end)
		for (int i = 0; i < 10000; i++)
			sink = sink * 31 + i;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 3;
	warmup(0.3);
	double end = now() + seconds;
	while (now() < end)
		sink += level1(sink);
	return 0;
}
