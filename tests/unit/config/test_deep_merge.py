from cryptoorchestrator.services.users import deep_merge


def test_deep_merge():
    base = {"a": 1, "n": {"x": 1, "y": 2}}
    assert deep_merge(base, {"n": {"y": 3, "z": 4}}) == {"a": 1, "n": {"x": 1, "y": 3, "z": 4}}
    assert deep_merge(base, {"a": None}) == {"n": {"x": 1, "y": 2}}
    assert deep_merge(base, {"n": 5}) == {"a": 1, "n": 5}
    assert base == {"a": 1, "n": {"x": 1, "y": 2}}, "the input is not mutated"
