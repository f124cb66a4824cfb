"""Compiled CPU kernels of the cddfuse metrics' per-fused-image work (numba, compiled once per machine).

On the CPU the fused image's windowed statistics (VIF's four Gaussian scales, SSIM's 7 x 7 box sums, MS-SSIM's
11-tap Gaussian at five scales) and the pointwise formulas over them were memory-bound chains of a dozen torch
or OpenCV passes, each writing a full-size map. Here the filters keep their intermediate row in cache (and
form the products they filter as they read them, or once per image for the maps two metrics share), and each
metric's per-pixel formula and its sum are one pass over the statistics; the kernels return the sums the
metrics need (37.8 -> 19.9 CPU-ms per 0.35-Mpixel TNO triplet, one thread, all eleven metrics):

- :func:`products`: the four maps a metric filters, c, c^2, c a and c b (c the fused image, a and b the
  sources, as given: centred at 128 or not); :func:`window_stats` filters them as the vertical pass reads
  them, :func:`box_stats` sums them over k x k boxes by running column sums (exact for integers);
- :func:`sep_filter_valid`: separable 'valid' correlation of every map with outer(taps, taps), keeping every
  `stride`-th row and column; the taps are a tuple, so each window length is its own compiled loop (unrolled
  and vectorised); also behind ``metrics_filters.filter2d_valid`` on the CPU;
- :func:`vif_source_terms`, :func:`vif_log_sums`, :func:`ssim_sums`, :func:`msssim_sums`,
  :func:`qabf_edges`, :func:`qabf_arguments`, :func:`qabf_sums`: the metrics' per-pixel formulas (see each
  metric's class in ``fusedet.eval.fusion_metrics``) summed per source;
- :func:`histograms` (F's histogram, the joint ones with A and B, exact moments), :func:`gradient_sums`
  (SF and AG), :func:`average_pool2` (MS-SSIM's pooling) and :func:`gray_plane` (a gray picture stored as
  RGB, split in one pass when a file is read).

Sums of log(1 + r) are taken as logs of products of 32 factors at a time in float64 (one log per 32 pixels;
a product of 32 float64 factors is within 32 ulp of the exact one, about 7e-15 relative), with a log per
factor for any block holding a factor above 1e9, whose product could overflow.

Compiled functions are cached on disk (numba's ``cache=True``: next to this file, or the user's cache
folder when that is read-only, or $NUMBA_CACHE_DIR), so only the first run on a machine (and the first
after fusedet is updated) pays the compilation: about 8 s on 2 cores for all of them. Without any writable
cache folder every process compiles the kernels it uses.
Every kernel releases the GIL: the worker threads of ``fusedet metrics`` run them in parallel.
:data:`AVAILABLE` is False when numba cannot be imported; the metrics then use their torch/OpenCV path,
which is also the path on CUDA and the one these kernels are tested against.
"""

from __future__ import annotations

import math

import numpy as np

try:
    from numba import njit
    from numba.core.registry import cpu_target
except ImportError:  # pragma: no cover - numba is a dependency; a broken install falls back to torch/OpenCV
    njit = None
else:
    from dmnet.compiled import use_full_vector_width

    use_full_vector_width()  # 16 float32 lanes on AVX-512 (numba's code generator is built just below)
    # numba imports its numpy support (and scipy.linalg, for BLAS) on the first compiled call; done here,
    # with the other imports, it is not paid by whichever worker thread scores first
    cpu_target.target_context.refresh()

AVAILABLE = njit is not None
# no "arcp" (divisions stay IEEE, not reciprocal estimates) and no "afn" (math.log stays within 1 ulp)
_FLAGS = {"nnan", "ninf", "nsz", "contract", "reassoc"}
_BLOCK = 32  # factors per product in the log sums
_LARGEST_FACTOR = 1e9  # a block of factors up to this is multiplied out (1e9 ** 32 = 1e288 < float64's 1.8e308)


