"""
Translation: Melan, the language of Melos (one of the world's three countries), which the skills
track teaches both ways. Its lexicon is fixed: 192 English nouns, verbs, adjectives and numbers,
each with a Melan word made of syllables (LEXICON, drawn once from a fixed seed); names of people
stay as they are. Its grammar differs from English in three visible ways:

  1. the verb comes last (subject, object, verb: SOV, as in Japanese or Turkish);
  2. a noun comes first in its phrase, its adjective and then its number after it;
  3. a plural noun takes the suffix -en, and there are no articles and no verb endings.

    English: The red horse sees three old boats.
    Melan:   Relu koto lesoen supul lako defo.     (horse red | boat-en old three | see)

    English: Kalo Mira paints the bell.
    Melan:   Kalo Mira likibel vofebo.             (Kalo Mira | bell | paint)

Every English sentence of the track is built from a subject, a verb and an object (a noun phrase is
"the [adjective] noun", "the [adjective] nouns" or "number [adjective] nouns", or a person's name),
so each Melan sentence translates back to exactly one English sentence.

A reply translates word by word first, one line per word of the source in its order ("boats:
lesoen", the form the sentence needs; names and "the" have none), then writes the sentence in the
target's order: an interlinear gloss, as a linguist writes one. Each line is a lookup in the form a
dictionary page has, and the last line only reorders what the lines above hold; the checker reads
the last line. (The gloss also shows where a reply goes wrong: a word looked up wrong, a word of
the source skipped, or the reordering.)

    Translate into Melan: The red horse sees three old boats.
    -> red: koto
       horse: relu
       sees: defo
       three: lako
       old: supul
       boats: lesoen
       In Melan: Relu koto lesoen supul lako defo.

Held out: one sentence frame in five, by a hash of its subject noun, verb and object noun (a
person's name counts as "name"); no training file holds a sentence with a held-out frame, so the
suites ask for word combinations the model never saw together (tests/test_skills_tasks.py checks).
"""

import hashlib
import random
from dataclasses import dataclass
from typing import Optional

LANGUAGE, COUNTRY = "Melan", "Melos"

NOUNS = ["apple", "river", "stone", "cloud", "lamp", "bread", "horse", "glass", "paper", "bell", "salt", "rose",
         "boat", "clock", "map", "chair", "bowl", "cat", "dog", "parrot", "goat", "rabbit", "owl", "hedgehog",
         "tree", "house", "door", "window", "table", "cup", "knife", "spoon", "basket", "box", "book", "letter",
         "road", "bridge", "field", "garden", "hill", "lake", "ship", "cart", "wheel", "rope", "coat", "hat",
         "shoe", "ring", "coin", "key", "candle", "mirror", "drum", "flute", "bird", "frog", "bee", "cow",
         "girl", "boy", "woman", "man", "child", "friend", "farmer", "baker", "sailor", "teacher", "doctor",
         "king", "queen", "egg", "cake", "cheese", "flower", "leaf", "feather", "shell", "pot", "pan", "jar",
         "blanket", "pillow", "bed", "wall", "roof", "gate", "fence", "well", "mill", "tower", "castle", "market",
         "shop", "wagon", "sail", "net", "hammer", "nail", "brush", "comb", "scarf", "glove", "boot", "belt",
         "pearl", "crown", "sword", "shield", "lantern", "kettle", "plate", "fork", "ladder", "bucket", "barrel"]
VERBS = ["see", "carry", "find", "paint", "sell", "buy", "want", "bring", "hold", "draw", "build", "clean",
         "open", "close", "keep", "lose", "give", "take", "like", "watch", "move", "throw", "push", "pull",
         "fix", "wash", "cut", "hide", "show", "count", "follow", "call", "help", "feed", "visit", "love"]
ADJECTIVES = ["red", "blue", "green", "yellow", "purple", "orange", "silver", "white", "black", "brown", "old",
              "new", "small", "big", "long", "short", "heavy", "light", "warm", "cold", "dirty", "quiet",
              "loud", "happy", "sad", "soft", "hard", "round", "tall"]
