/*
 * sortcb: spends its time in compare(), the comparison callback of the
 * system libc's qsort(), called as compare() <- (libc's qsort) <- sort_all()
 * <- run() <- main(). libc has no frame pointers, so a frame-pointer walk
 * stops inside it; its .eh_frame describes every frame.
 *
 * usage: sortcb SECONDS
 */
#include <stdlib.h>
#include <time.h>

#define N 4096

static volatile unsigned long sink;
static unsigned long data[N];

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A deliberately slow comparison: most of the time is spent here. */
__attribute__((noinline)) int compare(const void *a, const void *b)
{
	unsigned long x = *(const unsigned long *)a, y = *(const unsigned long *)b;
	for (int i = 0; i < 200; i++) {
		x = x * 6364136223846793005UL + 1;
		y = y * 6364136223846793005UL + 1;
	}
	sink += x ^ y;
	unsigned long p = *(const unsigned long *)a, q = *(const unsigned long *)b;
	return p < q ? -1 : p > q;
}

__attribute__((noinline)) void sort_all(unsigned long seed)
{
	for (int i = 0; i < N; i++) {
		seed = seed * 6364136223846793005UL + 1442695040888963407UL;
		data[i] = seed >> 16;
	}
	qsort(data, N, sizeof(data[0]), compare);
	sink += data[0];
}

__attribute__((noinline)) void run(double seconds)
{
	double end = now() + seconds;
	unsigned long seed = 1;
	while (now() < end)
		sort_all(seed++);
	sink += seed;
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
	run(seconds);
	return 0;
}
