package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/mycel-net/mycel/p2p"
)

func newSwarmKeyCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "key [-o FILE]",
		Short: "Write a new key for a private swarm",
		Long: `Write a new random key for a private swarm, in the swarm key file format
(/key/swarm/psk/1.0.0/, as IPFS and libp2p use it). Copy the file to every
machine of the swarm and start each node with --swarm-key FILE: they connect
only to nodes that hold the same key (over TCP; QUIC cannot carry it), and
their DHT, models, data sets and jobs are theirs alone. Keep the file secret:
whoever holds it can join. Without -o the key goes to stdout; the swarm's ID,
which nodes show in mycel status, goes to stderr.`,
		Example: `  mycel swarm key -o swarm.key
  mycel node --swarm-key swarm.key --bootstrap /ip4/192.168.1.20/tcp/4747/p2p/12D3KooW...`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, err := p2p.NewSwarmKey()
			if err != nil {
				return err
			}
			data := p2p.EncodeSwarmKey(key)
			if out == "" {
				if _, err := cmd.OutOrStdout().Write(data); err != nil {
					return err
				}
			} else if err := writeNewFile(out, data); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "private swarm %s\n", p2p.SwarmKeyID(key))
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "out", "o", "", "write the key to this file (readable by its owner only); it must not exist")
	return cmd
}

// writeNewFile writes data to a file that must not exist yet, readable by
// its owner only; a failed write leaves no file behind.
func writeNewFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s exists: a new key would replace the old one, and its nodes would no longer reach each other; remove it first, or write elsewhere", path)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}
