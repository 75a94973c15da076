/*
 * wakeup: threads that are woken by known code, for the --wakers tests.
 *
 *   consumer blocks in consume() reading a pipe
 *   producer writes it from produce_item() every 20 ms
 *   waiter   blocks in take_lock() on a pthread mutex
 *   holder   holds the mutex 10 ms at a time and lets it go in
 *            release_lock(), which wakes the waiter
 *
 * The named functions call libc through one more function each (read_once,
 * write_once, lock_once, unlock_once): libc keeps no frame pointers, so a
 * frame-pointer walk that starts in libc loses its direct caller. Each
 * thread prints "thread NAME TID" at the end.
 *
 * usage: wakeup SECONDS
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double seconds;
static int pipefd[2];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;
static volatile unsigned long sink;

static long long ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void report(const char *name)
{
	pthread_mutex_lock(&out_mu);
	printf("thread %s %ld\n", name, (long)syscall(SYS_gettid));
	fflush(stdout);
	pthread_mutex_unlock(&out_mu);
}

static void nap(long ms)
{
	struct timespec d = { 0, ms * 1000 * 1000 };
	nanosleep(&d, NULL);
}

__attribute__((noinline)) ssize_t read_once(char *b)
{
	return read(pipefd[0], b, 1);
}

__attribute__((noinline)) int consume(void)
{
	char b;
	return read_once(&b) == 1;
}

__attribute__((noinline)) ssize_t write_once(void)
{
	return write(pipefd[1], "x", 1);
}

__attribute__((noinline)) int produce_item(void)
{
	return write_once() == 1;
}

__attribute__((noinline)) int lock_once(void)
{
	return pthread_mutex_lock(&mu);
}

__attribute__((noinline)) void take_lock(void)
{
	lock_once();
}

__attribute__((noinline)) int unlock_once(void)
{
	return pthread_mutex_unlock(&mu);
}

__attribute__((noinline)) void release_lock(void)
{
	unlock_once();
}

__attribute__((noinline)) void hold(long long ms)
{
	long long end = ns() + ms * 1000000;
	while (ns() < end)
		sink = sink * 33 + 1;
}

static void *consumer(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "consumer");
	while (consume())
		;
	report("consumer");
	return NULL;
}

static void *producer(void *arg)
{
	long long start = ns();
	(void)arg;
	pthread_setname_np(pthread_self(), "producer");
	while (ns() - start < seconds * 1e9) {
		nap(20);
		if (!produce_item())
			break;
	}
	close(pipefd[1]);
	report("producer");
	return NULL;
}

static volatile int done;

static void *waiter(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "waiter");
	while (!done) {
		take_lock();
		pthread_mutex_unlock(&mu);
		nap(1); /* let the holder take it again */
	}
	report("waiter");
	return NULL;
}

static void *holder(void *arg)
{
	long long start = ns();
	(void)arg;
	pthread_setname_np(pthread_self(), "holder");
	while (ns() - start < seconds * 1e9) {
		pthread_mutex_lock(&mu);
		hold(10);
		release_lock();
		nap(2);
	}
	done = 1;
	report("holder");
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t t[4];
	void *(*fn[4])(void *) = { consumer, producer, holder, waiter };

	seconds = argc > 1 ? atof(argv[1]) : 5;
	if (pipe(pipefd) != 0)
		return 1;
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, fn[i], NULL);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	return 0;
}
