/*
 * pingpong: two threads bounce a byte over two pipes, blocking in
 * pp_read() for a few microseconds each time: the worst case for off-CPU
 * profilers, which pay per context switch.
 *
 * At the end it prints the round trips per second and, per thread,
 *   thread NAME TID WALL_NS CPU_NS OFFCPU_NS
 * where OFFCPU_NS = WALL_NS - CPU_NS: all the time the thread was not running.
 *
 * usage: pingpong SECONDS
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int ping[2], pong[2];
static double seconds;
static volatile int done;
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
	if (pipe(ping) || pipe(pong))
		return 1;
	pthread_setname_np(pthread_self(), "pinger");
	long long start = ns(CLOCK_MONOTONIC);
	pthread_create(&t, NULL, ponger, NULL);
	long long end = start + (long long)(seconds * 1e9);
	while (ns(CLOCK_MONOTONIC) < end) {
		if (write(ping[1], "p", 1) != 1 || pp_read(pong[0], &b) != 1)
			return 1;
		rounds++;
	}
	write(ping[1], "e", 1);
	pthread_join(t, NULL);
	report("pinger", start);
	printf("rounds_per_sec %.0f\n", rounds / ((ns(CLOCK_MONOTONIC) - start) / 1e9));
	return 0;
}
