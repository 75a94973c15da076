/*
 * manystacks: spins at the bottom of recursions of every depth from 1 to
 * 120, through three functions in turn, so that a profile of it holds
 * hundreds of distinct stacks. Tests use it to fill stack-trace maps.
 *
 * usage: manystacks SECONDS
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

__attribute__((noinline)) void leaf(void)
{
	for (int i = 0; i < 20000; i++)
		sink = sink * 31 + i;
}

void rec_a(int depth, int path);
void rec_b(int depth, int path);

__attribute__((noinline)) void rec_a(int depth, int path)
{
	if (depth == 0) {
		leaf();
	} else if (path & 1) {
		rec_b(depth - 1, path >> 1);
	} else {
		rec_a(depth - 1, path >> 1);
	}
	sink++;
}

__attribute__((noinline)) void rec_b(int depth, int path)
{
	if (depth == 0) {
		leaf();
	} else if (path & 1) {
		rec_a(depth - 1, path >> 1);
	} else {
		rec_b(depth - 1, path >> 1);
	}
	sink++;
}

int main(int argc, char **argv)
{
	double end = now() + (argc > 1 ? atof(argv[1]) : 5);
	int path = 0;
	while (now() < end) {
		for (int depth = 1; depth <= 24; depth++)
			rec_a(depth, path++);
	}
	return 0;
}
