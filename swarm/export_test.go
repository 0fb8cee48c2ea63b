package swarm

// LieAboutExperts makes s scale every answer it gives to EXPERTS by f:
// a holder whose weights are not the model's. Call it before s serves.
func LieAboutExperts(s *Server, f float32) {
	s.answered = func(out []float32) {
		for i := range out {
			out[i] *= f
		}
	}
}
