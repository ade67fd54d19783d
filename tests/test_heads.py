import torch

from kdcascade import classify, heads, models
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
