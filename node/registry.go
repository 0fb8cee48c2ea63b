package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/mycel-net/mycel/node/api"
)

// modelsFile lists the models a node has imported or pulled.
const modelsFile = "models.json"

// registry is a list the node keeps in its data directory: the models,
// the data sets, the unfinished pulls of either.
type registry struct {
	mu   sync.Mutex
	path string
	list []api.ModelEntry
}

func openRegistry(dir string) (*registry, error) {
	return openList(filepath.Join(dir, modelsFile))
}

// openList opens a list saved at path: the models, the data sets
// (data.go), or the unfinished pulls of either (gc.go).
func openList(path string) (*registry, error) {
	r := &registry{path: path}
	b, err := os.ReadFile(r.path)
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return nil, fmt.Errorf("node: model list: %w", err)
	}
	if err := json.Unmarshal(b, &r.list); err != nil {
		return nil, fmt.Errorf("node: model list %s is damaged: %w", r.path, err)
	}
	return r, nil
}

// add records an entry (replacing one with the same CID) and saves the
// list atomically.
func (r *registry) add(e api.ModelEntry) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	kept := r.list[:0]
	for _, x := range r.list {
		if x.CID != e.CID {
			kept = append(kept, x)
		}
	}
	r.list = append(kept, e)
	return r.save()
}

func (r *registry) remove(c string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	kept := r.list[:0]
	found := false
	for _, x := range r.list {
		if x.CID == c {
			found = true
		} else {
			kept = append(kept, x)
		}
	}
	r.list = kept
	return found, r.save()
}

func (r *registry) entries() []api.ModelEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]api.ModelEntry(nil), r.list...)
}

func (r *registry) save() error {
	b, err := json.MarshalIndent(r.list, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileSynced(r.path, b); err != nil {
		return fmt.Errorf("node: save model list: %w", err)
	}
	return nil
}

// writeFileSynced replaces path with b: write, sync, rename, sync the
// directory, so that a crash leaves the old file or the new one, never an
// empty one.
func writeFileSynced(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
