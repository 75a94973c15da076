// tiny.c: a small freestanding program whose ELF image seeds the fuzz
// targets: a symbol table, DWARF lines and an inlined function in a few KiB.
static inline int sq(int x) { return x * x; }

int acc;

__attribute__((noinline)) int sum_squares(int n) {
	int s = 0;
	for (int i = 0; i < n; i++)
		s += sq(i);
	return s;
}

void _start(void) {
	acc = sum_squares(10);
	for (;;)
		;
}
