//go:build arm64 && !noasm

package cpu

// This is the seat for NEON kernels. To add them, write the assembly in
// *_arm64.s with stubs in stubs_arm64.go, list "neon" here (detected with
// golang.org/x/sys/cpu.ARM64.HasASIMD, which every arm64 Go target has) and
// install the kernels in setISA, as dispatch_amd64.go does for AVX2.

// supportedISAs lists the code paths this CPU can run, fastest first.
func supportedISAs() []string { return []string{"go"} }

// setISA installs the kernels of one code path; only "go" exists so far.
func setISA(name string) bool {
	if name != "go" {
		return false
	}
	setGeneric()
	return true
}
