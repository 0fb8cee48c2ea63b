package node

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mycel-net/mycel/checkpoints/datasets"
	"github.com/mycel-net/mycel/checkpoints/shards"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/node/api"
	"github.com/mycel-net/mycel/p2p/blocks"
	"github.com/mycel-net/mycel/train"
	"github.com/mycel-net/mycel/train/allreduce"
	"github.com/mycel-net/mycel/train/collab"
	"github.com/mycel-net/mycel/train/jobs"
)

// Fine-tuning on the swarm. A researcher's node publishes a job (the job
// file, signed by the node's key, train/jobs); every node hears of it on
// the jobs topic. A node started with Config.Train picks jobs up: it
// fetches the base model and the data set by CID, trains its share in the
// job's group (train/collab: member records, the all-reduce, checkpoints
// as blocks), carries the job on so that it outlives its submitter, and
// keeps the group's checkpoints (named by the job's ID) from store GC.

// submittedFile lists the jobs this node submitted (sealed, base64), so
// that it carries them again after a restart.
const submittedFile = "train-jobs.json"

// keptJobCheckpoints is how many of a job's checkpoints a member keeps.
const keptJobCheckpoints = 2

// keptInnerStates is how many of its DiLoCo inner states a member keeps.
const keptInnerStates = 3

// training is the node's part in swarm training.
type training struct {
	jobs    *jobs.Directory
	members *collab.Directory
	ar      *allreduce.Service

	mu        sync.Mutex
	submitted [][]byte           // sealed, as submittedFile keeps them
	runs      map[string]*jobRun // by job ID: trained here, now or before
	active    string             // the job being trained now ("": none)
	skipped   map[string]string  // job ID: why this node does not train it
	wake      chan struct{}      // the node works again: look for a job
}

// jobRun is a job this node trains, or trained.
type jobRun struct {
	cancel  context.CancelFunc
	done    chan struct{}
	stopped bool // cancelled for its job's stop (under training.mu)
	// suspended: cancelled because the node stopped working (under
	// training.mu); the job is taken again when it works again.
	suspended bool

	mu            sync.Mutex
	bytes         int64
	compute, wall time.Duration // the rounds': training, and all of them
	state         string        // what this node does for the job, as hereLocked says
}

func (r *jobRun) setState(s string) {
	r.mu.Lock()
	r.state = s
	r.mu.Unlock()
}

// add counts a round.
func (r *jobRun) add(rep collab.Report) {
	r.mu.Lock()
	r.bytes += rep.Sent + rep.Received
	r.compute += rep.Compute
	r.wall += rep.Wall
	r.mu.Unlock()
}