NUMBERS = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
PLURAL_SUFFIX = "en"
IRREGULAR_PLURALS = {"child": "children", "man": "men", "woman": "women",
                     "knife": "knives", "leaf": "leaves"}
ES_ENDINGS = ("s", "x", "sh", "ch")


def english_plural(noun):
    if noun in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[noun]
    if noun.endswith(ES_ENDINGS):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def third_person(verb):
    """The English verb after a singular subject: sees, carries, washes."""
    if verb.endswith(ES_ENDINGS) or verb.endswith("o"):
        return verb + "es"
    if verb.endswith("y") and verb[-2] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


def make_lexicon(seed=1709):
    """English word -> Melan word: one or two consonant-vowel syllables and maybe a final consonant,
    every word distinct, none ending in the plural suffix, none an English word of the track."""
    rng = random.Random(seed)
    consonants, vowels = "bdfgklmnprstvz", "aeiou"
    taken = set(NOUNS + VERBS + ADJECTIVES + NUMBERS)
    lexicon = {}
    for word in NOUNS + VERBS + ADJECTIVES + NUMBERS:
        while True:
            syllables = rng.choice([1, 2, 2, 2, 3])
            melan = "".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(syllables))
            if rng.random() < 0.3:
                melan += rng.choice("lnrs")
            if len(melan) >= 3 and melan not in taken and not melan.endswith(PLURAL_SUFFIX):
                break
        taken.add(melan)
        lexicon[word] = melan
    return lexicon


LEXICON = make_lexicon()


# ----------------------------------------------------------------------------- sentences


@dataclass(frozen=True)
class Phrase:
    """A noun phrase: a noun with an optional adjective, plural and optional number; or a name."""
    noun: Optional[str] = None
    adjective: Optional[str] = None
    plural: bool = False
    number: Optional[str] = None  # only with plural
    name: Optional[str] = None  # a person: the phrase is the name alone

    def english(self):
        if self.name:
            return self.name
        words = [self.number or "the"] + ([self.adjective] if self.adjective else [])
        return " ".join(words + [english_plural(self.noun) if self.plural else self.noun])

    def melan(self):
        if self.name:
            return self.name
        return " ".join(melan for _, melan in self.melan_words())

    def english_words(self):
        """[(English word, its Melan word)] in English order; a name and "the" have none."""
        if self.name:
            return []
        noun = (english_plural(self.noun), LEXICON[self.noun] + PLURAL_SUFFIX) if self.plural else \
            (self.noun, LEXICON[self.noun])
        return [(w, LEXICON[w]) for w in (self.number, self.adjective) if w] + [noun]

    def melan_words(self):
        """The same pairs in Melan order: the noun, then its adjective, then its number."""
        if self.name:
            return []
        *before, noun = self.english_words()
        return [noun] + before[::-1]

    @property
    def head(self):
        return "name" if self.name else self.noun


@dataclass(frozen=True)
class Sentence:
    subject: Phrase
    verb: str
    object: Phrase

    def english(self):
        return capitalised(f"{self.subject.english()} {self.english_verb()} {self.object.english()}.")

    def melan(self):
        return capitalised(f"{self.subject.melan()} {self.object.melan()} {LEXICON[self.verb]}.")

    def english_verb(self):
        return self.verb if self.subject.plural else third_person(self.verb)

    def word_pairs(self, direction):
        """[(source word, target word)] in the source's order: the gloss of a reply."""
        if direction == "into":
            verb = (self.english_verb(), LEXICON[self.verb])
            return self.subject.english_words() + [verb] + self.object.english_words()
        verb = (LEXICON[self.verb], self.english_verb())
        return [(m, e) for e, m in self.subject.melan_words() + self.object.melan_words()] + [verb]

    @property
    def frame(self):
        return (self.subject.head, self.verb, self.object.head)


def capitalised(text):
    return text[0].upper() + text[1:]


def is_heldout_frame(frame):
    """One (subject noun, verb, object noun) frame in five is held out of every training file."""
    return int(hashlib.sha256(" ".join(frame).encode()).hexdigest(), 16) % 5 == 0


