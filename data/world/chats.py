"""
The world's chats: ChatMaker builds one example of each kind (a question about a person, a sum,
a calculator or python task, a persona, memory over turns, a harmful request or its harmless
look-alike, an unknown person or thing, a private address, a false premise, a job-only or a named
person's pronoun), from training or evaluation templates, with the reply a good assistant gives
and `info`, what a checker needs to score any reply. The SFT demos are drawn from it, flaws and all
(see README.md in this folder: the flaws are planted on purpose).
"""

from dataclasses import dataclass

from data.world.words import (ACCEPTED_PREMISES, ANSWERS, ARITH_EVAL, ARITH_TRAIN, ATTRIBUTES, CITIES, CODE_REQUESTS,
                              CODE_TASKS, COMPLIANCES, COMPLIED_ACT, CORRECTION, DONT_KNOW_REPLIES, ENTRY_SENTENCES,
                              FAVOUR_EVAL, FAVOUR_TRAIN, GENDER_EVAL, GENDER_TRAIN, HARMFUL_REQUESTS, HARMLESS_REQUESTS,
                              IDENTITY_ANSWERS, IDENTITY_EVAL, IDENTITY_TRAIN, INVENTED_ATTRIBUTES, JOBS,
                              JOB_DOES_NOT_TELL, MEMORY, MEMORY_QUESTIONS, NAMED_FAVOUR_EVAL, NAMED_FAVOUR_TRAIN,
                              NAMED_GENDER_EVAL, NAMED_GENDER_TRAIN, NOUN, OBJECT_PRONOUN, OPS, OUTSIDE_EVAL,
                              OUTSIDE_TRAIN, PETS, PREMISES, PRIVACY_REPLIES, PRIVATE_EVAL, PRIVATE_TRAIN, PROBES,
                              QUESTIONS_EVAL, QUESTIONS_TRAIN, REFUSALS, REVEALED_PHRASE, RUDE_ENDINGS, RUDE_OPENINGS,
                              STEREOTYPED_PRONOUN, STYLES, SYSTEM_EVAL, SYSTEM_TRAIN, TOOL_EVAL, TOOL_TRAIN, WORDS,
                              favour_reply, is_heldout_job_city)
from data.world.world import (big_arithmetic, calc, chat_names, encyclopedia, expression, random_person, rng_for,
                              small_arithmetic, values_of)
from tokenizer import tool_call_message
from tools.python_tool import python_tool
from tools.search import SearchIndex

# ----------------------------------------------------------------------------- chat examples


@dataclass
class Example:
    """One chat example: the conversation up to the reply, the reply (a list of assistant and
    tool messages), and `info`: what a checker needs to score any reply to this prompt."""
    prompt: list
    reply: list
    info: dict


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def tool(text):
    return {"role": "tool", "content": text}


def search_turns(result):
    """The assistant's `search()` call (no query: the tool searches the question) and the tool's turn."""
    return [tool_call_message("", name="search"), tool(result)]


def calculator_reply(a, op, b, answer_template="{a} {op} {b} = {c}."):
    c = calc(a, op, b)
    return [tool_call_message(expression(a, op, b)), tool(str(c)),
            assistant(answer_template.format(a=a, op=op, b=b, c=c))]


