/*
 * sleeper: blocks in 1 ms naps through nap() <- level3() <- level2() <-
 * level1() <- main(); nap() calls the system libc's nanosleep, which keeps
 * no frame pointer. Built with -O2 -fomit-frame-pointer, only unwind tables
 * find the chain of an off-CPU stack taken when the nap ends.
 *
 * It first warms up for 0.6 s under its exec name: it spins (on-CPU samples
 * make the process known in wall mode) and then naps outside the chain (its
 * first kept blocks make it known in off-CPU mode). A profiler loads a
 * process's unwind tables once it knows it; blocks kept before then are
 * walked with frame pointers. The thread then renames itself "napping", so
 * that a test measures the steady state by the thread label.
 *
 * usage: sleeper SECONDS
 */
#include <stdlib.h>
#include <sys/prctl.h>
#include <time.h>

static volatile unsigned long sink;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) void nap(void)
{
	struct timespec ts = { 0, 1000000 };
	nanosleep(&ts, NULL);
	sink++;
}

__attribute__((noinline)) void level3(int n)
{
	for (int i = 0; i < n; i++)
		nap();
	sink += 3;
}

__attribute__((noinline)) void level2(int n)
{
	level3(n);
	sink += 2;
}

__attribute__((noinline)) void level1(int n)
{
	level2(n);
	sink += 1;
}

__attribute__((noinline)) void warmup(double seconds)
{
	double end = now() + seconds / 2;
	while (now() < end)
		for (int i = 0; i < 10000; i++)
			sink = sink * 31 + i;
	struct timespec ts = { 0, 1000000 };
	for (end = now() + seconds / 2; now() < end;)
		nanosleep(&ts, NULL);
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 3;
	warmup(0.6);
	prctl(PR_SET_NAME, "napping");
	double end = now() + seconds;
	while (now() < end)
		level1(10);
	return 0;
}
