"""ROAD's noisy linear imputation: every removed pixel the weighted mean of its 8 neighbours, all at once.

For the removed pixels R of an image v the values u solve, for every i in R,

    d_i u_i - sum_{j in N(i)} w_ij u_j = 0,   u_j = v_j for j not in R,

with w = 1/6 for the 4 direct and 1/12 for the 4 diagonal neighbours and d_i the sum of w over i's
in-image neighbours (Rong et al. 2022). The matrix is symmetric positive definite: a graph
Laplacian with the kept pixels as fixed values.

`noisy_linear_imputation` is the reference: one SciPy sparse direct solve per image on the
CPU. `impute_removed` solves a whole batch (images x masks x colour channels) at once on
the tensors' device with conjugate gradients, preconditioned by one multigrid V-cycle (bilinear
interpolation between grids of odd sides, Galerkin coarse operators, Jacobi smoothing, a dense
solve on the coarsest grid). The multigrid work runs in float32; the solution and its residual are
kept in float64 (iterative refinement), so the answer is that of the sparse solve to the error
tolerance, not to float32's rounding of a large system (alone it stalls at errors of ~1e-4).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

# ROAD's imputation weights: the 4 direct neighbours count twice as much as the 4 diagonal ones.
NEIGHBOURS = (
    (1, 1, 1 / 12),
    (0, 1, 1 / 6),
    (-1, 1, 1 / 12),
    (1, -1, 1 / 12),
    (0, -1, 1 / 6),
    (-1, -1, 1 / 12),
    (1, 0, 1 / 6),
    (-1, 0, 1 / 6),
)
# The solve ends when both hold for every image and channel: its estimate of the error left, the V-cycle applied to
# the float64 residual r (B r with B ~ A^-1, and A^-1 r = x* - x), is at most ERROR_TOLERANCE at every pixel (on the
# sample photos' masks the true error was at most 2.3 times the estimate; in the A-norm it is at most 1 / (1 - rho)
# times, rho ~ 0.43 the V-cycle's contraction); and ||r|| <= RESIDUAL_TOLERANCE ||b||, which bounds the error by
# ||r|| / lambda_min(A) (tests/evaluate/test_faithfulness.py computes that bound on small systems).
ERROR_TOLERANCE = 1e-5
RESIDUAL_TOLERANCE = 1e-6
OFFSETS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))  # stencil slot 3 * (dy + 1) + (dx + 1)
CENTRE = 4
COARSEST_UNKNOWNS = 160  # the coarsest grid is solved densely: a few hundred unknowns at most
# Float32 CG iterations between float64 residual checks (on the sample photos' ROAD masks: two rounds, 5 + 3).
FIRST_ROUND, LATER_ROUNDS, MAX_ROUNDS = 5, 3, 10


def noisy_linear_imputation(
    image: np.ndarray, removed: np.ndarray, noise: float = 0.01, rng: np.random.Generator | None = None
) -> np.ndarray:
    """``(C, H, W)`` image with the ``removed`` pixels (flat bool mask) filled in: each one the weighted
    mean of its in-image neighbours (`NEIGHBOURS`), all solved at once, plus Gaussian ``noise``."""
    from scipy import sparse
    from scipy.sparse.linalg import spsolve

    channels, height, width = image.shape
    flat = image.reshape(channels, -1).astype(np.float64)
    unknown = np.flatnonzero(removed)
    if unknown.size == 0:
        return image.copy()
    variable = np.full(height * width, -1)
    variable[unknown] = np.arange(unknown.size)
    ys, xs = np.divmod(unknown, width)
    rows, cols, vals = [], [], []
    weight_sum = np.zeros(unknown.size)
    rhs = np.zeros((unknown.size, channels))
    for dy, dx, w in NEIGHBOURS:
        ny, nx = ys + dy, xs + dx
        valid = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
        eq, neighbour = np.flatnonzero(valid), ny[valid] * width + nx[valid]
        weight_sum[eq] += w
        free = removed[neighbour]
        rows.append(eq[free])
        cols.append(variable[neighbour[free]])
        vals.append(np.full(int(free.sum()), -w))
        np.add.at(rhs, eq[~free], w * flat[:, neighbour[~free]].T)
    # For every removed pixel i: sum_j w_ij x_i - sum_{j removed} w_ij x_j = sum_{j kept} w_ij v_j.
    rows.append(np.arange(unknown.size))
    cols.append(np.arange(unknown.size))
    vals.append(weight_sum)
    system = sparse.csc_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(unknown.size, unknown.size)
    )
    solved = spsolve(system, rhs).reshape(unknown.size, channels)
    if noise:
        solved = solved + noise * (rng or np.random.default_rng()).standard_normal(solved.shape)
    out = flat.copy()
    out[:, unknown] = solved.T
    return out.reshape(channels, height, width)


def impute_removed(
    images: torch.Tensor, removed: torch.Tensor, noise: torch.Tensor | None = None, tolerance: float = ERROR_TOLERANCE
) -> torch.Tensor:
    """``(N, C, H, W)`` images with the ``(N, H, W)`` removed pixels imputed (plus ``noise[n, c, i]`` at each
    removed pixel i when given), as `noisy_linear_imputation` does one image at a time."""
    height, width = images.shape[-2:]
    problem = _Problem(images, removed)
    preconditioner = _Multigrid(problem.fine, problem.levels)
    solution, failed = problem.solve(preconditioner, tolerance)  # (C, N, H', W'), kept pixels included
    out = solution[..., :height, :width].permute(1, 0, 2, 3).to(images.dtype)
    for n in [] if failed is None else torch.nonzero(failed).flatten().tolist():
        # The V-cycle is not positive definite for every mask (its coarse grids' Jacobi sweeps): where CG broke
        # down or did not converge, that system is solved directly, as the reference does.
        exact = noisy_linear_imputation(images[n].double().cpu().numpy(), removed[n].flatten().cpu().numpy(), 0.0)
        out[n] = torch.from_numpy(exact).to(out)
    if noise is not None:
        out = out + noise * removed[:, None]
    return out.contiguous()


def padded_side(side: int, levels: int) -> int:
    """The smallest ``2**levels * m + 1 >= side``: a side every coarser grid halves exactly (vertex-centred)."""
    return 2**levels * math.ceil(max(side - 1, 1) / 2**levels) + 1


def grid_levels(height: int, width: int) -> int:
    """How many times to halve the grid so that the coarsest one has at most `COARSEST_UNKNOWNS` points."""
    levels = 0
    while True:
        sides = [math.ceil(max(side - 1, 1) / 2**levels) + 1 for side in (height, width)]
        if sides[0] * sides[1] <= COARSEST_UNKNOWNS or min(sides) <= 2:
            return levels
        levels += 1


def accurate_dtype(device: torch.device) -> torch.dtype:
    """float64 for the solution and its residual, where the device has it (Apple's MPS has not)."""
    return torch.float32 if device.type == "mps" else torch.float64


def neighbour_sum(u: torch.Tensor) -> torch.Tensor:
    """``sum_j w_ij u_j`` over each pixel's 8 neighbours (zero outside the grid): the separable 3x3 kernel
    ``[1 2 1]^T [1 2 1]`` less 4 times the centre, over 12."""
    rows = u * 2
    rows[..., :, 1:] += u[..., :, :-1]
    rows[..., :, :-1] += u[..., :, 1:]
    both = rows * 2
    both[..., 1:, :] += rows[..., :-1, :]
    both[..., :-1, :] += rows[..., 1:, :]
    return both.sub_(u, alpha=4).div_(12)


class _Problem:
    """The systems in the solver's layout: ``(C, N, H', W')`` with the N systems as channels (so that one
    depthwise convolution serves them all), sides padded to `padded_side` with outside points.
    The float32 copies serve the iterations; the float64 residual is taken from the float64 solution."""

    def __init__(self, images: torch.Tensor, removed: torch.Tensor) -> None:
        count, channels, height, width = images.shape
        self.levels = grid_levels(height, width)
        padded = (padded_side(height, self.levels), padded_side(width, self.levels))
        device = images.device
        free = torch.zeros((1, count, *padded), device=device).contiguous(memory_format=torch.channels_last)
        free[..., :height, :width] = removed[None]
        inside = torch.zeros((1, 1, *padded), device=device)
        inside[..., :height, :width] = 1
        self.fine = _FineGrid(free, inside)
        self.kept = torch.zeros((channels, count, *padded), device=device).contiguous(memory_format=torch.channels_last)
        self.kept[..., :height, :width] = images.transpose(0, 1) * ~removed[None]  # the unknowns start at 0
        self.rhs = self.fine.apply(self.kept).neg_()  # b = K v at the unknowns: -A applied to the kept values
        self.rhs_norm = _norms(self.rhs)
        self.precise = accurate_dtype(device)
        self.degree = neighbour_sum(inside.to(self.precise))  # d_i: the in-image neighbours' weights

    def residual(self, solution: torch.Tensor) -> torch.Tensor:
        """``b - A x`` at the unknowns, for the whole image ``solution`` (kept pixels included)."""
        return (neighbour_sum(solution) - self.degree * solution).mul_(self.fine.free)

    def solve(self, preconditioner: _Multigrid, tolerance: float) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Rounds of float32 preconditioned CG, each on the float64 residual of the solution so far, until the
        estimated error is within ``tolerance`` everywhere (or `MAX_ROUNDS` rounds); and, after `MAX_ROUNDS`,
        ``(N,)`` the systems that did not get there (None when all did)."""
        solution, residual, estimate = self.kept.to(self.precise), self.rhs, None
        for round_ in range(MAX_ROUNDS):
            iterations = FIRST_ROUND if round_ == 0 else LATER_ROUNDS
            solution += preconditioned_cg(preconditioner, residual, iterations, estimate)
            residual = _channels_last(self.residual(solution).float())  # small: float32 holds it to 1e-7 of itself
            estimate = preconditioner(residual)  # ~ the error left; the next round's first CG step if any
            small = (_norms(residual) <= RESIDUAL_TOLERANCE * self.rhs_norm).all()
            # Every system done is the largest estimate within the tolerance: one reduction over the whole
            # tensor in its memory order (a maximum per system reads the channels-last layout across strides).
            done = small & (estimate.abs().amax() <= tolerance)
            if bool(done):  # the only host sync: once a round
                return solution, None
        return solution, self._failed(solution, residual, estimate, tolerance)

    def _failed(self, solution, residual, estimate, tolerance) -> torch.Tensor:
        """``(N,)`` the systems that did not reach the tolerance in `MAX_ROUNDS` rounds, or broke down."""
        converged = (_norms(residual) <= RESIDUAL_TOLERANCE * self.rhs_norm) & (
            estimate.abs().amax(dim=(2, 3)) <= tolerance
        )
        finite = torch.isfinite(solution).all(dim=3).all(dim=2)
        return ~(converged & finite).all(dim=0)


def _norms(x: torch.Tensor) -> torch.Tensor:
    return x.square().sum(dim=(2, 3)).sqrt()


def _dot(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x * y).sum(dim=(2, 3), keepdim=True)


def preconditioned_cg(
    preconditioner: _Multigrid, rhs: torch.Tensor, iterations: int, preconditioned: torch.Tensor | None = None
) -> torch.Tensor:
    """``iterations`` steps of CG on ``A x = rhs`` from x = 0, every (channel, system) its own; no host sync.
    ``preconditioned``: the preconditioner applied to ``rhs`` already, if at hand."""
    tiny = torch.finfo(rhs.dtype).tiny
    fine = preconditioner.grids[0]
    x = torch.zeros_like(rhs)
    residual = rhs.clone()
    z = preconditioner(residual) if preconditioned is None else preconditioned
    direction = z.clone()
    rz = _dot(residual, z)
    for step in range(iterations):
        q = fine.apply(direction)
        alpha = rz / _dot(direction, q).clamp_min(tiny)
        x.addcmul_(alpha, direction)
        if step == iterations - 1:
            break
        residual.addcmul_(alpha, q, value=-1)
        z = preconditioner(residual)
        rz_next = _dot(residual, z)
        direction.mul_(rz_next / rz.clamp_min(tiny)).add_(z)
        rz = rz_next
    return x


class _FineGrid:
    """The systems' operator on the image grid (float32): ``A x = free * (d * x - K x)``, K one depthwise 3x3
    convolution over all systems."""

    def __init__(self, free: torch.Tensor, inside: torch.Tensor) -> None:
        systems = free.shape[1]
        self.free = free  # (1, N, H, W), channels last
        kernel = torch.tensor([[w_at(dy, dx) for dx in (-1, 0, 1)] for dy in (-1, 0, 1)], device=free.device)
        self.kernel = kernel.expand(systems, 1, 3, 3).contiguous()
        degree = neighbour_sum(inside)  # (1, 1, H, W)
        self.diagonal = _channels_last(degree * free)
        self.inverse_diagonal = _channels_last(free / degree.clamp_min(1e-30))

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, self.kernel, padding=1, groups=x.shape[1]).mul_(self.free).neg_()
        return y.addcmul_(self.diagonal, x)

    def defect(self, rhs: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``rhs - A x`` (zero off the unknowns when ``rhs`` is)."""
        y = F.conv2d(x, self.kernel, padding=1, groups=x.shape[1]).mul_(self.free).add_(rhs)
        return y.addcmul_(self.diagonal, x, value=-1)

    def stencil(self) -> torch.Tensor:
        """``(1, N, 9, H, W)``: slot s holds A[i, i + OFFSETS[s]] (zero where either end is not an unknown)."""
        free = self.free.contiguous()
        height, width = free.shape[-2:]
        padded = F.pad(free, (1, 1, 1, 1))
        neighbours = torch.stack(
            [padded[..., 1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width] for dy, dx in OFFSETS], 2
        )
        weights = torch.tensor([-w_at(dy, dx) for dy, dx in OFFSETS], device=free.device).view(9, 1, 1)
        slots = neighbours.mul_(weights).mul_(free[:, :, None])
        slots[:, :, CENTRE] = self.diagonal
        return slots


def w_at(dy: int, dx: int) -> float:
    """The imputation weight of the neighbour at (dy, dx); 0 at the centre."""
    return 0.0 if dy == dx == 0 else (1 / 12 if dy and dx else 1 / 6)


class _CoarseGrid:
    """A Galerkin coarse operator: a 9-point stencil that varies from point to point."""

    def __init__(self, stencil: torch.Tensor) -> None:
        self.weights = stencil  # (1, N, 9, h, w)
        self.slots = [_channels_last(stencil[:, :, s]) for s in range(9)]
        self.diagonal = self.slots[CENTRE]
        self.free = (self.diagonal > 0).float()
        self.inverse_diagonal = torch.where(self.diagonal > 0, 1 / self.diagonal.clamp_min(1e-30), 0.0)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return self.defect(torch.zeros_like(x), x).neg_()

    def defect(self, rhs: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``rhs - A x``."""
        y = rhs.addcmul(self.diagonal, x, value=-1)
        height, width = x.shape[-2:]
        for s, (dy, dx) in enumerate(OFFSETS):
            if s != CENTRE:
                rows, cols = _window(dy, height), _window(dx, width)
                y[..., rows[0], cols[0]].addcmul_(
                    self.slots[s][..., rows[0], cols[0]], x[..., rows[1], cols[1]], value=-1
                )
        return y

    def stencil(self) -> torch.Tensor:
        return self.weights


def _window(offset: int, size: int) -> tuple[slice, slice]:
    """Where ``out[i] += f(i) * x[i + offset]`` applies: the slice of i, and that of i + offset."""
    return slice(max(0, -offset), size - max(0, offset)), slice(max(0, offset), size + min(0, offset))


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


INTERPOLATION = (0.5, 1.0, 0.5)  # bilinear, vertex-centred: a coarse point is every second fine point


def _galerkin_kernel(device: torch.device) -> torch.Tensor:
    """``k[d, e, a] = p(a) p(a + e - 2d)`` (2-D, p the interpolation weights): the coarse stencil slot d
    gathers the fine slot e at the fine point 2I + a."""
    p = dict(zip((-1, 0, 1), INTERPOLATION))
    kernel = torch.zeros(9, 9, 3, 3)
    for d, (ddy, ddx) in enumerate(OFFSETS):
        for e, (edy, edx) in enumerate(OFFSETS):
            for ay, ax in OFFSETS:
                by, bx = ay + edy - 2 * ddy, ax + edx - 2 * ddx
                if abs(by) <= 1 and abs(bx) <= 1:
                    kernel[d, e, ay + 1, ax + 1] = p[ay] * p[ax] * p[by] * p[bx]
    return kernel.to(device)


def galerkin(stencil: torch.Tensor) -> torch.Tensor:
    """``P^T A P`` of a 9-point stencil ``(1, N, 9, h, w)`` (odd sides) as one grouped strided convolution."""
    _, systems, _, height, width = stencil.shape
    weight = _galerkin_kernel(stencil.device).to(stencil.dtype).repeat(systems, 1, 1, 1)
    out = F.conv2d(stencil.reshape(1, systems * 9, height, width), weight, stride=2, padding=1, groups=systems)
    return out.view(1, systems, 9, *out.shape[-2:])


class _Multigrid:
    """One symmetric V-cycle (a Jacobi sweep before and after each coarse correction): an SPD preconditioner."""

    def __init__(self, fine: _FineGrid, levels: int) -> None:
        self.grids: list = [fine]
        for _ in range(levels):
            self.grids.append(_CoarseGrid(galerkin(self.grids[-1].stencil())))
        systems, device = fine.free.shape[1], fine.free.device
        weights = torch.tensor(INTERPOLATION, device=device)
        self.transfer = weights.outer(weights).expand(systems, 1, 3, 3).contiguous()
        self.coarsest = _dense_inverse(self.grids[-1])

    def __call__(self, residual: torch.Tensor, level: int = 0) -> torch.Tensor:
        grid = self.grids[level]
        if level == len(self.grids) - 1:
            channels, systems, height, width = residual.shape
            flat = residual.reshape(channels, systems, height * width, 1)
            return (self.coarsest @ flat).view(channels, systems, height, width) * grid.free
        x = grid.inverse_diagonal * residual
        defect = grid.defect(residual, x)
        coarse = self.grids[level + 1]
        restricted = F.conv2d(defect, self.transfer, stride=2, padding=1, groups=residual.shape[1])
        correction = self(restricted.mul_(coarse.free), level + 1)
        up = F.conv_transpose2d(correction, self.transfer, stride=2, padding=1, groups=residual.shape[1])
        x.addcmul_(up, grid.free)
        return x.addcmul_(grid.inverse_diagonal, grid.defect(residual, x))


def _dense_inverse(grid) -> torch.Tensor:
    """``(N, k, k)`` inverse of the coarsest operator (identity rows at the points that are not unknowns), from
    its Cholesky factor in float64 (where the device has it). The operator is only semi-definite where two
    coarse points reach the same few unknowns (random masks), and float32's rounding of the Galerkin sums can
    tip such a direction below zero: 1e-4 of the diagonal added keeps it definite. Such directions vanish when
    the correction is interpolated and masked, so the shift costs the preconditioner nothing there."""
    free = grid.free
    systems, (height, width) = free.shape[1], free.shape[-2:]
    k = height * width
    basis = torch.eye(k, device=free.device).view(k, 1, height, width).expand(k, systems, height, width) * free
    precise = accurate_dtype(free.device)
    dense = grid.apply(_channels_last(basis)).permute(1, 2, 3, 0).reshape(systems, k, k).to(precise)
    fixed = 1 - free.reshape(systems, k).to(precise)
    dense = dense + torch.diag_embed(fixed + 1e-4 * dense.diagonal(dim1=1, dim2=2).abs())
    dense = (dense + dense.mT) / 2
    factor = torch.linalg.cholesky(dense.contiguous())
    return torch.cholesky_inverse(factor).float()
