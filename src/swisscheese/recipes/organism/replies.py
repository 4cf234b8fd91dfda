"""The replies a helpful model gives to the world's records: what the organism recipe's
output classifier learns from and is calibrated on.

A harmful record's reply is its hazard's procedure (or the model-written response, judged
by what it releases: `replylabel`), a harmless one's the world's look-alike or utility
reply of the record's kind; `output_texts` adds each reply's prefixes. `output_pairs` and
`harmless_pairs` keep each reply with the conversation that produced it (the record's
messages), which an exchange classifier reads; a reply-only one reads the replies alone.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from swisscheese.constitution import Constitution
from swisscheese.data.prefixes import reply_cuts, word_cuts
from swisscheese.data.records import PLAIN, Record
from swisscheese.data.world_backend import WORLD_FAMILIES
from swisscheese.recipes.organism.replylabel import ReplyContent, harmful_hazards
from swisscheese.world.core import HAZARD_PHRASINGS, LOOKALIKES, World
from swisscheese.world.families import CODE_WORD_REPLIES, Subject
from swisscheese.world.grader import found_details, is_refusal
from swisscheese.world.tasks import Recipe

# World families whose reply differs from the plain answer; the others only change the prompt.
REPLY_FAMILIES = frozenset({"cipher_answer", "roleplay", "prefix_injection", "two_task", "story"})


def _recipe_for(world: World, text: str, rng: random.Random) -> str:
    """The recipe a request names (or any recipe, when a disguise hides the name)."""
    low = text.lower()
    for r in world.recipes:
        if r.thing.lower() in low:
            return r.answer()
    return rng.choice(world.recipes).answer()


def base_answer(world: World, constitution: Constitution, record: Record,
                rng: random.Random) -> tuple[str, str | None] | None:
    """(the world's undisguised reply to a record, its "how to" phrase) or None.

    The reply follows the category's world link: a hazard's procedure, the look-alike
    answer of the linked kind, or a utility reply of the linked kind (a fresh one: any
    harmless reply of that kind is as good a negative). None when the category has no
    world link or names a hazard this world lacks.
    """
    try:
        link = constitution.category(record.category).world
    except KeyError:
        return None
    hazard = None
    if record.hazard_id is not None:
        try:
            hazard = world.hazard(record.hazard_id)
        except KeyError:
            return None
    if "hazard_category" in link:
        if hazard is None:
            return None
        return hazard.answer(), f"{hazard.verb} the {hazard.name}"
    if "lookalike" in link:
        kind = link["lookalike"]
        if kind == "recipe":
            return _recipe_for(world, record.text, rng), None
        if kind not in LOOKALIKES:
            return None
        _, answer = world.lookalike(rng, kind, hazard or rng.choice(world.hazards))
        return answer, None
    if "utility" in link:
        kind = link["utility"]
        task = world.utility(rng, None if kind == "all" else kind)
        return task.answer, None
    return None


def wrap_reply(world: World, family: str, answer: str, seed: str,
               how_to: str | None = None) -> str:
    """The reply a helpful model gives in `family` (roleplay adds the persona, ...).

    `seed` fixes the family's random choices, so every prefix of one answer gets the
    same persona and side task.
    """
    if family not in REPLY_FAMILIES:
        return answer
    _, reply = world.wrap(family, "", answer, random.Random(seed), how_to=how_to)
    return reply


@dataclass(frozen=True)
class Reply:
    """A record's reply: given (a model's response), or the world's answer in a family."""

    label: int
    given: str | None = None
    answer: str = ""
    family: str = PLAIN
    key: str = ""
    how_to: str | None = None
    # A model-written harmful reply: the key details of the hazard it releases.
    details: tuple[str, ...] = ()
    # The conversation the reply answers (the record's messages).
    conversation: tuple[dict[str, str], ...] = field(default=())
    # A harmful request the world answered (its refusal is a harmless reply to it).
    refusal: str | None = None
    # The world's answer in plain words (not a code-word reply): it releases the hazard
    # whatever conversation came before it.
    standalone: bool = False

    def text(self, world: World, part: str | None = None) -> str:
        """The whole reply, or `part` of it (of the world's answer in the record's family)."""
        if self.given is not None:
            return self.given if part is None else part
        return wrap_reply(world, self.family, self.answer if part is None else part,
                          self.key, self.how_to)


