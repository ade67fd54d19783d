"""The synthetic NLI source: deterministic, balanced, XNLI-shaped, parallel across languages, and
free of the hypothesis-only shortcut that would make it trivial."""

import re
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from kdcascade.errors import ConfigError
from kdcascade.labels import LABELS, NLI_COLUMNS
from kdcascade.synthetic import (NAMES, SUPPORTED_LANGUAGES, describe, generate_nli,
                                 generate_sentences)


def _shared_tokens(text):
    """The tokens that carry the label across languages: names and digits."""
    return [t for t in re.findall(r"\w+", text) if t in NAMES or t.isdigit()]


def test_supports_the_core_languages():
    assert {"en", "de", "fr", "es"} <= set(SUPPORTED_LANGUAGES)


def test_schema_and_dtypes():
    frame = generate_nli("en", 30, seed=1)
    assert tuple(frame.columns) == NLI_COLUMNS
    assert len(frame) == 30
    assert pd.api.types.is_integer_dtype(frame["label"])
    assert set(frame["label"]) <= {0, 1, 2}
    assert (frame["language"] == "en").all()
    for column in ("premise", "hypothesis"):
        assert all(isinstance(text, str) and text for text in frame[column])


def test_same_arguments_give_identical_output():
    pd.testing.assert_frame_equal(generate_nli("de", 50, seed=7), generate_nli("de", 50, seed=7))
    assert generate_sentences("fr", 20, seed=7) == generate_sentences("fr", 20, seed=7)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 300, 301, 302])
def test_labels_are_balanced(n):
    counts = Counter(generate_nli("es", n, seed=3)["label"])
    assert sum(counts.values()) == n
    assert max(counts.values()) - min(counts.get(i, 0) for i in range(3)) <= 1
    # the remainder goes to entailment, then neutral
    assert [counts.get(i, 0) for i in range(3)] == [n // 3 + (n % 3 > i) for i in range(3)]


def test_rows_are_shuffled():
    labels = generate_nli("en", 60, seed=1)["label"].tolist()
    assert labels != sorted(labels)
    assert labels[:3] != [0, 1, 2] or labels[3:6] != [0, 1, 2]


def test_every_label_appears_in_every_language():
    for language in SUPPORTED_LANGUAGES:
        assert set(generate_nli(language, 30, seed=2)["label"]) == {0, 1, 2}, language


def test_languages_differ_in_text_but_share_names_and_digits():
    frames = {lang: generate_nli(lang, 40, seed=5) for lang in SUPPORTED_LANGUAGES}
    english = frames["en"]
    for language, frame in frames.items():
        assert (frame["label"].values == english["label"].values).all()
        if language == "en":
            continue
        assert (frame["premise"] != english["premise"]).all(), language
        assert (frame["hypothesis"] != english["hypothesis"]).all(), language
        for column in ("premise", "hypothesis"):
            ours = frame[column].map(_shared_tokens).tolist()
            theirs = english[column].map(_shared_tokens).tolist()
            assert [sorted(x) for x in ours] == [sorted(x) for x in theirs], (language, column)


def test_different_seeds_give_mostly_different_pairs():
    first = generate_nli("en", 300, seed=1)
    second = generate_nli("en", 300, seed=2)
    pairs = set(zip(first["premise"], first["hypothesis"]))
    overlap = sum(pair in pairs for pair in zip(second["premise"], second["hypothesis"]))
    assert overlap <= 3
    assert generate_sentences("en", 50, seed=1) != generate_sentences("en", 50, seed=2)


def test_labels_follow_the_names_and_digits():
    """Neutral talks about someone absent, or an object not mentioned for them; entailment and
    contradiction talk about a present person, with the same or a different number."""
    frame = generate_nli("en", 300, seed=4)
    for premise, hypothesis, label in zip(frame["premise"], frame["hypothesis"], frame["label"]):
        name = next(t for t in _shared_tokens(hypothesis) if t in NAMES)
        if LABELS[label] != "neutral":
            assert name in premise
        if LABELS[label] == "entailment":
            number = next(t for t in _shared_tokens(hypothesis) if t.isdigit())
            assert number in premise


def test_hypothesis_only_unigram_baseline_is_near_chance():
    """Naive Bayes on hypothesis word counts, trained on one seed and scored on another."""
    train, test = generate_nli("en", 3000, seed=11), generate_nli("en", 900, seed=12)
    tokenize = lambda text: re.findall(r"\w+", text.lower())  # noqa: E731
    vocab = {w: i for i, w in enumerate(sorted({w for h in train["hypothesis"] for w in tokenize(h)}))}

    def counts(frame):
        matrix = np.zeros((len(frame), len(vocab)))
        for row, text in enumerate(frame["hypothesis"]):
            for word in tokenize(text):
                if word in vocab:
                    matrix[row, vocab[word]] += 1
        return matrix

    x_train, y_train = counts(train), train["label"].to_numpy()
    log_prior = np.log(np.bincount(y_train, minlength=3) / len(y_train))
    word_counts = np.stack([x_train[y_train == c].sum(axis=0) + 1 for c in range(3)])
    log_likelihood = np.log(word_counts / word_counts.sum(axis=1, keepdims=True))
    predictions = (counts(test) @ log_likelihood.T + log_prior).argmax(axis=1)
    accuracy = (predictions == test["label"].to_numpy()).mean()
    assert accuracy < 0.45
    # the majority guess is chance, too
    assert np.bincount(test["label"]).max() / len(test) < 0.34


def test_sentences_are_in_the_language_and_unlabeled():
    sentences = generate_sentences("de", 40, seed=1)
    assert len(sentences) == 40 and all(isinstance(s, str) and s for s in sentences)
    assert any(word in " ".join(sentences) for word in ("hat", "besitzt", "gehören"))
    assert " has " not in " ".join(sentences)


def test_describe_is_one_paragraph():
    text = describe()
    assert "\n" not in text and len(text) > 200


@pytest.mark.parametrize("function", [generate_nli, generate_sentences])
def test_bad_parameters_raise_config_error(function):
    with pytest.raises(ConfigError, match=r"data\.languages.*'xx'.*en"):
        function("xx", 10, seed=1)
    for bad_n in (0, -3, 2.5, True):
        with pytest.raises(ConfigError, match=r"\bn\b.*>= 1"):
            function("en", bad_n, seed=1)
    with pytest.raises(ConfigError, match=r"seed"):
        function("en", 10, seed="1")
