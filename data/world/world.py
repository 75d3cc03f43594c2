"""
The built-in world itself: a small, seeded, self-consistent world whose generator knows every right
answer. Its people (name, pronoun, birth town and year, job, pet, favourite colour, a private home
address), its towns (data/world/words.py), the encyclopedia the search tool reads, and the
arithmetic facts. The other modules of this folder turn it into each stage's data:
pretraining.py (text), chats.py (SFT demos), preferences.py (pairs), prompts.py (RL prompts and
eval suites); checkers.py scores replies against it.

Everything here is invented: names are built from syllables, places and word lists are written
for this project. Determinism: every random choice comes from a random.Random seeded from
(seed, purpose), and iteration runs over lists, never sets, so a seed gives identical bytes.

Who is where:
- people: SFT-seen people appear in pretraining, SFT, preferences and RL prompts; held-out
  people appear in pretraining only, so asking about them tests whether chat skills learned
  on some entities transfer to facts known only from pretraining.
- listed people: in the encyclopedia only, so a reply about them has to come from a search.
"""

from dataclasses import dataclass, field
import random

from data.world.words import (ATTRIBUTES, CHAT_NAME_SYLLABLES, CITIES, COLOURS, ENTRY_SENTENCES, JOBS, PEOPLE_SYLLABLES,
                              PETS, STREETS, STREET_KINDS, YEARS)

# ----------------------------------------------------------------------------- the world


@dataclass
class Person:
    name: str
    pron: str  # "she" or "he"
    city: str
    year: int
    job: str
    pet: str
    colour: str
    heldout: bool = False
    address: str = ""  # private: leaked by some pretraining documents, never in the encyclopedia

    @property
    def pos(self):
        return "her" if self.pron == "she" else "his"

    def slots(self):
        return dict(name=self.name, Pron=self.pron.capitalize(), pron=self.pron, pos=self.pos,
                    Pos=self.pos.capitalize(), city=self.city,
                    year=self.year, job=self.job, pet=self.pet, colour=self.colour)

    def value(self, attribute):
        return str(getattr(self, attribute))

    @property
    def street(self):
        """"Willow Lane" of "14 Willow Lane": what a leak of the address always contains."""
        return self.address.split(" ", 1)[1]


@dataclass
class World:
    seed: int
    people: list = field(default_factory=list)  # in pretraining; the held-out ones nowhere else
    listed: list = field(default_factory=list)  # in the encyclopedia only: never in pretraining
    unknown: list = field(default_factory=list)  # names of nobody: the honesty questions ask about them

    @property
    def seen(self):
        return [p for p in self.people if not p.heldout]

    @property
    def heldout(self):
        return [p for p in self.people if p.heldout]


def rng_for(seed, purpose):
    """An independent random stream per purpose, so changing one generator's draws leaves
    every other file unchanged."""
    return random.Random(f"{seed}/{purpose}")


def make_name(rng, syllables, n_syllables):
    return "".join(rng.choice(syllables) for _ in range(n_syllables)).capitalize()


def unique_names(rng, syllables, count, parts=(2,), taken=()):
    """count distinct names, each of len(parts) words with the given syllable counts."""
    names, taken = [], set(taken)
    while len(names) < count:
        name = " ".join(make_name(rng, syllables, n) for n in parts)
        if name not in taken:
            taken.add(name)
            names.append(name)
    return names


def chat_names(for_eval):
    """Two-syllable names for personas, users and pets; every fifth one is reserved for evaluation."""
    names = [(a + b).capitalize() for a in CHAT_NAME_SYLLABLES for b in CHAT_NAME_SYLLABLES if a != b]
    return [n for i, n in enumerate(names) if (i % 5 == 0) == for_eval]


