// streambuf: spends its time in Sink::overflow(), a virtual function that
// the system libstdc++ calls back: Sink::overflow() <- std::streambuf::xsputn
// <- std::ostream::write (libstdc++.so) <- emit() <- run() <- main().
// libstdc++ has no frame pointers; its .eh_frame describes every frame.
//
// usage: streambuf SECONDS
#include <cstdlib>
#include <ctime>
#include <ostream>
#include <streambuf>

static volatile unsigned long sink;

static double now()
{
	timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

// Sink has no buffer, so libstdc++ calls overflow() for every character.
class Sink : public std::streambuf {
protected:
	__attribute__((noinline)) int_type overflow(int_type c) override
	{
		unsigned long x = sink + c;
		for (int i = 0; i < 2000; i++)
			x = x * 6364136223846793005UL + 1;
		sink = x;
		return c;
	}
};

__attribute__((noinline)) void emit(std::ostream &os)
{
	static const char text[] = "the quick brown fox jumps over the lazy dog";
	os.write(text, sizeof(text) - 1);
	sink += 1;
}

__attribute__((noinline)) void run(double seconds)
{
	Sink buf;
	std::ostream os(&buf);
	double end = now() + seconds;
	while (now() < end)
		emit(os);
	sink += 2;
}

__attribute__((noinline)) void warmup(double seconds)
{
	double end = now() + seconds;
	while (now() < end)
		for (int i = 0; i < 10000; i++)
			sink = sink * 31 + i;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? std::atof(argv[1]) : 3;
	warmup(0.3);
	run(seconds);
	return 0;
}
