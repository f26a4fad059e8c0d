//! Prints statistics of the ops for a file pair: `opstats OLD NEW CHUNK_MB`.
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let old = std::fs::read(&a[1]).unwrap();
    let new = std::fs::read(&a[2]).unwrap();
    let chunk: usize = a[3].parse::<usize>().unwrap() << 20;
    let sa = ota_delta::matcher::SuffixArray::build(&old, 2).unwrap();
    let ops = ota_delta::matcher::diff_ops(&sa, &old, &new, chunk);
    let extra: u64 = ops.iter().map(|o| o.extra_len).sum();
    let mut nz = 0u64;
    let mut at = 0usize;
    for o in &ops {
        for i in 0..o.diff_len as usize {
            if new[at + i] != old[o.old_pos as usize + i] {
                nz += 1;
            }
        }
        at += (o.diff_len + o.extra_len) as usize;
    }
    println!("ops {} extra {} diff-nonzero {}", ops.len(), extra, nz);
}
