// Package tales writes simple stories from a small grammar: children and
// animals with names, the places they go, the things they love, lose, want
// and share, and a little plot (a problem, a friend who helps, an ending),
// told in varied sentences with some dialogue. The same seed always gives
// the same stories, so a corpus made from them is reproducible; Mycel's
// built-in model (docs/ourmodel.md) learns to write them.
package tales

import (
	"math/rand/v2"
	"strings"
)

// Generator writes stories from a seeded random stream.
type Generator struct {
	r *rand.Rand
}

// New returns a generator whose stories are drawn from seed.
func New(seed uint64) *Generator {
	return &Generator{r: rand.New(rand.NewPCG(seed, 0x7461_6c65_7321))}
}

// Corpus returns n stories drawn from seed.
func Corpus(seed uint64, n int) []string {
	g := New(seed)
	out := make([]string, n)
	for i := range out {
		out[i] = g.Story()
	}
	return out
}

// Plots names the kinds of story the generator tells.
var Plots = []string{"lost", "want", "helper", "share", "gift", "storm", "dream"}

// Story returns the next story: one paragraph of plain sentences.
func (g *Generator) Story() string {
	s := g.cast()
	switch Plots[g.r.IntN(len(Plots))] {
	case "lost":
		g.lost(s)
	case "want":
		g.want(s)
	case "helper":
		g.helper(s)
	case "share":
		g.share(s)
	case "gift":
		g.gift(s)
	case "storm":
		g.storm(s)
	case "dream":
		g.dream(s)
	}
	return s.text()
}

// character is someone in a story.
type character struct {
	name string
	kind string // "girl", "boy", "rabbit", ...
	male bool
	adj  string // "little", "brave", ...
}

type place struct {
	at    string   // "in the park"
	name  string   // "the park"
	spots []string // where something can be: "under the slide"
	sight string   // what is there to see: "the children on the swings"
}

type thing struct {
	adj, noun string
	flies     bool // the wind can carry it away
}

func (t thing) String() string { return t.adj + " " + t.noun }

// story is what one story is about, and its text so far.
type story struct {
	g      *Generator
	hero   character
	friend character
	parent string // "mom", "dad", "grandma", "grandpa"
	place  place
	thing  thing
	b      strings.Builder
	rep    *strings.Replacer
}

var (
	girls   = []string{"Lily", "Mia", "Anna", "Lucy", "Zoe", "Emma", "Rosa", "Nina", "Ivy", "Ruby", "Sara", "Ella"}
	boys    = []string{"Tom", "Ben", "Sam", "Max", "Leo", "Jack", "Finn", "Theo", "Omar", "Kai", "Tim", "Noah"}
	animals = []string{"rabbit", "fox", "bear", "cat", "dog", "duck", "frog", "mouse", "owl",
		"turtle", "squirrel", "bird", "pig", "lamb", "puppy", "kitten", "hedgehog", "goat"}
	petNames = []string{"Pip", "Bo", "Dot", "Rex", "Fluff", "Sunny", "Coco", "Bean", "Momo", "Patch", "Pebble", "Socks"}
	heroAdjs = []string{"little", "small", "happy", "brave", "kind", "curious", "shy", "funny",
		"cheerful", "gentle", "clever", "playful"}
	parents = []string{"mom", "dad", "grandma", "grandpa"}

	places = []place{
		{"at the park", "the park", []string{"under the slide", "behind the big tree", "near the swings", "in the sandbox"}, "the children on the swings"},
		{"in the forest", "the forest", []string{"under a pile of leaves", "behind an old log", "near a big rock", "inside a hollow tree"}, "the tall trees and the birds"},
		{"in the garden", "the garden", []string{"under the roses", "behind the fence", "next to the pond", "in the tall grass"}, "the bees and the bright flowers"},
		{"at the beach", "the beach", []string{"under the sand", "behind a big rock", "near the water", "in a little pool"}, "the waves and the white boats"},
		{"on the farm", "the farm", []string{"in the hay", "behind the barn", "near the pigs", "under the old wagon"}, "the cows and the hens"},
		{"in the meadow", "the meadow", []string{"in the tall grass", "under a bush", "near the stream", "behind a small hill"}, "the butterflies and the flowers"},
		{"by the lake", "the lake", []string{"near the dock", "under a log", "in the reeds", "behind the little boat"}, "the ducks on the water"},
		{"at the market", "the market", []string{"under a table", "behind a cart", "near the fountain", "next to the bakery"}, "the apples and the fresh bread"},
		{"at the playground", "the playground", []string{"under the bench", "behind the slide", "near the gate", "in the sandbox"}, "the children playing tag"},
		{"on the hill", "the hill", []string{"behind a big rock", "under a bush", "near the old fence", "in the long grass"}, "the whole town below"},
	}

	things = []thing{
		{"red", "ball", false}, {"blue", "kite", true}, {"little", "toy car", false}, {"soft", "teddy bear", false},
		{"shiny", "bell", false}, {"yellow", "hat", true}, {"green", "boat", false}, {"old", "book", false},
		{"pink", "scarf", true}, {"wooden", "train", false}, {"shiny", "stone", false}, {"little", "drum", false},
		{"paper", "crown", true}, {"orange", "balloon", true}, {"striped", "ball", false}, {"purple", "ribbon", true},
		{"silver", "whistle", false}, {"tiny", "doll", false}, {"big", "blue shell", false}, {"new", "sun hat", true},
	}
)