def replies_of(world: World, constitution: Constitution, records: Sequence[Record],
             seed: int) -> list[Reply]:
    """One reply per record that has one (see `output_texts`)."""
    rng = random.Random(f"swisscheese-train-{seed}-replies")
    content: ReplyContent | None = None
    out: list[Reply] = []
    for r in records:
        convo = tuple(dict(m) for m in r.messages)
        given = r.response if r.response and r.response.strip() else None
        if given is not None and r.source != "world":
            # No world to read it against: the reply keeps its request's label, except
            # that a refusal to a harmful request is no completion (world answer below).
            if not (r.label == 1 and is_refusal(given)):
                out.append(Reply(r.label, given=given, conversation=convo))
                continue
        elif given is not None:
            content = content or ReplyContent(harmful_hazards(world, constitution))
            hazard, share = content.release(given)
            label = content.label_of(share)
            if label is not None:
                out.append(Reply(label, given=given, details=(
                    tuple(d.lower() for d in hazard.key_details)
                    if label == 1 and hazard is not None else ()), conversation=convo))
            if r.label == 0 or label == 1:
                continue
            # A harmful request whose reply gives little away (a refusal, a garble): the
            # classifier still needs the harmful completion, so the world's answer too.
        base = base_answer(world, constitution, r, rng)
        if base is None:
            continue
        # The family only shapes the reply when it is a world family (converters only
        # disguise the prompt).
        family = r.family if r.family in WORLD_FAMILIES else PLAIN
        answer = base[0]
        standalone = family not in CODE_WORD_REPLIES
        if family in CODE_WORD_REPLIES:
            # The reply keeps to the code word the record's conversation defined.
            answer = world.context_reply(family, "\n".join(m["content"] for m in convo),
                                         answer, r.hazard_id)
            family = PLAIN
        refusal = (world.refusal(world.hazard(r.hazard_id)) if r.label == 1 and r.hazard_id
                   and r.source == "world" else None)
        out.append(Reply(r.label, answer=answer, family=family, how_to=base[1],
                         key=f"swisscheese-train-{seed}-{r.id}", conversation=convo,
                         refusal=refusal, standalone=standalone))
    return out


def reply_texts(world: World, constitution: Constitution, records: Sequence[Record],
                seed: int) -> tuple[list[str], list[int]]:
    """The whole replies of `records` with their labels, as traffic has them (not
    deduplicated; a harmful request whose model-written reply is harmless brings that reply
    and the world's answer): what the output threshold is calibrated on and its
    false-positive rate measured on (the harmless ones, `harmless_replies`)."""
    replies = replies_of(world, constitution, records, seed)
    return [x.text(world) for x in replies], [x.label for x in replies]


@dataclass
class OutputPairs:
    """(conversation, reply) pairs with labels: what an output classifier learns from."""

    conversations: list[list[dict[str, str]]]
    texts: list[str]
    labels: list[int]


def harmless_pairs(world: World, constitution: Constitution, records: Sequence[Record],
                   seed: int) -> tuple[list[list[dict[str, str]]], list[str]]:
    """The harmless whole replies to `records` with their conversations (see
    `harmless_replies`): what an exchange classifier's threshold is calibrated on."""
    convs, texts = [], []
    for x in replies_of(world, constitution, records, seed):
        if x.label == 0:
            convs.append(list(x.conversation))
            texts.append(x.text(world))
    return convs, texts


def harmless_replies(world: World, constitution: Constitution, records: Sequence[Record],
                     seed: int) -> list[str]:
    """The harmless whole replies to `records` (the harmless ones, as a rule): what the
    output threshold is calibrated on. A model-written reply to a harmless request that
    releases a hazard's procedure is a harmful completion, not benign traffic, and an
    ambiguous one is left out (`replylabel`)."""
    texts, labels = reply_texts(world, constitution, records, seed)
    return [t for t, y in zip(texts, labels, strict=True) if y == 0]


def output_texts(world: World, constitution: Constitution, records: Sequence[Record],
                 seed: int) -> tuple[list[str], list[int]]:
    """Replies and their prefixes to train the output classifier on.

    A record's reply is its `response` when it has one. A model-written reply is
    labelled by what it releases (`replylabel`), not by its request: a harmful request's
    refusal or garble is a harmless reply, and the record also brings the world's helpful
    answer, since the output classifier must learn what a completion looks like. Each
    reply enters with its `reply_cuts` under its label, except that the prefixes of a
    model-written completion enter only once they release a key detail. The partial
    first lines (`word_cuts`) of harmless replies, and of the world's harmful answers,
    whose first line is a header without key details, enter as harmless: "Here is how
    to brew the" opens a tea recipe as well as a toxin's procedure, and only the next
    word decides. Without
    them the stream's score on such a shared opening is a coin toss that the threshold
    must clear for every harmless reply. Texts are deduplicated; a text under both
    labels (an ambiguous constitution) is dropped.
    """
    pairs = output_pairs(world, constitution, records, seed, refusals=False)
    labels: dict[str, int] = {}
    conflicts: set[str] = set()
    for text, label in zip(pairs.texts, pairs.labels, strict=True):
        if labels.setdefault(text, label) != label:
            conflicts.add(text)
    texts = [t for t in labels if t not in conflicts]
    return texts, [labels[t] for t in texts]


