package model

import "fmt"

// minPadRows is the batch a block-quantized batch of fewer rows is padded
// to: the width of the backends' multi-row quantized kernels, below which
// they run one matrix-vector product per row.
const minPadRows = 4

// ForwardRows runs one new position of each of len(caches) sequences
// through their span of layers as one batch: row i of x ([len(caches),
// Dim], updated in place) is the hidden state of sequence i at position
// caches[i].Len, and its keys and values go to caches[i]. Every cache must
// cover the same span, and no cache may appear twice.
//
// It runs the block Forward runs, with each row a sequence of its own:
// the matrix products run on all rows at once (continuous batching of
// decode steps); rotary embedding and attention run row by row, each over
// its own cache. With block-quantized weights a batch of two or three rows
// is padded to minPadRows for the products (copies of the last row), so
// that the backend's multi-row kernel reads each weight once for all of
// them rather than once per row, and a Q4_0 batch of 4k+1 rows runs as 4k
// rows and one (see splitRows). Row i gives the result
// Forward(caches[i], row, 1) gives, exactly while the batch goes through
// the backend's row-by-row kernels and to rounding when it goes through a
// matrix-matrix kernel.
func (e *Engine) ForwardRows(caches []*Cache, x []float32) error {
	n := len(caches)
	if n == 0 {
		return nil
	}
	cfg := &e.w.Config
	d := cfg.Dim
	if len(x) < n*d {
		return fmt.Errorf("forward rows: %d rows need %d values, got %d", n, n*d, len(x))
	}
	first, last := caches[0].First, caches[0].Last
	for i, c := range caches {
		if c.First != first || c.Last != last {
			return fmt.Errorf("forward rows: cache %d covers [%d, %d), cache 0 [%d, %d)", i, c.First, c.Last, first, last)
		}
		if c.Len+1 > c.Cap {
			return fmt.Errorf("forward rows: row %d at position %d: %w (cache holds %d)", i, c.Len, ErrContextFull, c.Cap)
		}
		for _, o := range caches[:i] {
			if o == c {
				return fmt.Errorf("forward rows: cache of row %d appears twice", i)
			}
		}
	}
	e.segs = e.segs[:0]
	for _, c := range caches {
		e.segs = append(e.segs, segment{c: c, rows: 1})
	}
	return e.run(first, last, x[:n*d], n, e.segs)
}
