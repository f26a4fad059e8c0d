//! Directory-tree deltas.

/// Magic of the tree patch format.
pub const MAGIC: &[u8; 8] = b"OTATREE1";
