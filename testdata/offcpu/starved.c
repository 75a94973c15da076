/*
 * starved: a SCHED_IDLE thread and a normal one spin on the same CPU for
 * SECONDS. The scheduler gives the idle-class thread about 3/1027 of the
 * CPU, a slice every second or so: it waits preempted (runnable) for about a
 * second at a time, across the 500 ms drains of `ember record`, and without
 * task_work its user stack is taken when it is preempted, a generation (or
 * two) before its block is counted.
 *
 * usage: starved SECONDS
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile unsigned long sink;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The normal thread's loop: its stacks are never the idle thread's. */
__attribute__((noinline)) void hog(double seconds)
{
	double end = now() + seconds;
	while (now() < end)
		for (int i = 0; i < 1000; i++)
			sink = sink * 31 + i;
}

/* The idle thread works at a recursion depth that changes every few
 * microseconds, so that the user stack stored at one preemption is not
 * stored again, by chance, before its block is counted. */
__attribute__((noinline)) unsigned long deep(int n)
{
	if (n > 0)
		return deep(n - 1) * 3 + sink;
	for (int i = 0; i < 1000; i++)
		sink = sink * 31 + i;
	return sink;
}

__attribute__((noinline)) void starve(double seconds)
{
	double end = now() + seconds;
	for (unsigned k = 0; now() < end; k++)
		sink += deep(k % 61);
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 5;
	cpu_set_t one;
	CPU_ZERO(&one);
	CPU_SET(0, &one);
	if (sched_setaffinity(0, sizeof(one), &one))
		return 1;
	pid_t child = fork();
	if (child == 0) {
		hog(seconds);
		_exit(0);
	}
	struct sched_param sp = {0};
	if (sched_setscheduler(0, SCHED_IDLE, &sp))
		return 1;
	starve(seconds);
	waitpid(child, 0, 0);
	return 0;
}
