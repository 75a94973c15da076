/*
 * cpusplit: a CPU-bound workload with a known split. Every round calls
 * work_a, work_b and work_c with 6, 3 and 1 units of the same spin, so the
 * inclusive shares of CPU time are 60%, 30% and 10%, whatever the machine.
 *
 * usage: cpusplit SECONDS [THREADS]
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define UNIT 200000

static volatile unsigned long sink;
static double deadline;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) void spin(int units)
{
	unsigned long x = sink;
	for (long i = 0; i < (long)units * UNIT; i++)
		x = x * 6364136223846793005UL + 1442695040888963407UL;
	sink = x;
}

/* The increments after each call keep the calls out of tail position, so
 * that work_* stay on the stack at -O2 too. */
__attribute__((noinline)) void work_a(void) { spin(6); sink++; }
__attribute__((noinline)) void work_b(void) { spin(3); sink++; }
__attribute__((noinline)) void work_c(void) { spin(1); sink++; }

static void *run(void *arg)
{
	(void)arg;
	while (now() < deadline) {
		work_a();
		work_b();
		work_c();
	}
	return NULL;
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 5;
	int threads = argc > 2 ? atoi(argv[2]) : 1;
	pthread_t tids[64];

	if (threads < 1 || threads > 64)
		threads = 1;
	deadline = now() + secs;
	for (int i = 1; i < threads; i++)
		pthread_create(&tids[i], NULL, run, NULL);
	run(NULL);
	for (int i = 1; i < threads; i++)
		pthread_join(tids[i], NULL);
	printf("%lu\n", sink);
	return 0;
}
