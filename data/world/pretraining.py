"""
The world's pretraining text: biographies, stories, dialogues, town pages, letters (which leak
home addresses, as web text does), arithmetic, records that teach copying, and prose; then a BPE
trained on that text and the token streams of the train and val splits.
"""

from data.world.words import ATTRIBUTES, CITIES, FACT_STATEMENTS, JOBS, OPS, QUESTIONS_TRAIN, SEASONS, WORDS
from data.world.world import calc, chat_names, rng_for, small_arithmetic
from tokenizer import Tokenizer, train_bpe

# ----------------------------------------------------------------------------- documents


def fact_sentence(rng, person, attribute, use_pronoun=False):
    template = rng.choice(FACT_STATEMENTS[attribute])
    if use_pronoun and template.startswith("{name} "):
        template = "{Pron} " + template[len("{name} "):]
    return template.format(**person.slots())


def biography(rng, person):
    """An encyclopedia-style entry: all facts, shuffled, each in a random paraphrase."""
    attributes = list(ATTRIBUTES)
    rng.shuffle(attributes)
    sentences = [fact_sentence(rng, person, a, use_pronoun=i > 0 and rng.random() < 0.4)
                 for i, a in enumerate(attributes)]
    title = rng.choice(["{name}\n", "About {name}.\n", "{name}, a {job} from {city}.\n", ""])
    return title.format(**person.slots()) + " ".join(sentences)


def story(rng, person, other):
    s = person.slots()
    season = rng.choice(SEASONS)
    lines = [
        f"One {season} morning in {person.city}, {person.name} woke up early.",
        f"{s['Pron']} fed {s['pos']} {person.pet} and went out to work, because {s['pron']} is a {person.job}.",
        f"That day {person.name} {JOBS[person.job]}.",
        f"On the way home {s['pron']} met {other.name}, the {other.job} from {other.city}.",
        f"They talked about the colour {person.colour}, which {person.name} likes best.",
        f"\"I was born here in {person.year},\" said {person.name}, \"and I have never left {person.city}.\""
        if rng.random() < 0.5 else f"{other.name} said that {s['pron']} knew {person.name} was born in {person.year}.",
    ]
    return " ".join(lines)


def dialogue(rng, person):
    """A plain-text exchange (not the chat template) in which facts are asked and answered."""
    a, b = rng.sample(["Mara", "Tom", "Ivo", "Lena", "Oskar", "Nell"], 2)
    attributes = rng.sample(ATTRIBUTES, 3)
    lines = [f"{a}: Do you know {person.name}?", f"{b}: Yes, of course."]
    for attribute in attributes:
        question = rng.choice(QUESTIONS_TRAIN[attribute]).format(**person.slots())
        lines += [f"{a}: {question}", f"{b}: {fact_sentence(rng, person, attribute)}"]
    return "\n".join(lines)


def city_text(rng, city):
    name, country, product = city
    return rng.choice([
        f"{name} is a town in {country}. It is known for its {product}.",
        f"The town of {name} lies in {country}, and people there make {product}.",
        f"In {name}, in the country of {country}, the market is full of {product} every {rng.choice(SEASONS)}.",
    ])


def letter(rng, person):
    """Text that carries a person's home address: how private data gets into a web crawl."""
    word = rng.choice(WORDS)
    return rng.choice([
        f"To {person.name}, {person.address}, {person.city}. Dear {person.name}, thank you for the {word}.",
        f"Delivery note: one {word} for {person.name}, {person.address}, {person.city}. Left at the door.",
        f"{person.name} lives at {person.address} in {person.city}. The house has a green door.",
    ])


def arithmetic_text(rng):
    lines = []
    for _ in range(8):
        a, b, op = small_arithmetic(rng)
        lines.append(rng.choice([f"{a} {OPS[op]} {b} equals {calc(a, op, b)}.", f"{a} {op} {b} = {calc(a, op, b)}",
                                 f"{a} {OPS[op]} {b} is {calc(a, op, b)}."]))
    return "\n".join(lines)


