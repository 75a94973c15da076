/*
 * cpuwork: a fixed amount of CPU-bound work shared by THREADS threads.
 * Threads take CHUNKS chunks from one counter until none are left, so the
 * run time is the work divided by the CPU the threads get: a profiler that
 * takes CPU from them shows up as a longer run, whatever the thread it hit.
 * Each chunk runs work_a, work_b and work_c (6, 3 and 1 units of the same
 * spin) a few frames deep, so that profilers unwind real stacks.
 *
 * At the end it prints one line, timed from the start of main:
 *   cpuwork chunks=N threads=T elapsed_ns=E cpu_ns=C
 * where C is the process's CPU time (all threads) spent since main started.
 *
 * usage: cpuwork CHUNKS [THREADS]
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define UNIT 20000

static volatile unsigned long sink;
static atomic_long next_chunk;
static long chunks;

static long long ns(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

__attribute__((noinline)) void spin(int units)
{
	unsigned long x = sink;
	for (long i = 0; i < (long)units * UNIT; i++)
		x = x * 6364136223846793005UL + 1442695040888963407UL;
	sink = x;
}

/* The increments after each call keep the calls out of tail position. */
__attribute__((noinline)) void work_a(void) { spin(6); sink++; }
__attribute__((noinline)) void work_b(void) { spin(3); sink++; }
__attribute__((noinline)) void work_c(void) { spin(1); sink++; }

__attribute__((noinline)) void chunk(void)
{
	work_a();
	work_b();
	work_c();
	sink++;
}

static void *run(void *arg)
{
	(void)arg;
	while (atomic_fetch_add(&next_chunk, 1) < chunks)
		chunk();
	return NULL;
}

int main(int argc, char **argv)
{
	long long start = ns(CLOCK_MONOTONIC), cpu0 = ns(CLOCK_PROCESS_CPUTIME_ID);
	pthread_t tids[64];
	int threads;

	if (argc < 2) {
		fprintf(stderr, "usage: cpuwork CHUNKS [THREADS]\n");
		return 2;
	}
	chunks = atol(argv[1]);
	threads = argc > 2 ? atoi(argv[2]) : 1;
	if (chunks < 1 || threads < 1 || threads > 64) {
		fprintf(stderr, "cpuwork: need CHUNKS >= 1 and 1 <= THREADS <= 64\n");
		return 2;
	}
	for (int i = 1; i < threads; i++)
		if (pthread_create(&tids[i], NULL, run, NULL)) {
			perror("pthread_create");
			return 1;
		}
	run(NULL);
	for (int i = 1; i < threads; i++)
		pthread_join(tids[i], NULL);
	printf("cpuwork chunks=%ld threads=%d elapsed_ns=%lld cpu_ns=%lld\n", chunks, threads,
	       ns(CLOCK_MONOTONIC) - start, ns(CLOCK_PROCESS_CPUTIME_ID) - cpu0);
	return 0;
}
