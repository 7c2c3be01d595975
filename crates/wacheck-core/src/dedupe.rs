//! The distinct numbers of an upload, with how many rows carry each, in bounded memory.
//!
//! Numbers (E.164 digits as `u64`) are collected in runs of a fixed length; a full run is sorted
//! and spilled to an anonymous temporary file, and at the end all runs are merged. Memory is one
//! run (8 bytes per number) whatever the file's size; a file smaller than one run never touches
//! the disk.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};

/// Numbers per run by default: 8 MiB.
pub const DEFAULT_RUN: usize = 1 << 20;

#[derive(Debug)]
pub struct Dedupe {
    run: Vec<u64>,
    run_len: usize,
    spilled: Vec<std::fs::File>,
}

impl Default for Dedupe {
    fn default() -> Self {
        Self::new(DEFAULT_RUN)
    }
}

/// One sorted source of the merge.
enum Source {
    Memory(std::vec::IntoIter<u64>),
    File(BufReader<std::fs::File>),
}

impl Source {
    fn next(&mut self) -> io::Result<Option<u64>> {
        match self {
            Source::Memory(it) => Ok(it.next()),
            Source::File(r) => {
                let mut b = [0u8; 8];
                match r.read_exact(&mut b) {
                    Ok(()) => Ok(Some(u64::from_le_bytes(b))),
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
                    Err(e) => Err(e),
                }
            }
        }
    }
}

impl Dedupe {
    pub fn new(run_len: usize) -> Self {
        Dedupe {
            run: Vec::new(),
            run_len: run_len.max(1),
            spilled: Vec::new(),
        }
    }

    pub fn push(&mut self, number: u64) -> io::Result<()> {
        self.run.push(number);
        if self.run.len() >= self.run_len {
            self.spill()?;
        }
        Ok(())
    }

    /// Runs written to disk so far.
    pub fn spilled_runs(&self) -> usize {
        self.spilled.len()
    }

    fn spill(&mut self) -> io::Result<()> {
        self.run.sort_unstable();
        let mut file = tempfile::tempfile()?;
        {
            let mut w = BufWriter::with_capacity(1 << 16, &mut file);
            for n in &self.run {
                w.write_all(&n.to_le_bytes())?;
            }
            w.flush()?;
        }
        file.rewind()?;
        self.spilled.push(file);
        self.run.clear();
        Ok(())
    }

    /// Calls `emit(number, rows)` for every distinct number, in ascending order.
    pub fn finish<E: From<io::Error>>(
        mut self,
        mut emit: impl FnMut(u64, u32) -> Result<(), E>,
    ) -> Result<(), E> {
        self.run.sort_unstable();
        let mut sources = vec![Source::Memory(std::mem::take(&mut self.run).into_iter())];
        sources.extend(
            self.spilled
                .drain(..)
                .map(|f| Source::File(BufReader::with_capacity(1 << 16, f))),
        );
        let mut heap = BinaryHeap::new();
        for (i, s) in sources.iter_mut().enumerate() {
            if let Some(n) = s.next()? {
                heap.push(Reverse((n, i)));
            }
        }
        let mut current: Option<(u64, u32)> = None;
        while let Some(Reverse((n, i))) = heap.pop() {
            if let Some(next) = sources[i].next()? {
                heap.push(Reverse((next, i)));
            }
            current = match current {
                Some((c, rows)) if c == n => Some((c, rows + 1)),
                Some((c, rows)) => {
                    emit(c, rows)?;
                    Some((n, 1))
                }
                None => Some((n, 1)),
            };
        }
        if let Some((c, rows)) = current {
            emit(c, rows)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distinct(run_len: usize, input: &[u64]) -> (Vec<(u64, u32)>, usize) {
        let mut d = Dedupe::new(run_len);
        for n in input {
            d.push(*n).unwrap();
        }
        let spilled = d.spilled_runs();
        let mut out = Vec::new();
        d.finish(|n, r| {
            out.push((n, r));
            io::Result::Ok(())
        })
        .unwrap();
        (out, spilled)
    }

    #[test]
    fn counts_rows_per_distinct_number_in_order() {
        let input = [5, 3, 5, 9, 1, 3, 5];
        let want = vec![(1, 1), (3, 2), (5, 3), (9, 1)];
        assert_eq!(distinct(100, &input), (want.clone(), 0));
        // Runs of 2: three spilled runs plus one in memory, merged to the same answer.
        assert_eq!(distinct(2, &input), (want, 3));
    }

    #[test]
    fn many_runs_agree_with_a_map() {
        let mut x = 7u64;
        let input: Vec<u64> = (0..10_000)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                41_790_000_000 + (x >> 33) % 3_000
            })
            .collect();
        let mut want = std::collections::BTreeMap::new();
        for n in &input {
            *want.entry(*n).or_insert(0u32) += 1;
        }
        let (got, spilled) = distinct(999, &input);
        assert_eq!(spilled, 10);
        assert_eq!(got, want.into_iter().collect::<Vec<_>>());
        assert_eq!(distinct(0, &[]).0, vec![]);
    }
}
