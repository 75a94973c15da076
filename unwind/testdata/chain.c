// chain.c: a known call chain for the unwinder tests.
//
//   main -> level1 -> level2 -> level3 -> hot                 ("spin")
//   main -> qsort (libc) -> ... -> spin_cmp -> hot           ("spin-qsort")
//
// In either mode hot never returns, so a stopped process is always inside hot
// with exactly that chain on its stack; the second crosses libc's frameless
// code, where a frame-pointer walk loses its way. level2 uses alloca, which makes gcc
// keep a frame pointer there even with -fomit-frame-pointer (an rbp-based CFA
// row). The other functions exercise the usual prologue and epilogue shapes.
#include <alloca.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline, noipa))

volatile unsigned long sink;

NOINLINE void hot(unsigned long n) {
	unsigned long v = n;
	for (;;) {
		v = v * 6364136223846793005UL + 1442695040888963407UL;
		sink = v;
	}
}

NOINLINE unsigned long level3(unsigned long n, int spin) {
	unsigned long a[8];
	for (int i = 0; i < 8; i++)
		a[i] = n * (unsigned long)i;
	if (spin) {
		printf("ready\n");
		fflush(stdout);
		hot(a[3]);
	}
	unsigned long s = 0;
	for (int i = 0; i < 8; i++)
		s += a[i] ^ sink;
	return s;
}

NOINLINE unsigned long level2(unsigned long n, int spin) {
	size_t len = 64 + (n & 63);
	char *buf = alloca(len);
	memset(buf, (int)n, len);
	unsigned long r = level3(n + (unsigned long)buf[len - 1], spin);
	return r + (unsigned long)buf[0];
}

// level1 realigns its stack (an over-aligned local next to a variable-length
// array), so gcc gives it a dynamic realignment pointer (DRAP): its CFA is
// *(rbp-N), a DW_CFA_def_cfa_expression, and rbp is saved at [rbp].
NOINLINE unsigned long level1(unsigned long n, int spin) {
	char vla[16 + (n & 15)];
	_Alignas(64) unsigned long big[8];
	memset(vla, (int)n, sizeof vla);
	for (int i = 0; i < 8; i++)
		big[i] = n + (unsigned long)i;
	unsigned long r = 0;
	for (unsigned long i = 0; i < 2; i++)
		r += level2(n + i + (unsigned long)vla[i] + big[i & 7], spin);
	return r * 3 + big[n & 7];
}

static int cmp(const void *a, const void *b) {
	unsigned long x = *(const unsigned long *)a, y = *(const unsigned long *)b;
	return x < y ? -1 : x > y;
}

NOINLINE int spin_cmp(const void *a, const void *b) {
	printf("ready\n");
	fflush(stdout);
	hot(*(const unsigned long *)a);
	return cmp(a, b);
}

int main(int argc, char **argv) {
	int spin = argc > 1 && strcmp(argv[1], "spin") == 0;
	if (argc > 1 && strcmp(argv[1], "spin-qsort") == 0) {
		unsigned long w[64];
		for (int i = 0; i < 64; i++)
			w[i] = (unsigned long)(64 - i);
		qsort(w, 64, sizeof w[0], spin_cmp);
		return (int)w[0];
	}
	unsigned long v[16];
	for (int i = 0; i < 16; i++)
		v[i] = (unsigned long)(i * 7919) % 101;
	qsort(v, 16, sizeof v[0], cmp);
	unsigned long r = level1(v[3] + (unsigned long)getpid() % 3, spin);
	printf("%lu\n", r);
	return 0;
}
