//! Where a torrent's pieces live on disk (BEP 3, "info dictionary"): the payload is the
//! concatenation of the files in metainfo order, cut into `piece length` pieces, the last one
//! possibly shorter. A block `(piece, begin, len)` therefore maps to one or more runs inside
//! consecutive files, and zero-length files occupy no bytes of that concatenation.

use std::path::PathBuf;

use super::StorageError;

/// The geometry of a torrent's payload, as read from its metainfo.
///
/// The fields are public so the metainfo parser can build it directly; [`Layout::validate`]
/// (called by [`super::Storage::open`]) checks that they agree with each other. The methods
/// below never panic, even on a layout that does not validate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Bytes per piece; every piece but the last has exactly this length.
    pub piece_length: u64,
    /// Sum of the file lengths.
    pub total_length: u64,
    /// Relative path (already sanitised by the metainfo parser) and length of each file, in
    /// metainfo order.
    pub files: Vec<(PathBuf, u64)>,
    /// SHA-1 of each piece.
    pub piece_hashes: Vec<[u8; 20]>,
    /// Which files are BEP 47 padding (all zeros, never on disk); empty when none are.
    pub pad: Vec<bool>,
}

/// A run of bytes of one block inside one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Index into [`Layout::files`].
    pub file: usize,
    /// Byte offset inside that file.
    pub offset: u64,
    /// Never zero: empty runs (zero-length files) are skipped.
    pub len: u64,
}

impl Layout {
    /// Whether file `index` is a padding file.
    pub fn is_pad(&self, index: usize) -> bool {
        self.pad.get(index).copied().unwrap_or(false)
    }

    /// Number of pieces (one per hash).
    pub fn piece_count(&self) -> usize {
        self.piece_hashes.len()
    }

    /// Length of piece `index`: `piece_length`, less for the last piece, 0 past the end.
    pub fn piece_len(&self, index: usize) -> u64 {
        if index >= self.piece_count() {
            return 0;
        }
        match self.piece_start(index) {
            Some(start) => self.total_length.saturating_sub(start).min(self.piece_length),
            None => 0,
        }
    }

    /// The file runs covering `len` bytes at `begin` inside `piece`, in payload order.
    ///
    /// This does not range-check the block against the piece (the storage does, and reports
    /// why); bytes past the end of the payload simply yield no segment.
    pub fn segments(&self, piece: usize, begin: u64, len: u64) -> Segments<'_> {
        self.segments_from(0, 0, piece, begin, len)
    }

    /// Checks that the fields agree: a non-zero piece length, file lengths summing to
    /// `total_length`, and exactly one hash per piece.
    pub fn validate(&self) -> Result<(), StorageError> {
        if self.piece_length == 0 {
            return Err(StorageError::PieceLengthZero);
        }
        let files_total = self.files.iter().try_fold(0u64, |acc, (_, len)| acc.checked_add(*len));
        if files_total != Some(self.total_length) {
            return Err(StorageError::LengthMismatch { files_total, total_length: self.total_length });
        }
        let expected = self.total_length.div_ceil(self.piece_length);
        if u64::try_from(self.piece_hashes.len()).ok() != Some(expected) {
            return Err(StorageError::PieceCountMismatch { hashes: self.piece_hashes.len(), expected });
        }
        Ok(())
    }

    /// The end offset (in payload bytes) of each file, for [`Layout::segments_indexed`].
    pub(crate) fn file_ends(&self) -> Vec<u64> {
        let mut end = 0u64;
        self.files
            .iter()
            .map(|(_, len)| {
                end = end.saturating_add(*len);
                end
            })
            .collect()
    }

    /// Like [`Layout::segments`], but starts at the right file by binary search over
    /// `file_ends` (from [`Layout::file_ends`]) instead of walking every earlier file: the
    /// storage maps every block through here, and torrents can hold tens of thousands of files.
    pub(crate) fn segments_indexed(&self, file_ends: &[u64], piece: usize, begin: u64, len: u64) -> Segments<'_> {
        let Some(start) = self.block_start(piece, begin) else {
            return self.segments_from(0, 0, piece, begin, 0);
        };
        // The first file that ends after `start`; earlier ones (and empty ones) hold none of it.
        let first = file_ends.partition_point(|&end| end <= start);
        let first_start = match first.checked_sub(1) {
            Some(previous) => file_ends.get(previous).copied().unwrap_or(0),
            None => 0,
        };
        self.segments_from(first, first_start, piece, begin, len)
    }

    fn piece_start(&self, piece: usize) -> Option<u64> {
        u64::try_from(piece).ok()?.checked_mul(self.piece_length)
    }

    fn block_start(&self, piece: usize, begin: u64) -> Option<u64> {
        self.piece_start(piece)?.checked_add(begin)
    }

    fn segments_from(&self, file: usize, file_start: u64, piece: usize, begin: u64, len: u64) -> Segments<'_> {
        let (pos, end) = match self.block_start(piece, begin) {
            Some(start) => (start, start.saturating_add(len).min(self.total_length)),
            // An offset that does not even fit in u64 lies past any payload.
            None => (0, 0),
        };
        Segments { files: &self.files, next_file: file, file_start, pos, end }
    }
}

