package p2p

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// IdentityFile is the name of the identity key file inside the data dir.
const IdentityFile = "identity.key"

// ErrCorruptIdentity means the identity key file exists but cannot be read as
// a private key. The file is left as it is: replacing it would silently give
// the node a new peer ID.
var ErrCorruptIdentity = errors.New("p2p: corrupt identity key file")

// LoadOrCreateIdentity returns the private key stored in dir/identity.key,
// creating an Ed25519 key with mode 0600 when there is no such file. Any
// other problem (unreadable file, bad contents) is an error; an existing file
// is never overwritten.
func LoadOrCreateIdentity(dir string) (crypto.PrivKey, error) {
	path := filepath.Join(dir, IdentityFile)
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		key, err := crypto.UnmarshalPrivateKey(data)
		if err != nil {
			return nil, fmt.Errorf("%w %s: %w", ErrCorruptIdentity, path, err)
		}
		if info, err := os.Stat(path); err == nil && info.Mode().Perm()&0o077 != 0 {
			log.Warn("identity key file is readable by others", "path", path, "mode", info.Mode().Perm())
		}
		return key, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("p2p: read identity key: %w", err)
	}

	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("p2p: generate identity key: %w", err)
	}
	data, err = crypto.MarshalPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("p2p: marshal identity key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("p2p: create data dir: %w", err)
	}
	if err := writeNewFile(path, data, 0o600); err != nil {
		return nil, fmt.Errorf("p2p: write identity key: %w", err)
	}
	log.Info("created identity key", "path", path)
	return key, nil
}

// writeNewFile writes data to a temporary file next to path, syncs it and
// links it into place, so that path is either absent or complete, and an
// existing path is never replaced.
func writeNewFile(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName)
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	// Link fails if path exists, unlike Rename.
	if err := os.Link(tmpName, path); err != nil {
		return err
	}
	return nil
}
