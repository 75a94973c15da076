/*
 * forkexec: forks; the child runs MILLISECONDS (20 by default) of CPU time in
 * prelude() <- child() <- main(), this program's code, and then execs PROG
 * (with its own arguments), as a shell's fork child runs the shell's code
 * before its exec. Samples of the child taken before the exec carry this
 * program's addresses but are built after the exec, when the process runs
 * another image: a test (issue #15) checks that they name prelude. It
 * prints the child's PID and waits for it.
 *
 * usage: forkexec MILLISECONDS PROG [ARG...]
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile unsigned long sink;

/* The child's own CPU time (it starts at zero at the fork), not the clock on
 * the wall: on a busy machine the child gets its MILLISECONDS on the CPU all
 * the same, so the number of samples a test expects does not depend on load. */
static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) unsigned long prelude(unsigned long x)
{
	for (int i = 0; i < 20000; i++)
		x = x * 6364136223846793005UL + 1442695040888963407UL;
	return x;
}

/* Works after its call, so that the call is no tail jump. */
__attribute__((noinline)) void child(double ms, char **argv)
{
	double end = now() + ms / 1e3;
	while (now() < end)
		sink += prelude(sink) + sink;
	execv(argv[0], argv);
	perror(argv[0]);
	_exit(127);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: forkexec MILLISECONDS PROG [ARG...]\n");
		return 2;
	}
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		return 1;
	}
	if (pid == 0)
		child(atof(argv[1]), argv + 2);
	printf("%d\n", (int)pid);
	int status;
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return 1;
	return 0;
}
