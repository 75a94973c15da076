/*
 * vdsoloop: calls clock_gettime (answered in the vDSO, no system call) in a
 * loop from tick(), called through level2() <- level1() <- main(), so that
 * most samples land in the vDSO's code with one known chain above it. Built
 * without frame pointers: the walk through the vDSO and libc's wrapper needs
 * their .eh_frame. It first spins for 0.3 s outside the vDSO (as chain.c
 * does), so that the profiler has loaded its tables before the loop: the
 * test measures the vDSO, not a process's first samples.
 *
 * usage: vdsoloop CPU-SECONDS
 */
#include <stdlib.h>
#include <time.h>

static volatile long sink;

__attribute__((noinline)) long tick(long n)
{
	struct timespec ts;
	long s = 0;
	for (long i = 0; i < n; i++) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		s += ts.tv_nsec;
	}
	return s;
}

__attribute__((noinline)) long level2(long n)
{
	return tick(n) + sink;
}

__attribute__((noinline)) long level1(long n)
{
	return level2(n) * 3 + sink;
}

__attribute__((noinline)) void warmup(void)
{
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	do {
		for (long i = 0; i < 100000; i++)
			sink = sink * 31 + i;
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while (now.tv_sec - start.tv_sec + (now.tv_nsec - start.tv_nsec) / 1e9 < 0.3);
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 3;
	struct timespec start, now;
	warmup();
	/* SECONDS of CPU, not of wall time, so that a busy machine still
	 * gives the test its samples (a system call, outside the loop's vDSO
	 * time). */
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &start);
	do {
		sink += level1(100000);
		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
	} while (now.tv_sec - start.tv_sec + (now.tv_nsec - start.tv_nsec) / 1e9 < seconds);
	return 0;
}