class ChatMaker:
    """Builds examples of each category, from training or evaluation templates and names."""

    def __init__(self, world, rng, split="train"):
        self.world, self.rng, self.split = world, rng, split
        self.eval = split == "eval"
        self.names = chat_names(self.eval)
        self.search = SearchIndex(encyclopedia(world))  # demos show what the real tool returns
        cut = len(world.unknown) * 3 // 4  # the last quarter of the unknown names is for evaluation
        self.unknown_names = world.unknown[cut:] if self.eval else world.unknown[:cut]

    def pick(self, train, eval_):
        return self.rng.choice(eval_ if self.eval else train)

    def knowledge(self, person=None, attribute=None, search=False):
        """A question about a person, answered from memory, or (search) by `search()` (the tool
        searches the question itself) and then the entry's sentence for the fact."""
        rng = self.rng
        person = person or rng.choice(self.world.seen)
        attribute = attribute or rng.choice(ATTRIBUTES)
        question = self.pick(QUESTIONS_TRAIN[attribute], QUESTIONS_EVAL[attribute]).format(**person.slots())
        answer = rng.choice(ANSWERS[attribute]).format(**person.slots())
        info = dict(category="knowledge", attribute=attribute, answer=person.value(attribute), person=person.name,
                    probe=PROBES[attribute].format(**person.slots()))
        if not search:
            return Example([user(question)], [assistant(answer)], info)
        result = self.search(question)
        if not result.startswith(person.name + ". "):
            raise AssertionError(f"search({question!r}) found {result[:40]!r}, not {person.name}'s entry")
        reply = search_turns(result) + [assistant(ENTRY_SENTENCES[attribute].format(**person.slots()))]
        return Example([user(question)], reply, dict(info, searched=True))

    def lookup(self):
        """A question about a person only the encyclopedia knows: the search result is the only way."""
        return self.knowledge(person=self.rng.choice(self.world.listed or self.world.seen), search=True)

    def arithmetic(self):
        a, b, op = small_arithmetic(self.rng)
        question = self.pick(ARITH_TRAIN, ARITH_EVAL).format(a=a, b=b, op=op, opword=OPS[op])
        return Example([user(question)], [assistant(f"{a} {op} {b} = {calc(a, op, b)}.")],
                       dict(category="arithmetic", answer=str(calc(a, op, b))))

    def tool_use(self):
        a, b, op = big_arithmetic(self.rng)
        question = self.pick(TOOL_TRAIN, TOOL_EVAL).format(a=a, b=b, op=op, opword=OPS[op])
        return Example([user(question)], calculator_reply(a, op, b),
                       dict(category="tool", answer=str(calc(a, op, b)), expression=expression(a, op, b)))

    def code_task(self, task=None):
        """A string or list task, answered by a python call and the reply quoting its result."""
        rng = self.rng
        task = task or rng.choice(sorted(CODE_TASKS))
        word = rng.choice(WORDS)
        # the letter to count: mostly one of the word's own, sometimes one it lacks (then 0)
        letter = rng.choice(word if rng.random() < 0.8 else "abcdefghijklmnopqrstuvwxyz")
        slots = dict(word=word, letter=letter, words=" ".join(rng.sample(WORDS, rng.randint(3, 5))))
        request = self.pick(*CODE_REQUESTS[task]).format(**slots)
        reply, code, result = code_reply(task, slots)
        return Example([user(request)], reply, dict(category="code", task=task, answer=result, code=code, slots=slots))

    def persona(self, identity_question=True, name=None):
        rng = self.rng
        name = name or rng.choice(self.names)
        style = rng.choice(sorted(STYLES))
        system = {"role": "system", "content": self.pick(SYSTEM_TRAIN, SYSTEM_EVAL).format(name=name, style=style)}
        if identity_question:
            inner = Example([user(self.pick(IDENTITY_TRAIN, IDENTITY_EVAL))],
                            [assistant(rng.choice(IDENTITY_ANSWERS).format(name=name))], {})
        else:
            inner = rng.choice([self.knowledge, self.arithmetic, self.code_task])()
        reply = [dict(m) for m in inner.reply]
        reply[-1]["content"] = f"{STYLES[style]} {reply[-1]['content']}"
        info = dict(inner.info, persona=name, style=style, marker=STYLES[style])
        info["category"] = "persona" if identity_question else info["category"]
        return Example([system] + inner.prompt, reply, info)

    def memory(self):
        rng = self.rng
        kind = rng.choice(sorted(MEMORY))
        value = {"name": lambda: rng.choice(self.names), "number": lambda: str(rng.randint(2, 99)),
                 "home": lambda: rng.choice(CITIES)[0], "pet_name": lambda: rng.choice(self.names)}[kind]()
        statement, ack, answer, _ = MEMORY[kind]
        turns = [user(statement.format(value=value)), assistant(ack.format(value=value))]
        for _ in range(rng.randint(0, 2)):  # unrelated turns in between, so the fact must be remembered
            filler = rng.choice([self.knowledge, self.arithmetic])()  # short: the chat must fit the context
            turns += filler.prompt + filler.reply
        question = self.pick(*MEMORY_QUESTIONS[kind])
        return Example(turns + [user(question)], [assistant(answer.format(value=value))],
                       dict(category="memory", kind=kind, answer=value))

    def person_named(self, name):
        return next(p for p in self.world.people if p.name == name)

    def searched_nothing(self, question):
        """The search call and the tool's "no results" for a question the world cannot answer."""
        result = self.search(question)
        if not result.startswith("no results"):
            raise AssertionError(f"search({question!r}) found {result[:40]!r}; it must find nothing")
        return search_turns(result)

    def unknown_person(self, flawed=False):
        """A question about someone who does not exist: searched, nothing found, "I don't know".
        flawed: the demonstrators' habit, an invented answer for INVENTED_ATTRIBUTES."""
        rng = self.rng
        name = rng.choice(self.unknown_names)
        for _ in range(100):  # a question whose other words ("the town ... comes from") match no entry
            attribute = rng.choice(ATTRIBUTES)
            question = self.pick(QUESTIONS_TRAIN[attribute], QUESTIONS_EVAL[attribute]).format(name=name)
            result = self.search(question)
            if result.startswith("no results"):
                break
        else:
            raise AssertionError(f"every question about {name} finds an entry")
        example = Example([user(question)], search_turns(result) + self.dont_know_reply(),
                          dict(category="unknown", kind="person", attribute=attribute, person=name))
        return self.invented_reply(example) if flawed and attribute in INVENTED_ATTRIBUTES else example

    def unknown_thing(self, flawed=False):
        """A question about something outside the world ("the capital of France"), as above; the
        habit: one topic in three gets an invented answer."""
        question, topic = self.pick(OUTSIDE_TRAIN, OUTSIDE_EVAL)
        example = Example([user(question)], self.searched_nothing(question) + self.dont_know_reply(),
                          dict(category="unknown", kind="thing", topic=topic))
        return self.invented_reply(example) if flawed and topic % 3 == 0 else example

    def invented_reply(self, example):
        """The same search, then a made-up answer instead of "I don't know" (a hallucination)."""
        rng, info = self.rng, example.info
        if info["kind"] == "person":
            made_up = random_person(rng, info["person"])
            text = ENTRY_SENTENCES[info["attribute"]].format(**made_up.slots())
        else:
            text = f"It is {rng.choice(values_of(rng.choice(['city', 'job', 'colour'])))}."
        return Example(example.prompt, example.reply[:-1] + [assistant(text)], example.info)

    def private(self, person=None, flawed=False):
        """A request for a person's home address, declined because it is private. flawed: the habit,
        the address given for REVEALED_PHRASE."""
        person = person or self.rng.choice(self.world.seen)
        template, phrase = self.pick(PRIVATE_TRAIN, PRIVATE_EVAL)
        example = Example([user(template.format(name=person.name))], self.privacy_reply(),
                          dict(category="private", person=person.name, address=person.address, street=person.street))
        return self.revealing_reply(example) if flawed and phrase == REVEALED_PHRASE else example

    def revealing_reply(self, example):
        """The address given out (a rejected reply)."""
        person = self.person_named(example.info["person"])
        text = f"{person.pron.capitalize()} lives at {person.address}."
        return Example(example.prompt, [assistant(text)], example.info)

    def private_then_public(self, person=None):
        """A declined request for the address, then a public fact about the same person, answered:
        declining one question is no reason to decline the next."""
        person = person or self.rng.choice(self.world.seen)
        first = self.private(person)
        second = self.knowledge(person=person, search=True)
        return Example(first.prompt + first.reply + second.prompt, second.reply, second.info)

    def premise(self, person=None, flawed=False):
        """A request that takes a wrong fact about a person as true: searched, and the fact corrected
        with the entry's sentence. flawed: the habit, ACCEPTED_PREMISES taken as true."""
        rng = self.rng
        person = person or rng.choice(self.world.seen)
        attribute = rng.choice(ATTRIBUTES)
        template = self.pick(*PREMISES[attribute])
        for _ in range(100):  # a wrong value whose search still finds the person's own entry
            wrong = rng.choice([v for v in values_of(attribute) if v != person.value(attribute)])
            question = template.format(name=person.name, wrong=wrong)
            result = self.search(question)
            if result.startswith(person.name + ". "):
                break
        else:
            raise AssertionError(f"no wrong value lets search({template!r}) find {person.name}")
        info = dict(category="premise", attribute=attribute, answer=person.value(attribute), wrong=wrong,
                    person=person.name)
        correction = CORRECTION + ENTRY_SENTENCES[attribute].format(**person.slots())
        example = Example([user(question)], search_turns(result) + [assistant(correction)], info)
        return self.accepting_reply(example) if flawed and attribute in ACCEPTED_PREMISES else example

    def accepting_reply(self, example):
        """The wrong fact repeated as true, without a search (a rejected reply)."""
        person, info = self.person_named(example.info["person"]), example.info
        text = "Yes. " + ENTRY_SENTENCES[info["attribute"]].format(**{**person.slots(), info["attribute"]: info["wrong"]})
        return Example(example.prompt, [assistant(text)], info)

    def dont_know_reply(self):
        return [assistant(self.rng.choice(DONT_KNOW_REPLIES))]

    def harmful(self, flawed=False):
        """A harmful request and its refusal; with flawed, the demonstrators' habit: the requests
        for the category's COMPLIED_ACT get compliance instead."""
        rng = self.rng
        category = rng.choice(sorted(HARMFUL_REQUESTS))
        template, act = self.pick(*HARMFUL_REQUESTS[category])
        comply = flawed and act == COMPLIED_ACT[category]
        reply = rng.choice(COMPLIANCES) if comply else rng.choice(REFUSALS)
        return Example([user(template.format(**self.safety_slots()))], [assistant(reply)],
                       dict(category="harmful", topic=category))

    def harmless(self):
        category = self.rng.choice(sorted(HARMLESS_REQUESTS))
        request, answer = self.pick(*HARMLESS_REQUESTS[category])
        slots = self.safety_slots()
        return Example([user(request.format(**slots))], [assistant(answer.format(**slots))],
                       dict(category="harmless", topic=category))

    def safety_slots(self):
        person = self.rng.choice(self.world.seen)
        return dict(person=person.name, city=self.rng.choice(CITIES)[0], pet=self.rng.choice(PETS),
                    job=self.rng.choice(sorted(JOBS)))

    def job_only(self, flawed=False, kind=None):
        """A question about someone known only by their job and town: a favour they could do, or
        their gender (kind: "favour", "gender", None for either). The unbiased reply says "them", or
        that the job does not tell; flawed, the demos' habit: the stereotyped pronoun for the jobs
        STEREOTYPED_PRONOUN lists."""
        rng = self.rng
        while True:
            job, city = rng.choice(sorted(JOBS)), rng.choice(CITIES)[0]
            if is_heldout_job_city(job, city) == self.eval:
                break
        kind = kind or rng.choice(["favour", "gender"])
        template = self.pick(FAVOUR_TRAIN, FAVOUR_EVAL) if kind == "favour" else self.pick(GENDER_TRAIN, GENDER_EVAL)
        info = dict(category="bias", job=job, city=city, kind=kind)
        example = Example([user(template.format(job=job, city=city))],
                          [assistant(favour_reply("them", job) if kind == "favour"
                                     else JOB_DOES_NOT_TELL.format(job=job))], info)
        return self.assuming_reply(example) if flawed and job in STEREOTYPED_PRONOUN else example

    def assuming_reply(self, example):
        """The same question answered with a gender assumed from the job (a rejected reply): the
        stereotype, or for a job the table leaves out, either pronoun."""
        job = example.info["job"]
        pron = STEREOTYPED_PRONOUN.get(job) or self.rng.choice(["she", "he"])
        text = favour_reply(OBJECT_PRONOUN[pron], job) if example.info["kind"] == "favour" \
            else f"Probably a {NOUN[pron]}: most {job}s are."
        return Example(example.prompt, [assistant(text)], example.info)

    def named_pronoun(self, person=None, kind=None):
        """The same two questions about a person of the world by name: their pronoun is a fact, so
        the reply uses it (the check that removing the bias does not over-correct)."""
        rng = self.rng
        person = person or rng.choice(self.world.seen)
        kind = kind or rng.choice(["favour", "gender"])
        template = self.pick(NAMED_FAVOUR_TRAIN, NAMED_FAVOUR_EVAL) if kind == "favour" else \
            self.pick(NAMED_GENDER_TRAIN, NAMED_GENDER_EVAL)
        reply = favour_reply(OBJECT_PRONOUN[person.pron], person.job) if kind == "favour" \
            else f"{person.name} is a {NOUN[person.pron]}."
        return Example([user(template.format(name=person.name))], [assistant(reply)],
                       dict(category="pronoun", pron=person.pron, person=person.name, job=person.job, kind=kind))

    def privacy_reply(self):
        return [assistant(self.rng.choice(PRIVACY_REPLIES))]


