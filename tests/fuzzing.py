"""Hypothesis strategy shared by the fuzz tests: random bytes, or a seed file mutated a few times."""

from hypothesis import strategies as st

OPERATIONS = ("set", "flip", "delete", "insert", "max", "truncate")


@st.composite
def mutated(draw, seeds: dict, min_ops: int = 1, max_ops: int = 12, max_chunk: int = 16, max_random: int = 600):
    """One time in ten random bytes; otherwise one of `seeds` (name -> bytes) with
    `min_ops`..`max_ops` byte-level mutations of up to `max_chunk` bytes each."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=max_random))
    data = bytearray(seeds[draw(st.sampled_from(sorted(seeds)))])
    for _ in range(draw(st.integers(min_ops, max_ops))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(OPERATIONS))
        if op == "set":
            data[i] = draw(st.integers(0, 255))
        elif op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "delete":
            del data[i: i + draw(st.integers(1, max_chunk))]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=max_chunk))
        elif op == "max":  # lengths, sizes and offsets pushed to their extremes
            data[i: i + 4] = b"\xff\xff\xff\x7f"[: len(data[i: i + 4])]
        else:
            del data[i:]
    return bytes(data)