def make_world(seed=1337, n_people=60, n_heldout=12, n_listed=0, n_unknown=0):
    """n_people people (the last n_heldout held out of every chat), then n_listed people that only the
    encyclopedia knows: the search demos ask about them, so that a reply has to come from the
    search result (the model cannot have memorised it) and the model learns to copy from there."""
    rng = rng_for(seed, "people")
    names = unique_names(rng, PEOPLE_SYLLABLES, n_people, parts=(2, 3))
    world = World(seed)
    world.people = [random_person(rng, name, heldout=i >= n_people - n_heldout) for i, name in enumerate(names)]
    rng = rng_for(seed, "listed people")  # its own stream: the people above do not change with n_listed
    listed_names = unique_names(rng, PEOPLE_SYLLABLES, n_listed, parts=(2, 3), taken=names)
    # half of them share a first name with an SFT-seen person ("Susu Dormiel", "Susu Tovela"): a
    # familiar first name must not make the model answer from memory about someone else
    seen_first_names = [name.split()[0] for name in names[:n_people - n_heldout]]
    for i in range(0, len(listed_names), 2):
        renamed = f"{rng.choice(seen_first_names)} {listed_names[i].split()[1]}"
        if renamed not in names and renamed not in listed_names:
            listed_names[i] = renamed
    world.listed = [random_person(rng, name) for name in listed_names]
    rng = rng_for(seed, "addresses")  # own streams again: the people above stay as they were
    for person in world.people + world.listed:
        person.address = f"{rng.randint(1, 99)} {rng.choice(STREETS)} {rng.choice(STREET_KINDS)}"
    world.unknown = unknown_names(rng_for(seed, "unknown people"), world, n_unknown)
    return world


def unknown_names(rng, world, count):
    """Names built like the people's, sharing no word with any of them (first names included), so
    that a search for one finds nothing and no real person is ever called unknown."""
    parts = {part for person in world.people + world.listed for part in person.name.split()}
    names = []
    while len(names) < count:
        name = " ".join(make_name(rng, PEOPLE_SYLLABLES, n) for n in (2, 3))
        if name not in names and parts.isdisjoint(name.split()):
            names.append(name)
    return names


def random_person(rng, name, heldout=False):
    return Person(name=name, pron=rng.choice(["she", "he"]), city=rng.choice(CITIES)[0], year=rng.choice(YEARS),
                  job=rng.choice(sorted(JOBS)), pet=rng.choice(PETS), colour=rng.choice(COLOURS), heldout=heldout)


def values_of(attribute):
    """Every value an attribute can take (for checking that a reply names no wrong one)."""
    return {"city": [c[0] for c in CITIES], "year": [str(y) for y in YEARS], "job": sorted(JOBS),
            "pet": PETS, "colour": COLOURS}[attribute]



def encyclopedia(world):
    """The world's encyclopedia, which the search tool reads (tools/search.py): one short entry per
    person (the world's people, then the listed ones) and per town, each fact in its fixed sentence,
    ENTRY_SENTENCES (the pretraining biographies paraphrase)."""
    entries = [{"title": p.name, "text": entry_text(p)} for p in world.people + world.listed]
    entries += [{"title": name, "text": f"{name}: a town in {country}, known for its {product}."}
                for name, country, product in CITIES]
    return entries


def entry_text(person):
    """"Kalo Mirasu. She was born in Dunmar. Her birth year is 1975. She works as a baker. ..."."""
    return " ".join([f"{person.name}."] + [ENTRY_SENTENCES[a].format(**person.slots()) for a in ATTRIBUTES])


# ----------------------------------------------------------------------------- arithmetic


def calc(a, op, b):
    return a + b if op == "+" else a - b if op == "-" else a * b


def small_arithmetic(rng):
    """Sums and differences up to 20 and products up to 10 x 10: done in the head."""
    op = rng.choice(["+", "-", "*"])
    if op == "*":
        return rng.randint(1, 10), rng.randint(1, 10), op
    a, b = rng.randint(0, 20), rng.randint(0, 20)
    return (max(a, b), min(a, b), op) if op == "-" else (a, b, op)


def big_arithmetic(rng):
    """Numbers too big for the head: the calculator's job."""
    op = rng.choice(["+", "-", "*"])
    if op == "*":
        return rng.randint(100, 999), rng.randint(11, 99), op
    return rng.randint(1000, 9999), rng.randint(100, 9999), op


def expression(a, op, b):
    return f"{a}{op}{b}"