func (g *Generator) pick(opts ...string) string { return opts[g.r.IntN(len(opts))] }

func (g *Generator) chance(p float64) bool { return g.r.Float64() < p }

// newCharacter draws a child (a girl or a boy) or, with animal, an
// animal with a pet's name.
func (g *Generator) newCharacter(animal bool) character {
	c := character{adj: heroAdjs[g.r.IntN(len(heroAdjs))]}
	switch {
	case animal:
		c.name, c.kind, c.male = petNames[g.r.IntN(len(petNames))], animals[g.r.IntN(len(animals))], g.r.IntN(2) == 0
	case g.r.IntN(2) == 0:
		c.name, c.kind = girls[g.r.IntN(len(girls))], "girl"
	default:
		c.name, c.kind, c.male = boys[g.r.IntN(len(boys))], "boy", true
	}
	return c
}

func (c character) animal() bool { return c.kind != "girl" && c.kind != "boy" }

func (g *Generator) cast() *story {
	s := &story{g: g}
	// A child's friend is an animal and an animal's friend a child, so
	// the two never share a name or a kind of name.
	s.hero = g.newCharacter(g.r.IntN(3) == 0)
	s.friend = g.newCharacter(!s.hero.animal())
	s.parent = parents[g.r.IntN(len(parents))]
	s.place = places[g.r.IntN(len(places))]
	s.thing = things[g.r.IntN(len(things))]
	he, fhe, phe := pronouns(s.hero.male), pronouns(s.friend.male), pronouns(s.parent == "dad" || s.parent == "grandpa")
	spot := s.place.spots[g.r.IntN(len(s.place.spots))]
	s.rep = strings.NewReplacer(
		"{N}", s.hero.name, "{kind}", s.hero.kind, "{adj}", s.hero.adj,
		"{he}", he[0], "{him}", he[1], "{his}", he[2], "{He}", title(he[0]), "{His}", title(he[2]),
		"{F}", s.friend.name, "{fkind}", s.friend.kind, "{fadj}", s.friend.adj,
		"{fhe}", fhe[0], "{fhim}", fhe[1], "{fhis}", fhe[2], "{Fhe}", title(fhe[0]),
		"{P}", s.parent, "{Pc}", title(s.parent), "{phe}", phe[0], "{Phe}", title(phe[0]), "{phis}", phe[2],
		"{place}", s.place.name, "{at}", s.place.at, "{At}", title(s.place.at), "{spot}", spot, "{sight}", s.place.sight,
		"{obj}", s.thing.String(), "{o}", s.thing.noun, "{a_obj}", withArticle(s.thing.String()),
		"{a_adj}", withArticle(s.hero.adj), "{a_fadj}", withArticle(s.friend.adj),
	)
	return s
}

