package cpu

import (
	"log/slog"
	"os"
)

// The kernels in use. They start as the pure-Go versions; init replaces
// them with the fastest code path the CPU supports (see supportedISAs in
// dispatch_<arch>.go; the build tag noasm leaves only pure Go).
//
// The environment variable MYCEL_ISA, read once at start-up, forces a
// slower path: MYCEL_ISA=avx2 or MYCEL_ISA=go. Benchmarks and tests use it
// to compare paths on one machine.
//
// Files initialize in name order, so this file's init runs before those of
// quant*_amd64.go, which may read isa and replace the quantized kernels.
var (
	isa = "go"

	matvecF32  = matvecF32Generic
	matvecF16  = matvecF16Generic
	matvecBF16 = matvecBF16Generic
	quantizeQ8 = quantizeQ8Generic
	matvecQ8   = matvecQ8Generic
	matvecQ4   = matvecQ4Generic
	dotF32     = dotF32Generic
	sumSquares = sumSquaresGeneric
	scaleMul   = scaleMulGeneric
	swiglu     = swigluGeneric
	addTo      = addToGeneric
	axpy       = axpyGeneric
	expShifted = expShiftedGeneric
	gemvCM     = gemvCMGeneric
	gemvCM16   = gemvCM16Generic
	toF16      = toF16Generic
	maxF32     = maxF32Generic
	q8kRound   = q8kRoundGo
)

func init() {
	name := supportedISAs()[0]
	if want := os.Getenv("MYCEL_ISA"); want != "" {
		if setISA(want) {
			return
		}
		slog.Warn("cpu: MYCEL_ISA names a code path this CPU or build lacks; using the best one",
			"want", want, "have", supportedISAs())
	}
	setISA(name)
}

// setGeneric installs the pure-Go float kernels. The quantized ones are
// left alone: quant.go and its assembly manage them.
func setGeneric() {
	isa = "go"
	matvecF32 = matvecF32Generic
	matvecF16 = matvecF16Generic
	matvecBF16 = matvecBF16Generic
	dotF32 = dotF32Generic
	sumSquares = sumSquaresGeneric
	scaleMul = scaleMulGeneric
	swiglu = swigluGeneric
	addTo = addToGeneric
	axpy = axpyGeneric
	expShifted = expShiftedGeneric
	gemvCM = gemvCMGeneric
	gemvCM16 = gemvCM16Generic
	toF16 = toF16Generic
	maxF32 = maxF32Generic
	q8kRound = q8kRoundGo
	gemmImpl = gemmGo
	pack8 = nil
	decodeRowsVec = nil
	vecDecoders = [len(vecDecoders)]func(dst []float32, row []byte){}
}

func isaName() string { return isa }