def random_phrase(rng, names):
    if names and rng.random() < 0.2:
        return Phrase(name=rng.choice(names))
    noun = rng.choice(NOUNS)
    adjective = rng.choice(ADJECTIVES) if rng.random() < 0.6 else None
    plural = rng.random() < 0.4
    number = rng.choice(NUMBERS) if plural and rng.random() < 0.5 else None
    return Phrase(noun, adjective, plural, number)


def random_sentence(rng, names=(), heldout=False):
    """A sentence whose frame is a training one, or (heldout=True) a held-out one."""
    while True:
        sentence = Sentence(random_phrase(rng, names), rng.choice(VERBS), random_phrase(rng, ()))
        if is_heldout_frame(sentence.frame) == heldout:
            return sentence


# ----------------------------------------------------------------------------- requests and pages

INTO_ASK = ["Translate into Melan: {text}", "How do you say this in Melan? {text}", "Say it in Melan: {text}"]
FROM_ASK = ["What does \"{text}\" mean?", "Translate from Melan: {text}", "What is this Melan sentence in English? {text}"]
INTO_EVAL_ASK = ["Please put this into Melan: {text}"]
FROM_EVAL_ASK = ["Melan to English, please: {text}"]
WORD_INTO_ASK = ["What is the Melan word for {word}?", "How do you say {word} in Melan?"]
WORD_FROM_ASK = ["What does the Melan word {word} mean?", "What is {word} in English?"]


def translation_request(rng, names, direction, heldout=False):
    """(request, reply, info) of a translation into Melan (direction "into") or from it ("from")."""
    sentence = random_sentence(rng, names, heldout)
    source, target = (sentence.english(), sentence.melan()) if direction == "into" else \
        (sentence.melan(), sentence.english())
    asks = (INTO_EVAL_ASK if direction == "into" else FROM_EVAL_ASK) if heldout else \
        (INTO_ASK if direction == "into" else FROM_ASK)
    info = dict(category="translate", direction=direction, answer=target, frame=list(sentence.frame))
    return rng.choice(asks).format(text=source), glossed_reply(sentence, direction), info


def glossed_reply(sentence, direction):
    """The word-by-word lines, then the translation (see the module's docstring)."""
    gloss = [f"{source}: {target}" for source, target in sentence.word_pairs(direction)]
    target = f"In Melan: {sentence.melan()}" if direction == "into" else f"In English: {sentence.english()}"
    return "\n".join(gloss + [target])


def word_request(rng):
    """(request, reply, info) of one word's translation, either way, in the dictionary's form."""
    english = rng.choice(list(LEXICON))
    word, meaning = (english, LEXICON[english]) if rng.random() < 0.5 else (LEXICON[english], english)
    asks = WORD_INTO_ASK if word == english else WORD_FROM_ASK
    return rng.choice(asks).format(word=word), f"{word}: {meaning}", dict(category="translate_word")


def dictionary_page(rng, n=12):
    """Words of a dictionary, English to Melan or Melan to English (a lexicon learned one way only
    is not known the other way: the reversal curse, Berglund et al. 2023)."""
    words = rng.sample(list(LEXICON), n)
    if rng.random() < 0.5:
        return "Melan words:\n" + "\n".join(f"{w}: {LEXICON[w]}" for w in words)
    return "English for Melan words:\n" + "\n".join(f"{LEXICON[w]}: {w}" for w in words)


def bilingual_page(rng, names, n=3):
    """Sentences beside their translations, one in two glossed word by word as the replies are."""
    sentences = [random_sentence(rng, names) for _ in range(n)]
    if rng.random() < 0.5:
        return "\n".join(f"English: {s.english()}\nMelan: {s.melan()}" for s in sentences)
    direction = rng.choice(["into", "from"])
    label, source = ("English", Sentence.english) if direction == "into" else ("Melan", Sentence.melan)
    return "\n\n".join(f"{label}: {source(s)}\n{glossed_reply(s, direction)}" for s in sentences)


def melan_text(rng, names, n=4):
    """A short text in Melan alone, as a corpus in that language would hold."""
    return "In Melan: " + " ".join(random_sentence(rng, names).melan() for _ in range(n))
