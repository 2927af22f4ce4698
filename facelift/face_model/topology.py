"""MediaPipe face-mesh topology: triangles of the 468-vertex mesh and its left-right mirror map.

MediaPipe ships the tessellation only as a set of edges (`FACEMESH_TESSELATION`). Its
3-cliques that are faces give 852 triangles of an open surface with four boundary loops
(outline, two eyes, inner lips). Like MediaPipe's canonical face model, we close the eye
and mouth holes with strips between their corners, giving 898 triangles and a single
boundary (a topological disc, which the UV layout needs).
"""

from __future__ import annotations

import functools
import itertools
from collections import Counter, defaultdict, deque

import numpy as np

from .._mediapipe import tessellation_edges
from ..geometry.normals import face_normals

N_MESH_VERTICES = 468

# Holes closed by strips: (start corner, end corner or rung (top, bottom), a vertex of the
# upper side). Eyes run outer -> inner corner; the mouth runs from each lip corner to the
# midline rung (13, 14), so the fill is left-right symmetric like the rest of the mesh.
HOLE_STRIPS = (
    (33, 133, 159),
    (263, 362, 386),
    (78, (13, 14), 13),
    (308, (13, 14), 13),
)


def _edge_key(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)


def triangles_from_edges(edges) -> np.ndarray:
    """Faces of a triangulated surface given only its edges: its 3-cliques, without
    the "empty" 3-cycles (all of whose edges already border two faces). Unoriented."""
    und = {_edge_key(int(a), int(b)) for a, b in edges if a != b}
    adj = defaultdict(set)
    for a, b in und:
        adj[a].add(b)
        adj[b].add(a)
    found: set[tuple[int, ...]] = set()
    for a, b in und:
        for c in adj[a] & adj[b]:
            found.add(tuple(sorted((a, b, c))))
    cliques = sorted(found)
    while True:
        count = Counter(e for t in cliques for e in itertools.combinations(t, 2))
        if max(count.values(), default=0) <= 2:
            break
        empty = [t for t in cliques if all(count[e] > 2 for e in itertools.combinations(t, 2))]
        if not empty:
            raise ValueError("edge graph is not a manifold triangulation")
        cliques = [t for t in cliques if t not in set(empty)]
    return np.array(cliques, np.int32).reshape(-1, 3)


def orient_consistently(triangles: np.ndarray) -> np.ndarray:
    """Flip triangles so that every shared edge is traversed in opposite directions
    (per connected component; the global sign of each component is left as found)."""
    tris = np.array(triangles, np.int32, copy=True)
    by_edge = defaultdict(list)
    for f, t in enumerate(tris):
        for e in itertools.combinations(t, 2):
            by_edge[_edge_key(*e)].append(f)
    done = np.zeros(len(tris), bool)
    for seed in range(len(tris)):
        if done[seed]:
            continue
        done[seed] = True
        queue = deque([seed])
        while queue:
            f = queue.popleft()
            a, b, c = tris[f]
            for u, v in ((a, b), (b, c), (c, a)):
                for g in by_edge[_edge_key(u, v)]:
                    if g == f or done[g]:
                        continue
                    # g must traverse (v, u); if it has (u, v) it is flipped
                    ga, gb, gc = tris[g]
                    if (u, v) in ((ga, gb), (gb, gc), (gc, ga)):
                        tris[g] = (ga, gc, gb)
                    done[g] = True
                    queue.append(g)
    if not is_consistently_oriented(tris):
        raise ValueError("surface is not orientable")
    return tris


def is_consistently_oriented(triangles: np.ndarray) -> bool:
    directed = Counter((int(u), int(v)) for a, b, c in triangles for u, v in ((a, b), (b, c), (c, a)))
    return max(directed.values(), default=1) == 1


def boundary_loops(triangles: np.ndarray) -> list[list[int]]:
    """Boundary loops of an oriented manifold mesh, each following the triangles' direction."""
    directed = {(int(u), int(v)) for a, b, c in triangles for u, v in ((a, b), (b, c), (c, a))}
    nxt = {u: v for u, v in directed if (v, u) not in directed}
    loops, seen = [], set()
    for start in sorted(nxt):
        if start in seen:
            continue
        loop, v = [], start
        while v not in seen:
            seen.add(v)
            loop.append(v)
            v = nxt[v]
        loops.append(loop)
    return loops


def mesh_report(triangles: np.ndarray, n_vertices: int) -> dict:
    """Counts for checking a triangle mesh: Euler characteristic, edge use, boundary loops."""
    count = Counter(_edge_key(*e) for t in triangles for e in itertools.combinations(t, 2))
    used = np.unique(triangles)
    return {
        "vertices": int(n_vertices),
        "vertices_used": int(len(used)),
        "edges": len(count),
        "faces": int(len(triangles)),
        "euler": int(n_vertices - len(count) + len(triangles)),
        "max_faces_per_edge": int(max(count.values())),
        "boundary_edges": int(sum(c == 1 for c in count.values())),
        "boundary_loops": len(boundary_loops(triangles)),
        "consistently_oriented": bool(is_consistently_oriented(triangles)),
    }


