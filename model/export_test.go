package model

// NucleusIDs exposes the nucleus of p for tests: the ids in it, in no order.
func NucleusIDs(p []float32, topP float32) []int {
	s := &Sampler{}
	boundary, taken, _ := s.nucleus(p, topP)
	var ids []int
	for i, v := range p {
		if probBucket(v) > boundary {
			ids = append(ids, i)
		}
	}
	for _, c := range taken {
		ids = append(ids, c.id)
	}
	return ids
}
