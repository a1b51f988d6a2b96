"""The content-addressed cache (satdiffmoe/cache.py) and the HR Inception features it holds."""

import pytest
import torch

from satdiffmoe import cache
from satdiffmoe.evaluation import metrics as M


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_round_trip_and_keys_that_follow_every_input(cache_dir):
    value = torch.arange(6.0).view(2, 3)
    name = cache.key("net", "abc", value)
    assert cache.load("kind", name) is None
    cache.save("kind", name, value)
    torch.testing.assert_close(cache.load("kind", name), value)
    assert [p.name for p in (cache_dir / "kind").iterdir()] == [f"{name}.pt"]  # no temporary file left
    assert len({name, cache.key("net", "abd", value), cache.key("net", "abc", value + 1),
                cache.key("net", "abc", value.double()), cache.key("net", "abc", value.view(3, 2))}) == 5


def test_an_unreadable_entry_is_a_miss_and_off_means_off(cache_dir, monkeypatch):
    name = cache.key("x")
    (cache_dir / "kind").mkdir(parents=True)
    (cache_dir / "kind" / f"{name}.pt").write_bytes(b"truncated")
    assert cache.load("kind", name) is None
    monkeypatch.setenv(cache.ENV, "off")
    cache.save("kind", name, torch.ones(1))
    assert cache.folder() is None and cache.load("kind", name) is None


def test_an_unwritable_cache_costs_only_speed(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(cache.ENV, str(blocker))
    cache.save("kind", "name", torch.ones(1))  # warns, does not raise
    assert cache.load("kind", "name") is None


def test_reference_features_are_computed_once_and_equal_the_networks(cache_dir):
    network = M.inception_features(None)
    calls = []
    network.register_forward_hook(lambda module, args, out: calls.append(len(args[0])))
    hr = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    first = M.reference_set_features(hr, network)
    second = M.reference_set_features(hr.clone(), network)
    assert calls == [3]
    torch.testing.assert_close(first, M.set_features(hr, network))
    torch.testing.assert_close(second, first)
    M.reference_set_features(hr[:2], network)  # another set: another entry
    assert calls == [3, 3, 2]  # (the second 3 is the direct set_features call above)