// openTraining starts the jobs directory, the members directory and the
// all-reduce service on the node's host, and carries the jobs the node
// submitted.
func (n *Node) openTraining() error {
	h := n.host.Libp2p()
	t := &training{runs: map[string]*jobRun{}, skipped: map[string]string{}, wake: make(chan struct{}, 1)}
	var err error
	if t.jobs, err = jobs.NewDirectory(h, jobs.DirectoryConfig{PubSub: n.host.PubSub(), Routing: n.host.Routing()}); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if t.members, err = collab.NewDirectory(h, collab.DirectoryConfig{PubSub: n.host.PubSub(), Routing: n.host.Routing()}); err != nil {
		t.jobs.Close()
		return fmt.Errorf("node: %w", err)
	}
	t.ar = allreduce.New(h)
	n.train = t
	b, err := os.ReadFile(filepath.Join(n.cfg.DataDir, submittedFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err == nil {
		err = json.Unmarshal(b, &t.submitted)
	}
	if err != nil {
		return fmt.Errorf("node: %s: %w", submittedFile, err)
	}
	for _, sealed := range t.submitted {
		if _, err := t.jobs.Carry(n.ctx, sealed); err != nil {
			log.Warn("a job this node submitted no longer opens", "err", err)
		}
	}
	return nil
}

// closeTraining stops the runs and the services.
func (n *Node) closeTraining() {
	t := n.train
	if t == nil {
		return
	}
	t.mu.Lock()
	var runs []*jobRun
	for _, r := range t.runs {
		r.cancel()
		runs = append(runs, r)
	}
	t.mu.Unlock()
	for _, r := range runs {
		<-r.done
	}
	t.ar.Close()
	t.members.Close()
	t.jobs.Close()
}

// key is the node's private key, which signs the jobs it submits.
func (n *Node) key() (crypto.PrivKey, error) {
	h := n.host.Libp2p()
	k := h.Peerstore().PrivKey(h.ID())
	if k == nil {
		return nil, errors.New("node: no private key in the peerstore")
	}
	return k, nil
}

// saveSubmitted writes the list of submitted jobs (under t.mu).
func (n *Node) saveSubmitted() error {
	b, err := json.Marshal(n.train.submitted)
	if err != nil {
		return err
	}
	return writeFileSynced(filepath.Join(n.cfg.DataDir, submittedFile), b)
}

// SubmitJob checks a job file and publishes it, signed by this node: the
// model and the data set it names must be CIDs or names this node keeps
// (they become CIDs), reachable (here, or their manifests fetched from
// peers), and the job must fit the model.
func (n *Node) SubmitJob(ctx context.Context, spec string) (api.TrainJob, error) {
	j, err := train.ParseJob([]byte(spec))
	if err != nil {
		return api.TrainJob{}, kindOf(fmt.Errorf("job file: %w", err), api.ErrBadRequest)
	}
	root, err := n.resolve(j.Model)
	if err != nil {
		return api.TrainJob{}, fmt.Errorf("job file: model: %w", err)
	}
	data, err := n.resolveData(j.Data)
	if err != nil {
		return api.TrainJob{}, fmt.Errorf("job file: data: %w", err)
	}
	ictx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	info, _, err := n.inspectFrom(ictx, root)
	if err != nil {
		return api.TrainJob{}, fmt.Errorf("job file: model %s is not reachable: %w", root, err)
	}
	if err := n.dataReachable(ictx, data); err != nil {
		return api.TrainJob{}, fmt.Errorf("job file: data set %s is not reachable: %w", data, err)
	}
	if c := info.Manifest.Config; j.SeqLen > c.Context {
		return api.TrainJob{}, fmt.Errorf("%w: job file: seq_len %d is longer than the model's context (%d)", api.ErrBadRequest, j.SeqLen, c.Context)
	}
	j.Model, j.Data = root.String(), data.String()
	text, err := j.Encode()
	if err != nil {
		return api.TrainJob{}, err
	}
	job, err := jobs.New(text, time.Now().UTC())
	if err != nil {
		return api.TrainJob{}, kindOf(err, api.ErrBadRequest)
	}
	return n.publishJob(ctx, job)
}

// publishJob seals job with the node's key, carries it and keeps it in
// the list of submitted jobs.
func (n *Node) publishJob(ctx context.Context, job *jobs.Job) (api.TrainJob, error) {
	key, err := n.key()
	if err != nil {
		return api.TrainJob{}, err
	}
	sealed, err := job.Seal(key)
	if err != nil {
		return api.TrainJob{}, err
	}
	t := n.train
	if _, err := t.jobs.Carry(ctx, sealed); err != nil {
		return api.TrainJob{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.submitted = slices.DeleteFunc(t.submitted, func(b []byte) bool {
		j, err := jobs.Open(b)
		return err != nil || j.ID == job.ID
	})
	t.submitted = append(t.submitted, sealed)
	if err := n.saveSubmitted(); err != nil {
		return api.TrainJob{}, fmt.Errorf("node: %s: %w", submittedFile, err)
	}
	return n.jobInfo(job, nil), nil
}

// StopJob stops a job this node submitted: it publishes the job again,
// marked stopped; its members stop (a round under way is undone) and
// serve the state they reached.
func (n *Node) StopJob(ctx context.Context, id string) (api.TrainJob, error) {
	job, err := n.findJob(ctx, id)
	if err != nil {
		return api.TrainJob{}, err
	}
	if job.Submitter != n.host.Libp2p().ID() {
		return api.TrainJob{}, fmt.Errorf("%w: job %s was submitted by %s, not by this node: only its submitter may stop it", api.ErrBadRequest, id, job.Submitter)
	}
	if !job.Stopped.IsZero() {
		return n.jobInfo(job, nil), nil
	}
	stopped := *job
	stopped.Stopped = time.Now().UTC()
	return n.publishJob(ctx, &stopped)
}

// findJob returns job id, asking the network when it is not known here.
func (n *Node) findJob(ctx context.Context, id string) (*jobs.Job, error) {
	t := n.train
	if j, _, ok := t.jobs.Job(id); ok {
		return j, nil
	}
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := t.jobs.Lookup(lctx); err != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if j, _, ok := t.jobs.Job(id); ok {
		return j, nil
	}
	return nil, fmt.Errorf("%w: no job %s on the swarm (mycel train ls lists the known ones)", api.ErrNotFound, id)
}

// Jobs lists the jobs known on the swarm, with what their members say.
func (n *Node) Jobs(ctx context.Context) []api.TrainJob {
	t := n.train
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_ = t.jobs.Lookup(lctx)
	var out []api.TrainJob
	for _, j := range t.jobs.Jobs() {
		ms, _ := t.members.Members(lctx, j.ID)
		out = append(out, n.jobInfo(j, ms))
	}
	return out
}

// JobStatus describes a job's progress from its members' records.
func (n *Node) JobStatus(ctx context.Context, id string) (api.TrainStatus, error) {
	job, err := n.findJob(ctx, id)
	if err != nil {
		return api.TrainStatus{}, err
	}
	t := n.train
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ms, _ := t.members.Members(lctx, id)
	st := api.TrainStatus{TrainJob: n.jobInfo(job, ms), Members: []api.TrainMember{}, Loss: [][2]float64{}}
	st.Spec = string(job.Spec)
	tj, _ := job.Train()
	best := -1
	for _, m := range ms {
		if m.Left {
			continue
		}
		step := stepOf(tj, m.Round)
		st.Members = append(st.Members, api.TrainMember{Peer: m.Peer.String(), Step: step, Round: m.Round,
			Rate: m.Rate, Joining: m.Joining > 0, Checkpoint: m.Checkpoint})
		st.TokensPerSecond += m.Rate
		if m.Checkpoint != "" && m.CheckpointRound > best {
			best, st.Checkpoint, st.CheckpointStep = m.CheckpointRound, m.Checkpoint, stepOf(tj, m.CheckpointRound)
		}
		// The longest curve, ending furthest on, is the group's.
		if len(m.Loss) > 0 && (len(st.Loss) == 0 || m.Loss[len(m.Loss)-1][0] > st.Loss[len(st.Loss)-1][0] ||
			m.Loss[len(m.Loss)-1][0] == st.Loss[len(st.Loss)-1][0] && len(m.Loss) > len(st.Loss)) {
			st.Loss = m.Loss
		}
	}
	for i := range st.Members {
		if st.TokensPerSecond > 0 {
			st.Members[i].Share = st.Members[i].Rate / st.TokensPerSecond
		}
	}
	t.mu.Lock()
	if r := t.runs[id]; r != nil {
		r.mu.Lock()
		st.Bytes = r.bytes
		if r.wall > 0 {
			st.Utilisation = r.compute.Seconds() / r.wall.Seconds()
		}
		r.mu.Unlock()
	}
	st.Here = t.hereLocked(id)
	t.mu.Unlock()
	return st, nil
}

// hereLocked says what this node does for job id (under t.mu).
func (t *training) hereLocked(id string) string {
	if why := t.skipped[id]; why != "" {
		return why
	}
	if r := t.runs[id]; r != nil {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.state
	}
	return ""
}

// inspectFrom describes model root, fetching its manifest and parts (a
// few small blocks) from its providers when they are not here; weights
// is the size of all its tensors.
func (n *Node) inspectFrom(ctx context.Context, root cid.Cid) (info api.ModelInfo, weights int64, err error) {
	info, err = n.Inspect(ctx, root)
	if errors.Is(err, api.ErrNotFound) {
		err = n.withSession(ctx, root, func(sess *blocks.Session) error {
			m, err := shards.GetManifest(ctx, sess, root)
			if err != nil {
				return err
			}
			for r := range sess.Fetch(ctx, m.Parts(shards.Whole(m.Config.Layers))) {
				if r.Err != nil {
					return r.Err
				}
			}
			return nil
		})
		if err == nil {
			info, err = n.Inspect(ctx, root)
		}
	}
	for _, p := range info.Parts {
		weights += p.Bytes
	}
	return info, weights, err
}

// dataReachable checks that data set c is here, or that its manifest can
// be had from its providers.
func (n *Node) dataReachable(ctx context.Context, c cid.Cid) error {
	_, _, err := n.dataInfo(ctx, c)
	if !errors.Is(err, api.ErrNotFound) {
		return err
	}
	return n.withSession(ctx, c, func(sess *blocks.Session) error {
		_, err := datasets.GetManifest(ctx, sess, c)
		return err
	})
}

// withSession runs fetch with a block session that prefers root's
// providers, found on the DHT meanwhile.
func (n *Node) withSession(ctx context.Context, root cid.Cid, fetch func(*blocks.Session) error) error {
	ctx, cancel := context.WithCancel(ctx)
	var finding sync.WaitGroup
	defer func() {
		cancel()
		finding.Wait()
	}()
	sess := n.ex.NewSession(ctx)
	finding.Go(func() { n.connectProviders(ctx, root, sess) })
	return fetch(sess)
}

// stepOf is the optimizer steps done at the start of round r.
func stepOf(j *train.Job, r int) int {
	if j != nil && j.Averaging == string(collab.DiLoCo) {
		return min(r*j.InnerSteps, j.Steps)
	}
	return r
}

// jobInfo describes a job and what its member records ms say.
func (n *Node) jobInfo(job *jobs.Job, ms []collab.Member) api.TrainJob {
	out := api.TrainJob{ID: job.ID, Submitter: job.Submitter.String(), Created: job.Created, State: "waiting"}
	tj, err := job.Train()
	if err == nil {
		out.Model, out.Data, out.Method, out.Averaging, out.Steps = tj.Model, tj.Data, tj.Method, tj.Averaging, tj.Steps
	}
	for _, m := range ms {
		if m.Left {
			continue
		}
		out.Peers++
		out.Step = max(out.Step, stepOf(tj, m.Round))
	}
	if out.Peers > 0 {
		out.State = "training"
	}
	if out.Steps > 0 && out.Step >= out.Steps {
		out.State = "done"
	}
	if !job.Stopped.IsZero() {
		s := job.Stopped
		out.Stopped, out.State = &s, "stopped"
	}
	return out
}

// trainLoop picks up jobs while the node runs (Config.Train): one at a
// time, those not stopped, not done here and that fit.
func (n *Node) trainLoop(ctx context.Context) {
	t := n.train
	watch, stop, err := t.jobs.Watch()
	if err != nil {
		log.Warn("training: cannot watch the jobs", "err", err)
		return
	}
	defer stop()
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		if n.work.Working() {
			n.pickJob(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.wake:
		case <-watch:
		case <-tick.C:
			lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_ = t.jobs.Lookup(lctx)
			cancel()
		}
	}
}

// pickJob stops the run of a job that was stopped and, with no job in
// hand, starts the first one that fits.
func (n *Node) pickJob(ctx context.Context) {
	t := n.train
	all := t.jobs.Jobs()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, j := range all {
		if r := t.runs[j.ID]; r != nil && !j.Stopped.IsZero() && t.active == j.ID && !r.stopped {
			log.Info("training: the job was stopped by its submitter", "job", j.ID)
			r.stopped = true
			r.cancel()
		}
	}
	if t.active != "" {
		return
	}
	for _, j := range all {
		prev := t.runs[j.ID]
		if !j.Stopped.IsZero() || (prev != nil && !prev.suspended) || t.skipped[j.ID] != "" {
			continue
		}
		_, sealed, ok := t.jobs.Job(j.ID)
		if !ok {
			continue
		}
		rctx, cancel := context.WithCancel(ctx)
		r := &jobRun{cancel: cancel, done: make(chan struct{}), state: "taking the job"}
		if prev != nil {
			// Back after a suspension: the totals go on.
			prev.mu.Lock()
			r.bytes, r.compute, r.wall = prev.bytes, prev.compute, prev.wall
			prev.mu.Unlock()
			r.state = "taking the job again"
		}
		t.runs[j.ID], t.active = r, j.ID
		n.wg.Go(func() {
			defer close(r.done)
			defer cancel()
			g, release, err := n.trainJob(rctx, j, sealed, r)
			t.mu.Lock()
			if r.suspended {
				// Left for the node's suspension (Run withdrew the
				// member record): taken again once the node works.
				t.active = ""
				t.mu.Unlock()
				if g != nil {
					release()
				}
				log.Info("training: left the job while the node does not work", "job", j.ID)
				return
			}
			// Stopped by its submitter: the state reached is the result.
			stopped := errors.Is(err, context.Canceled) && ctx.Err() == nil
			t.active = ""
			var skip *skipError
			switch {
			case errors.As(err, &skip):
				delete(t.runs, j.ID)
				t.skipped[j.ID] = skip.why
				log.Info("training: not taking the job", "job", j.ID, "why", skip.why)
			case err != nil && !stopped:
				r.setState("failed: " + err.Error())
				if ctx.Err() == nil {
					log.Warn("training: the job failed here", "job", j.ID, "err", err)
				}
			}
			t.mu.Unlock()
			if g == nil {
				return
			}
			// Serve the result until the node stops (another job may
			// start meanwhile).
			r.setState("serving the result")
			log.Info("training: serving the job's result", "job", j.ID, "step", g.Step())
			if _, err := g.Linger(ctx); err != nil && ctx.Err() == nil {
				log.Warn("training: the job's result", "job", j.ID, "err", err)
			}
			release()
		})
		return
	}
}

// trainWork leaves the job being trained when the node stops working
// (cancelling its run: the group undoes a round under way, so the node
// leaves at a round's boundary, and its member record is withdrawn), and
// looks for a job again when it works again.
func (n *Node) trainWork(working bool) {
	t := n.train
	if t == nil {
		return
	}
	if working {
		select {
		case t.wake <- struct{}{}:
		default:
		}
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if r := t.runs[t.active]; t.active != "" && r != nil && !r.stopped && !r.suspended {
		r.suspended = true
		r.setState("left the job while the node does not work (" + n.work.Snapshot().State + "); it takes the job again when it works")
		r.cancel()
	}
}

// skipError says why this node does not take a job (it does not fit).
type skipError struct{ why string }

func (e *skipError) Error() string { return e.why }

// trainJob trains job here until it is done or ctx ends; the group it
// returns (done, or stopped by ctx: context.Canceled) holds the state
// reached, until release.
func (n *Node) trainJob(ctx context.Context, job *jobs.Job, sealed []byte, r *jobRun) (*collab.Group, func(), error) {
	g, release, err := n.prepareJob(ctx, job)
	if err != nil {
		return nil, nil, err
	}
	tj, _ := job.Train()
	r.setState("training")
	// The members carry the job: it outlives its submitter.
	if _, err := n.train.jobs.Carry(ctx, sealed); err != nil {
		release()
		return nil, nil, err
	}
	err = g.Run(ctx, func(rep collab.Report) {
		r.add(rep)
		n.signRound(job.ID, rep)
		n.metrics.trainSteps.Add(float64(rep.Step - stepOf(tj, rep.Round)))
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		release()
		return nil, nil, err
	}
	// Done, or stopped at a round's boundary.
	return g, release, err
}

// prepareJob fetches a job's model and data set and makes this node a
// member of its group; a job that does not fit here is a *skipError.
func (n *Node) prepareJob(ctx context.Context, job *jobs.Job) (*collab.Group, func(), error) {
	tj, err := job.Train()
	if err != nil {
		return nil, nil, &skipError{fmt.Sprintf("job file: %v", err)}
	}
	root, err := cid.Decode(tj.Model)
	if err != nil {
		return nil, nil, &skipError{fmt.Sprintf("model %q is not a CID", tj.Model)}
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	ms, _ := n.train.members.Members(lctx, job.ID)
	cancel()
	for _, m := range ms {
		if !m.Left && m.State != "" && stepOf(tj, m.Round) >= tj.Steps {
			return nil, nil, &skipError{"done before this node came"}
		}
	}
	info, weights, err := n.inspectFrom(ctx, root)
	if err != nil {
		return nil, nil, fmt.Errorf("model %s: %w", root, err)
	}
	if need := trainBytes(info.Manifest.Config, weights, tj); n.cfg.TrainMemory > 0 && need > n.cfg.TrainMemory {
		return nil, nil, &skipError{fmt.Sprintf("needs about %d MiB, more than the %d MiB allowed for training", need>>20, n.cfg.TrainMemory>>20)}
	}
	log.Info("training: taking the job", "job", job.ID, "model", root, "data", tj.Data, "method", tj.Method, "averaging", tj.Averaging)
	if !info.Whole {
		if err := n.Pull(ctx, api.PullRequest{CID: root.String()}, func(api.PullProgress) {}); err != nil {
			return nil, nil, fmt.Errorf("model %s: %w", root, err)
		}
	}
	l, err := shards.Load(ctx, n.store, root, shards.Whole(info.Manifest.Config.Layers))
	if err != nil {
		return nil, nil, fmt.Errorf("model %s: %w", root, err)
	}
	if l.Tokenizer == nil {
		return nil, nil, &skipError{fmt.Sprintf("model %s has no tokenizer", root)}
	}
	data, err := n.DataBytes(ctx, tj.Data)
	if err != nil {
		return nil, nil, fmt.Errorf("data %s: %w", tj.Data, err)
	}
	sets, err := train.JobSets(tj, data, l.Tokenizer)
	if err != nil {
		return nil, nil, &skipError{fmt.Sprintf("data %s: %v", tj.Data, err)}
	}
	be, err := n.openBackend(n.cfg.TrainThreads)
	if err != nil {
		return nil, nil, err
	}
	ok := false
	defer func() {
		if !ok {
			be.Close()
		}
	}()
	tr, err := train.NewTrainer(tj, l.Weights, be, sets.Train, sets.Eval)
	if err != nil {
		return nil, nil, &skipError{err.Error()}
	}
	cfg, err := groupConfig(job.ID, tj)
	if err != nil {
		return nil, nil, &skipError{err.Error()}
	}
	// The inner states a DiLoCo member commits to each round are kept
	// apart from the job's checkpoints: the newest few (a verifier fetches
	// the last round's while the next one runs, a try of it again
	// included), so they never push out a checkpoint a joiner needs.
	cfg.Inner = &jobStates{n: n, job: job.ID + "/inner", kept: keptInnerStates}
	t := n.train
	g, err := collab.New(n.host.Libp2p(), t.members, t.ar, tr, &jobStates{n: n, job: job.ID}, cfg)
	if err != nil {
		return nil, nil, &skipError{err.Error()}
	}
	ok = true
	return g, func() { be.Close() }, nil
}

// groupConfig is the group configuration a job file asks for.
func groupConfig(id string, tj *train.Job) (collab.Config, error) {
	cfg := collab.Config{Job: id, Mode: collab.Mode(tj.Averaging), InnerSteps: tj.InnerSteps,
		OuterLR: tj.OuterLR, OuterMomentum: tj.OuterMomentum, Overlap: tj.Overlap, MinPeers: tj.MinPeers, Verify: tj.Verify}
	if tj.Verify == 0 {
		cfg.Verify = -1 // none
	}
	switch tj.Encoding {
	case "", "f32":
		cfg.Encoding = allreduce.F32
	case "int8":
		cfg.Encoding = allreduce.Int8
	case "q4":
		cfg.Encoding = allreduce.Q4
	default:
		return cfg, fmt.Errorf("job file: encoding %q", tj.Encoding)
	}
	perRound := 1
	if cfg.Mode == collab.DiLoCo {
		perRound = max(tj.InnerSteps, 1)
	}
	if tj.CheckpointEvery > 0 {
		cfg.CheckpointEvery = max(1, tj.CheckpointEvery/perRound)
	}
	return cfg, nil
}

// trainBytes estimates the memory a job takes on a model of config c
// whose weights take weightBytes: the weights, the trained values with
// their gradients and AdamW's two moments (float32 each), and the
// activations of a micro-batch kept for the backward pass.
func trainBytes(c model.Config, weightBytes int64, j *train.Job) int64 {
	var trained int64
	if j.Method == train.MethodFull {
		trained = int64(c.Layers)*int64(c.Dim)*int64(4*c.Dim+3*c.Hidden) + 2*int64(c.Vocab)*int64(c.Dim)
	} else {
		trained = int64(c.Layers) * int64(len(j.LoRATargets)) * int64(j.LoRARank) * int64(c.Dim+max(c.Dim, c.Hidden))
	}
	tokens := int64(min(j.Sequences(), train.MaxMicroBatch)) * int64(j.SeqLen)
	act := tokens * int64(c.Layers) * int64(12*c.Dim+3*c.Hidden) * 4
	logits := tokens * int64(c.Vocab) * 4 * 2
	return weightBytes + 16*trained + act + logits
}

// jobStates keeps a job's checkpoints in the node's store, listed under
// the job's ID so that store GC keeps them (the newest few).
type jobStates struct {
	n    *Node
	job  string
	kept int // how many it keeps; 0: keptJobCheckpoints
}

func (s *jobStates) blocks() *collab.BlockStates {
	return &collab.BlockStates{Store: s.n.store, Exchange: s.n.ex}
}

// Put stores a checkpoint and keeps it.
func (s *jobStates) Put(ctx context.Context, state []byte) (cid.Cid, error) {
	s.n.blockOps.RLock()
	defer s.n.blockOps.RUnlock()
	c, err := s.blocks().Put(ctx, state)
	if err != nil {
		return cid.Undef, err
	}
	return c, s.keep(c)
}

// Get fetches a checkpoint from the peers that announce it and keeps it.
func (s *jobStates) Get(ctx context.Context, c cid.Cid, from []peer.ID) ([]byte, error) {
	s.n.blockOps.RLock()
	defer s.n.blockOps.RUnlock()
	b, err := s.blocks().Get(ctx, c, from)
	if err != nil {
		return nil, err
	}
	return b, s.keep(c)
}

// keep lists checkpoint c under the job's ID and forgets the job's older
// ones beyond s.kept (GC deletes their blocks).
func (s *jobStates) keep(c cid.Cid) error {
	ckpts := s.n.ckpts
	var mine []api.ModelEntry
	for _, e := range ckpts.entries() {
		if e.Name == s.job {
			mine = append(mine, e)
		}
	}
	if !slices.ContainsFunc(mine, func(e api.ModelEntry) bool { return e.CID == c.String() }) {
		e := api.ModelEntry{CID: c.String(), Name: s.job, Added: time.Now().UTC()}
		if err := ckpts.add(e); err != nil {
			return err
		}
		mine = append(mine, e)
	}
	slices.SortFunc(mine, func(a, b api.ModelEntry) int { return cmp.Compare(a.Added.UnixNano(), b.Added.UnixNano()) })
	kept := s.kept
	if kept == 0 {
		kept = keptJobCheckpoints
	}
	for len(mine) > kept {
		if _, err := ckpts.remove(mine[0].CID); err != nil {
			return err
		}
		mine = mine[1:]
	}
	s.n.announce([]cid.Cid{c})
	return nil
}

var _ collab.States = (*jobStates)(nil)
