import torch

from kdcascade import classify, heads, models, schedule, settings
from kdcascade.labels import LABELS


def test_mean_pooling_ignores_padding_and_round_trips(minilm_path, tmp_path):
    encoder = models.truncate(models.load_encoder(minilm_path), [0, 1])
    model = heads.MeanPoolingClassifier(encoder, list(LABELS)).eval()
    ids = torch.tensor([[101, 2000, 2001, 102, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    with torch.no_grad():
        padded = model(input_ids=ids, attention_mask=mask).logits
        alone = model(input_ids=ids[:, :4], attention_mask=mask[:, :4]).logits
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-5)

    model.save_pretrained(tmp_path)
    assert heads.has_mean_head(tmp_path)
    again = classify.load_classifier(str(tmp_path)).eval()  # the folder says which head
    assert isinstance(again, heads.MeanPoolingClassifier)
    with torch.no_grad():
        torch.testing.assert_close(again(input_ids=ids, attention_mask=mask).logits, padded,
                                   atol=1e-4, rtol=1e-4)
    from transformers import AutoModel
    assert AutoModel.from_pretrained(tmp_path).config.num_hidden_layers == 2


def test_loss_and_frozen_embeddings(minilm_path):
    encoder = models.truncate(models.load_encoder(minilm_path), [0])
    model = heads.MeanPoolingClassifier(encoder, list(LABELS))
    frozen = models.freeze(model, ["embed"])
    assert frozen and all(n.startswith("encoder.embeddings.") for n in frozen)
    out = model(input_ids=torch.tensor([[101, 2000, 102]]),
                attention_mask=torch.ones(1, 3, dtype=torch.long), labels=torch.tensor([2]))
    out.loss.backward()
    assert model.classifier.weight.grad is not None
    assert encoder.embeddings.word_embeddings.weight.grad is None


def test_soft_labels_from_a_finetuned_teacher(minilm_path, accelerator):
    import pandas as pd
    import pytest

    from kdcascade import data
    from kdcascade.errors import ConfigError
    from conftest import Recorder

    tok = models.load_tokenizer(minilm_path)
    pairs = pd.DataFrame({"language": ["en"] * 8, "premise": ["Anna has 3 apples."] * 8,
                          "hypothesis": ["Anna has 3 apples.", "Marco has 2 cats."] * 4,
                          "label": [0, 1] * 4})
    pairs, _ = data.tokenize_pairs(tok, pairs, 32)
    torch.manual_seed(0)
    encoder = models.load_encoder(minilm_path)
    teacher = heads.MeanPoolingClassifier(models.truncate(encoder, [0, 1]), list(LABELS))
    student = heads.MeanPoolingClassifier(models.truncate(encoder, [0]), list(LABELS))
    cfg = {"epochs": 1, "lr": 1e-3, "warmup": 0.0, "weight_decay": 0.0, "batch_size": 4,
           "evals_per_epoch": 1, "soft_labels": {"weight": 0.5, "temperature": 2.0}}
    live = Recorder()
    soft = classify.with_teacher_logits(pairs, classify.logits(teacher, pairs, 4, "cpu"))
    classify.finetune(student, soft, pairs, cfg, live, accelerator, 0)
    logged = dict(live.logged)
    assert logged["train/soft_label_kl"] > 0 and "train/cross_entropy" in logged
    # the terms are logged weighted: they add up to the loss
    last = [v for k, v in live.logged if k.startswith("train/") and k != "train/lr"][-3:]
    total, ce, kl = last
    assert total == pytest.approx(ce + kl, rel=1e-5)
    for bad, words in (({"weight": 2}, "soft_labels.weight=2"),
                       ({"weight": 0.5, "temperature": 0}, "soft_labels.temperature=0")):
        with pytest.raises(ConfigError, match=words):
            settings.check_soft_labels({"soft_labels": bad})
    for bad, words in (({"weight": -1}, r"transfer.weight=-1: expected a number >= 0"),
                       ({"weight": "x"}, "transfer.weight='x'"),
                       ({"weight": 1, "models": "some"}, "transfer.models='some': expected one "
                                                         "of all, distilled")):
        with pytest.raises(ConfigError, match=words):
            settings.check_transfer({"transfer": bad})
    assert settings.check_transfer({}) == (0.0, "all")
    # the truncated baseline (not distilled) gets the pairs unless models=distilled
    assert [schedule.setting_applies(models, distilled) for models in ("all", "distilled")
            for distilled in (True, False)] == [True, True, True, False]


def test_transfer_pairs_learn_only_the_teachers_logits(minilm_path):
    """A labeled row costs (1-w) CE + w KL, an unlabeled one (label -100) transfer * KL; the
    batch loss is the mean over rows (hand-computed here from the two models' logits)."""
    import pytest
    import torch.nn.functional as F

    torch.manual_seed(0)
    encoder = models.load_encoder(minilm_path)
    teacher = heads.MeanPoolingClassifier(models.truncate(encoder, [0, 1]), list(LABELS)).eval()
    student = heads.MeanPoolingClassifier(models.truncate(encoder, [0]), list(LABELS)).eval()
    inputs = {"input_ids": torch.tensor([[101, 2000, 102], [101, 2001, 102], [101, 2002, 102]]),
              "attention_mask": torch.ones(3, 3, dtype=torch.long)}
    with torch.no_grad():
        s, t = student(**inputs).logits, teacher(**inputs).logits
    batch = {**inputs, "labels": torch.tensor([2, classify.UNLABELED, 0]), "teacher_logits": t}
    module = classify.FinetuneModule(student, weight=0.25, temperature=2.0, transfer=3.0)
    loss, terms = module(batch)
    ps, pt = F.softmax(s / 2, -1), F.softmax(t / 2, -1)
    kl = (pt * (pt.log() - ps.log())).sum(-1) * 4
    ce = F.cross_entropy(s, torch.tensor([2, 0, 0]), reduction="none")
    expected = (0.75 * (ce[0] + ce[2]) + 0.25 * (kl[0] + kl[2]) + 3.0 * kl[1]) / 3
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
    assert terms["transfer_kl"].item() == pytest.approx(kl[1].item(), rel=1e-4)
    assert sum(terms.values()).item() == pytest.approx(loss.item(), rel=1e-6)
    # no teacher, no transfer: plain cross-entropy over the labeled rows, averaged over all rows
    plain, _ = classify.FinetuneModule(student)(batch)
    assert plain.item() == pytest.approx(((ce[0] + ce[2]) / 3).item(), rel=1e-5)


def test_predict_batches_by_length_but_answers_in_row_order(minilm_path):
    import numpy as np
    import pandas as pd

    from kdcascade import data

    tok = models.load_tokenizer(minilm_path)
    words = "one two three four five six seven eight nine ten".split()
    pairs = pd.DataFrame({"language": ["en"] * 7,
                          "premise": [" ".join(words[:n]) for n in (9, 1, 5, 2, 8, 3, 7)],
                          "hypothesis": ["ten"] * 7, "label": [0] * 7})
    pairs, _ = data.tokenize_pairs(tok, pairs, 32)
    torch.manual_seed(0)
    model = heads.MeanPoolingClassifier(models.truncate(models.load_encoder(minilm_path), [0]),
                                        list(LABELS))
    torch.nn.init.normal_(model.classifier.weight, std=10.0)
    with torch.no_grad():  # centre the logits so that rows get different labels
        batch = data.PadCollator(0)([data.TokenDataset(pairs)[i] for i in range(len(pairs))])
        batch.pop("labels")
        model.classifier.bias -= model.eval()(**batch).logits.mean(0)
    one_by_one = np.concatenate([classify.predict(model, pairs.iloc[[i]], 1, "cpu")
                                 for i in range(len(pairs))])
    assert len(set(one_by_one)) > 1  # the check below could not tell rows apart otherwise
    assert (classify.predict(model, pairs, 3, "cpu") == one_by_one).all()
