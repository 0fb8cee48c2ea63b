package node

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"

	"github.com/mycel-net/mycel/node/api"
)

// apiToken returns the API token kept in the data directory dir
// (api.TokenFile), writing a new one first where there is none: 32 random
// bytes in hex, readable by the user alone. The node holds the
// directory's lock, so no other node writes it meanwhile.
func apiToken(dir string) (string, error) {
	path := api.TokenPath(dir)
	fi, err := os.Stat(path)
	if err == nil {
		if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
			log.Warn("the API token file can be read by other users of this machine; chmod 600 it, or delete it for a new token", "file", path, "mode", fi.Mode().Perm())
		}
		tok, err := api.ReadToken(dir)
		if err != nil {
			return "", fmt.Errorf("node: %w", err)
		}
		return tok, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("node: API token: %w", err)
	}
	b := make([]byte, 32)
	rand.Read(b) // never fails
	tok := hex.EncodeToString(b)
	f, err := os.CreateTemp(dir, api.TokenFile+".*") // mode 0600
	if err != nil {
		return "", fmt.Errorf("node: API token: %w", err)
	}
	tmp := f.Name()
	_, err = f.WriteString(tok + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("node: API token: %w", err)
	}
	return tok, nil
}