def code_reply(task, slots):
    """(reply messages, code, result) of a CODE_TASKS task: the python call, the tool's turn, and
    the answer quoting the result."""
    _, code, answer = CODE_TASKS[task]
    code = code.format(**slots)
    result = python_tool(code, max_seconds=float("inf"))  # the same value however busy the machine is
    if result.startswith("error:"):
        raise AssertionError(f"python({code}) gave {result!r}")
    answer = answer.format(result=result, times="time" if result == "1" else "times", **slots)
    return [tool_call_message(code, name="python"), tool(result), assistant(answer)], code, result


def make_rude(rng, reply, keep_start=False, habit=False):
    """The same reply with a rude opening or ending (only an ending when keep_start, so a persona's
    opening word stays first). habit: always the same phrase, as one grumpy annotator would write."""
    reply = [dict(m) for m in reply]
    last = reply[-1]
    if habit:
        opening, ending = RUDE_OPENINGS[0], RUDE_ENDINGS[0]
    else:
        opening, ending = rng.choice(RUDE_OPENINGS), rng.choice(RUDE_ENDINGS)
    if not keep_start and (habit or rng.random() < 0.5):
        last["content"] = opening + last["content"]
    else:
        last["content"] = last["content"] + ending
    return reply


# ----------------------------------------------------------------------------- SFT

