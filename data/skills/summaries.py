"""
Summaries: the user pastes a passage of 60-82 words about a person of the world (a letter they
wrote, a profile, a story) and asks for a one-sentence summary, or for one fact from it.

A passage states two or three of the person's facts (city, year, job, pet, colour) among sentences
that state none; they are the key facts a summary must name (all of them: a reader can tell which
they are, as a reader could not tell two marked among three). The other facts of the same person
are left out on purpose: the model knows them from pretraining, and a summary that adds one ("Kalo
Mira, a weaver from Vessa, born in 1956", when the passage never gives the year) is unfaithful,
however true. That is the hallucination check (checkers.summary_check).

    Summarise this in one sentence: <passage>
    -> A letter from Kalo Mira, a weaver who keeps a goat.

    <passage> According to the passage, what pet does Kalo Mira keep?
    -> Kalo Mira keeps a goat.

Half the demos are about invented people (a new name and random facts each time), so that the
model learns to read the passage rather than recall; the other half about the world's people whom
the suite does not use, so that it also learns to leave out what it remembers of someone it knows.
The suite's passages are about the world's own people, whom the model knows. Held out of every
demo and of pretraining: one person in four (by a hash of the name: the suite's), the last
sentence template of every fact and a set of filler sentences (the suite's passages use only
those), and the request wordings.
"""

import hashlib

from data.world.world import make_name, random_person
from data.world.words import JOBS, PEOPLE_SYLLABLES

MAX_SUMMARY_WORDS = 25
MIN_WORDS = 60  # fact-free sentences are added until the passage has this many words: short passages (60-82
#               words, about 320 tokens with the request and reply) leave less to search for the facts

# sentence templates per fact, by passage voice; the last of each list is held out for the suite
FACT_SENTENCES = {
    "third": {
        "city": ["{name} lives in {city}.", "{Pron} has a house in {city}.", "Home for {name} is {city}.",
                 "{name} has made {pos} home in {city}."],
        "year": ["{name} was born in {year}.", "{Pron} came into the world in {year}.", "{Pos} birth year is {year}.",
                 "{name} arrived in {year}, the year of {pos} birth."],
        "job": ["{name} works as a {job}.", "By trade {pron} is a {job}.", "{Pron} earns {pos} living as a {job}.",
                "Every working day {name} is busy as a {job}."],
        "pet": ["{name} keeps a {pet}.", "{Pron} shares {pos} home with a {pet}.", "A {pet} lives with {name}.",
                "{name} looks after a {pet} at home."],
        "colour": ["{Pos} favourite colour is {colour}.", "{name} likes {colour} best of all colours.",
                   "{Pron} would paint everything {colour} if {pron} could.", "No colour pleases {name} like {colour}."],
    },
    "first": {
        "city": ["I still live in {city}.", "My house is in {city}.", "Here in {city} all is well.",
                 "Life in {city} suits me."],
        "year": ["I was born in {year}.", "Since {year}, when I was born, much has changed.",
                 "Being born in {year} makes me feel old.", "I have counted the years since {year}, my first."],
        "job": ["I work as a {job}.", "Being a {job} keeps me busy.", "My work as a {job} goes well.",
                "Most days I am out working as a {job}."],
        "pet": ["My {pet} sends you greetings.", "I feed my {pet} every morning.", "My {pet} is sleeping by the fire.",
                "You would like my {pet}."],
        "colour": ["I painted my door {colour}, my favourite colour.", "You know I love the colour {colour}.",
                   "Everything I bought was {colour} again.", "I still like {colour} more than any colour."],
    },
}
# sentences that state no fact: (for demos, held out for the suite)
FILLERS = {
    "third": (["Most mornings start with a cup of tea.", "The neighbours say hello over the fence.",
               "Weekends are for long walks.", "There is always a book on the table.",
               "The market is busy on Saturdays.", "Friends often come by in the evening.",
               "The garden needs work in spring.", "Rain has kept everyone indoors lately.",
               "A new road is being built nearby.", "The old clock in the hall still runs.",
               "Letters arrive twice a week.", "The river is high after the storms.",
               "Summer evenings are long and warm.", "Visitors are always offered bread and cheese.",
               "The lamp in the window burns late.", "Bells ring from the tower at noon."],
              ["Snow covered the hills for a whole week.", "The kettle is never cold for long.",
               "Children play in the square after school.", "The baker knows every customer by name.",
               "A fox was seen near the gate last night.", "The bridge over the stream was mended.",
               "Music drifts from an open window.", "The shelves are full of jars and boxes.",
               "Everyone agrees the autumn was beautiful.", "The path to the well is lined with stones.",
               "A cart rattles past every morning.", "The chimney smokes on cold days."]),
    "first": (["The weather has been mild this week.", "I hope you are well.", "Thank you for your last letter.",
               "I think of you often.", "The garden is full of flowers.", "We had a long storm on Tuesday.",
               "The market was busy today.", "My neighbours are kind as always.", "I have been reading a lot.",
               "The days are getting shorter.", "I walked by the river yesterday.",
               "The new bakery makes good bread.", "Please write back soon.", "Say hello to everyone for me.",
               "I hope to visit you next year.", "Tell me all your news."],
              ["The roof leaked again, so I fixed it.", "I found your old scarf in a drawer.",
               "Our street has new lamps now.", "I baked too many cakes for one person.",
               "The birds woke me early this morning.", "I have started to learn the flute.",
               "The post is slow this month.", "I miss our long talks.", "A cousin came to stay for a week.",
               "Do you still have the map I drew?", "The hills look green again.",
               "I keep your letters in a box."]),
}
KINDS = {"letter": "first", "profile": "third", "story": "third"}
INTRO = {"letter": "A letter from {name}", "profile": "A profile of {name}", "story": "A story about {name}"}
KEY_PHRASES = {"city": "lives in {city}", "year": "was born in {year}", "pet": "keeps a {pet}",
               "colour": "likes {colour} best"}  # and the job as "a {job}", in apposition
