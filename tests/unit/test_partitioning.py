"""murmur2 matches Kafka's Java client and partition choice is stable and in range."""

from hypothesis import given
from hypothesis import strategies as st

from processors.partitioning import murmur2, partition_for

# Vectors from Apache Kafka's UtilsTest.testMurmur2 (the Java reference implementation).
JAVA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def test_murmur2_matches_java_reference_vectors() -> None:
    for data, expected in JAVA_VECTORS.items():
        assert murmur2(data) == expected, data


@given(st.binary(max_size=256), st.integers(min_value=1, max_value=1024))
def test_partition_is_in_range_and_deterministic(key: bytes, partitions: int) -> None:
    chosen = partition_for(key, partitions)
    assert 0 <= chosen < partitions
    assert chosen == partition_for(key, partitions)


@given(st.binary(max_size=64))
def test_murmur2_is_a_signed_32_bit_int(key: bytes) -> None:
    assert -(2**31) <= murmur2(key) < 2**31


def test_partition_rejects_non_positive_counts() -> None:
    import pytest

    with pytest.raises(ValueError):
        partition_for(b"k", 0)
