//go:build !(amd64 || arm64) || noasm

package cpu

// supportedISAs lists the code paths this build can run: only pure Go.
func supportedISAs() []string { return []string{"go"} }

// setISA installs the kernels of one code path; only "go" exists here.
func setISA(name string) bool {
	if name != "go" {
		return false
	}
	setGeneric()
	return true
}