def _loop_path(loop: list[int], start: int, end: int, avoid: int) -> list[int]:
    """The vertices from `start` to `end` along a closed loop, going the way without `avoid`."""
    n = len(loop)
    i0, i1 = loop.index(start), loop.index(end)
    fwd = [loop[(i0 + k) % n] for k in range((i1 - i0) % n + 1)]
    back = [loop[(i0 - k) % n] for k in range((i0 - i1) % n + 1)]
    return back if avoid in fwd else fwd


def fill_hole_strip(loop: list[int], start: int, end, upper: int) -> np.ndarray:
    """Triangulate (part of) a slit-like hole such as an eye or the mouth by zig-zagging
    between its upper and lower sides, from corner `start` to corner `end` (a vertex) or to
    a rung `end = (top, bottom)` across the hole. Ties advance the upper side (the one with
    vertex `upper`) first, so mirrored holes get mirrored triangles. Unoriented triangles."""
    if isinstance(end, tuple):
        top, bottom = end
        side1, side2 = _loop_path(loop, start, top, bottom), _loop_path(loop, start, bottom, top)
        shared_end = False
    else:
        lower = _loop_path(loop, start, end, upper)
        side1, side2 = _loop_path(loop, start, end, lower[1]), lower
        shared_end = True
    m, n = len(side1) - 1, len(side2) - 1
    last_i, last_j = (m - 1, n - 1) if shared_end else (m, n)
    if last_i < 1 or last_j < 1:
        raise ValueError("hole is too short for a strip")
    tris = [(start, side1[1], side2[1])]
    i = j = 1
    while i < last_i or j < last_j:
        if j >= last_j or (i < last_i and (i + 1) / m <= (j + 1) / n):
            tris.append((side1[i], side1[i + 1], side2[j]))
            i += 1
        else:
            tris.append((side1[i], side2[j + 1], side2[j]))
            j += 1
    if shared_end:
        tris.append((side1[m - 1], side1[m], side2[n - 1]))
    return np.array(tris, np.int32)


@functools.lru_cache(maxsize=1)
def _mediapipe_triangles_cached() -> np.ndarray:
    edges = tessellation_edges()
    tris = orient_consistently(triangles_from_edges(edges))
    loops = boundary_loops(tris)
    fills = [fill_hole_strip(next(lp for lp in loops if start in lp), start, end, upper)
             for start, end, upper in HOLE_STRIPS]
    tris = orient_consistently(np.concatenate([tris] + fills))
    # Edges listed one way only are MediaPipe's boundary edges in its own winding, which is
    # counter-clockwise seen from +Z in our model space (x, -y, -z of MediaPipe).
    directed = {(int(a), int(b)) for a, b in edges}
    one_way = {e for e in directed if e[::-1] not in directed}
    ours = {(int(u), int(v)) for a, b, c in tris for u, v in ((a, b), (b, c), (c, a))}
    if len(one_way & ours) < len({e[::-1] for e in one_way} & ours):
        tris = np.ascontiguousarray(tris[:, [0, 2, 1]])
    tris.setflags(write=False)
    return tris


def mediapipe_triangles(reference_vertices: np.ndarray | None = None) -> np.ndarray:
    """The 898 triangles (F, 3) int32 of MediaPipe's 468-vertex face mesh, counter-clockwise
    seen from +Z in model space (docs/ARCHITECTURE.md).

    Without `reference_vertices` the winding follows MediaPipe's own edge directions; with a
    (468, 3) model-space shape the winding is chosen so its summed normal points to +Z.
    """
    tris = _mediapipe_triangles_cached().copy()
    if reference_vertices is not None:
        v = np.asarray(reference_vertices)
        if v.shape != (N_MESH_VERTICES, 3):
            raise ValueError(f"reference_vertices must be ({N_MESH_VERTICES}, 3), got {v.shape}")
        if face_normals(v, tris)[:, 2].sum() < 0:
            tris = np.ascontiguousarray(tris[:, [0, 2, 1]])
    return tris


def mirror_indices(vertices: np.ndarray) -> np.ndarray:
    """Left-right correspondence (N,) int32: the vertex nearest to each vertex's reflection
    in the X = mean-x plane. Always an involution; vertices on the midline map to themselves."""
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    v = np.asarray(vertices, np.float64).copy()
    v[:, 0] -= v[:, 0].mean()
    reflected = v * np.array([-1.0, 1.0, 1.0])
    cost = cdist(v, reflected)  # symmetric: |v_i - Rv_j| = |Rv_i - v_j|
    _, perm = linear_sum_assignment(cost)
    n = len(v)
    mirror = np.full(n, -1, np.int64)
    for k in range(n):
        if perm[perm[k]] == k:
            mirror[k] = perm[k]
    free = np.flatnonzero(mirror < 0)
    if len(free):
        # pair the leftovers greedily by cost (self-pairs allowed) so the map stays an involution
        sub = cost[np.ix_(free, free)]
        order = np.dstack(np.unravel_index(np.argsort(sub, axis=None), sub.shape))[0]
        for i, j in order:
            a, b = free[i], free[j]
            if a <= b and mirror[a] < 0 and mirror[b] < 0:
                mirror[a], mirror[b] = b, a
    return mirror.astype(np.int32)
