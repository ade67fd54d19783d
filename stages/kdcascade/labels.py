"""The one label order every source is normalised to (XNLI's own order)."""

LABELS = ("entailment", "neutral", "contradiction")
LABEL_IDS = {name: i for i, name in enumerate(LABELS)}
# columns of a prepared NLI split, whatever its source
NLI_COLUMNS = ("language", "premise", "hypothesis", "label")