/// Iterator returned by [`Layout::segments`].
#[derive(Debug, Clone)]
pub struct Segments<'a> {
    files: &'a [(PathBuf, u64)],
    next_file: usize,
    /// Payload offset at which `files[next_file]` starts; never above `pos`.
    file_start: u64,
    pos: u64,
    end: u64,
}

impl Iterator for Segments<'_> {
    type Item = Segment;

    fn next(&mut self) -> Option<Segment> {
        while self.pos < self.end {
            let index = self.next_file;
            let (_, file_len) = self.files.get(index)?;
            let file_start = self.file_start;
            let file_end = file_start.saturating_add(*file_len);
            self.next_file = index.saturating_add(1);
            self.file_start = file_end;
            if self.pos < file_end {
                let run_end = file_end.min(self.end);
                let segment = Segment { file: index, offset: self.pos - file_start, len: run_end - self.pos };
                self.pos = run_end;
                return Some(segment);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(piece_length: u64, lens: &[u64]) -> Layout {
        let total_length = lens.iter().sum();
        let files = lens.iter().enumerate().map(|(i, &len)| (PathBuf::from(format!("f{i}")), len)).collect();
        let pieces = usize::try_from(u64::div_ceil(total_length, piece_length)).unwrap();
        Layout { piece_length, total_length, files, piece_hashes: vec![[0; 20]; pieces], pad: Vec::new() }
    }

    fn segs(l: &Layout, piece: usize, begin: u64, len: u64) -> Vec<(usize, u64, u64)> {
        let plain: Vec<_> = l.segments(piece, begin, len).map(|s| (s.file, s.offset, s.len)).collect();
        let indexed: Vec<_> =
            l.segments_indexed(&l.file_ends(), piece, begin, len).map(|s| (s.file, s.offset, s.len)).collect();
        assert_eq!(plain, indexed, "binary-searched start must agree with the linear walk");
        plain
    }

    #[test]
    fn piece_lengths_and_short_last_piece() {
        let l = layout(16, &[20, 30]);
        assert_eq!(l.piece_count(), 4);
        assert_eq!((l.piece_len(0), l.piece_len(2), l.piece_len(3), l.piece_len(4)), (16, 16, 2, 0));
        assert_eq!(l.piece_len(usize::MAX), 0);
        l.validate().unwrap();
    }

    #[test]
    fn segments_cross_a_file_boundary() {
        let l = layout(16, &[20, 30]);
        assert_eq!(segs(&l, 0, 0, 16), [(0, 0, 16)]);
        assert_eq!(segs(&l, 1, 0, 16), [(0, 16, 4), (1, 0, 12)]);
        assert_eq!(segs(&l, 1, 6, 4), [(1, 2, 4)]);
        assert_eq!(segs(&l, 3, 0, 2), [(1, 28, 2)]);
    }

    #[test]
    fn zero_length_files_are_skipped_even_mid_block() {
        let l = layout(8, &[0, 5, 0, 0, 3, 0]);
        assert_eq!(segs(&l, 0, 0, 8), [(1, 0, 5), (4, 0, 3)]);
        assert_eq!(segs(&l, 0, 5, 3), [(4, 0, 3)]);
        assert_eq!(segs(&l, 0, 0, 0), []);
    }

    #[test]
    fn one_block_spans_three_files() {
        let l = layout(32, &[10, 4, 2, 30]);
        assert_eq!(segs(&l, 0, 8, 8), [(0, 8, 2), (1, 0, 4), (2, 0, 2)]);
        assert_eq!(segs(&l, 0, 8, 12), [(0, 8, 2), (1, 0, 4), (2, 0, 2), (3, 0, 4)]);
    }

    #[test]
    fn out_of_payload_ranges_yield_nothing_and_never_panic() {
        let l = layout(16, &[20, 30]);
        assert_eq!(segs(&l, 3, 0, 100), [(1, 28, 2)]);
        assert_eq!(segs(&l, 9, 0, 16), []);
        assert_eq!(segs(&l, usize::MAX, u64::MAX, u64::MAX), []);
        let mut huge = layout(16, &[20, 30]);
        huge.piece_length = u64::MAX;
        assert_eq!(huge.piece_len(1), 0);
        assert_eq!(huge.segments(1, 0, 16).count(), 0);
    }

    #[test]
    fn validate_names_what_disagrees() {
        let mut l = layout(16, &[20, 30]);
        l.piece_length = 0;
        assert!(matches!(l.validate(), Err(StorageError::PieceLengthZero)));
        let mut l = layout(16, &[20, 30]);
        l.total_length = 49;
        let e = l.validate().unwrap_err();
        assert!(e.to_string().contains("49"), "{e}");
        let mut l = layout(16, &[20, 30]);
        l.piece_hashes.pop();
        assert!(matches!(l.validate(), Err(StorageError::PieceCountMismatch { hashes: 3, expected: 4 })));
        let mut l = layout(16, &[]);
        l.files = vec![("big".into(), u64::MAX), ("more".into(), 1)];
        assert!(matches!(l.validate(), Err(StorageError::LengthMismatch { files_total: None, .. })));
    }
}