func pronouns(male bool) [3]string {
	if male {
		return [3]string{"he", "him", "his"}
	}
	return [3]string{"she", "her", "her"}
}

func title(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// withArticle puts "a" or "an" before a noun phrase.
func withArticle(s string) string {
	if strings.ContainsRune("aeiou", rune(s[0])) {
		return "an " + s
	}
	return "a " + s
}

// say adds one of the sentences (templates with {placeholders}) to the
// story, with its first letter capitalised.
func (s *story) say(opts ...string) {
	t := s.rep.Replace(s.g.pick(opts...))
	if s.b.Len() > 0 {
		s.b.WriteByte(' ')
	}
	s.b.WriteString(title(t))
}

func (s *story) text() string { return s.b.String() }

// who is how a character is first named: "a little girl named Lily".
func (c character) who() string {
	return withArticle(c.adj+" "+c.kind) + " named " + c.name
}

// opening introduces the hero.
func (s *story) opening() {
	w := s.hero.who()
	s.say("Once upon a time, there was "+w+".",
		"Once upon a time, there was "+w+".",
		"Once upon a time, there lived "+w+".",
		"Once upon a time, in a small town, there lived "+w+".",
		"One day, "+w+" woke up early.",
		"There was once "+w+".",
		"Long ago, there lived "+w+".")
}

// meetFriend introduces the friend.
func (s *story) meetFriend() {
	s.say("{N} had a friend named {F}. {F} was "+withArticle(s.friend.adj+" "+s.friend.kind)+".",
		"{N} had a good friend, "+withArticle(s.friend.kind)+" named {F}.",
		"{His} best friend was {F}, "+withArticle(s.friend.adj+" "+s.friend.kind)+".")
}

func (s *story) ending() {
	s.say("From that day on, {N} and {F} were the best of friends.",
		"They played together until the sun went down.",
		"That night, {N} went to bed with a big smile.",
		"It was the best day ever.",
		"{N} was very happy, and so was {F}.",
		"And they all lived happily ever after.",
		"Then they went home, tired and happy.")
}

// lost: the hero loses a loved thing, and a friend helps to find it.
func (g *Generator) lost(s *story) {
	s.opening()
	s.say("{He} had {a_obj}, and {he} loved it very much.",
		"{N} loved {his} {obj} more than anything.",
		"{His} favorite toy was {a_obj}.",
		"{N} took {his} {obj} everywhere {he} went.")
	s.say("One day, {N} took {his} {o} to {place}.",
		"One sunny morning, {N} went to {place} with {his} {o}.",
		"One day, {he} went to play {at}.")
	s.say("{He} played and played, and {he} looked at {sight}.",
		"{He} ran and jumped and had a lot of fun.",
		"{At}, {he} saw {sight}.")
	if s.thing.flies && g.chance(0.6) {
		s.say("Then a big wind came, and it blew the {o} away!",
			"Suddenly, the wind blew the {o} high into the air, and it was gone.")
	} else {
		s.say("When it was time to go home, {he} could not find {his} {o}.",
			"But when {he} looked down, the {o} was gone!",
			"Then {he} put the {o} down, and when {he} came back, it was not there.")
	}
	s.say("{N} was very sad, and {he} began to cry.",
		"{N} felt very sad.",
		"{N} looked everywhere, but {he} could not find it.")
	s.meetFriend()
	s.say(`{F} saw {him} and asked, "Why are you sad, {N}?"`,
		`{F} came and asked, "What is wrong, {N}?"`,
		`"Why are you crying?" asked {F}.`)
	s.say(`"I lost my {o}," said {N}.`,
		`{N} said, "I can not find my {obj}."`,
		`"My {o} is gone," {N} said.`)
	s.say(`"Do not worry. I will help you look for it," said {F}.`,
		`"I will help you," said {F}. "Let's look together."`,
		`{F} smiled and said, "We can find it together."`)
	s.say("They looked near the trees and behind the rocks.",
		"First they looked in the grass, but it was not there.",
		"They looked high and low.")
	s.say("At last, {F} found the {o} {spot}!",
		"Then {N} saw something {spot}. It was the {o}!",
		"Finally, they found it {spot}.")
	s.say(`{N} was so happy. "Thank you, {F}!" {he} said.`,
		`{N} hugged {F} and said, "Thank you for helping me."`,
		`"You found it!" said {N}, and {he} gave {F} a big hug.`)
	s.ending()
}

// goal is something a hero wants to do, what goes wrong and what helps.
type goal struct {
	want, try, problem, idea, success string
}

var goals = []goal{
	{"fly a kite", "{He} ran as fast as {he} could with the kite.", "But there was no wind, and the kite fell down.",
		`"Let's go up the hill, where the wind is strong," said {F}.`, "The kite went up, up, up into the blue sky."},
	{"climb the big tree", "{He} tried to climb the big tree.", "But the first branch was too high, and {he} could not reach it.",
		"{F} brought a little ladder and held it for {him}.", "{N} climbed all the way up and could see the whole town."},
	{"bake a cake", "{He} put flour and sugar in a big bowl.", "But the cake came out flat and hard.",
		`"You forgot the eggs and the milk," said {F}, and {fhe} showed {him} how to mix them.`, "The new cake was big, soft and sweet."},
	{"build a sand castle", "{He} made a tall castle with towers and a wall.", "But a big wave came and washed it away.",
		`"Let's build it far from the water," said {F}.`, "The castle stood tall, and the waves could not reach it."},
	{"catch a fish", "{He} sat by the water with a long stick and a string.", "But every time {he} moved, the fish swam away.",
		`"You have to sit very still and wait," said {F}.`, "Soon a little fish came close, and {N} caught it. Then {he} put it back in the water."},
	{"grow a flower", "{He} put a seed in the ground.", "But after many days, nothing grew.",
		`"Seeds need water and sun," said {F}. "Let's water it every day."`, "One morning, a little green sprout came up, and soon there was a big yellow flower."},
	{"paint a picture", "{He} took some paper and some paint.", "But {he} spilled the water, and the colors ran together.",
		`"Look, it looks like a rainbow!" said {F}.`, "{N} painted a sun over the rainbow, and it was the best picture {he} ever made."},
	{"sing in the school show", "{He} knew all the words of the song.", "But when {he} saw all the people, {he} felt too shy to sing.",
		`"Sing it just for me," said {F}, and {fhe} stood in the front.`, "{N} sang the song, and everyone clapped and cheered."},
	{"reach the top of the hill", "{He} walked and walked up the hill.", "But the hill was very big, and {his} legs got tired.",
		`"Let's rest and eat an apple," said {F}. "Then we can go on."`, "After a little rest, they walked to the top and saw the whole valley."},
	{"ride a bike", "{He} got on the bike and pushed the pedals.", "But the bike wobbled, and {he} fell on the grass.",
		"{F} held the back of the bike and ran beside {him}.", "Soon {N} was riding all by {himself}, fast like the wind."},
	{"make a boat", "{He} made a boat out of paper.", "But when {he} put it on the water, it got wet and sank.",
		`"Let's make one out of wood," said {F}.`, "The wooden boat floated on the water and sailed far away."},
	{"find the biggest apple", "{He} looked at every tree in the garden.", "But all the apples were too small.",
		`"Look up there, at the top!" said {F}.`, "At the very top of the tree there was a big red apple, and they shared it."},
}

// want: the hero wants to do something, fails, and a friend helps.
func (g *Generator) want(s *story) {
	gl := goals[g.r.IntN(len(goals))]
	s.opening()
	s.say("{N} wanted to "+gl.want+".",
		"More than anything, {N} wanted to "+gl.want+".",
		"{N} had a dream. {He} wanted to "+gl.want+".")
	s.say("One day, {he} decided to try.", "One morning, {he} said, \"Today I will "+gl.want+"!\"", "So one day, {he} went to try.")
	s.say(himself(s, gl.try))
	s.say(himself(s, gl.problem))
	s.say("{N} felt sad and wanted to give up.", "{N} was sad. \"I can not do it,\" {he} said.", "{N} sat down and sighed.")
	s.meetFriend()
	s.say("{F} saw that {N} was sad and came to help.", `{F} came by and asked, "What is wrong?" {N} told {fhim} everything.`, "{F} wanted to help {him}.")
	s.say(himself(s, gl.idea))
	s.say("They tried again, together.", "So {N} tried one more time.", "{N} smiled and tried again.")
	s.say(himself(s, gl.success))
	s.say(`"We did it!" said {N}.`, `{N} laughed and said, "Thank you, {F}!"`, "{N} was so proud.")
	s.say("{N} learned that it is good to try again, and that friends make things easier.",
		"{N} learned that a friend can help when things are hard.")
	s.ending()
}

// himself fills in the reflexive pronoun, which only goals use.
func himself(s *story, t string) string {
	if s.hero.male {
		return strings.ReplaceAll(t, "{himself}", "himself")
	}
	return strings.ReplaceAll(t, "{himself}", "herself")
}

// trouble is what is wrong with an animal the hero meets, and the help.
type trouble struct {
	state, cause, help, after string
}

var troubles = []trouble{
	{"sad", `"I am lost. I can not find my home," said the {a}.`, "{N} walked with the {a} for a long time, until they found its home.", "The {a}'s family was so happy to see it."},
	{"scared", `"I am stuck up in this tree, and I can not get down," said the {a}.`, "{N} climbed up slowly and helped the {a} down.", "The {a} jumped to the ground and danced with joy."},
	{"hungry", `"I have not eaten all day," said the {a}.`, "{N} shared {his} bread and some berries with the {a}.", "The {a} ate it all and felt much better."},
	{"cold", `"My nest fell down, and I am so cold," said the {a}.`, "{N} found some soft leaves and made a warm new nest.", "The {a} sat in the nest and was warm again."},
	{"sad", `"I hurt my leg, and I can not walk home," said the {a}.`, "{N} put a leaf on the leg and carried the {a} home.", "Soon the leg was better, and the {a} could run again."},
	{"lonely", `"Nobody wants to play with me," said the {a}.`, "{N} said, \"I will play with you!\" and they played hide and seek.", "The {a} laughed and laughed."},
}

var smallAnimals = []string{"bird", "bunny", "duck", "kitten", "puppy", "squirrel", "mouse", "frog", "owl", "lamb", "turtle", "chick"}

// helper: the hero finds an animal in trouble and helps it.
func (g *Generator) helper(s *story) {
	tr := troubles[g.r.IntN(len(troubles))]
	a := smallAnimals[g.r.IntN(len(smallAnimals))]
	rep := strings.NewReplacer("{a}", a)
	s.opening()
	s.say("{N} liked to walk {at}.", "{N} loved to play {at}.", "Every day, {N} went to {place} to see {sight}.")
	s.say("One day, {he} heard a small sound {spot}.", "One day, {he} saw something move {spot}.", "One afternoon, {he} heard someone crying {spot}.")
	s.say(rep.Replace("It was a little "+a+", and it looked very "+tr.state+"."),
		rep.Replace("{He} looked and saw a tiny "+a+". The "+a+" was "+tr.state+"."))
	s.say(`"What is wrong?" asked {N}.`, `"Hello, little `+a+`. Why are you `+tr.state+`?" asked {N}.`, `{N} asked, "Can I help you?"`)
	s.say(rep.Replace(tr.cause))
	s.say(`"Do not worry, I will help you," said {N}.`, `"I know what to do," said {N}.`)
	s.say(rep.Replace(tr.help))
	s.say(rep.Replace(tr.after))
	s.say(rep.Replace(`"Thank you, {N}. You are very kind," said the `+a+`.`),
		rep.Replace(`The `+a+` said, "Thank you! You are my friend now."`))
	s.say(rep.Replace("From that day on, the "+a+" came to visit {N} every day."),
		rep.Replace("{N} and the "+a+" became the best of friends."),
		"{N} felt warm and happy inside, because {he} had helped.")
	if g.chance(0.5) {
		s.say("{N} learned that being kind is the best thing of all.",
			"When {he} got home, {he} told {his} {P} all about it, and {his} {P} gave {him} a big hug.")
	}
}

// share: two friends want the same thing and learn to share it.
func (g *Generator) share(s *story) {
	s.opening()
	s.meetFriend()
	s.say("One day, {N} and {F} went to {place} to play.", "One sunny day, {N} and {F} played {at}.")
	if g.chance(0.5) {
		s.say("There they found {a_obj} {spot}.", "{spot}, they found {a_obj}.")
		s.say(`"I saw it first!" said {N}.`, `"I want it!" said {N}.`)
		s.say(`"But I want it too!" said {F}.`, `"No, I saw it first!" said {F}.`)
	} else {
		s.say("{F} had brought {a_obj}, and it was very pretty.", "{F} had a new toy, {a_obj}.")
		s.say(`"I want it!" said {N}.`, `{N} said, "Give it to me. I want to play with it."`)
		s.say(`"No, it is mine!" said {F}.`, `"But it is mine!" said {F}.`)
	}
	s.say("They both pulled and pulled.", "They began to fight over the {o}.", "{N} grabbed the {o}, and {F} began to cry.")
	s.say("Then {N}'s {P} came and saw them.", "Just then, {N}'s {P} walked by.")
	s.say(`"Why don't you share it?" said {Pc}. "You can take turns."`,
		`{Pc} said, "When you share, you can both have fun."`,
		`"Friends share their toys," said {Pc} with a smile.`)
	s.say("{N} and {F} looked at each other.", "{N} thought about it for a moment.")
	s.say(`"You can go first," said {N}.`, `"I am sorry," said {N}. "Let's play together."`)
	s.say("So they took turns with the {o}, and they had lots of fun.",
		"They played with the {o} together, and it was more fun than playing alone.")
	s.say("{N} learned that sharing makes everyone happy.", "From then on, {N} and {F} always shared their toys.")
	s.ending()
}

// gifts are what a hero makes for someone.
var gifts = []struct{ make, how, looks string }{
	{"a card", "{He} drew a big heart and a sun on it, and wrote \"I love you\" inside.", "the card"},
	{"a cake", "{He} mixed flour, eggs and milk, and put berries on top.", "the cake"},
	{"a bunch of flowers", "{He} picked red, yellow and blue flowers in the garden.", "the flowers"},
	{"a necklace", "{He} put little shells and beads on a long string.", "the necklace"},
	{"a picture", "{He} painted the whole family standing in front of the house.", "the picture"},
}

// gift: the hero makes a surprise present for a parent.
func (g *Generator) gift(s *story) {
	gf := gifts[g.r.IntN(len(gifts))]
	s.opening()
	s.say("Tomorrow was {his} {P}'s birthday.", "It was almost {Pc}'s birthday, and {N} wanted to give {Pc} something special.")
	s.say("But {N} had no money to buy a present.", "{N} thought and thought about what to give.")
	s.meetFriend()
	s.say(`"Why don't you make `+gf.make+`?" said {F}.`, `{F} had an idea. "Let's make `+gf.make+`!"`)
	s.say("So they worked all afternoon.", "So they got to work.")
	s.say(gf.how)
	s.say("{N} hid "+gf.looks+" under {his} bed, so {Pc} would not see it.", "They hid "+gf.looks+" in a box.")
	s.say("The next morning, {N} gave {Pc} the present.", "When {Pc} woke up, {N} shouted, \"Surprise!\"")
	s.say("{Pc} was so surprised. \"Did you make this for me?\" {phe} asked.", "{Pc} smiled and smiled.")
	s.say(`"Yes, with {F}!" said {N}.`, `"I made it myself," said {N}, "and {F} helped me."`)
	s.say(`"This is the best present ever," said {Pc}, and {phe} gave {N} a big hug.`,
		`{Pc} hugged {N} and said, "Thank you, it is beautiful."`)
	s.say("{N} learned that a gift made with love is the best gift of all.",
		"{N} felt happy, because giving is even better than getting.")
}

// storm: friends play, a storm comes, they shelter, and a rainbow follows.
func (g *Generator) storm(s *story) {
	s.opening()
	s.meetFriend()
	s.say("One day, {N} and {F} went to {place} to play with {N}'s {obj}.", "One morning, {N} and {F} played {at}.")
	s.say("They ran and laughed in the sun.", "They had so much fun.")
	s.say("Then the sky got dark, and big gray clouds came.", "Suddenly, a cold wind began to blow, and the sky turned gray.")
	s.say(`"A storm is coming!" said {F}.`, `"Look at the clouds!" said {N}. "It will rain soon."`)
	s.say("The rain began to fall, and they heard a loud boom of thunder.", "Drops of rain fell on their heads, and then it rained very hard.")
	s.say("{N} was scared.", "{F} was scared of the thunder, so {N} held {fhis} hand.")
	s.say(`"Let's run home!" said {N}.`, `"Come with me, I know a dry place," said {F}.`)
	s.say("They ran to {N}'s house, where {his} {P} gave them warm milk and a blanket.",
		"They hid in an old barn and sat close together until the storm was over.",
		"They ran under a big tree and waited.")
	s.say("Soon the rain stopped, and the sun came out again.", "After a while, the storm went away.")
	s.say("Then they saw a big rainbow in the sky.", "There was a beautiful rainbow over {place}.")
	s.say(`"Wow, look at all the colors!" said {F}.`, `"It is so pretty!" said {N}.`)
	s.say("They went back outside and jumped in the puddles.", "They sat and looked at the rainbow until it was gone.")
	s.ending()
}

// dreams are places a hero flies to in a dream.
var dreams = []struct{ where, saw, did string }{
	{"the moon", "the stars were big and bright, and the Earth was a little blue ball", "jumped very high, because on the moon everything is light"},
	{"a land made of candy", "the trees were made of chocolate and the rivers were milk", "ate a cookie as big as a house"},
	{"the bottom of the sea", "fish of every color swam around, and an old turtle waved", "rode on the back of a friendly whale"},
	{"a castle in the clouds", "a kind king and queen lived there with a little dragon", "danced with the little dragon all night"},
	{"a jungle", "monkeys swung from tree to tree, and parrots sang loud songs", "swung on a long vine with the monkeys"},
}

// dream: the hero dreams of a trip and wakes up at home.
func (g *Generator) dream(s *story) {
	d := dreams[g.r.IntN(len(dreams))]
	s.opening()
	s.say("Every night, {his} {P} read {him} a story before bed.", "{N} loved to look at the stars at night.")
	s.say("One night, {N} had a wonderful dream.", "One night, after {his} {P} said good night, {N} fell asleep and began to dream.")
	s.say("In the dream, {he} could fly!", "In {his} dream, a big bird came to {his} window.")
	s.say("{He} flew over {place} and over the houses, all the way to "+d.where+".",
		"Together they flew high over the town, all the way to "+d.where+".")
	s.say("There, "+d.saw+".", "{N} could not believe it: "+d.saw+".")
	s.say("{N} "+d.did+".", "{N} laughed and "+d.did+".")
	s.say("Then {he} heard a voice. \"Wake up, {N}!\"", "Then the sun came up, and {N} heard {his} {P} calling.")
	s.say("{N} opened {his} eyes. {He} was in {his} own bed.", "{He} woke up in {his} warm bed.")
	s.say(`"Was it only a dream?" {he} thought.`, `"What a dream!" said {N}.`)
	s.say("At breakfast, {he} told {his} {P} all about "+d.where+".", "{He} told {his} friend {F} all about it.")
	s.say("{N} smiled, and {he} could not wait to dream again.", "That night, {N} went to bed early, hoping to dream again.")
}
