//go:build !unix

package checkpoints

import (
	"fmt"
	"os"
)

// mapFile reads a whole file into memory where memory maps are not
// available.
func mapFile(path string) ([]byte, func() error, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	if len(data) == 0 {
		return nil, nil, fmt.Errorf("%s is empty", path)
	}
	return data, func() error { return nil }, nil
}