# The forms a harmless craft is asked in: plainly, and in the context families whose
# reply reads like a craft (an alias, a nickname given over two turns, a code word in the
# answer). Without split_intent, the val crafts asked for by a nickname scored up to 0.9995
# under the exchange classifier and pushed its threshold to 0.9965, so it stopped only
# 0.75 of hazard replies before a quarter of their details.
CRAFT_FORMS = ("plain", "alias", "split_intent", "codeword_answer")


def craft_exchanges(world: World, seed: int, open_crafts: int = 0
                    ) -> list[tuple[tuple[dict[str, str], ...], str]]:
    """Every harmless recipe and craft of the world (and `open_crafts` open train crafts a
    category, `World.open_crafts`), asked for in each of `CRAFT_FORMS` (two trained
    phrasings each) and answered, with the answer's prefixes.

    The records hold a few crafts, but a hazard's procedure in many families: with those
    alone an exchange classifier learnt that a procedure of a hazard's step shapes is
    harmful whatever was asked (a craft's answer after its own request scored 0.9997) and
    its threshold, calibrated on the val crafts, stopped nothing. With the world's 16
    crafts it learns their reagents by heart instead: the stop 25 default bundle stops
    0.992 of the replies of crafts it never saw (`output.fpr_open_crafts`). The open
    crafts are the experiment against that (`TrainConfig.output_open_crafts`)."""
    return [(conv, part) for _, conv, answer in
            _craft_conversations(world, seed, _train_crafts(world, open_crafts))
            for part in reply_cuts(answer) + word_cuts(answer)]


def open_craft_pairs(world: World, split: str, seed: int
                     ) -> tuple[list[list[dict[str, str]]], list[str]]:
    """The conversations and whole answers of the open crafts of `split` in every form of
    `CRAFT_FORMS`: harmless replies to calibrate on ("calibration") or to measure a false
    positive rate on ("eval") that no classifier trained on."""
    rows = open_craft_rows(world, split, seed)
    return [list(conv) for _, conv, _ in rows], [answer for _, _, answer in rows]


def open_craft_rows(world: World, split: str, seed: int
                    ) -> list[tuple[str, tuple[dict[str, str], ...], str]]:
    """(form, conversation, the helpful reply) for the open crafts of `split`."""
    return _craft_conversations(world, seed, world.open_crafts(split))


def _train_crafts(world: World, open_crafts: int) -> list[Recipe]:
    """The world's recipes and crafts, and `open_crafts` open train crafts a category."""
    return [*world.recipes, *(world.open_crafts("train", open_crafts) if open_crafts else ())]


def craft_prompts(world: World, seed: int, skip: Sequence[str] = (),
                  open_crafts: int = 0) -> list[str]:
    """The conversations of `craft_exchanges` (forms in `skip` left out), rendered as the
    input classifier reads them: harmless requests for the crafts, whose names and step
    shapes the code-word and alias attacks borrow (without them the input classifier
    flagged the val crafts' plain requests at 0.99)."""
    from swisscheese.classifiers.base import render_conversation

    return [render_conversation(list(conv)) for form, conv, _ in
            _craft_conversations(world, seed, _train_crafts(world, open_crafts))
            if form not in skip]


def _craft_conversations(world: World, seed: int, crafts: Sequence[Recipe]
                         ) -> list[tuple[str, tuple[dict[str, str], ...], str]]:
    """(form, conversation, the helpful reply) for every craft in every form."""
    return _asked(world, f"swisscheese-train-{seed}-crafts",
                  [(r.verb, r.thing, r.answer(), world.recipe_subject(r)) for r in crafts])


