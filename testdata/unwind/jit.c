/*
 * jit: calls hot() through a few bytes of machine code it writes into an
 * anonymous executable mapping, as a JIT compiler's code would: hot() <-
 * (anonymous code) <- main(). No unwind table covers that code, so a table
 * walk stops there and must say so. x86-64 only.
 *
 * usage: jit SECONDS
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static volatile unsigned long sink;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) void hot(void)
{
	unsigned long x = sink;
	for (int i = 0; i < 100000; i++)
		x = x * 6364136223846793005UL + 1442695040888963407UL;
	sink = x;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 3;
	/* sub $8,%rsp; movabs $hot,%rax; call *%rax; add $8,%rsp; ret */
	unsigned char code[] = { 0x48, 0x83, 0xec, 0x08, 0x48, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0,
				 0xff, 0xd0, 0x48, 0x83, 0xc4, 0x08, 0xc3 };
	void (*fn)(void) = hot;
	memcpy(code + 6, &fn, sizeof(fn));
	void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED)
		return 1;
	memcpy(page, code, sizeof(code));
	void (*jitted)(void) = (void (*)(void))page;
	double end = now() + seconds;
	while (now() < end)
		jitted();
	return 0;
}
