/* A program whose functions the debuginfod tests look up by name and line.
 * VARIANT makes builds with different build IDs from one source. */
#ifndef VARIANT
#define VARIANT 1
#endif

static int __attribute__((noinline)) ember_leaf(int x)
{
	return x * 3 + VARIANT;
}

int __attribute__((noinline)) ember_caller(int x)
{
	return ember_leaf(x) + 1;
}

int main(int argc, char **argv)
{
	(void)argv;
	return ember_caller(argc) & 1;
}
