// templates.cpp: C++ templates, namespaces, virtual functions and lambdas, for
// demangling and inlined template frames.
#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

namespace ember {
namespace test {

template <typename T> struct Accumulator {
	T total{};
	void add(T x) { total += x * x; }
};

template <typename T> __attribute__((noinline)) T sum_squares(const std::vector<T> &xs) {
	Accumulator<T> acc;
	for (const T &x : xs)
		acc.add(x);
	return acc.total;
}

struct Shape {
	virtual ~Shape() = default;
	virtual double area() const = 0;
};

struct Square : Shape {
	double side;
	explicit Square(double s) : side(s) {}
	double area() const override { return side * side; }
};

__attribute__((noinline)) double total_area(const std::vector<Shape *> &shapes) {
	double t = 0;
	for (auto *s : shapes)
		t += s->area();
	return t;
}

} // namespace test
} // namespace ember

int main(int argc, char **argv) {
	std::vector<int> vi(argc * 1000);
	std::vector<double> vd(argc * 1000);
	for (size_t i = 0; i < vi.size(); i++) {
		vi[i] = int(i % 17);
		vd[i] = double(i) / 3;
	}
	std::map<std::string, long> m;
	m["ints"] = ember::test::sum_squares(vi);
	m["doubles"] = long(ember::test::sum_squares(vd));
	std::vector<ember::test::Shape *> shapes;
	for (int i = 0; i < argc * 10; i++)
		shapes.push_back(new ember::test::Square(i));
	std::sort(vd.begin(), vd.end(), [](double a, double b) { return a > b; });
	std::printf("%ld %ld %g\n", m["ints"], m["doubles"], ember::test::total_area(shapes));
	for (auto *s : shapes)
		delete s;
	return 0;
}
