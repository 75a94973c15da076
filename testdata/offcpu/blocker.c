/*
 * blocker: threads that block for known times, for off-CPU and wall tests.
 *
 *   napper  sleeps in 10 ms naps in nap_sleep()
 *   piper   blocks in wait_pipe() on a pipe that feeder writes every 20 ms
 *   spinner spins in spin_forever()
 *   waiter  (with "vfork") waits in wait_vfork() for a vfork()ed child that
 *           sleeps 20 ms and exits: an uninterruptible (killable) wait, the
 *           state of a thread blocked on a disk
 *
 * Each thread measures its own truth and prints, at the end, one line
 *   thread NAME TID WALL_NS CPU_NS BLOCKED_NS
 * where BLOCKED_NS is the time spent inside its named blocking call.
 * With "migrate", napper and piper move to another CPU before every block.
 *
 * usage: blocker SECONDS [migrate] [vfork]
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double seconds;
static int migrate, with_vfork;
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

/*
 * The truth of a blocking call is the time its thread spent off CPU in it:
 * the wall time it took less the CPU time the thread used in it (entering
 * and leaving the system call, arming the timer, the clock reads). On real
 * hardware that CPU time is a few microseconds a call; under an emulator
 * (the kernel matrix boots kernels in qemu's TCG) it is several percent of a
 * 10 ms nap, which wall time alone would count as blocked.
 */
struct mark {
	long long wall, cpu;
};

static struct mark now(void)
{
	struct mark m;
	m.cpu = ns(CLOCK_THREAD_CPUTIME_ID);
	m.wall = ns(CLOCK_MONOTONIC);
	return m;
}

/* Never negative: a call that did not block (a pipe with data already in
 * it) can read a hair more CPU time than wall time where the two clocks
 * tick apart (an emulator's HPET), and the callers take a negative result
 * for a failed call (a closed pipe): piper stopped after its first such read
 * in the kernel matrix's guests. */
static long long off_cpu_since(struct mark m)
{
	long long wall = ns(CLOCK_MONOTONIC);
	long long cpu = ns(CLOCK_THREAD_CPUTIME_ID);
	long long d = (wall - m.wall) - (cpu - m.cpu);
	return d > 0 ? d : 0;
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
	struct mark t0 = now();
	sleep_once(&d);
	return off_cpu_since(t0);
}

__attribute__((noinline)) ssize_t read_once(int fd, char *b)
{
	return read(fd, b, 1);
}

__attribute__((noinline)) long long wait_pipe(void)
{
	char b;
	struct mark t0 = now();
	if (read_once(pipefd[0], &b) != 1)
		return -1;
	return off_cpu_since(t0);
}

/* The child shares the parent's memory and stack until it exits: it makes
 * raw system calls only. */
__attribute__((noinline)) long long wait_vfork(void)
{
	struct mark t0 = now();
	pid_t pid = vfork();
	if (pid == 0) {
		struct timespec d = { 0, 20 * 1000 * 1000 };
		syscall(SYS_nanosleep, &d, NULL);
		syscall(SYS_exit, 0);
	}
	long long d = off_cpu_since(t0);
	if (pid < 0)
		return -1;
	waitpid(pid, NULL, 0);
	return d;
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

static void *waiter(void *arg)
{
	long long start = ns(CLOCK_MONOTONIC), blocked = 0, d;
	(void)arg;
	pthread_setname_np(pthread_self(), "waiter");
	while (ns(CLOCK_MONOTONIC) - start < seconds * 1e9) {
		if ((d = wait_vfork()) < 0)
			break;
		blocked += d;
	}
	report("waiter", start, blocked);
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t t[5];
	void *(*fn[5])(void *) = { napper, piper, feeder, spinner, waiter };
	int n = 4;

	seconds = argc > 1 ? atof(argv[1]) : 5;
	for (int i = 2; i < argc; i++) {
		migrate |= strcmp(argv[i], "migrate") == 0;
		with_vfork |= strcmp(argv[i], "vfork") == 0;
	}
	if (with_vfork)
		n = 5;
	if (pipe(pipefd) != 0)
		return 1;
	for (int i = 0; i < n; i++)
		pthread_create(&t[i], NULL, fn[i], NULL);
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	return 0;
}
