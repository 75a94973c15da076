// shapes.cc: C++ with exceptions, virtual calls, templates and the standard
// library, so that its .eh_frame has LSDAs ("zPLR" CIEs) and many FDEs.
#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

struct Shape {
	virtual ~Shape() = default;
	virtual double area() const = 0;
	virtual std::string name() const = 0;
};

struct Rect : Shape {
	double w, h;
	Rect(double w, double h) : w(w), h(h) {}
	double area() const override { return w * h; }
	std::string name() const override { return "rect"; }
};

struct Circle : Shape {
	double r;
	explicit Circle(double r) : r(r) {
		if (r < 0) throw std::invalid_argument("negative radius");
	}
	double area() const override { return 3.14159265358979 * r * r; }
	std::string name() const override { return "circle"; }
};

template <typename T> T total(const std::vector<std::unique_ptr<Shape>> &v) {
	T t{};
	for (const auto &s : v) t += static_cast<T>(s->area());
	return t;
}

int main(int argc, char **) {
	std::vector<std::unique_ptr<Shape>> shapes;
	std::map<std::string, int> counts;
	for (int i = 0; i < 100 * argc; i++) {
		try {
			if (i % 3 == 0)
				shapes.push_back(std::make_unique<Circle>(i % 7 == 0 ? -1.0 : i));
			else
				shapes.push_back(std::make_unique<Rect>(i, i + 1));
		} catch (const std::exception &e) {
			counts[e.what()]++;
		}
	}
	std::sort(shapes.begin(), shapes.end(),
	          [](const auto &a, const auto &b) { return a->area() < b->area(); });
	for (const auto &s : shapes) counts[s->name()]++;
	std::printf("%f %ld %zu\n", total<double>(shapes), total<long>(shapes), counts.size());
	return 0;
}