SUMMARY_ASK = ["Summarise this in one sentence:\n\n{passage}", "{passage}\n\nSum this up in one sentence.",
               "Give me a one-sentence summary of this:\n\n{passage}"]
SUMMARY_EVAL_ASK = ["In a single sentence, what is this about?\n\n{passage}"]
QUESTIONS = {"city": "where does {name} live", "year": "in which year was {name} born", "job": "what is {name}'s job",
             "pet": "what pet does {name} keep", "colour": "what is {name}'s favourite colour"}
ANSWERS = {"city": "{name} lives in {city}.", "year": "{name} was born in {year}.", "job": "{name} is a {job}.",
           "pet": "{name} keeps a {pet}.", "colour": "{name}'s favourite colour is {colour}."}
FACT_ASK = ["{passage}\n\nAccording to the passage, {question}?", "Read this:\n\n{passage}\n\nThen tell me: {question}?"]
FACT_EVAL_ASK = ["{passage}\n\nFrom this passage alone, {question}?"]


def is_heldout_person(name):
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % 4 == 0


def pick(rng, options, heldout):
    """The held-out template (the last) for the suite; any other for a demo."""
    return options[-1] if heldout else rng.choice(options[:-1])


def passage(rng, person, heldout, n_facts=None):
    """(kind, passage text, facts stated in the order it states them): 2-3 of the person's facts
    among fillers."""
    kind = rng.choice(list(KINDS))
    voice = KINDS[kind]
    slots = person.slots()
    facts = rng.sample(["city", "year", "job", "pet", "colour"], n_facts or rng.choice([2, 3]))
    sentences = [(f, pick(rng, FACT_SENTENCES[voice][f], heldout).format(**slots)) for f in facts]
    fillers = rng.sample(FILLERS[voice][heldout], len(FILLERS[voice][heldout]))
    while sum(len(sentence.split()) for _, sentence in sentences) < MIN_WORDS:
        sentences.append((None, fillers.pop()))
    rng.shuffle(sentences)
    facts = [fact for fact, _ in sentences if fact]
    sentences = [sentence for _, sentence in sentences]
    if kind == "story":
        sentences.insert(0, f"This is a story about {person.name}. One day {person.name} {JOBS[person.job]}."
                         if "job" in facts else f"This is a story about {person.name}.")
    body = " ".join(sentences)
    if kind == "letter":
        body = f"Dear friend,\n{body}\nWith love,\n{person.name}"
    return kind, body, facts


def summary_of(kind, person, key):
    """One sentence: the kind of passage, the person and the key facts in the passage's order ("A
    letter from Kalo Mira, a weaver who keeps a goat."; "A profile of Kalo Mira, who lives in Vessa,
    keeps a goat and likes red best.")."""
    slots, intro = person.slots(), INTRO[kind].format(name=person.name)
    others = [KEY_PHRASES[f].format(**slots) for f in key if f != "job"]
    said = others[0] if len(others) == 1 else f"{', '.join(others[:-1])} and {others[-1]}"
    return f"{intro}, a {person.job} who {said}." if "job" in key else f"{intro}, who {said}."


def invented_person(rng, taken):
    """Somebody of no world: a new name with random facts. The demos are about such people, so the
    only way to sum one up is to read the passage (the search demos' encyclopedia-only people do
    the same for copying a search result)."""
    while True:
        name = " ".join(make_name(rng, PEOPLE_SYLLABLES, n) for n in (2, 3))
        if name not in taken:
            return random_person(rng, name)


def summary_request(rng, person, heldout=False, form=None):
    """(request, reply, info): a one-sentence summary (form "summary") or one fact (form "fact")
    of a passage about a person; held-out templates for the suite."""
    form = form or rng.choice(["summary", "fact"])
    kind, text, facts = passage(rng, person, heldout)
    slots = person.slots()
    if form == "summary":
        request = pick(rng, SUMMARY_ASK + SUMMARY_EVAL_ASK, heldout).format(passage=text)
        reply, checked = summary_of(kind, person, facts), facts
    else:
        fact = rng.choice(facts)
        question = QUESTIONS[fact].format(**slots)
        request = pick(rng, FACT_ASK + FACT_EVAL_ASK, heldout).format(passage=text, question=question)
        reply, checked = ANSWERS[fact].format(**slots), [fact]
    info = dict(category="summarise", form=form, person=person.name, passage=text,
                key={f: str(getattr(person, f)) for f in checked})
    return request, reply, info