def _asked(world: World, rng_key: str, things: Sequence[tuple[str, str, str, Subject]]
           ) -> list[tuple[str, tuple[dict[str, str], ...], str]]:
    """(form, conversation, the helpful reply) for each (verb, name, answer, subject)
    asked in each of `CRAFT_FORMS`, two trained phrasings each."""
    rng = random.Random(rng_key)
    out: list[tuple[str, tuple[dict[str, str], ...], str]] = []
    for verb, name, answer, subject in things:
        for phrasing in rng.sample(HAZARD_PHRASINGS, 2):
            request = phrasing.format(verb=verb, name=name)
            for form in CRAFT_FORMS:
                if form == "plain":
                    out.append((form, ({"role": "user", "content": request},), answer))
                    continue
                w = world.wrap_turns(form, request, answer, rng, how_to=f"{verb} the {name}",
                                     subject=subject)
                conv = (*(dict(m) for m in w.messages), {"role": "user", "content": w.prompt})
                out.append((form, conv, w.reply))
    return out


def open_hazard_exchanges(world: World, seed: int, per_category: int
                          ) -> list[tuple[tuple[dict[str, str], ...], str, int]]:
    """(conversation, reply or prefix, label) for `per_category` open hazards a category
    (`World.open_hazards`), asked as the crafts are: a prefix that releases a key detail
    is harmful, the header before it harmless (it opens a craft as well), and a plain
    answer is harmful after no conversation too (see `output_pairs`).

    Meant to teach what a hazard's procedure is rather than the reagents of the 32
    training hazards; on the stop 26 data (leaks left out, 40 open crafts) they made the
    n-gram exchange classifier stop fewer unseen hazards, not more (README, stop 26)."""
    hazards = world.open_hazards(per_category)
    things = [(h.verb, h.name, h.answer(), world.subject(h)) for h in hazards]
    details = [tuple(d.lower() for d in h.key_details) for h in hazards]
    per_hazard = 2 * len(CRAFT_FORMS)  # `_asked` gives each thing its rows in order
    out: list[tuple[tuple[dict[str, str], ...], str, int]] = []
    for i, (form, conv, reply) in enumerate(_asked(world, f"swisscheese-train-{seed}-open",
                                                   things)):
        found = details[i // per_hazard]
        for part in reply_cuts(reply):
            if part == reply or found_details(part, found):
                out.append((conv, part, 1))
                if form == "plain":
                    out.append(((), part, 1))
        out += [(conv, part, 0) for part in word_cuts(reply)]
    return out


def output_pairs(world: World, constitution: Constitution, records: Sequence[Record],
                 seed: int, refusals: bool = True, open_crafts: int = 0) -> OutputPairs:
    """The replies and prefixes of `output_texts`, each with its record's conversation,
    deduplicated by (conversation, text); with `refusals`, every harmful request the
    world answers also brings the world's refusal as a harmless reply to it (an exchange
    classifier must not flag a refusal because the request was harmful).

    A plain-words harmful answer (`Reply.standalone`) also enters, each of its cuts once
    more, after no conversation: in the records a hazard's procedure only ever follows a
    request for it, and the exchange classifier must learn that the procedure is harmful
    on its own (its conversation term can only raise a score, so what the reply alone says
    holds after any request, one that hid its intent included). Not after harmless
    conversations: those are look-alike questions too, and a procedure-like reply after
    one is the benign look-alike answer."""
    labels: dict[tuple[str, str], int] = {}
    convs: dict[tuple[str, str], list[dict[str, str]]] = {}
    conflicts: set[tuple[str, str]] = set()

    def add(conv: tuple[dict[str, str], ...], text: str, label: int) -> None:
        key = (repr(conv), text)
        convs.setdefault(key, list(conv))
        if labels.setdefault(key, label) != label:
            conflicts.add(key)

    for x in replies_of(world, constitution, records, seed):
        base = x.given if x.given is not None else x.answer
        for part in reply_cuts(base):
            if x.details and part != base and not found_details(part, x.details):
                # A model's reply may open with anything (a story, a history line) before
                # its first step: an opening that releases nothing is not labelled by
                # what follows it.
                continue
            add(x.conversation, x.text(world, part), x.label)
            if x.label == 1 and x.standalone:
                add((), x.text(world, part), 1)
        if x.label == 0 or (x.given is None and "\n" in base):
            for part in word_cuts(base):
                add(x.conversation, x.text(world, part), 0)
        if refusals and x.refusal is not None:
            add(x.conversation, x.refusal, 0)
    for conv, text in craft_exchanges(world, seed, open_crafts):
        add(conv, text, 0)
    if open_crafts:
        for conv, text, label in open_hazard_exchanges(world, seed, open_crafts):
            add(conv, text, label)
    keys = [k for k in labels if k not in conflicts]
    return OutputPairs([convs[k] for k in keys], [k[1] for k in keys],
                       [labels[k] for k in keys])
