package cpu

// The kernels in use. They start as the pure-Go versions; on amd64 (without
// the noasm tag) an init function replaces them with the fastest assembly
// the CPU supports.
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
)

func isaName() string { return isa }
