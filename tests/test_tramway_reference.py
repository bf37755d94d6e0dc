"""Checks of the TRamWAy harness itself (tests/tramway_reference.py) and of its fixtures."""

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tramway")

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tramway_reference import (  # noqa: E402
    build_distributed,
    load_tramway_counts,
    load_tramway_tessellation,
    tramway_default_kwargs,
    tramway_grad1,
    tramway_gradn_corrected,
    tramway_gradn_raw,
    tramway_tessellation_names,
)


def regular_grid(shape, spacing=1.0, origin=0.0):
    """Centers of a regular grid and TRamWAy's 'diagonal' adjacency: neighbours whose grid
    indices differ by at most 1 on at most 2 axes (2 in 1D, 8 in 2D, 18 in 3D)."""
    axes = [origin + spacing * np.arange(m, dtype=float) for m in shape]
    mesh = np.meshgrid(*axes, indexing="ij")
    centers = np.column_stack([m.ravel() for m in mesh])
    grid_index = np.meshgrid(*map(np.arange, shape), indexing="ij")
    index = np.column_stack([m.ravel() for m in grid_index])
    d = len(shape)
    lists = []
    for i in range(len(centers)):
        delta = np.abs(index - index[i])
        ok = (delta.max(axis=1) == 1) & ((delta > 0).sum(axis=1) <= min(d, 2))
        lists.append(np.flatnonzero(ok))
    k = max(map(len, lists))
    table = np.full((len(centers), k), -1)
    for i, js in enumerate(lists):
        table[i, : len(js)] = js
    return centers, table


def interior(centers, margin=1.0):
    lo, hi = centers.min(axis=0), centers.max(axis=0)
    return np.all((centers >= lo + margin) & (centers <= hi - margin), axis=1)


@pytest.fixture(scope="module")
def grid2d():
    return regular_grid((7, 6))


# ----------------------------------------------------------------------------- grad1


@pytest.mark.parametrize("selection_angle", [0.9, 0.5, None])
def test_grad1_linear_field_exact_on_grid_interior(grid2d, selection_angle):
    centers, nb = grid2d
    y = 2.0 * centers[:, 0] + 3.0 * centers[:, 1]
    g = tramway_grad1(centers, nb, y, selection_angle=selection_angle)
    assert g.shape == (len(centers), 2)
    inside = interior(centers)
    np.testing.assert_allclose(g[inside], np.tile([2.0, 3.0], (inside.sum(), 1)), atol=1e-12)
    # every bin of a grid has neighbours on at least one side of each axis
    assert np.all(np.isfinite(g))


def test_grad1_quadratic_field_grid_interior(grid2d):
    # central differences of a parabola are exact at the center
    centers, nb = grid2d
    x, z = centers.T
    y = x**2 - 2.0 * z**2 + x
    g = tramway_grad1(centers, nb, y, selection_angle=0.5)
    inside = interior(centers)
    np.testing.assert_allclose(g[inside], np.column_stack([2 * x + 1, -4 * z])[inside], atol=1e-9)


def test_grad1_eps_half_spaces(grid2d):
    centers, nb = grid2d
    y = -1.5 * centers[:, 0] + 0.5 * centers[:, 1]
    g = tramway_grad1(centers, nb, y, eps=0.0)
    inside = interior(centers)
    np.testing.assert_allclose(g[inside], np.tile([-1.5, 0.5], (inside.sum(), 1)), atol=1e-12)


def test_grad1_missing_values(grid2d):
    centers, nb = grid2d
    n = len(centers)
    rng = np.random.default_rng(0)
    y = rng.normal(size=n)
    missing = np.zeros(n, dtype=bool)
    missing[[3, 17, 18, 30]] = True
    y_nan = np.where(missing, np.nan, y)
    g = tramway_grad1(centers, nb, y_nan, selection_angle=0.9)
    # missing bins have no gradient
    assert np.all(np.isnan(g[missing]))
    # a missing neighbour is as if it were not a neighbour at all
    nb_cut = np.where(np.isin(nb, np.flatnonzero(missing)), -1, nb)
    g_cut = tramway_grad1(centers, nb_cut, y, selection_angle=0.9)
    np.testing.assert_array_equal(g[~missing], g_cut[~missing])


def test_grad1_time_axis_is_per_slice(grid2d):
    centers, nb = grid2d
    n = len(centers)
    rng = np.random.default_rng(1)
    y = rng.normal(size=(n, 3))
    y[rng.uniform(size=(n, 3)) < 0.2] = np.nan
    g = tramway_grad1(centers, nb, y, selection_angle=0.9)
    assert g.shape == (n, 3, 2)
    for t in range(3):
        np.testing.assert_array_equal(
            g[:, t], tramway_grad1(centers, nb, y[:, t], selection_angle=0.9)
        )


def test_grad1_isolated_and_all_missing():
    centers = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0]])
    nb = np.array([[1], [0], [-1]])
    g = tramway_grad1(centers, nb, np.array([1.0, 3.0, 7.0]))
    np.testing.assert_allclose(g[0], [2.0, np.nan])  # one side only on x, nothing on y
    assert np.all(np.isnan(g[2]))  # no neighbour: TRamWAy returns None
    assert np.all(np.isnan(tramway_grad1(centers, nb, np.full(3, np.nan))))
    g = tramway_grad1(centers, nb, np.array([1.0, 3.0, 7.0]), na=0.0)
    np.testing.assert_allclose(g[0], [2.0, 0.0])


