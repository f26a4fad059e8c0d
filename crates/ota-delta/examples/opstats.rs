//! Prints statistics of the ops for a file pair: `opstats OLD NEW`.
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let old = std::fs::read(&a[1]).unwrap();
    let new = std::fs::read(&a[2]).unwrap();
    let sa = ota_delta::matcher::SuffixArray::build(&old, 2).unwrap();
    let ops = ota_delta::matcher::diff_ops(&sa, &old, &new, 4 << 20);
    let mut hist = [0usize; 8];
    for o in &ops {
        let b = match o.diff_len {
            0 => 0,
            1..=7 => 1,
            8..=15 => 2,
            16..=31 => 3,
            32..=63 => 4,
            64..=255 => 5,
            256..=4095 => 6,
            _ => 7,
        };
        hist[b] += 1;
    }
    let extra: u64 = ops.iter().map(|o| o.extra_len).sum();
    let ez = ops.iter().filter(|o| o.extra_len == 0).count();
    println!(
        "ops {} extra {} extra==0 {} diff_len hist [0,1-7,8-15,16-31,32-63,64-255,256-4K,4K+] {:?}",
        ops.len(),
        extra,
        ez,
        hist
    );
}
