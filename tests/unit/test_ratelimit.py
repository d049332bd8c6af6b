import pytest

from openpanel_ws.ratelimit import FloodDetector, RateLimit, TokenBucket


def test_bucket_starts_full_and_admits_exactly_its_capacity() -> None:
    bucket = TokenBucket(RateLimit(10, 1.0), now=0.0)
    assert [bucket.try_take(0.0) for _ in range(12)] == [True] * 10 + [False] * 2


def test_bucket_refills_at_its_rate_and_caps_at_capacity() -> None:
    bucket = TokenBucket(RateLimit(10, 1.0), now=0.0)
    for _ in range(10):
        bucket.try_take(0.0)
    assert not bucket.try_take(0.05)  # half a token
    assert bucket.try_take(0.1)  # one token after 100 ms
    assert not bucket.try_take(0.1)
    # an hour idle refills to capacity, not beyond
    assert sum(bucket.try_take(3600.0) for _ in range(20)) == 10


def test_per_minute_bucket() -> None:
    bucket = TokenBucket(RateLimit(100, 60.0), now=0.0)
    assert sum(bucket.try_take(0.0) for _ in range(150)) == 100
    assert not bucket.try_take(0.5)
    assert bucket.try_take(0.6)  # 100/min = one token every 0.6 s


@pytest.mark.parametrize(
    ("text", "count", "seconds"),
    [("10/s", 10, 1.0), ("100/min", 100, 60.0), ("5/10s", 5, 10.0), ("1000/h", 1000, 3600.0),
     (" 7 / minute ", 7, 60.0)],
)
def test_parse(text: str, count: int, seconds: float) -> None:
    assert RateLimit.parse(text) == RateLimit(count, seconds)


@pytest.mark.parametrize("text", ["", "10", "x/s", "10/fortnight", "0/s", "-1/s", "10/0s"])
def test_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        RateLimit.parse(text)


def test_flood_detector_counts_rejections_within_the_window() -> None:
    flood = FloodDetector(threshold=3, window=10.0)
    assert not flood.record_rejection(0.0)
    assert not flood.record_rejection(1.0)
    assert not flood.record_rejection(20.0)  # the first two fell out of the window
    assert not flood.record_rejection(21.0)
    assert flood.record_rejection(22.0)
