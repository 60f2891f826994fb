"""Attention in query tiles (worldmot/model/query_tiles.py) on random block-causal masks and key orders:
the tiles rebuild the mask pair for pair, and the tiled attention and its gradients are the masked SDPA's."""
from __future__ import annotations

import itertools

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from worldmot.model.query_tiles import tile_queries, tiled_attention
from worldmot.sequence import attention_mask


@st.composite
def routed_masks(draw):
    """A permuted block-causal mask (blocks of 1-9 tokens, some noisy), the runs it is tiled in, a size and
    a key order (any permutation: the tiles' runs and masks must hold whatever the order)."""
    sizes = draw(st.lists(st.integers(1, 9), min_size=1, max_size=12))
    noisy_blocks = draw(st.lists(st.booleans(), min_size=len(sizes), max_size=len(sizes)))
    block = np.repeat(np.arange(len(sizes)), sizes)
    noisy = np.repeat(noisy_blocks, sizes)
    n = len(block)
    perm = np.random.default_rng(draw(st.integers(0, 2**16))).permutation(n)
    b, z = torch.as_tensor(block[perm]), torch.as_tensor(noisy[perm])
    mask = attention_mask(b, z, b, z).numpy()
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, n - 1)), max_size=4))) - {n})
    bounds = list(zip([0, *cuts], [*cuts, n]))
    key_order = np.random.default_rng(draw(st.integers(0, 2**16))).permutation(n)
    return mask, bounds, draw(st.integers(1, 16)), key_order


@settings(max_examples=200, deadline=None)
@given(routed_masks())
def test_tiles_rebuild_the_mask_and_cover_every_query_once(case):
    mask, bounds, size, key_order = case
    n = mask.shape[0]
    tiled = tile_queries(mask, bounds, size, key_order, torch.device("cpu"))
    tiles = tiled.tiles
    rebuilt = np.zeros_like(mask)
    for c in tiles:
        assert c.end - c.start <= size
        keys = key_order[c.keys]
        rebuilt[c.start:c.end, keys] = True if c.mask is None else c.mask.numpy()
    assert (rebuilt == mask).all()
    assert tiles[0].start == 0 and tiles[-1].end == n
    assert all(a.end == b.start for a, b in itertools.pairwise(tiles))


@settings(max_examples=25, deadline=None)
@given(routed_masks(), st.integers(0, 2**16))
def test_tiled_attention_is_the_masked_sdpa(case, seed):
    mask, bounds, size, key_order = case
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, 2, mask.shape[0], 8, generator=g, requires_grad=True) for _ in range(3))
    grad = torch.randn(2, 2, mask.shape[0], 8, generator=g)
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=torch.as_tensor(mask))
    got = tiled_attention(q, k, v, tile_queries(mask, bounds, size, key_order, torch.device("cpu")))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for a, b in zip(torch.autograd.grad(got, (q, k, v), grad), torch.autograd.grad(want, (q, k, v), grad)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)  # the keys' permutation gathers its gradient back
