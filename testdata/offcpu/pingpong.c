/*
 * pingpong: two threads bounce a byte over two pipes, blocking in
 * pp_read() for a few microseconds each time: the worst case for off-CPU
 * profilers, which pay per context switch.
 *
 * At the end it prints the round trips per second and, per thread,
 *   thread NAME TID WALL_NS CPU_NS OFFCPU_NS
 * where OFFCPU_NS = WALL_NS - CPU_NS: all the time the thread was not running.
 * With "timeline" it also prints the round trips of every 50 ms from the
 * start, so that a profiler attached for part of one run can be compared
 * with the rest of the same run:
 *   timeline START_NS BUCKET_NS N0 N1 ...   (START_NS: CLOCK_MONOTONIC)
 *
 * SIGINT ends the run early, with the same report.
 *
 * usage: pingpong SECONDS [timeline]
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int ping[2], pong[2];
static double seconds;
static volatile int done;
static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}
static long long rounds;

static long long ns(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* One more frame: a frame-pointer unwinder loses a libc function's caller. */
__attribute__((noinline)) int read_once(int fd, char *b)
{
	return read(fd, b, 1);
}

__attribute__((noinline)) int pp_read(int fd, char *b)
{
	return read_once(fd, b);
}

static void report(const char *name, long long start)
{
	long long wall = ns(CLOCK_MONOTONIC) - start, cpu = ns(CLOCK_THREAD_CPUTIME_ID);
	printf("thread %s %ld %lld %lld %lld\n", name, (long)syscall(SYS_gettid), wall, cpu, wall - cpu);
}

static void *ponger(void *arg)
{
	long long start = ns(CLOCK_MONOTONIC);
	char b;
	(void)arg;
	pthread_setname_np(pthread_self(), "ponger");
	while (pp_read(ping[0], &b) == 1 && b == 'p') {
		if (write(pong[1], "q", 1) != 1)
			break;
	}
	report("ponger", start);
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t t;
	char b;

	seconds = argc > 1 ? atof(argv[1]) : 5;
	const long long bucket = 50000000;
	long nb = argc > 2 && strcmp(argv[2], "timeline") == 0 ? (long)(seconds * 1e9 / bucket) + 2 : 0;
	long *timeline = nb ? calloc(nb, sizeof(long)) : NULL;
	if (pipe(ping) || pipe(pong) || (nb && !timeline))
		return 1;
	signal(SIGINT, on_sigint);
	pthread_setname_np(pthread_self(), "pinger");
	long long start = ns(CLOCK_MONOTONIC);
	pthread_create(&t, NULL, ponger, NULL);
	long long end = start + (long long)(seconds * 1e9);
	for (long long now = start; now < end && !interrupted; now = ns(CLOCK_MONOTONIC)) {
		if (write(ping[1], "p", 1) != 1 || pp_read(pong[0], &b) != 1)
			return 1;
		rounds++;
		if (timeline) {
			long i = (now - start) / bucket;
			if (i < nb)
				timeline[i]++;
		}
	}
	write(ping[1], "e", 1);
	pthread_join(t, NULL);
	report("pinger", start);
	printf("rounds_per_sec %.0f\n", rounds / ((ns(CLOCK_MONOTONIC) - start) / 1e9));
	if (timeline) {
		printf("timeline %lld %lld", start, bucket);
		for (long i = 0; i < nb; i++)
			printf(" %ld", timeline[i]);
		printf("\n");
	}
	return 0;
}
