/*
 * mapexec: maps FILE executable, as the loader maps a library's code but
 * without running any of it, then spins until killed, so that a profiler
 * samples a process with FILE among its executable mappings. The tracer's
 * tests feed hostile binaries to its unwind-table builder this way.
 *
 * usage: mapexec FILE
 */
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static volatile unsigned long sink;

int main(int argc, char **argv)
{
	struct stat st;
	int fd;

	if (argc != 2) {
		fprintf(stderr, "usage: mapexec FILE\n");
		return 2;
	}
	fd = open(argv[1], O_RDONLY);
	if (fd < 0 || fstat(fd, &st) != 0) {
		perror(argv[1]);
		return 1;
	}
	if (mmap(NULL, st.st_size, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0) == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	printf("mapped\n");
	fflush(stdout);
	for (;;)
		sink++;
}