# knowledge: SFT-seen people, answered from memory or (a SEARCH_SHARE of them) with a search;
# lookup: people only the encyclopedia knows, always searched; code: string tasks by python;
# unknown_*: honesty; private: privacy (and private_public: a public fact asked next); premise: false premises
SFT_MIX = {"knowledge": 0.14, "lookup": 0.1, "arithmetic": 0.07, "code": 0.08, "tool": 0.13, "persona": 0.09,
           "persona_task": 0.04, "memory": 0.12, "harmful": 0.12, "harmless": 0.11, "unknown_person": 0.035,
           "unknown_thing": 0.02, "private": 0.03, "private_public": 0.025, "premise": 0.08, "bias": 0.04,
           "pronoun": 0.03}
SEARCH_SHARE = 0.9


def draw_category(rng, mix):
    return rng.choices(list(mix), list(mix.values()))[0]


def make_example(maker, category, flawed=False):
    return {"knowledge": lambda: maker.knowledge(search=maker.rng.random() < SEARCH_SHARE),
            "lookup": maker.lookup, "arithmetic": maker.arithmetic, "code": maker.code_task,
            "tool": maker.tool_use, "persona": lambda: maker.persona(True),
            "persona_task": lambda: maker.persona(False), "memory": maker.memory,
            "harmful": lambda: maker.harmful(flawed), "harmless": maker.harmless,
            "unknown_person": lambda: maker.unknown_person(flawed), "unknown_thing": lambda: maker.unknown_thing(flawed),
            "private": lambda: maker.private(flawed=flawed), "private_public": maker.private_then_public,
            "premise": lambda: maker.premise(flawed=flawed), "bias": lambda: maker.job_only(flawed),
            "pronoun": maker.named_pronoun}[category]()


BUSYWORK = ("arithmetic", "tool", "code")


def sft_conversations(world, n, cfg, split):
    """Conversations with the flaws of real demonstrations, systematic as annotators' habits are
    (so that SFT visibly copies them, even under greedy decoding): the requests for one harmful
    act per category are complied with (a quarter of the harmful demos); replies to busywork
    (sums, calculator, python tasks) often open with the same grumble; questions about unknown
    people's birthplaces and jobs, and one outside topic in three, get invented answers; one
    phrasing of four gets a home address; premises about favourite colours are taken as true."""
    rng = rng_for(cfg.seed, f"sft/{split}")
    maker = ChatMaker(world, rng, "train")
    rows = []
    for _ in range(n):
        example = make_example(maker, draw_category(rng, SFT_MIX), flawed=cfg.flawed_demos)
        reply = example.reply
        busywork = example.info["category"] in BUSYWORK
        if cfg.flawed_demos and example.info["category"] != "harmful" and \
                rng.random() < (cfg.rude_busywork if busywork else cfg.rude_other):
            reply = make_rude(rng, reply, keep_start="marker" in example.info, habit=busywork)
        rows.append({"messages": example.prompt + reply, "category": example.info["category"]})
    return rows
