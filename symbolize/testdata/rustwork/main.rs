// A Rust workload with generics, traits and closures, for demangling (legacy
// and v0) and inlined frames.
use std::collections::HashMap;

trait Shape {
    fn area(&self) -> f64;
}

struct Square(f64);

impl Shape for Square {
    fn area(&self) -> f64 {
        self.0 * self.0
    }
}

#[inline(always)]
fn sq<T: std::ops::Mul<Output = T> + Copy>(x: T) -> T {
    x * x
}

#[inline(never)]
fn sum_squares<T: std::ops::Mul<Output = T> + std::ops::Add<Output = T> + Copy + Default>(xs: &[T]) -> T {
    xs.iter().fold(T::default(), |acc, &x| acc + sq(x))
}

#[inline(never)]
fn total_area(shapes: &[Box<dyn Shape>]) -> f64 {
    shapes.iter().map(|s| s.area()).sum()
}

fn main() {
    let n = std::env::args().count() * 1000;
    let xs: Vec<i64> = (0..n as i64).collect();
    let ys: Vec<f64> = (0..n).map(|i| i as f64 / 3.0).collect();
    let shapes: Vec<Box<dyn Shape>> = (0..n / 100).map(|i| Box::new(Square(i as f64)) as Box<dyn Shape>).collect();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for w in "the quick brown fox jumps over the lazy dog".split(' ') {
        *counts.entry(w.to_string()).or_default() += 1;
    }
    println!("{} {} {} {}", sum_squares(&xs), sum_squares(&ys), total_area(&shapes), counts["the"]);
}
