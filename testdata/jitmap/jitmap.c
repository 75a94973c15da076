/*
 * jitmap: a JIT in miniature, for tests of perf maps. It writes a small
 * function's machine code into an anonymous executable mapping, names it in
 * /tmp/perf-PID.map as JIT runtimes do (perf's jit-interface convention,
 * PID as the process sees it), and runs it until SECONDS pass. The code is
 * written out byte by byte, per architecture: a frame, a counted loop, a
 * return, so a sample in it has a frame-pointer chain back to main.
 *
 * usage: jitmap SECONDS [regular|symlink|fifo]
 *   regular  /tmp/perf-PID.map names the code jit_spin_hot (the default)
 *   symlink  /tmp/perf-PID.map is a symlink to such a map, /tmp/jit-real.map
 *   fifo     /tmp/perf-PID.map is a FIFO, which no reader must wait on
 * It prints "ready PID" once the map is in place.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__)
static const unsigned char code[] = {
	0x55,                   /* push %rbp */
	0x48, 0x89, 0xe5,       /* mov %rsp,%rbp */
	0x48, 0xff, 0xcf,       /* 1: dec %rdi */
	0x75, 0xfb,             /* jnz 1b */
	0x5d,                   /* pop %rbp */
	0xc3,                   /* ret */
};
#elif defined(__aarch64__)
static const unsigned int code[] = {
	0xa9bf7bfd, /* stp x29, x30, [sp, #-16]! */
	0x910003fd, /* mov x29, sp */
	0xf1000400, /* 1: subs x0, x0, #1 */
	0x54ffffe1, /* b.ne 1b */
	0xa8c17bfd, /* ldp x29, x30, [sp], #16 */
	0xd65f03c0, /* ret */
};
#else
#error "jitmap: no code for this architecture"
#endif

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void write_map(const char *name, void *addr)
{
	FILE *f = fopen(name, "w");
	if (!f) {
		perror(name);
		exit(1);
	}
	fprintf(f, "%lx %zx jit_spin_hot\n", (unsigned long)addr, sizeof(code));
	fclose(f);
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 10;
	const char *mode = argc > 2 ? argv[2] : "regular";
	char name[64];

	void *mem = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	memcpy(mem, code, sizeof(code));
	if (mprotect(mem, 4096, PROT_READ | PROT_EXEC)) {
		perror("mprotect");
		return 1;
	}
	__builtin___clear_cache((char *)mem, (char *)mem + sizeof(code));

	snprintf(name, sizeof(name), "/tmp/perf-%d.map", (int)getpid());
	unlink(name);
	if (!strcmp(mode, "symlink")) {
		write_map("/tmp/jit-real.map", mem);
		if (symlink("/tmp/jit-real.map", name)) {
			perror("symlink");
			return 1;
		}
	} else if (!strcmp(mode, "fifo")) {
		if (mkfifo(name, 0644)) {
			perror("mkfifo");
			return 1;
		}
	} else {
		write_map(name, mem);
	}
	printf("ready %d\n", (int)getpid());
	fflush(stdout);

	void (*spin)(long) = (void (*)(long))mem;
	double end = now() + secs;
	while (now() < end)
		spin(20000000);
	unlink(name);
	return 0;
}
