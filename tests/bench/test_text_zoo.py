"""Text in the harness: the synthetic dataset and its tokenizer, the zoo's BERT entries, a user's
BERT from a folder, the grid's modality rule, and the text commands' figures."""
from __future__ import annotations

import torch

from bench import zoo
from bench.cli import main
from bench.datasets import text_vocab as tv
from bench.datasets.text import SyntheticText


def test_sentences_are_pure_functions_of_seed_split_and_index():
    short, long = SyntheticText(5), SyntheticText(50)
    assert short.texts(range(5)) == long.texts(range(5))
    assert torch.equal(short.batch(range(5)).images, long.batch(range(5)).images)
    assert SyntheticText(5, split="train").texts(range(5)) != short.texts(range(5))
    assert SyntheticText(5, seed=1).texts(range(5)) != short.texts(range(5))


def test_tokenizer_ids_are_the_vocabulary_and_evidence_is_the_class_words():
    data = SyntheticText(20)
    batch = data.batch(range(20))
    for i in range(20):
        words, label, positions = data.sentence(i)
        expected = [tv.VOCAB.index(t) for t in ["[CLS]", *words, "[SEP]"]]
        assert batch.images[i, :len(expected)].tolist() == expected
        assert (batch.images[i, len(expected):] == tv.VOCAB.index("[PAD]")).all()
        evidence = [tv.VOCAB[t] for t in batch.images[i, batch.masks[i]].tolist()]
        assert 2 <= len(evidence) <= 3 and all(w in tv.EVIDENCE[label] for w in evidence)
        assert not any(w in group for w in words if w not in evidence for group in tv.EVIDENCE)


def test_shortcut_evidence_is_the_end_marker():
    data = SyntheticText(20, shortcut=True)
    batch = data.batch(range(20))
    for i in range(20):
        assert batch.masks[i].sum() == 1
        assert tv.VOCAB[int(batch.images[i, batch.masks[i]])] == tv.MARKERS[int(batch.labels[i])]


def test_zoo_text_entries_reach_the_accuracy(zoo_text, zoo_text_shortcut):
    assert zoo_text.accuracy >= 0.95 and zoo_text_shortcut.accuracy >= 0.95
    # the shortcut model reads the marker: chance without it, wrong with the next class's
    assert zoo_text_shortcut.metadata["accuracy_marker_none"] < 0.5
    assert zoo_text_shortcut.metadata["accuracy_marker_shifted"] < 0.1
    assert zoo.CONFIGS["text"] == ("bert_tiny-text", "bert_tiny-text_shortcut")
    assert not set(zoo.CONFIGS["text"]) & set(zoo.CONFIGS["default"])


def test_a_users_bert_from_a_local_folder(zoo_text, tmp_path):
    from bench.models import get_spec

    zoo_text.model.hf_model.save_pretrained(tmp_path)
    tv.tokenizer().save(str(tmp_path / "tokenizer.json"))
    spec = get_spec(f"bert:{tmp_path}")
    assert spec.modality == "text" and spec.num_classes == 4
    model = spec.build()
    ids = zoo_text.batch(4)[0]
    with torch.no_grad():
        torch.testing.assert_close(model(ids), zoo_text.model(ids))
    assert torch.equal(model.encode_text(SyntheticText(4).texts(range(4))), ids)
    from bench.config import RunConfig
    from bench.grid import _datasets_for
    from bench.text_data import retokenised

    data = SyntheticText(4)
    assert retokenised(model, data, data.batch(range(4))).masks is not None  # the same vocabulary: same ids
    assert _datasets_for(f"bert:{tmp_path}", RunConfig(models=[f"bert:{tmp_path}"])) == ["text"]


def test_grid_leaves_modality_mismatches_out():
    from bench.grid import not_applicable

    assert "this one takes text" in not_applicable("bert_tiny-text", "gradcam", "token_deletion")
    assert "this model takes text" in not_applicable("bert_tiny-text", "saliency", "deletion")
    assert "this model takes image" in not_applicable("small_cnn-synthetic", "saliency", "token_deletion")
    assert not_applicable("bert_tiny-text", "transformer_attribution", "token_localisation_auc") is None


def test_text_config_validates_and_plans_only_text_cells():
    from bench.config import load_config
    from bench.grid import plan, validate

    config = load_config("text")
    validate(config)
    groups = plan(config)
    assert {g.model for g in groups} == {"bert_tiny-text", "bert_tiny-text_shortcut"}
    assert all(g.metrics for g in groups)


def test_attention_and_embedding_commands_write_their_figures(zoo_text, tmp_path, capsys):
    out = tmp_path / "attention_sentence.png"
    sentence = "the big apple was near a red banana ."
    assert main(["attention", "bert_tiny-text", "--text", sentence, "--out", str(out)]) == 0
    assert out.is_file() and out.with_suffix(".json").is_file()
    distances = tmp_path / "embedding_distances.png"
    assert main(["embeddings", "bert_tiny-text", "--word", "apple", "--sentences", "120", "--out", str(distances)]) == 0
    assert distances.is_file() and distances.with_suffix(".csv").is_file()
    assert (tmp_path / "embedding_projection_bert_tiny-text.png").is_file()
    printed = capsys.readouterr().out
    assert "same eucl" in printed and "layer 1" in printed
    assert main(["attention", "small_cnn-synthetic", "--text", "hello", "--out", str(tmp_path / "x.png")]) == 2
    assert "--text is for text models" in capsys.readouterr().err


def test_roofline_runs_token_passes(tiny_bert, sentences):
    """The timing's roofline on ids: input gradients at the embedding layer, model left as found."""
    from adapters import Cost
    from adapters.base import ModelState
    from bench.timing import roofline

    ids, labels, _ = sentences
    before = ModelState.of(tiny_bert)
    roofline(tiny_bert, ids, labels, Cost(forward=3, backward=2))()
    assert ModelState.of(tiny_bert) == before
