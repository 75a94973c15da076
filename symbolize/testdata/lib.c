// lib.c: a shared library with an inlined helper.
static inline int mix(int a, int b) { return (a * 31) ^ (b >> 3); }

__attribute__((noinline)) int lib_loop(int n) {
	int h = 0;
	for (int i = 0; i < n; i++)
		h = mix(h, i);
	return h;
}

int lib_entry(int n) { return lib_loop(n) + 1; }
