//! Synthetic x86-64 ELF executables: functions of filler instructions with
//! rel32 calls and jumps between them, RIP-relative loads of a data table
//! and a data table of pointers to the functions. Inserting instructions
//! and laying the program out again moves every reference the way a
//! compiler's small change does.
#![allow(dead_code)]

/// One instruction of a synthetic function.
#[derive(Clone, Debug)]
pub enum Ins {
    /// Bytes with no reference in them.
    Filler(Vec<u8>),
    /// `call rel32` to a function.
    Call(usize),
    /// `je rel32` to a function.
    Je(usize),
    /// `lea rax, [rip + disp32]` to a data slot.
    Lea(usize),
}

impl Ins {
    fn len(&self) -> usize {
        match self {
            Ins::Filler(b) => b.len(),
            Ins::Call(_) => 5,
            Ins::Je(_) => 6,
            Ins::Lea(_) => 7,
        }
    }
}

/// A program: functions (each ends with `ret`) and data slots, each slot a
/// pointer to a function.
#[derive(Clone, Debug)]
pub struct Program {
    pub funcs: Vec<Vec<Ins>>,
    pub slots: Vec<usize>,
}

/// A small deterministic generator (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn filler(rng: &mut Rng) -> Ins {
    let b = (rng.next() >> 8).to_le_bytes();
    Ins::Filler(match rng.below(6) {
        0 => vec![0x90],                          // nop
        1 => vec![0xB8, b[0], b[1], 0, 0],        // mov eax, imm32
        2 => vec![0x48, 0x01, 0xD8],              // add rax, rbx
        3 => vec![0x53],                          // push rbx
        4 => vec![0x5B],                          // pop rbx
        _ => vec![0x48, 0x83, 0xC0, b[2] & 0x3f], // add rax, imm8
    })
}

fn instruction(rng: &mut Rng, funcs: usize, slots: usize) -> Ins {
    match rng.below(10) {
        0 | 1 => Ins::Call(rng.below(funcs)),
        2 => Ins::Je(rng.below(funcs)),
        3 => Ins::Lea(rng.below(slots)),
        _ => filler(rng),
    }
}

/// A program of `funcs` functions of 4 to 24 instructions.
pub fn program(seed: u64, funcs: usize) -> Program {
    let mut rng = Rng::new(seed);
    let slots = funcs.max(1);
    let funcs_v = (0..funcs.max(1))
        .map(|_| {
            let n = 4 + rng.below(21);
            (0..n)
                .map(|_| instruction(&mut rng, funcs.max(1), slots))
                .collect()
        })
        .collect();
    let slot_v = (0..slots).map(|_| rng.below(funcs.max(1))).collect();
    Program {
        funcs: funcs_v,
        slots: slot_v,
    }
}

/// `p` with `inserts` instructions added at random places (a new call
/// sometimes among them), as a small source change would.
pub fn edit(p: &Program, seed: u64, inserts: usize) -> Program {
    let mut rng = Rng::new(seed ^ 0xED17);
    let mut q = p.clone();
    let (nf, ns) = (q.funcs.len(), q.slots.len());
    for _ in 0..inserts {
        let f = rng.below(nf);
        let at = rng.below(q.funcs[f].len() + 1);
        let ins = instruction(&mut rng, nf, ns);
        q.funcs[f].insert(at, ins);
    }
    q
}

const BASE: u64 = 0x40_0000;
const TEXT_OFF: usize = 0x1000;

