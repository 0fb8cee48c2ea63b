package node

import (
	"context"
	"sort"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/mycel-net/mycel/node/openai"
)

// The node as the OpenAI adapter's backend (openai.Backend): the models it
// answers for and a Completer for each.

// AddCompleter makes a model available through the OpenAI API under its
// name. A second model with the same name replaces the first.
func (n *Node) AddCompleter(c openai.Completer) {
	n.compMu.Lock()
	defer n.compMu.Unlock()
	if n.completers == nil {
		n.completers = map[string]openai.Completer{}
	}
	n.completers[c.Name()] = c
}

// CompleterNames lists the models the OpenAI API serves, sorted.
func (n *Node) CompleterNames() []string {
	n.compMu.Lock()
	defer n.compMu.Unlock()
	var names []string
	for name := range n.completers {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func (n *Node) completer(name string) (openai.Completer, bool) {
	n.compMu.Lock()
	defer n.compMu.Unlock()
	c, ok := n.completers[name]
	return c, ok
}

// Completer returns the model a request of the OpenAI API names: a model
// file added with AddCompleter; else a model of the registry, or any
// model CID, which runs here if every layer is here, else through the
// swarm.
func (n *Node) Completer(ctx context.Context, name string) (openai.Completer, error) {
	if c, ok := n.completer(name); ok {
		return c, nil
	}
	return n.modelCompleter(ctx, name)
}

// CompletionModels lists the models the node answers for: model files
// added with AddCompleter and whole models held as blocks run here (owned
// by "mycel"); other kept models, and those of the swarm it knows, run
// through the swarm ("mycel-swarm"). Each is listed by name and by CID.
func (n *Node) CompletionModels(ctx context.Context) []openai.Model {
	var list []openai.Model
	add := func(id string, created time.Time, owner string) {
		list = append(list, openai.Model{ID: id, Created: created, OwnedBy: owner})
	}
	for _, name := range n.CompleterNames() {
		add(name, n.started, "mycel")
	}
	for _, e := range n.models.entries() {
		owner := "mycel-swarm"
		if c, err := cid.Decode(e.CID); err == nil {
			if info, err := n.Inspect(ctx, c); err == nil && info.Whole {
				owner = "mycel"
			}
		}
		add(e.Name, e.Added, owner)
		add(e.CID, e.Added, owner)
	}
	n.swarmMu.Lock()
	for c, sm := range n.swarmModels {
		add(sm.name, n.started, "mycel-swarm")
		add(c, n.started, "mycel-swarm")
	}
	n.swarmMu.Unlock()
	if n.dir != nil {
		for _, c := range n.dir.Models() {
			add(c, n.started, "mycel-swarm")
		}
	}
	return list
}
