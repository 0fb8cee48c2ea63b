package tales

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The same seed gives the same stories, another seed others.
func TestDeterministic(t *testing.T) {
	a, b, c := Corpus(1, 50), Corpus(1, 50), Corpus(2, 50)
	if !slices.Equal(a, b) {
		t.Error("seed 1 gave two different corpora")
	}
	if slices.Equal(a, c) {
		t.Error("seeds 1 and 2 gave the same corpus")
	}
	if New(9).Story() != Corpus(9, 1)[0] {
		t.Error("Corpus and Story disagree")
	}
}

var (
	sentenceEnd = regexp.MustCompile(`[.!?]"?$`)
	badArticle  = regexp.MustCompile(`\b(a [aeiou]|an [^aeiou])`)
	unfilled    = regexp.MustCompile(`[{}]`)
)

// Stories are one paragraph of sentences that begin with a capital and
// end with a stop, with "a" and "an" right, every placeholder filled, a
// few hundred words of vocabulary over the corpus, every plot told, and
// most stories opening with "Once upon a time".
func TestStories(t *testing.T) {
	corpus := Corpus(1, 3000)
	words := map[string]bool{}
	once := 0
	var total int
	for _, s := range corpus {
		if s == "" || s[0] < 'A' || s[0] > 'Z' {
			t.Fatalf("story does not open with a capital: %q", s)
		}
		if !sentenceEnd.MatchString(s) {
			t.Errorf("story does not end a sentence: %q", s)
		}
		if m := badArticle.FindString(s); m != "" {
			t.Errorf("%q in %q", m, s)
		}
		if unfilled.MatchString(s) || strings.Contains(s, "  ") || strings.Contains(s, " ,") || strings.Contains(s, " .") ||
			strings.ContainsAny(s, "\n\t") {
			t.Errorf("malformed story %q", s)
		}
		if strings.HasPrefix(s, "Once upon a time") {
			once++
		}
		f := strings.Fields(s)
		total += len(f)
		if len(f) < 60 || len(f) > 220 {
			t.Errorf("a story of %d words: %q", len(f), s)
		}
		for _, w := range f {
			words[strings.ToLower(strings.Trim(w, `.,!?:"`))] = true
		}
	}
	t.Logf("%d stories, %d words on average, %d distinct words, %d open with Once upon a time", len(corpus), total/len(corpus), len(words), once)
	if len(words) < 300 || len(words) > 1500 {
		t.Errorf("%d distinct words, want a few hundred", len(words))
	}
	if once < len(corpus)/3 {
		t.Errorf("only %d of %d stories open with Once upon a time", once, len(corpus))
	}
	// Every plot shows up: each has a sentence of its own.
	for plot, mark := range map[string]string{
		"lost": "find", "want": "wanted to", "helper": "little", "share": "share", "gift": "birthday", "storm": "rain", "dream": "dream",
	} {
		n := 0
		for _, s := range corpus {
			if strings.Contains(s, mark) {
				n++
			}
		}
		if n < len(corpus)/20 {
			t.Errorf("plot %s: %q in only %d stories", plot, mark, n)
		}
	}
}

// The hero is named by the pronouns of the hero's kind, a child's friend
// is an animal and an animal's friend a child, and the hero's name comes back through the story.
func TestCast(t *testing.T) {
	g := New(5)
	for range 500 {
		s := g.cast()
		if s.hero.animal() == s.friend.animal() {
			t.Fatalf("hero %s (%s) and friend %s (%s) are both children or both animals", s.hero.name, s.hero.kind, s.friend.name, s.friend.kind)
		}
		if (s.hero.kind == "girl" && s.hero.male) || (s.hero.kind == "boy" && !s.hero.male) {
			t.Fatalf("%s is a %s with male=%v", s.hero.name, s.hero.kind, s.hero.male)
		}
		s.say("{N} took {his} {o} to {place}, and {he} saw {F}.")
		want := s.hero.name + " took her " + s.thing.noun
		if s.hero.male {
			want = s.hero.name + " took his " + s.thing.noun
		}
		if !strings.HasPrefix(s.text(), want) || !strings.HasSuffix(s.text(), "saw "+s.friend.name+".") {
			t.Fatalf("%q does not start with %q", s.text(), want)
		}
	}
	for _, st := range Corpus(6, 200) {
		name := regexp.MustCompile(`named (\w+)`).FindStringSubmatch(st)
		if name == nil {
			t.Fatalf("no hero named in %q", st)
		}
		if strings.Count(st, name[1]) < 3 {
			t.Errorf("%s is named %d times in %q", name[1], strings.Count(st, name[1]), st)
		}
	}
}
