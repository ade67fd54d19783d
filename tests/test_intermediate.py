"""finetune.intermediate: TinyBERT's task distillation of the layers, the student's hidden
states matching the fine-tuned teacher's on every fine-tuning batch."""

import pytest
import torch
import torch.nn.functional as F

from kdcascade import classify, heads, models, settings
from kdcascade.errors import ConfigError
from kdcascade.labels import LABELS

CPU = torch.device("cpu")


def two_models(minilm_path):
    torch.manual_seed(0)
    encoder = models.load_encoder(minilm_path)
    student = heads.MeanPoolingClassifier(models.truncate(encoder, [0]), list(LABELS)).eval()
    teacher = models.truncate(encoder, [0, 1, 2]).eval()
    return student, teacher


def test_the_term_is_the_hidden_state_error_beside_the_labels(minilm_path):
    """loss = mean cross-entropy + weight * hidden_mse(student layer 1, teacher layer 2) over
    real tokens, hand-computed; the teacher is cut above layer 2 and gets no gradient."""
    student, teacher = two_models(minilm_path)
    inputs = {"input_ids": torch.tensor([[101, 2000, 2001, 102], [101, 2002, 102, 0]]),
              "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])}
    labels = torch.tensor([2, 0])
    with torch.no_grad():
        s_out = student(**inputs, output_hidden_states=True)
        t_hidden = teacher(**inputs, output_hidden_states=True).hidden_states[2]
    real = inputs["attention_mask"].bool()
    mse = (s_out.hidden_states[1] - t_hidden)[real].pow(2).mean()  # mean over tokens and width
    ce = F.cross_entropy(s_out.logits, labels)

    cut, objective = classify.intermediate_module(
        student, teacher, [{"loss": "hidden_mse", "map": [[1, 2]], "weight": 2.0}], CPU)
    assert len(cut.encoder.layer) == 2 and not any(p.requires_grad for p in cut.parameters())
    module = classify.FinetuneModule(student, teacher=cut, objective=objective)
    loss, terms = module({**inputs, "labels": labels})
    assert loss.item() == pytest.approx((ce + 2.0 * mse).item(), rel=1e-4)
    assert terms["intermediate_hidden_mse"].item() == pytest.approx(2.0 * mse.item(), rel=1e-4)
    assert sum(terms.values()).item() == pytest.approx(loss.item(), rel=1e-6)
    # the term alone (no labeled row) trains the student's layers, never the teacher's
    unlabeled = torch.full_like(labels, classify.UNLABELED)
    alone, terms = module({**inputs, "labels": unlabeled})
    assert alone.item() == pytest.approx(2.0 * mse.item(), rel=1e-4)
    alone.backward()
    assert student.encoder.encoder.layer[0].output.dense.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in cut.parameters())


def test_soft_labels_and_layers_add_up(minilm_path):
    """With soft labels too, the logged terms (all weighted) still add up to the loss."""
    student, teacher = two_models(minilm_path)
    inputs = {"input_ids": torch.tensor([[101, 2000, 102], [101, 2001, 102]]),
              "attention_mask": torch.ones(2, 3, dtype=torch.long)}
    cut, objective = classify.intermediate_module(
        student, teacher, [{"loss": "hidden_nmse", "map": "skip", "weight": 1.0},
                           {"loss": "hidden_cosine", "map": "last", "weight": 0.5}], CPU)
    module = classify.FinetuneModule(student, weight=0.5, temperature=2.0, teacher=cut,
                                     objective=objective)
    batch = {**inputs, "labels": torch.tensor([1, 2]), "teacher_logits": torch.randn(2, 3)}
    loss, terms = module(batch)
    assert set(terms) == {"cross_entropy", "soft_label_kl", "intermediate_hidden_nmse_0",
                          "intermediate_hidden_cosine_1"}
    assert all(v.item() > 0 for v in terms.values())
    assert sum(terms.values()).item() == pytest.approx(loss.item(), rel=1e-6)


def test_bad_intermediate_params_fail_with_one_clear_error(minilm_path):
    assert settings.check_intermediate({}) == ([], "all")
    for bad, words in (({"objectives": {"loss": "hidden_mse"}}, "intermediate.objectives="),
                       ({"objectives": [], "models": "some"},
                        "intermediate.models='some': expected one of all, distilled")):
        with pytest.raises(ConfigError, match=words):
            settings.check_intermediate({"intermediate": bad})
    where = r"finetune\.intermediate\.objectives\[0\]"
    for spec, words in (({"loss": "attention_kl", "map": "last"},
                         where + r"\.loss=attention_kl: reads 'attention'; here a term may read "
                                 "hidden only"),
                        ({"loss": "hidden_mse", "map": [[1, 9]]},
                         where + r"\.map: pair \[1, 9\] out of range"),
                        ({"loss": "hidden_mse", "map": "last", "weight": 0},
                         r"finetune\.intermediate\.objectives: every weight is 0"),
                        ({"loss": "nope"}, "nope")):
        with pytest.raises(ConfigError, match=words):
            classify.check_intermediate([spec], minilm_path, minilm_path)
