import numpy as np
import pytest

from repsim.blocks import find_block


def block_matrix(size: int, start: int, stop: int, inside: float = 0.95, outside: float = 0.3) -> np.ndarray:
    cka = np.full((size, size), outside)
    cka[start:stop, start:stop] = inside
    np.fill_diagonal(cka, 1.0)
    return cka


def brute_force(cka: np.ndarray, threshold: float) -> tuple[int, int]:
    best = (0, 0)
    for start in range(len(cka)):
        for stop in range(start + 1, len(cka) + 1):
            if (cka[start:stop, start:stop] >= threshold).all() and stop - start > best[1] - best[0]:
                best = (start, stop)
    return best


def test_finds_the_planted_block():
    block = find_block(block_matrix(30, 12, 25), threshold=0.9)
    assert (block.start, block.stop, block.size) == (12, 25, 13)
    assert block.fraction == pytest.approx(13 / 30)
    assert block.mean_cka == pytest.approx(0.95)


def test_no_block_below_min_size():
    block = find_block(block_matrix(10, 0, 0), threshold=0.9)
    assert block.size == 0 and block.mean_cka is None and block.fraction == 0


def test_one_dissimilar_pair_splits_the_block():
    cka = block_matrix(20, 2, 18)
    cka[4, 15] = cka[15, 4] = 0.5  # layers 4 and 15 cannot share a block
    block = find_block(cka, threshold=0.9)
    # [2, 15) and [5, 18) both hold 13 layers; ties go to the earlier run
    assert (block.start, block.stop) == (2, 15)


@pytest.mark.parametrize("seed", range(20))
def test_matches_brute_force_on_random_matrices(seed):
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.5, 1.0, size=(15, 15))
    cka = np.minimum(a, a.T)
    np.fill_diagonal(cka, 1.0)
    block = find_block(cka, threshold=0.8, min_size=1)
    start, stop = brute_force(cka, 0.8)
    assert block.size == stop - start
    assert (block.start, block.stop) == (start, stop)  # earliest of the longest runs


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="square"):
        find_block(np.ones((3, 4)))
    with pytest.raises(ValueError, match="NaN"):
        find_block(np.full((3, 3), np.nan))


def test_diagonal_inside_outside_splits_at_the_block():
    from repsim.blocks import Block, diagonal_inside_outside

    cross = np.diag([0.9, 0.8, 0.2, 0.4, 0.6]) + 0.01  # off-diagonal entries are ignored
    inside, outside = diagonal_inside_outside(cross, Block(2, 4, 5, 0.95))
    assert inside == pytest.approx(0.31) and outside == pytest.approx((0.91 + 0.81 + 0.61) / 3)
    inside, outside = diagonal_inside_outside(cross, Block(0, 0, 5, None))  # no block
    assert np.isnan(inside) and outside == pytest.approx(np.diag(cross).mean())
    with pytest.raises(ValueError, match=r"must be \(4, 4\)"):
        diagonal_inside_outside(cross, Block(0, 2, 4, 0.9))


def test_means_inside_and_outside_a_block():
    from repsim.blocks import Block, inside_outside, mean_within

    cka = np.full((5, 5), 0.2)
    cka[1:4, 1:4] = 0.8
    np.fill_diagonal(cka, 1.0)
    block = Block(1, 4, 5, None)
    assert mean_within(cka, block) == pytest.approx(0.8)  # the diagonal's ones do not count
    assert mean_within(cka, Block(2, 3, 5, None)) == 1.0
    assert find_block(cka, 0.7).mean_cka == pytest.approx(0.8)
    assert inside_outside([1, 2, 3, 4, 5], block) == (3.0, 3.0)
    inside, outside = inside_outside([1, 2, 3, 4, 5], Block(0, 5, 5, None))
    assert inside == 3.0 and np.isnan(outside)
    with pytest.raises(ValueError, match="one value per layer"):
        inside_outside([1, 2], block)
    with pytest.raises(ValueError, match="to match the block's model"):
        mean_within(cka[:4, :4], block)
