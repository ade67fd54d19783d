"""A small, deterministic, multilingual NLI set with XNLI's schema, for the offline quickstart.

Premises list who owns how many of what ("Anna has 3 apples and Marco owns 7 books."); a hypothesis
makes one claim about a person. The label is carried by tokens every language shares -- person
names and digits -- while the frame (verbs, nouns, function words) is translated from a small
lexicon, so a model fine-tuned on English only can still transfer zero-shot to the other languages.
The same seed gives translations of the same items in every language (parallel, like XNLI's test
sets); callers use different seeds for different splits.
"""

import hashlib
import random

import pandas as pd

from .errors import ConfigError
from .labels import LABEL_IDS, LABELS, NLI_COLUMNS

# Single wordpieces in an English uncased vocabulary, and written the same in every language.
NAMES = ("Anna", "Marco", "Yuki", "Peter", "Maria", "Omar", "Lucas", "Sofia",
         "David", "Elena", "Hugo", "Laura", "Nina", "Paul", "Sara", "Carlos")
NUMBERS = tuple(range(2, 10))  # digits only, and never 1, so every noun is plural
# facts per premise: one-fact premises are the easy end (a small model gets a foothold), three facts
# make it bind each number to its person
FACT_COUNTS = (1, 2, 3)

# Per language: plural nouns (parallel lists), fact clauses for premises, whole-sentence hypothesis
# templates (several, so the label is not tied to one token position) and ways to join 2-3 clauses.
# Clauses keep the subject first (or the noun phrase first), so German/Dutch need no verb movement.
LEXICON = {
    "en": dict(
        objects=("apples", "books", "pens", "cats", "chairs", "cups", "keys", "coins", "boxes", "lamps"),
        facts=("{p} has {n} {o}", "{p} owns {n} {o}", "{n} {o} belong to {p}"),
        hypotheses=("{p} has {n} {o}.", "{p} owns {n} {o}.", "{n} {o} belong to {p}.",
                    "{p} has exactly {n} {o}."),
        joins2=("{0} and {1}.", "{0}, but {1}.", "{0}. {1}."),
        joins3=("{0}, {1} and {2}.", "{0}. {1}, and {2}.", "{0}; {1}; {2}."),
    ),
    "de": dict(
        objects=("Äpfel", "Bücher", "Stifte", "Katzen", "Stühle", "Tassen", "Schlüssel", "Münzen", "Kisten", "Lampen"),
        facts=("{p} hat {n} {o}", "{p} besitzt {n} {o}", "{n} {o} gehören {p}"),
        hypotheses=("{p} hat {n} {o}.", "{p} besitzt {n} {o}.", "{n} {o} gehören {p}.",
                    "{p} hat genau {n} {o}."),
        joins2=("{0} und {1}.", "{0}, aber {1}.", "{0}. {1}."),
        joins3=("{0}, {1} und {2}.", "{0}. {1}, und {2}.", "{0}; {1}; {2}."),
    ),
    "fr": dict(
        objects=("pommes", "livres", "stylos", "chats", "chaises", "tasses", "clés", "pièces", "boîtes", "lampes"),
        facts=("{p} a {n} {o}", "{p} possède {n} {o}", "{n} {o} appartiennent à {p}"),
        hypotheses=("{p} a {n} {o}.", "{p} possède {n} {o}.", "{n} {o} appartiennent à {p}.",
                    "{p} a exactement {n} {o}."),
        joins2=("{0} et {1}.", "{0}, mais {1}.", "{0}. {1}."),
        joins3=("{0}, {1} et {2}.", "{0}. {1}, et {2}.", "{0} ; {1} ; {2}."),
    ),
    "es": dict(
        objects=("manzanas", "libros", "bolígrafos", "gatos", "sillas", "tazas", "llaves", "monedas", "cajas", "lámparas"),
        facts=("{p} tiene {n} {o}", "{p} posee {n} {o}", "{n} {o} pertenecen a {p}"),
        hypotheses=("{p} tiene {n} {o}.", "{p} posee {n} {o}.", "{n} {o} pertenecen a {p}.",
                    "{p} tiene exactamente {n} {o}."),
        joins2=("{0} y {1}.", "{0}, pero {1}.", "{0}. {1}."),
        joins3=("{0}, {1} y {2}.", "{0}. {1}, y {2}.", "{0}; {1}; {2}."),
    ),
    "it": dict(
        objects=("mele", "libri", "penne", "gatti", "sedie", "tazze", "chiavi", "monete", "scatole", "lampade"),
        facts=("{p} ha {n} {o}", "{p} possiede {n} {o}", "{n} {o} sono di {p}"),
        hypotheses=("{p} ha {n} {o}.", "{p} possiede {n} {o}.", "{n} {o} sono di {p}.",
                    "{p} ha esattamente {n} {o}."),
        joins2=("{0} e {1}.", "{0}, ma {1}.", "{0}. {1}."),
        joins3=("{0}, {1} e {2}.", "{0}. {1}, e {2}.", "{0}; {1}; {2}."),
    ),
    "nl": dict(
        objects=("appels", "boeken", "pennen", "katten", "stoelen", "kopjes", "sleutels", "munten", "dozen", "lampen"),
        facts=("{p} heeft {n} {o}", "{p} bezit {n} {o}", "{n} {o} zijn van {p}"),
        hypotheses=("{p} heeft {n} {o}.", "{p} bezit {n} {o}.", "{n} {o} zijn van {p}.",
                    "{p} heeft precies {n} {o}."),
        joins2=("{0} en {1}.", "{0}, maar {1}.", "{0}. {1}."),
        joins3=("{0}, {1} en {2}.", "{0}. {1}, en {2}.", "{0}; {1}; {2}."),
    ),
    "pt": dict(
        objects=("maçãs", "livros", "canetas", "gatos", "cadeiras", "xícaras", "chaves", "moedas", "caixas", "lâmpadas"),
        facts=("{p} tem {n} {o}", "{p} possui {n} {o}", "{n} {o} pertencem a {p}"),
        hypotheses=("{p} tem {n} {o}.", "{p} possui {n} {o}.", "{n} {o} pertencem a {p}.",
                    "{p} tem exatamente {n} {o}."),
        joins2=("{0} e {1}.", "{0}, mas {1}.", "{0}. {1}."),
        joins3=("{0}, {1} e {2}.", "{0}. {1}, e {2}.", "{0}; {1}; {2}."),
    ),
}
SUPPORTED_LANGUAGES = tuple(LEXICON)
N_OBJECTS = len(LEXICON["en"]["objects"])
assert all(len(lex["objects"]) == N_OBJECTS for lex in LEXICON.values())


