package blocks

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/ipfs/boxo/datastore/dshelp"
	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	flatfs "github.com/ipfs/go-ds-flatfs"
)

// flatfsMarker is the file a one-file-per-block (flatfs) store keeps at its
// top; the store used that layout before packs.
const flatfsMarker = "SHARDING"

// migrateFlatfs moves the blocks of a flatfs store in s.dir into packs:
// each block is checked against its hash (a damaged one is left behind and
// fetched again when needed), the packs are synced, and only then are the
// old files removed. A crash half way leaves both, and the next open
// finishes the move.
func (s *Store) migrateFlatfs() error {
	if _, err := os.Stat(filepath.Join(s.dir, flatfsMarker)); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	old, err := flatfs.Open(s.dir, false)
	if err != nil {
		return fmt.Errorf("open the old block files: %w", err)
	}
	ctx := context.Background()
	res, err := old.Query(ctx, query.Query{})
	if err != nil {
		old.Close()
		return fmt.Errorf("list the old block files: %w", err)
	}
	limit := s.cap
	s.cap = 0 // a store over its cap opens; so does one being moved
	defer func() { s.cap = limit }()
	var moved, bad int
	for r := range res.Next() {
		if r.Error != nil {
			err = r.Error
			break
		}
		h, kerr := dshelp.DsKeyToMultihash(ds.NewKey(r.Key))
		if kerr != nil {
			bad++
			continue
		}
		b := Block{CID: cid.NewCidV1(cid.Raw, h), Data: r.Value}
		if b.Verify() != nil {
			bad++
			continue
		}
		if err = s.putVerified(ctx, []Block{b}); err != nil {
			break
		}
		moved++
	}
	res.Close()
	old.Close()
	if err != nil {
		return fmt.Errorf("move the old block files into packs: %w", err)
	}
	if err := s.sync(); err != nil {
		return err
	}
	log.Info("moved blocks from one file each into packs", "dir", s.dir, "blocks", moved, "damaged", bad)
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		name := e.Name()
		switch {
		case name == packsDir:
		case e.IsDir() && len(name) == 2:
			err = errors.Join(err, os.RemoveAll(filepath.Join(s.dir, name)))
		case name == "_README" || name == "diskUsage.cache":
			err = errors.Join(err, os.Remove(filepath.Join(s.dir, name)))
		}
	}
	// The marker goes last: while it is there, the next open moves again.
	if err == nil {
		err = os.Remove(filepath.Join(s.dir, flatfsMarker))
	}
	if err != nil {
		return fmt.Errorf("remove the old block files: %w", err)
	}
	return nil
}
