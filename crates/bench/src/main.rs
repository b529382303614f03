//! cairn-bench: benchmarks of the suite (filled in by the quality benchmark).

fn main() {}