def _check(language, n, seed):
    if language not in LEXICON:
        raise ConfigError(f"data.languages: unknown language {language!r} for the synthetic source; "
                          f"expected one of {', '.join(SUPPORTED_LANGUAGES)}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"n: expected a whole number of rows >= 1 for the synthetic source, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed: expected an integer seed for the synthetic source, got {seed!r}")


def _rng(purpose, seed):
    # hashlib, not hash(): Python salts str hashes per process. The language is left out on purpose,
    # so every language renders the same items (parallel data).
    digest = hashlib.sha256(f"kdcascade.synthetic/{purpose}/{seed}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _premise_facts(rng):
    """1-3 (name, number, object index) facts with distinct people, numbers and objects."""
    k = rng.choice(FACT_COUNTS)
    return list(zip(rng.sample(NAMES, k), rng.sample(NUMBERS, k), rng.sample(range(N_OBJECTS), k)))


def _item(rng, label):
    """One abstract pair: the premise's facts and templates, and the hypothesis claim."""
    facts = _premise_facts(rng)
    name, number, obj = rng.choice(facts)
    in_premise = [f[1] for f in facts]
    if label == "contradiction":
        # half the time the wrong number is another person's number from the premise (where there is
        # one), so spotting a premise digit in the hypothesis is not enough: the model has to bind it
        # to the name. Always doing so made 2 epochs at lr 5e-5 too little for the 6-layer teacher.
        others = [x for x in in_premise if x != number]
        if others and rng.random() < 0.5:
            number = rng.choice(others)
        else:
            number = rng.choice([x for x in NUMBERS if x not in in_premise])
    elif label == "neutral":
        if rng.random() < 2 / 3:  # somebody the premise does not mention
            name = rng.choice([x for x in NAMES if x not in [f[0] for f in facts]])
        else:  # a mentioned person, but an object the premise says nothing about
            obj = rng.choice([x for x in range(N_OBJECTS) if x not in [f[2] for f in facts]])
        # the number is drawn like the other labels' numbers: often one that the premise contains
        number = rng.choice(in_premise) if rng.random() < 0.5 else rng.choice(NUMBERS)
    fact_templates = [rng.randrange(3) for _ in facts]
    return dict(facts=facts, fact_templates=fact_templates, join=rng.randrange(3),
                hypothesis=(name, number, obj), hypothesis_template=rng.randrange(4))


def _render_fact(lex, template, fact):
    name, number, obj = fact
    return template.format(p=name, n=number, o=lex["objects"][obj])


def _render_premise(lex, item):
    clauses = [_render_fact(lex, lex["facts"][t], f) for t, f in zip(item["fact_templates"], item["facts"])]
    if len(clauses) == 1:
        return clauses[0] + "."
    joins = lex["joins2"] if len(clauses) == 2 else lex["joins3"]
    return joins[item["join"]].format(*clauses)


def generate_nli(language: str, n: int, seed: int) -> pd.DataFrame:
    """n label-balanced pairs in `language` (columns NLI_COLUMNS, label 0/1/2), in shuffled order.

    When n is not a multiple of 3 the extra rows go to entailment, then neutral.
    """
    _check(language, n, seed)
    rng = _rng("nli", seed)
    labels = [LABELS[i % len(LABELS)] for i in range(n)]
    rng.shuffle(labels)
    lex = LEXICON[language]
    rows = []
    for label in labels:
        item = _item(rng, label)
        hypothesis = _render_fact(lex, lex["hypotheses"][item["hypothesis_template"]], item["hypothesis"])
        rows.append((language, _render_premise(lex, item), hypothesis, LABEL_IDS[label]))
    frame = pd.DataFrame(rows, columns=list(NLI_COLUMNS))
    frame["label"] = frame["label"].astype("int64")
    return frame


def generate_sentences(language: str, n: int, seed: int) -> list[str]:
    """n unlabeled sentences in `language` from the same lexicon: premises and single claims, mixed."""
    _check(language, n, seed)
    rng = _rng("sentences", seed)
    lex = LEXICON[language]
    sentences = []
    for _ in range(n):
        item = _item(rng, rng.choice(LABELS))
        if rng.random() < 0.5:
            sentences.append(_render_premise(lex, item))
        else:
            sentences.append(_render_fact(lex, lex["hypotheses"][item["hypothesis_template"]],
                                          item["hypothesis"]))
    return sentences


def describe() -> str:
    """One paragraph on the task, for the README and the report."""
    return (
        "Synthetic NLI (offline stand-in for XNLI, same columns and label order): each premise states "
        "1-3 facts of the form 'person has N objects' (\"Anna has 3 apples and Marco owns 7 books.\"), "
        "using several clause and joining templates; the hypothesis makes one claim about one person, "
        "possibly with a different template (\"7 books belong to Marco.\"). Entailment restates a fact; "
        "contradiction gives the same person and object a different number (half the time another "
        "person's number from the premise); neutral talks about a person the premise does not mention, "
        "or about an object it does not mention for that person. Labels are balanced and the hypothesis "
        "alone does not reveal the label. Names and digits are identical in every language while verbs, "
        "nouns and function words come from a small per-language lexicon "
        f"({', '.join(SUPPORTED_LANGUAGES)}), so an English-only model can transfer zero-shot. Items are "
        "parallel across languages for a given seed; splits use different seeds."
    )