/// The program laid out as an x86-64 ELF executable: headers, `.text` in
/// an executable segment at 0x1000, the data table in a writable one.
pub fn link(p: &Program) -> Vec<u8> {
    let mut starts = Vec::with_capacity(p.funcs.len());
    let mut at = TEXT_OFF;
    for f in &p.funcs {
        starts.push(at);
        at += f.iter().map(Ins::len).sum::<usize>() + 1;
    }
    let text_end = at;
    let data_off = text_end.next_multiple_of(0x1000);
    let va = |off: usize| BASE + off as u64;
    let mut out = vec![0u8; data_off + 8 * p.slots.len()];
    let mut pc = TEXT_OFF;
    for f in &p.funcs {
        for ins in f {
            let next = pc + ins.len();
            let rel = |target: usize| (target as i64 - next as i64) as i32;
            let bytes: Vec<u8> = match ins {
                Ins::Filler(b) => b.clone(),
                Ins::Call(t) => [&[0xE8][..], &rel(starts[*t]).to_le_bytes()].concat(),
                Ins::Je(t) => [&[0x0F, 0x84][..], &rel(starts[*t]).to_le_bytes()].concat(),
                Ins::Lea(s) => [
                    &[0x48, 0x8D, 0x05][..],
                    &rel(data_off + 8 * s).to_le_bytes(),
                ]
                .concat(),
            };
            out[pc..next].copy_from_slice(&bytes);
            pc = next;
        }
        out[pc] = 0xC3; // ret
        pc += 1;
    }
    for (i, &f) in p.slots.iter().enumerate() {
        let o = data_off + 8 * i;
        out[o..o + 8].copy_from_slice(&va(starts[f]).to_le_bytes());
    }
    // ELF header.
    out[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
    let put16 =
        |b: &mut Vec<u8>, at: usize, v: u16| b[at..at + 2].copy_from_slice(&v.to_le_bytes());
    let put32 =
        |b: &mut Vec<u8>, at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let put64 =
        |b: &mut Vec<u8>, at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_le_bytes());
    put16(&mut out, 0x10, 2); // ET_EXEC
    put16(&mut out, 0x12, 62); // x86-64
    put32(&mut out, 0x14, 1);
    put64(&mut out, 0x18, va(TEXT_OFF));
    put64(&mut out, 0x20, 64); // program headers right after
    put16(&mut out, 0x34, 64);
    put16(&mut out, 0x36, 56);
    put16(&mut out, 0x38, 3);
    put16(&mut out, 0x3a, 64);
    // Program headers: headers (R), text (R+X), data (R+W).
    let segments = [
        (4u32, 0usize, TEXT_OFF),
        (5, TEXT_OFF, text_end - TEXT_OFF),
        (6, data_off, 8 * p.slots.len()),
    ];
    for (i, (flags, off, size)) in segments.into_iter().enumerate() {
        let h = 64 + 56 * i;
        put32(&mut out, h, 1); // PT_LOAD
        put32(&mut out, h + 4, flags);
        put64(&mut out, h + 8, off as u64);
        put64(&mut out, h + 16, va(off));
        put64(&mut out, h + 24, va(off));
        put64(&mut out, h + 32, size as u64);
        put64(&mut out, h + 40, size as u64);
        put64(&mut out, h + 48, 0x1000);
    }
    out
}

/// `body` behind an x86-64 ELF header whose program headers describe
/// `segments` (offset, size, vaddr above 0x400000, flags), each clamped
/// into the file: any bytes as an ELF, for the rewrite's robustness tests.
pub fn over(body: &[u8], segments: &[(u16, u16, u32, u8)]) -> Vec<u8> {
    let segments = &segments[..segments.len().min(8)];
    let mut b = vec![0u8; 64 + 56 * segments.len()];
    b.extend_from_slice(body);
    let len = b.len() as u64;
    b[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
    b[0x12] = 62;
    b[0x20] = 64;
    b[0x36] = 56;
    b[0x38] = segments.len() as u8;
    for (i, &(off, size, vaddr, flags)) in segments.iter().enumerate() {
        let h = 64 + 56 * i;
        let off = u64::from(off) % len;
        b[h] = 1; // PT_LOAD
        b[h + 4] = flags & 7;
        b[h + 8..h + 16].copy_from_slice(&off.to_le_bytes());
        b[h + 16..h + 24].copy_from_slice(&(BASE + u64::from(vaddr)).to_le_bytes());
        b[h + 32..h + 40].copy_from_slice(&u64::from(size).min(len - off).to_le_bytes());
    }
    b
}
