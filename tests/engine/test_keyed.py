"""IdentityCache: a value only for the very objects it was built from, and bounded."""

from __future__ import annotations

from webhook.engine.keyed import IdentityCache


class Config:
    """Equal to every other Config: only identity tells two apart."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config)

    __hash__ = object.__hash__


def test_a_hit_returns_the_value_stored_for_the_same_objects() -> None:
    cache: IdentityCache[tuple[int, str], list[str]] = IdentityCache(4)
    config = Config()
    value = ["built"]
    assert cache.get((id(config), "ns"), config) is None  # a miss
    assert cache.put((id(config), "ns"), value, config) is value
    assert cache.get((id(config), "ns"), config) is value
    assert cache.get((id(config), "other"), config) is None  # another key: a miss


def test_a_key_that_now_names_other_objects_is_a_miss() -> None:
    """As when a new configuration reuses a freed one's id: an equal but other object under the
    same key, in either slot."""
    cache: IdentityCache[tuple[int, int], str] = IdentityCache(4)
    config, annotations = Config(), {"a": "1"}
    cache.put((1, 2), "old", config, annotations)
    assert cache.get((1, 2), Config(), annotations) is None
    assert cache.get((1, 2), config, {"a": "1"}) is None
    assert cache.get((1, 2), config) is None
    assert cache.get((1, 2), config, annotations) == "old"


def test_emptied_when_full() -> None:
    cache: IdentityCache[int, int] = IdentityCache(2)
    config = Config()
    cache.put(1, 10, config)
    cache.put(2, 20, config)
    cache.put(2, 21, config)  # full: emptied before storing, even for a key it has
    assert cache.entries == {2: (config, None, 21)}
    cache.put(3, 30, config)
    assert cache.get(2, config) == 21 and cache.get(3, config) == 30
