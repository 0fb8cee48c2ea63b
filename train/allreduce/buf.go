package allreduce

import (
	"encoding/binary"
	"math/bits"
	"sync"
	"unsafe"
)

// Large buffers (data frames, encoded parts, scratch) come from pools and
// go back to them once the round no longer needs them: training runs
// round after round with the same sizes, and memory the process has
// touched before is several times cheaper to fill than fresh memory.
//
// A buffer's capacity is its size class: the length asked for rounded up
// to one of four steps per power of two (at most 25 % more), so that the
// slightly different part sizes of a round share buffers. The bytes past
// the length asked for are never touched.

// minPooled is the smallest buffer worth pooling.
const minPooled = 64 << 10

// pools holds free buffers by size class: [bit length][quarter step].
var pools [64][4]sync.Pool

// sizeClass is n rounded up to its class, and the class's pool indices.
func sizeClass(n int) (size, b, q int) {
	b = bits.Len(uint(n - 1)) // 2^(b-1) < n ≤ 2^b
	step := 1 << (b - 3)      // four steps between 2^(b-1) and 2^b
	q = (n - 1 - 1<<(b-1)) / step
	return 1<<(b-1) + (q+1)*step, b, q
}

// getBuf returns a byte slice of length n, reused when one is free; its
// contents are undefined.
func getBuf(n int) []byte {
	if n < minPooled {
		return make([]byte, n)
	}
	size, b, q := sizeClass(n)
	if p, ok := pools[b][q].Get().(*[]byte); ok {
		return (*p)[:n]
	}
	return make([]byte, n, size)
}

// putBuf gives b back for reuse; nothing may use it afterwards. Slices
// that getBuf did not make are left to the garbage collector.
func putBuf(b []byte) {
	c := cap(b)
	if c < minPooled {
		return
	}
	size, bl, q := sizeClass(c)
	if size != c {
		return
	}
	b = b[:0]
	pools[bl][q].Put(&b)
}

// getFloats returns a float32 slice of length n from the byte pool; give
// it back with putFloats.
func getFloats(n int) []float32 {
	b := getBuf(4 * n)
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(b))), cap(b)/4)[:n]
}

func putFloats(f []float32) {
	if cap(f) == 0 {
		return
	}
	putBuf(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(f))), 4*cap(f))[:0])
}

// nativeLE: float32 values in memory are their F32 encoding.
var nativeLE = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// f32View is b, the F32 encoding of len(b)/4 values, seen as those
// values without copying; ok is false where that is not possible (a
// big-endian machine, or b not aligned for float32).
func f32View(b []byte) (v []float32, ok bool) {
	if !nativeLE || len(b)%4 != 0 {
		return nil, false
	}
	if len(b) == 0 {
		return nil, true
	}
	p := unsafe.Pointer(unsafe.SliceData(b))
	if uintptr(p)%4 != 0 {
		return nil, false
	}
	return unsafe.Slice((*float32)(p), len(b)/4), true
}

// f32Bytes is the F32 encoding of v without copying, with v's capacity
// (little-endian machines only: check nativeLE).
func f32Bytes(v []float32) []byte {
	if cap(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v))), 4*cap(v))[:4*len(v)]
}
