package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/mycel-net/mycel/kernels"
)

// TestDecodeRowsTwins checks the vector decoding of strips of W against
// decodeCols, bit for bit, for every weight type MatMulT decodes, strips
// that start on and off a half block, every width up to a few pieces and
// a stride wider than the strip whose gaps must stay untouched.
func TestDecodeRowsTwins(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	forEachISA(t, func(t *testing.T) {
		for _, dt := range []kernels.DType{kernels.F16, kernels.BF16, kernels.Q8_0, kernels.Q4_0} {
			const rows, cols = 9, 160
			v := make([]float32, rows*cols)
			for i := range v {
				v[i] = float32(r.NormFloat64()) * float32(math.Ldexp(1, r.IntN(40)-20))
			}
			w, err := kernels.NewMatrix(dt, rows, cols, kernels.Encode(nil, dt, v))
			if err != nil {
				t.Fatal(err)
			}
			for _, c0 := range []int{0, 3, 16, 32, 40, 64} {
				for cnt := 1; c0+cnt <= cols && cnt <= 80; cnt++ {
					for _, kc := range []int{1, 3, 9} {
						r0 := rows - kc
						ld := cnt + 5
						got := make([]float32, kc*ld)
						for i := range got {
							got[i] = 42
						}
						decodeRows(got, ld, w, r0, kc, c0, cnt)
						want := make([]float32, cnt)
						what := fmt.Sprintf("%s c0=%d cnt=%d kc=%d", dt, c0, cnt, kc)
						for k := 0; k < kc; k++ {
							decodeCols(want, w, r0+k, c0)
							for j := 0; j < ld; j++ {
								g := got[k*ld+j]
								if j >= cnt {
									if g != 42 {
										t.Fatalf("%s: wrote [%d,%d] outside the strip", what, k, j)
									}
									continue
								}
								if math.Float32bits(g) != math.Float32bits(want[j]) {
									t.Fatalf("%s: [%d,%d] = %v, decodeCols %v", what, k, j, g, want[j])
								}
							}
						}
					}
				}
			}
		}
	})
}
