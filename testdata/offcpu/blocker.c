/*
 * blocker: threads that block for known times, for off-CPU and wall tests.
 *
 *   napper  sleeps in 10 ms naps in nap_sleep()
 *   piper   blocks in wait_pipe() on a pipe that feeder writes every 20 ms
 *   spinner spins in spin_forever()
 *
 * Each thread measures its own truth and prints, at the end, one line
 *   thread NAME TID WALL_NS CPU_NS BLOCKED_NS
 * where BLOCKED_NS is the time spent inside its named blocking call.
 * With "migrate", napper and piper move to another CPU before every block.
 *
 * usage: blocker SECONDS [migrate]
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double seconds;
static int migrate;
static int pipefd[2];
static volatile int stop;
static volatile unsigned long sink;
static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;

static long long ns(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void hop(void)
{
	static __thread int next;
	cpu_set_t set;
	int n = sysconf(_SC_NPROCESSORS_ONLN);
	if (!migrate || n < 2)
		return;
	CPU_ZERO(&set);
	CPU_SET(next++ % n, &set);
	sched_setaffinity(0, sizeof(set), &set);
}

static void report(const char *name, long long start, long long blocked)
{
	long long wall = ns(CLOCK_MONOTONIC) - start;
	long long cpu = ns(CLOCK_THREAD_CPUTIME_ID);
	pthread_mutex_lock(&out_mu);
	printf("thread %s %ld %lld %lld %lld\n", name, (long)syscall(SYS_gettid), wall, cpu, blocked);
	fflush(stdout);
	pthread_mutex_unlock(&out_mu);
}

/*
 * The blocking calls go through one more function each: libc is built
 * without frame pointers, so a frame-pointer unwinder loses the direct
 * caller of a libc function; the named functions are one frame further up.
 */
__attribute__((noinline)) int sleep_once(const struct timespec *d)
{
	return nanosleep(d, NULL);
}

__attribute__((noinline)) long long nap_sleep(void)
{
	struct timespec d = { 0, 10 * 1000 * 1000 };
	long long t0 = ns(CLOCK_MONOTONIC);
	sleep_once(&d);
	return ns(CLOCK_MONOTONIC) - t0;
}

__attribute__((noinline)) ssize_t read_once(int fd, char *b)
{
	return read(fd, b, 1);
}

__attribute__((noinline)) long long wait_pipe(void)
{
	char b;
	long long t0 = ns(CLOCK_MONOTONIC);
	if (read_once(pipefd[0], &b) != 1)
		return -1;
	return ns(CLOCK_MONOTONIC) - t0;
}

__attribute__((noinline)) void spin_forever(void)
{
	for (int i = 0; i < 100000; i++)
		sink = sink * 33 + i;
}

static void *napper(void *arg)
{
	long long start = ns(CLOCK_MONOTONIC), blocked = 0;
	(void)arg;
	pthread_setname_np(pthread_self(), "napper");
	while (ns(CLOCK_MONOTONIC) - start < seconds * 1e9) {
		hop();
		blocked += nap_sleep();
	}
	report("napper", start, blocked);
	return NULL;
}

static void *piper(void *arg)
{
	long long start = ns(CLOCK_MONOTONIC), blocked = 0, d;
	(void)arg;
	pthread_setname_np(pthread_self(), "piper");
	for (;;) {
		hop();
		if ((d = wait_pipe()) < 0)
			break; /* feeder closed the pipe */
		blocked += d;
	}
	report("piper", start, blocked);
	return NULL;
}

static void *feeder(void *arg)
{
	long long start = ns(CLOCK_MONOTONIC);
	struct timespec d = { 0, 20 * 1000 * 1000 };
	(void)arg;
	pthread_setname_np(pthread_self(), "feeder");
	while (ns(CLOCK_MONOTONIC) - start < seconds * 1e9) {
		nanosleep(&d, NULL);
		if (write(pipefd[1], "x", 1) != 1)
			break;
	}
	close(pipefd[1]);
	return NULL;
}

static void *spinner(void *arg)
{
	long long start = ns(CLOCK_MONOTONIC);
	(void)arg;
	pthread_setname_np(pthread_self(), "spinner");
	while (ns(CLOCK_MONOTONIC) - start < seconds * 1e9)
		spin_forever();
	report("spinner", start, 0);
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t t[4];
	void *(*fn[4])(void *) = { napper, piper, feeder, spinner };

	seconds = argc > 1 ? atof(argv[1]) : 5;
	migrate = argc > 2 && strcmp(argv[2], "migrate") == 0;
	if (pipe(pipefd) != 0)
		return 1;
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, fn[i], NULL);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	return 0;
}
