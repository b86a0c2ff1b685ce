"""Shared fixtures. The embedded zoo is trained once per cache (``.cache/`` in the project)."""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("BENCH_PROGRESS", "off")


@pytest.fixture(scope="session")
def zoo_small_cnn():
    from bench import zoo

    return zoo.load("small_cnn-synthetic")


@pytest.fixture(scope="session")
def zoo_textures():
    from bench import zoo

    return zoo.load("small_cnn-textures")


@pytest.fixture(scope="session")
def zoo_shortcut():
    from bench import zoo

    return zoo.load("small_cnn-shortcut")


@pytest.fixture(autouse=True)
def _fixed_threads():
    # Same numbers whatever else runs on the machine: pin intra-op threads for the test.
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def zoo_vit():
    from bench import zoo

    return zoo.load("vit_slim-synthetic")


@pytest.fixture(scope="session")
def zoo_text():
    from bench import zoo

    return zoo.load("bert_tiny-text")


@pytest.fixture(scope="session")
def zoo_text_shortcut():
    from bench import zoo

    return zoo.load("bert_tiny-text_shortcut")


@pytest.fixture(scope="session")
def tiny_bert():
    """The zoo's BERT architecture, untrained (seed 0): fast contract checks on tokens."""
    from bench.models import get_spec

    return get_spec("bert_tiny").build(seed=0)


@pytest.fixture(scope="session")
def sentences():
    """(ids (6, 16), labels (6,), evidence (6, 16)) of held-out synthetic sentences."""
    from bench.datasets.text import SyntheticText

    batch = SyntheticText(6).batch(range(6))
    return batch.images, batch.labels, batch.masks
