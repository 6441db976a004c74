import pytest
from rounds import alternating, ratio, spread


def test_every_round_has_every_contender_and_the_order_reverses_each_round() -> None:
    assert alternating(["ours", "bentoml", "litserve", "raw"], 3) == [
        ["ours", "bentoml", "litserve", "raw"],
        ["raw", "litserve", "bentoml", "ours"],
        ["ours", "bentoml", "litserve", "raw"],
    ]
    assert alternating(["a"], 2) == [["a"], ["a"]]


def test_the_headline_is_the_median_with_its_range_never_the_best_round() -> None:
    figure = spread([100.0, 300.0, 200.0])
    assert figure == {"median": 200.0, "min": 100.0, "max": 300.0, "rounds": [100.0, 300.0, 200.0]}
    with pytest.raises(ValueError, match="no rounds"):
        spread([])


def test_a_ratio_is_of_the_medians_with_the_per_round_ratios_beside_it() -> None:
    figure = ratio([10.0, 30.0, 20.0], [5.0, 5.0, 10.0])
    assert figure["of_medians"] == 4.0  # 20 / 5: not the mean of per-round ratios, not best over best
    assert figure["per_round"]["median"] == 2.0
    assert (figure["per_round"]["min"], figure["per_round"]["max"]) == (2.0, 6.0)