def _kernel(fn):
    if not AVAILABLE:
        return fn
    options = {"nogil": True, "fastmath": _FLAGS, "error_model": "numpy"}
    try:
        return njit(cache=True, **options)(fn)
    except RuntimeError:  # pragma: no cover - no writable cache folder at all: compiled in every process
        return njit(**options)(fn)


@_kernel
def products(c, a, b, out):  # pragma: no cover - compiled
    """out[0..3] = c, c * c, a * c, b * c (H x W each, out 4 x H x W of c's dtype)."""
    h, w = c.shape
    for i in range(h):
        for j in range(w):
            v = c[i, j]
            out[0, i, j] = v
            out[1, i, j] = v * v
            out[2, i, j] = a[i, j] * v
            out[3, i, j] = b[i, j] * v
    return out


@_kernel
def sep_filter_valid(maps, taps, stride, out):  # pragma: no cover - compiled
    """out[q] = 'valid' correlation of maps[q] (Q x H x W) with outer(taps, taps), every `stride`-th row and
    column from the first: out is Q x ceil((H - k + 1) / stride) x ceil((W - k + 1) / stride), maps' dtype."""
    k = len(taps)
    n_maps, _, width = maps.shape
    h_out, w_out = out.shape[1], out.shape[2]
    tp = np.empty(k, maps.dtype)
    for t in range(k):
        tp[t] = taps[t]
    w_valid = width - k + 1
    row = np.empty(width, maps.dtype)
    for q in range(n_maps):
        for i in range(h_out):
            top = i * stride
            for j in range(width):
                s = tp[0] * maps[q, top, j]
                for t in range(1, k):
                    s += tp[t] * maps[q, top + t, j]
                row[j] = s
            if stride == 1:
                for j in range(w_valid):
                    s = tp[0] * row[j]
                    for t in range(1, k):
                        s += tp[t] * row[j + t]
                    out[q, i, j] = s
            else:
                for j in range(w_out):
                    left = j * stride
                    s = tp[0] * row[left]
                    for t in range(1, k):
                        s += tp[t] * row[left + t]
                    out[q, i, j] = s
    return out


@_kernel
def _window_stats(c, a, b, taps, out):  # pragma: no cover - compiled
    """out[q] = 'valid' correlation with outer(taps, taps) of c, c * c, a * c and b * c (H x W each), the
    products formed as the vertical pass reads them (no full-size product maps)."""
    k = len(taps)
    height, width = c.shape
    tp = np.empty(k, c.dtype)
    for t in range(k):
        tp[t] = taps[t]
    h_out, w_out = height - k + 1, width - k + 1
    row = np.empty((4, width), c.dtype)
    for i in range(h_out):
        for j in range(width):
            s = tp[0] * c[i, j]
            for t in range(1, k):
                s += tp[t] * c[i + t, j]
            row[0, j] = s
        for j in range(width):
            v = c[i, j]
            s = tp[0] * (v * v)
            for t in range(1, k):
                v = c[i + t, j]
                s += tp[t] * (v * v)
            row[1, j] = s
        for j in range(width):
            s = tp[0] * (a[i, j] * c[i, j])
            for t in range(1, k):
                s += tp[t] * (a[i + t, j] * c[i + t, j])
            row[2, j] = s
        for j in range(width):
            s = tp[0] * (b[i, j] * c[i, j])
            for t in range(1, k):
                s += tp[t] * (b[i + t, j] * c[i + t, j])
            row[3, j] = s
        for q in range(4):
            for j in range(w_out):
                s = tp[0] * row[q, j]
                for t in range(1, k):
                    s += tp[t] * row[q, j + t]
                out[q, i, j] = s
    return out