def test_grad1_1d_and_3d():
    c1, nb1 = regular_grid((6,), spacing=0.5)
    g1 = tramway_grad1(c1, nb1, 4.0 * c1[:, 0] - 1.0, selection_angle=0.9)
    assert g1.shape == (6, 1)
    np.testing.assert_allclose(g1[:, 0], 4.0, atol=1e-12)
    c3, nb3 = regular_grid((4, 4, 4))
    assert (nb3 >= 0).sum(axis=1).max() == 18
    y = c3 @ np.array([1.0, -2.0, 0.5])
    inside = interior(c3)
    for sa in (0.9, None):
        g3 = tramway_grad1(c3, nb3, y, selection_angle=sa)
        np.testing.assert_allclose(
            g3[inside], np.tile([1.0, -2.0, 0.5], (inside.sum(), 1)), atol=1e-12
        )


def test_distributed_adjacency_is_boolean_and_ordered():
    centers = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    nb = np.array([[2, 1], [-1, 0], [0, -1]])
    dist = build_distributed(centers, nb)
    assert dist.adjacency.dtype == bool
    np.testing.assert_array_equal(dist.neighbours(0), [2, 1])
    np.testing.assert_array_equal(dist.neighbours(1), [0])
    assert dist.dim == 2


def test_default_kwargs():
    assert tramway_default_kwargs() == {"selection_angle": 0.9}
    assert tramway_default_kwargs(grad_selection_angle=0.5) == {"selection_angle": 0.5}
    assert tramway_default_kwargs(epsilon=0.1) == {"eps": 0.1}


# ----------------------------------------------------------------------------- gradn


def test_gradn_corrected_quadratic_field(grid2d):
    centers, nb = grid2d
    x, z = centers.T
    y = 1.0 + x - 2.0 * z + 0.5 * x**2 + 1.5 * x * z - z**2
    grad, rank = tramway_gradn_corrected(centers, nb, y)
    expected = np.column_stack([1.0 + x + 1.5 * z, -2.0 + 1.5 * x - 2.0 * z])
    full = rank == 6
    assert full.sum() >= interior(centers).sum()
    np.testing.assert_allclose(grad[full], expected[full], atol=1e-9)


def test_gradn_raw_is_zero_for_linear_fields(grid2d):
    # TRamWAy's derivative evaluation reads the wrong coefficients (documented bug)
    centers, nb = grid2d
    y = 2.0 * centers[:, 0] + 3.0 * centers[:, 1]
    raw = tramway_gradn_raw(centers, nb, y)
    _, rank = tramway_gradn_corrected(centers, nb, y)
    full = rank == 6
    np.testing.assert_allclose(raw[full], 0.0, atol=1e-9)
    corrected, _ = tramway_gradn_corrected(centers, nb, y)
    np.testing.assert_allclose(corrected[full], np.tile([2.0, 3.0], (full.sum(), 1)), atol=1e-9)


def test_gradn_rank_deficient_bins_are_flagged():
    centers, nb = regular_grid((2, 2))  # 4 distinct points: too few for a quadratic
    _, rank = tramway_gradn_corrected(centers, nb, centers[:, 0])
    assert np.all(rank == 4)


# ----------------------------------------------------------------------------- fixtures


def test_tramway_tessellation_fixtures():
    names = tramway_tessellation_names()
    assert {"grid", "kmeans", "gwr", "hexagon"} <= set(names)
    for name in names:
        centers, nb = load_tramway_tessellation(name)
        n = len(centers)
        assert centers.shape == (n, 2) and centers.dtype == np.float64
        assert 50 <= n <= 400
        assert nb.shape[0] == n and nb.min() >= -1 and nb.max() < n
        edges = {(i, j) for i in range(n) for j in nb[i] if j >= 0}
        assert all((j, i) in edges for i, j in edges)  # symmetric
        assert all(i != j for i, j in edges)
        counts, location_counts = load_tramway_counts(name)
        assert counts.shape == (n,) and np.all(counts > 0) and np.all(location_counts > 0)
    grid_nb = load_tramway_tessellation("grid")[1]
    assert (grid_nb >= 0).sum(axis=1).max() == 8  # diagonal adjacency
    hex_nb = load_tramway_tessellation("hexagon")[1]
    assert (hex_nb >= 0).sum(axis=1).max() == 6


@pytest.mark.parametrize("name", ["grid", "hexagon"])
def test_fixture_linear_field_on_full_neighbourhoods(name):
    centers, nb = load_tramway_tessellation(name)
    degree = (nb >= 0).sum(axis=1)
    y = 2.0 * centers[:, 0] + 3.0 * centers[:, 1]
    g = tramway_grad1(centers, nb, y, selection_angle=0.9)
    full = degree == degree.max()
    np.testing.assert_allclose(g[full], np.tile([2.0, 3.0], (full.sum(), 1)), atol=1e-9)