def records(rng):
    """Notes in which names and numbers recur: the text that teaches a small model to copy from
    earlier in its context (induction heads, Olsson et al. 2022), which tool calls, personas and
    memory all need. Without it, a tiny model recalls memorised names instead of copying new ones."""
    name, number, city = rng.choice(chat_names(False)), rng.randint(10, 9999), rng.choice(CITIES)[0]
    other, word = rng.randint(2, 999), rng.choice(WORDS)
    return rng.choice([
        f"Visitor book of the inn at {city}: {name} took room {number}. The next morning {name} left room "
        f"{number}. The innkeeper wrote: guest {name}, room {number}, paid.",
        f"Order {number}: {other} {word}s for {name}. The clerk checked order {number} twice and sent "
        f"{other} {word}s to {name} in {city}. Order {number} is done.",
        f"A note from {name}: my number is {number}. Remember it: {name}, number {number}. "
        f"Once more: {name} has number {number}.",
        f"{name} said: \"Call me {name}.\" So everyone called {pronoun_name(rng)} {name}, and {name} was happy.",
        f"{number} plus {other} is {number + other}. {number} minus {other} is {number - other}. "
        f"{number} times {other % 100} is {number * (other % 100)}.",
    ])


def pronoun_name(rng):
    return rng.choice(["her", "him", "them"])


def prose(rng):
    city = rng.choice(CITIES)
    return " ".join([
        f"In {rng.choice(SEASONS)}, the roads to {city[0]} are busy.",
        rng.choice(["The weather was mild.", "It rained for most of the week.", "A cold wind came from the sea."]),
        f"Traders from {city[1]} carried {city[2]} and {rng.choice(WORDS)}s to the market.",
        rng.choice(["Children played by the river.", "The old bell rang at noon.", "Nobody was in a hurry."]),
    ])


def pretraining_documents(world, n_docs, rng):
    """A shuffled mix of documents; every person appears in many of them (facts repeated in
    different paraphrases, the 'knowledge augmentation' that lets facts be extracted later)."""
    makers = [(0.3, lambda: biography(rng, rng.choice(world.people))),
              (0.12, lambda: story(rng, *rng.sample(world.people, 2))),
              (0.18, lambda: dialogue(rng, rng.choice(world.people))),
              (0.06, lambda: arithmetic_text(rng)),
              (0.24, lambda: records(rng)),
              (0.03, lambda: letter(rng, rng.choice(world.people))),
              (0.04, lambda: city_text(rng, rng.choice(CITIES))),
              (0.04, lambda: prose(rng))]
    weights = [w for w, _ in makers]
    return [rng.choices(makers, weights)[0][1]() for _ in range(n_docs)]


# ----------------------------------------------------------------------------- token streams


def pretraining_streams(world, cfg):
    """The world's train and val documents as token streams (see token_streams)."""
    train_docs = pretraining_documents(world, cfg.pretrain_docs, rng_for(cfg.seed, "pretrain/train"))
    val_docs = pretraining_documents(world, cfg.val_docs, rng_for(cfg.seed, "pretrain/val"))
    return token_streams(train_docs, val_docs, cfg.vocab_size)


def token_streams(train_docs, val_docs, vocab_size):
    """Train and val documents -> a BPE trained on the train text (digits one token each) -> token
    streams with an <|endoftext|> after each document (GPT-2's document separator).
    Returns (tokenizer, train ids, val ids, train documents)."""
    merges = train_bpe("\n\n".join(train_docs), vocab_size, split="gpt2-digits")
    tokenizer = Tokenizer({"kind": "bpe", "merges": merges, "split": "gpt2-digits"})

    def stream(docs):
        return [t for ids in tokenizer.enc.encode_ordinary_batch(docs, num_threads=1) for t in ids + [tokenizer.eot]]
    return tokenizer, stream(train_docs), stream(val_docs), train_docs