@_kernel
def _box_stats(c, a, b, window, out):  # pragma: no cover - compiled
    """out[q] = sums over every k x k window inside the image ('valid') of c, c * c, a * c and b * c (H x W
    arrays of integers), k = len(window) (a tuple, so that each k is its own compiled loop): column sums
    kept as running sums (the row entering added, the row leaving subtracted), then k-term row sums. Exact
    while every sum stays below 2**24 (float32) or 2**53."""
    k = len(window)
    height, width = c.shape
    w_out = width - k + 1
    col = np.zeros((4, width), c.dtype)
    for bottom in range(height):
        for j in range(width):
            v = c[bottom, j]
            col[0, j] += v
            col[1, j] += v * v
            col[2, j] += a[bottom, j] * v
            col[3, j] += b[bottom, j] * v
        i = bottom - k + 1  # the window's top row: an output row once k rows are in
        if i < 0:
            continue
        for q in range(4):
            for j in range(w_out):
                s = col[q, j]
                for t in range(1, k):
                    s += col[q, j + t]
                out[q, i, j] = s
        for j in range(width):
            v = c[i, j]
            col[0, j] -= v
            col[1, j] -= v * v
            col[2, j] -= a[i, j] * v
            col[3, j] -= b[i, j] * v
    return out


@_kernel
def _log_sum(r, n):  # pragma: no cover - compiled
    """Sum of log(r[:n]) for r >= 1 (float64), one log per block of factors."""
    total = 0.0
    for start in range(0, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        largest = 1.0
        p = 1.0
        for j in range(start, stop):
            largest = max(largest, r[j])
            p *= r[j]
        if largest <= _LARGEST_FACTOR:  # the product is at most 1e288: no overflow (never an inf, see _FLAGS)
            total += math.log(p)
        else:
            for j in range(start, stop):
                total += math.log(r[j])
    return total


@_kernel
def vif_log_sums(stats, mu1, inv_var1_eps, weight, flat, sigma_n2, eps, flat_below):  # pragma: no cover - compiled
    """Per source s (A, B): sum over pixels of log(1 + ratio), the VIF numerator's terms (natural log).

    stats: 4 x h x w = E[F], E[F^2], E[AF], E[BF]; mu1, inv_var1_eps, weight: 2 x h x w (source means,
    1 / (variance + eps), variance / (variance + eps)^2); flat: h x w, True where F is constant over the window (its
    statistics are then exactly 0), or a 0 x 0 array for none. ratio as ``_VIF``'s docstring gives it.
    Also returns how many windows (times two) have E[F^2] - E[F]^2 below `flat_below`: none means that no
    window of F is constant (a constant window's float32 variance is its rounding, far below 0.5)."""
    h, w = stats.shape[1], stats.shape[2]
    use_flat = flat.shape[0] > 0
    floor = sigma_n2 + eps
    suspects = 0
    zero = stats[0, 0, 0] - stats[0, 0, 0]
    r = np.empty(w, np.float64)
    total = np.zeros(2)
    for i in range(h):
        for s in range(2):
            for j in range(w):
                mu2 = stats[0, i, j]
                var2 = stats[1, i, j] - mu2 * mu2
                cov = max(stats[2 + s, i, j] - mu1[s, i, j] * mu2, zero)
                cov_sq = cov * cov
                sv = max(var2 + sigma_n2 - cov_sq * inv_var1_eps[s, i, j], floor)
                r[j] = 1.0 + np.float64(cov_sq * weight[s, i, j] / sv)
                suspects += var2 < flat_below
            if use_flat:
                for j in range(w):
                    if flat[i, j]:
                        r[j] = 1.0
            total[s] += _log_sum(r, w)
    return total, suspects


@_kernel
def vif_source_terms(stats, eps, sigma_n2, centre, mu, inv_var_eps, weight):  # pragma: no cover - compiled
    """VIF's per-source terms at one scale from stats = E[A], E[B], E[A^2], E[B^2] (4 x h x w, float64):
    writes mu = E[S] - centre, inv_var_eps = 1 / (var + eps) and weight = var / (var + eps)^2 (2 x h x w
    each, in their own dtype; var = E[S^2] - E[S]^2 clipped at 0 and zeroed below eps, as ``_VIF`` does) and returns the
    two denominators' sums of log(1 + var / sigma_n2) (natural log)."""
    h, w = stats.shape[1], stats.shape[2]
    r = np.empty(w, np.float64)
    total = np.zeros(2)
    for s in range(2):
        for i in range(h):
            for j in range(w):
                m = stats[s, i, j]
                var = max(stats[2 + s, i, j] - m * m, 0.0)
                if var < eps:
                    var = 0.0
                ve = var + eps
                mu[s, i, j] = m - centre
                inv_var_eps[s, i, j] = 1.0 / ve
                weight[s, i, j] = var / (ve * ve)
                r[j] = 1.0 + var / sigma_n2
            total[s] += _log_sum(r, w)
    return total


@_kernel
def gradient_sums(f):  # pragma: no cover - compiled
    """SF's and AG's sums over an H x W image of integers (H, W >= 3): the sums of squared differences of
    horizontal and of vertical neighbours (exact), and the sum of sqrt((gx^2 + gy^2) / 2) with numpy.gradient's
    gx, gy (central differences inside, one-sided on the borders; float64)."""
    h, w = f.shape
    rows = 0.0
    cols = 0.0
    ag = 0.0
    for i in range(h):
        for j in range(w - 1):
            d = np.float64(f[i, j + 1] - f[i, j])
            rows += d * d
        if i < h - 1:
            for j in range(w):
                d = np.float64(f[i + 1, j] - f[i, j])
                cols += d * d
        up = max(i - 1, 0)
        down = min(i + 1, h - 1)
        y_scale = 0.5 if 0 < i < h - 1 else 1.0
        acc = 0.0
        for j in range(1, w - 1):
            gx = 0.5 * np.float64(f[i, j + 1] - f[i, j - 1])
            gy = y_scale * np.float64(f[down, j] - f[up, j])
            acc += math.sqrt(0.5 * (gx * gx + gy * gy))
        for j in (0, w - 1):
            gx = np.float64(f[i, 1] - f[i, 0]) if j == 0 else np.float64(f[i, w - 1] - f[i, w - 2])
            gy = y_scale * np.float64(f[down, j] - f[up, j])
            acc += math.sqrt(0.5 * (gx * gx + gy * gy))
        ag += acc
    return rows, cols, ag


@_kernel
def ssim_sums(sums, sc_src, ssc_src, centre_p, c1, c2, p):  # pragma: no cover - compiled
    """Per source, the sum over windows of SSIM's luminance x structure terms from 7 x 7 box sums, in float64.

    sums: 4 x h x w box sums of c, c^2, a_c c, b_c c (values centred at 128: c = F - 128); sc_src, ssc_src:
    2 x h x w box sums of a_c and a_c^2, b_c and b_c^2 (all exact integers); centre_p = 128 p; c1, c2, p as
    ``_SSIM`` has them."""
    h, w = sums.shape[1], sums.shape[2]
    total = np.zeros(2)
    for i in range(h):
        for s in range(2):
            acc = 0.0
            for j in range(w):
                sc_f = np.float64(sums[0, i, j])
                s_f = sc_f + centre_p
                sc = np.float64(sc_src[s, i, j])
                s_s = sc + centre_p
                lum_den = s_s * s_s + c1 + s_f * s_f
                cs_den = p * np.float64(ssc_src[s, i, j]) - sc * sc + c2 - sc_f * sc_f + p * np.float64(sums[1, i, j])
                cs_num = 2.0 * p * np.float64(sums[2 + s, i, j]) + c2 - 2.0 * sc * sc_f
                acc += (2.0 * s_s * s_f + c1) * cs_num / (lum_den * cs_den)  # one division: they bound the speed
            total[s] += acc
    return total


@_kernel
def msssim_sums(stats, mu_s, var_s_c2, c1, c2, centre, with_luminance):  # pragma: no cover - compiled
    """Per source, the sum over windows of MS-SSIM's contrast-structure map at one scale, times the luminance
    map when `with_luminance` (the last scale).

    stats: 4 x h x w Gaussian statistics of c, c^2, a_c c, b_c c (centred values); mu_s, var_s_c2: 2 x h x w
    the sources' centred means and variances + C2; as ``_MSSSIM`` computes them."""
    h, w = stats.shape[1], stats.shape[2]
    total = np.zeros(2)
    two = stats[0, 0, 0] - stats[0, 0, 0] + np.float32(2)
    for i in range(h):
        for s in range(2):
            acc = 0.0
            for j in range(w):
                mu_f = stats[0, i, j]
                var_f = stats[1, i, j] - mu_f * mu_f
                m_s = mu_s[s, i, j]
                cs = (two * (stats[2 + s, i, j] - m_s * mu_f) + c2) / (var_s_c2[s, i, j] + var_f)
                if with_luminance:
                    a = mu_f + centre
                    b = m_s + centre
                    cs *= (two * a * b + c1) / (a * a + b * b + c1)
                acc += np.float64(cs)
            total[s] += acc
    return total


@_kernel
def qabf_edges(f, strength, slope):  # pragma: no cover - compiled
    """Qabf's edges of an H x W float32 image of integers: strength sqrt(gx^2 + gy^2) (IEEE float32 sqrt of an
    exact integer) and slope gy / gx, 3.4e38 where gx == 0 (whose float32 arctan is the reference's pi/2),
    gx and gy the zero-padded Sobel responses of ``metrics_filters.sobel_same`` (exact integers)."""
    h, w = f.shape
    zero = f[0, 0] - f[0, 0]
    two = np.float32(2)
    vertical = np.float32(3.4e38)
    for i in range(h):
        for j in range(w):
            up_l = f[i - 1, j - 1] if i > 0 and j > 0 else zero
            up_c = f[i - 1, j] if i > 0 else zero
            up_r = f[i - 1, j + 1] if i > 0 and j < w - 1 else zero
            md_l = f[i, j - 1] if j > 0 else zero
            md_r = f[i, j + 1] if j < w - 1 else zero
            dn_l = f[i + 1, j - 1] if i < h - 1 and j > 0 else zero
            dn_c = f[i + 1, j] if i < h - 1 else zero
            dn_r = f[i + 1, j + 1] if i < h - 1 and j < w - 1 else zero
            gx = (up_l - up_r) + two * (md_l - md_r) + (dn_l - dn_r)
            gy = (dn_l + two * dn_c + dn_r) - (up_l + two * up_c + up_r)
            strength[i, j] = np.sqrt(gx * gx + gy * gy)
            slope[i, j] = gy / gx if gx != zero else vertical
    return strength, slope


@_kernel
def qabf_arguments(g_f, a_f, g_s, a_s, kg, dg, k_a, c_a, out):  # pragma: no cover - compiled
    """The arguments of Qabf's two sigmoids per source s: out[s] = -KG (G - DG) with G = min(gS, gF) /
    max(gS, gF) (gF where gS == gF, the reference's quirk), out[2 + s] = k_a |aS - aF| + c_a."""
    h, w = g_f.shape
    for s in range(2):
        for i in range(h):
            for j in range(w):
                gf = g_f[i, j]
                gs = g_s[s, i, j]
                ratio = gf if gs == gf else min(gs, gf) / max(gs, gf)
                out[s, i, j] = kg * dg - kg * ratio
                out[2 + s, i, j] = k_a * abs(a_s[s, i, j] - a_f[i, j]) + c_a
    return out


@_kernel
def qabf_sums(q, g_s):  # pragma: no cover - compiled
    """Per source s: sum over pixels of q[s] q[2 + s] gS[s] (float64 sums of float32 products)."""
    h, w = g_s.shape[1], g_s.shape[2]
    total = np.zeros(2)
    for s in range(2):
        for i in range(h):
            acc = 0.0
            for j in range(w):
                acc += np.float64(q[s, i, j] * q[2 + s, i, j] * g_s[s, i, j])
            total[s] += acc
    return total


@_kernel
def gray_plane(image, plane):  # pragma: no cover - compiled
    """For an H x W x C uint8 image (C = 3 or 4): whether its first three channels are equal everywhere and,
    when they are, that channel written to `plane` (H x W) with its minimum and maximum, in one pass.
    Returns (gray, minimum, maximum); (False, 0, 0) as soon as a pixel differs (plane then partly written)."""
    h, w = plane.shape
    lo = 255
    hi = 0
    for i in range(h):
        same = True
        for j in range(w):
            v = image[i, j, 0]
            same &= (image[i, j, 1] == v) & (image[i, j, 2] == v)
            plane[i, j] = v
            lo = min(lo, v)
            hi = max(hi, v)
        if not same:
            return False, 0, 0
    return True, lo, hi


@_kernel
def average_pool2(x, out):  # pragma: no cover - compiled
    """pytorch_msssim's 2 x 2 average pooling of an H x W image (``F.avg_pool2d(x, 2, padding=[H % 2, W % 2])``:
    an odd side gets a zero row or column on each end, count_include_pad); out is ceil(H / 2) x ceil(W / 2)."""
    h, w = x.shape
    top, left = h % 2, w % 2
    zero = x[0, 0] - x[0, 0]
    quarter = zero + np.float32(0.25)
    for i in range(out.shape[0]):
        r0 = 2 * i - top
        for j in range(out.shape[1]):
            c0 = 2 * j - left
            s = zero
            for r in range(r0, r0 + 2):
                if 0 <= r < h:
                    for c in range(c0, c0 + 2):
                        if 0 <= c < w:
                            s += x[r, c]
            out[i, j] = s * quarter
    return out


@_kernel
def histograms(f, a, b, hist, joint):  # pragma: no cover - compiled
    """One pass over an H x W image F of integer levels 0..255 (float32) and the uint8 sources A and B: hist
    (256, int64) += the histogram of F, joint (2 x 256 x 256, int32) += those of (F, A) and (F, B), first index
    F. Returns the exact sums (sum F, sum F^2, sum AF, sum BF) as int64."""
    h, w = f.shape
    for i in range(h):
        for j in range(w):
            v = np.int32(f[i, j])
            joint[0, v, a[i, j]] += 1
            joint[1, v, b[i, j]] += 1
    sums = np.zeros(4, np.int64)
    for v in range(256):
        count = np.int64(0)  # the histogram of F: a row of either joint histogram summed
        for u in range(256):
            count += joint[0, v, u]
        hist[v] += count
        sums[0] += v * count
        sums[1] += v * v * count
        for s in range(2):
            row = np.int64(0)
            for u in range(256):
                row += u * joint[s, v, u]
            sums[2 + s] += v * row
    return sums


# --- calls from the metrics (numpy in, numpy out) -----------------------------------------------------


def filter_valid(maps: np.ndarray, taps: tuple[float, ...], stride: int = 1) -> np.ndarray:
    """'valid' separable correlation of a Q x H x W C-contiguous float32/float64 array with outer(taps, taps),
    every `stride`-th row and column: Q x ceil((H - k + 1) / stride) x ceil((W - k + 1) / stride)."""
    k = len(taps)
    _, height, width = maps.shape
    out = np.empty((maps.shape[0], -(-(height - k + 1) // stride), -(-(width - k + 1) // stride)), maps.dtype)
    cast = maps.dtype.type
    return sep_filter_valid(maps, tuple(cast(t) for t in taps), stride, out)


def box_stats(c: np.ndarray, a: np.ndarray, b: np.ndarray, size: int) -> np.ndarray:
    """4 x h x w sums over size x size windows ('valid') of c, c^2, a c and b c (C-contiguous H x W arrays of
    integers, one dtype); exact under the bound of :func:`_box_stats`."""
    out = np.empty((4, c.shape[0] - size + 1, c.shape[1] - size + 1), c.dtype)
    return _box_stats(c, a, b, (1,) * size, out)


def window_stats(c: np.ndarray, a: np.ndarray, b: np.ndarray, taps: tuple[float, ...]) -> np.ndarray:
    """4 x h x w windowed sums with outer(taps, taps) of c, c^2, a c and b c (C-contiguous H x W arrays of
    one dtype, float32 or float64)."""
    k = len(taps)
    out = np.empty((4, c.shape[0] - k + 1, c.shape[1] - k + 1), c.dtype)
    cast = c.dtype.type
    return _window_stats(c, a, b, tuple(cast(t) for t in taps), out)
