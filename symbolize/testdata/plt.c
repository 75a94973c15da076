/* Calls into libc through PLT stubs: plt_test.go names each stub as objdump does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
	char *p = malloc(strlen(argv[0]) + 1);
	if (p == NULL)
		return 1;
	strcpy(p, argv[0]);
	printf("%s %zu\n", p, strlen(p));
	puts(getenv("HOME") ? "home" : "no home");
	free(p);
	return argc > 3 ? atoi(argv[1]) : 0;
}
