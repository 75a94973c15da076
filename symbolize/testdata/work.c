// work.c: a CPU workload with static inline helpers, so that optimised builds
// have inlined frames, and a noinline entry point the tests can look up.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct point { double x, y; };

static inline double sq(double v) { return v * v; }

static inline double dist2(struct point a, struct point b) { return sq(a.x - b.x) + sq(a.y - b.y); }

static int cmp_double(const void *a, const void *b) {
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

__attribute__((noinline)) double nearest(struct point *ps, int n, struct point q) {
	double best = 1e300;
	for (int i = 0; i < n; i++) {
		double d = dist2(ps[i], q);
		if (d < best)
			best = d;
	}
	return best;
}

__attribute__((noinline)) unsigned long hash_bytes(const char *s, size_t n) {
	unsigned long h = 1469598103934665603UL;
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211UL;
	}
	return h;
}

__attribute__((noinline)) double sorted_median(double *v, int n) {
	qsort(v, n, sizeof *v, cmp_double);
	return n ? v[n / 2] : 0;
}

extern int lib_entry(int n); /* in lib.c when linked with the shared library */
extern int lib_loop(int n);

int main(int argc, char **argv) {
	int n = argc > 1 ? atoi(argv[1]) : 1000;
	struct point *ps = malloc(sizeof *ps * n);
	double *v = malloc(sizeof *v * n);
	for (int i = 0; i < n; i++) {
		ps[i].x = i * 0.5;
		ps[i].y = i * 0.25;
		v[i] = (i * 7919) % 1000;
	}
	struct point q = {3, 4};
	printf("%g %lu %g\n", nearest(ps, n, q), hash_bytes(argv[0], strlen(argv[0])), sorted_median(v, n));
#ifdef WITH_LIB
	printf("%d\n", lib_entry(n));
#endif
	if (argc > 2) {
		/* Wait for the test: print our own addresses and sleep. */
		printf("nearest=%p\n", (void *)nearest);
#ifdef WITH_LIB
		printf("lib_loop=%p\n", (void *)lib_loop);
#endif
		fflush(stdout);
		sleep(60);
	}
	free(ps);
	free(v);
	return 0;
}
