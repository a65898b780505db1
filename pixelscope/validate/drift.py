"""Drift between a reference profile and a current one, from the sketches alone (no raw data).

One row per (feature, segment, test):
- numeric (KLL): KS statistic and p-value; PSI, Hellinger and Jensen-Shannon on the two
  PMFs binned at the reference's quantiles, as effect sizes of a chi-square test on the
  binned counts (which gives their p-value);
- categorical (frequent items): chi-square test of homogeneity and total variation over the
  tracked values plus an "(other)" bucket, so a value unseen in the reference counts;
- embeddings (bottom-k samples, centroids): MMD^2 (RBF kernel, median bandwidth) with a
  p-value from permutations, and the cosine shift of the mean (from exact sums) with a
  permutation p-value for the difference of the two means; both overall and per label.
  Permutation p-values are extended past 1 / (permutations + 1) by a moment-matched
  Pearson III tail, so they can survive the correction over hundreds of tests.

- balance columns (`drift.balance`, e.g. label, source): besides the omnibus chi-square, one
  two-proportion test per value ("share": its share of the current batch minus the reference's).

Sketch error is accounted for: the KS statistic is reduced by the two sketches' rank
errors before its p-value is taken, and a distance no larger than what the sketches can
resolve is never called drift.

Multiple testing: hypotheses fall into families — class_balance (the balance columns' tests),
features (every feature over all images), segments (features per segment value),
embedding, and objects (the annotated objects' columns, overall and per class, named
`objects.<column>`, and the images' object_count / object_coverage) — and `drift.budget`
splits `drift.alpha` between them (weights, normalised over the families that have tests).
Inside a family the
p-values are corrected (Holm or Benjamini-Hochberg, `drift.correction`; PSI, Hellinger and JS
share one hypothesis) and divided by the family's share, so a row drifts when its adjusted
p-value is below alpha (Bonferroni across families, Holm within: the family-wise error stays
at alpha) and its effect size passes the test's threshold. Budgets of families with no test
go to the others in proportion. One strong class-mix or single-feature signal is thus tested
against its family, not against hundreds of per-segment tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from pixelscope.config import DriftConfig
from pixelscope.errors import BadInput
from pixelscope.profile import Profile
from pixelscope.profile.embedding import ALL, EmbeddingStats
from pixelscope.profile.outputs import OBJECT_IMAGE_KINDS
from pixelscope.profile.sketches import CategoricalSketch, NumericSketch

BINNED = ("psi", "hellinger", "js")  # one chi-square test on the binned counts; three effect sizes
EPS = 1e-4  # PMF smoothing: an empty bin must not make PSI / KL infinite
RARE = 10  # categorical values with fewer rows (reference + current) are pooled for the chi-square test


@dataclass
class DriftRow:
    feature: str
    segment: str  # "all" or e.g. "label=cat"
    test: str
    statistic: float
    threshold: float  # effect size needed (already raised to the sketches' resolution)
    resolution: float  # smallest difference the sketches can tell apart
    p_value: float | None = None
    p_adjusted: float | None = None
    n_ref: int = 0
    n_cur: int = 0
    drift: bool = False
    family: str = ""  # class_balance | features | segments | embedding (set by decide)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _smooth(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64) + EPS
    return p / p.sum()


def binned(ref: NumericSketch, cur: NumericSketch, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Both PMFs over bins cut at the reference's quantiles (equal mass in the reference)."""
    edges = sorted(set(q for q in ref.quantiles(np.linspace(0, 1, bins + 1)[1:-1]) if q is not None))
    return np.array(ref.pmf(edges)), np.array(cur.pmf(edges))


def psi(p: np.ndarray, q: np.ndarray) -> float:
    p, q = _smooth(p), _smooth(q)
    return float(np.sum((q - p) * np.log(q / p)))


def hellinger(p: np.ndarray, q: np.ndarray) -> float:
    p, q = np.asarray(p, float) / max(np.sum(p), 1e-12), np.asarray(q, float) / max(np.sum(q), 1e-12)
    return float(math.sqrt(max(0.0, 1.0 - np.sum(np.sqrt(p * q)))))


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """JS divergence, base 2 (0 = same, 1 = disjoint)."""
    p, q = _smooth(p), _smooth(q)
    m = (p + q) / 2
    return float(0.5 * np.sum(p * np.log2(p / m)) + 0.5 * np.sum(q * np.log2(q / m)))


def ks_statistic(ref: NumericSketch, cur: NumericSketch, points: int = 257) -> float:
    """max |F_ref - F_cur| over the union of both sketches' quantiles."""
    qs = np.linspace(0, 1, points)
    grid = np.unique([x for x in ref.quantiles(qs) + cur.quantiles(qs) if x is not None])
    return float(np.max(np.abs(np.array(ref.cdf(grid)) - np.array(cur.cdf(grid))))) if grid.size else 0.0


def ks_p_value(d: float, n: int, m: int) -> float:
    """Two-sample KS p-value (asymptotic Kolmogorov distribution, effective n = nm / (n + m))."""
    if d <= 0:
        return 1.0
    ne = n * m / (n + m)
    return float(stats.kstwobign.sf(d * (math.sqrt(ne) + 0.12 + 0.11 / math.sqrt(ne))))


def binned_p_value(p_ref: np.ndarray, p_cur: np.ndarray, n: int, m: int, pmf_res: float) -> float:
    """Chi-square test of homogeneity on the binned counts (the distances are its effect sizes).
    Each bin's share is first moved toward the other sample's by the sketches' resolution."""
    gap = p_cur - p_ref
    p_cur = p_ref + np.sign(gap) * np.maximum(np.abs(gap) - pmf_res, 0)
    table = np.vstack([p_ref * n, p_cur * m])
    table = table[:, table.sum(0) > 0]
    if table.shape[1] < 2:
        return 1.0
    return float(stats.chi2_contingency(table, correction=False)[1])


def numeric_rows(name: str, segment: str, ref: NumericSketch, cur: NumericSketch, cfg: DriftConfig) -> list[DriftRow]:
    n, m = ref.count, cur.count
    resolution = ref.resolution + cur.resolution  # 0 when both sketches are still exact
    d = ks_statistic(ref, cur)
    p_ref, p_cur = binned(ref, cur, cfg.bins)
    # a bin's mass can be off by the rank error at each of its two edges, in each sketch
    pmf_res = 2 * resolution
    p_binned = binned_p_value(p_ref, p_cur, n, m, pmf_res)
    half, half_shifted = np.full(2, 0.5), np.array([0.5 + pmf_res, 0.5 - pmf_res])  # each distance's resolution
    rows = [DriftRow(name, segment, "ks", d, max(cfg.ks_min, resolution), resolution,
                     ks_p_value(max(0.0, d - resolution), n, m), n_ref=n, n_cur=m)]
    for test, value, threshold, res in (
        ("psi", psi(p_ref, p_cur), cfg.psi_max, psi(half, half_shifted)),
        ("hellinger", hellinger(p_ref, p_cur), cfg.hellinger_max, hellinger(half, half_shifted)),
        ("js", jensen_shannon(p_ref, p_cur), cfg.js_max, jensen_shannon(half, half_shifted)),
    ):
        rows.append(DriftRow(name, segment, test, value, max(threshold, res), res, p_binned, n_ref=n, n_cur=m))
    return rows


def _fi_error(s: CategoricalSketch) -> float:
    """Largest share by which a tracked value's count can be off (0 while the sketch is exact)."""
    bounds = [ub - lb for _, _, lb, ub in s.top(10_000)]
    return (max(bounds) if bounds else 0) / max(1, s.count)


def categorical_rows(name: str, segment: str, ref: CategoricalSketch, cur: CategoricalSketch,
                     cfg: DriftConfig) -> list[DriftRow]:
    fr, fc = ref.frequencies(), cur.frequencies()
    values = sorted(set(fr) | set(fc))
    a = np.array([fr.get(v, 0) for v in values] + [max(0, ref.count - sum(fr.values()))], dtype=float)
    b = np.array([fc.get(v, 0) for v in values] + [max(0, cur.count - sum(fc.values()))], dtype=float)
    keep = (a + b) > 0
    a, b = a[keep], b[keep]
    tv = 0.5 * float(np.abs(a / a.sum() - b / b.sum()).sum())
    resolution = _fi_error(ref) + _fi_error(cur)
    # values seen fewer than RARE times in both batches together share one cell: the chi-square
    # approximation needs expected counts of about 5 (many rare values, e.g. 1,000 ImageNet
    # classes, would otherwise make false alarms)
    rare = (a + b) < RARE
    if rare.any():
        a = np.append(a[~rare], a[rare].sum())
        b = np.append(b[~rare], b[rare].sum())
    if len(a) < 2:
        p = 1.0
    else:
        p = float(stats.chi2_contingency(np.vstack([a, b]), correction=False)[1])
    return [DriftRow(name, segment, "chi2_tv", tv, max(cfg.tv_max, resolution), resolution, p, n_ref=ref.count,
                     n_cur=cur.count)]


def share_rows(name: str, ref: CategoricalSketch, cur: CategoricalSketch, cfg: DriftConfig) -> list[DriftRow]:
    """One two-proportion z-test per value of a balance column: statistic = the value's share
    of the current batch minus its share of the reference (counts exact, or within the
    frequent-items bound, which raises the threshold)."""
    fr, fc = ref.frequencies(), cur.frequencies()
    n1, n2 = ref.count, cur.count
    values = sorted(set(fr) | set(fc))
    if len(values) < 2 or not (n1 and n2):
        return []
    resolution = _fi_error(ref) + _fi_error(cur)
    rows = []
    for v in values:
        x1, x2 = fr.get(v, 0), fc.get(v, 0)
        pooled = (x1 + x2) / (n1 + n2)
        se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
        diff = x2 / n2 - x1 / n1
        p = float(2 * stats.norm.sf(abs(diff) / se)) if se > 0 else 1.0
        rows.append(DriftRow(name, f"{name}={v}", "share", diff, max(cfg.share_min, resolution), resolution, p,
                             n_ref=n1, n_cur=n2))
    return rows


def _mmd2_from_kernel(k: np.ndarray, in_x: np.ndarray, total: float) -> float:
    """Unbiased MMD^2 from the pooled RBF kernel matrix (diagonal 1) and a mask of the x rows."""
    n = int(in_x.sum())
    m = len(in_x) - n
    kx = k @ in_x
    sxx = float(in_x @ kx)
    sxy = float(kx.sum() - sxx)
    syy = total - 2 * sxy - sxx
    return (sxx - n) / (n * (n - 1)) + (syy - m) / (m * (m - 1)) - 2 * sxy / (n * m)


def permutation_p_value(observed: float, null: np.ndarray) -> float:
    """p-value of a statistic against its permutation distribution. A Pearson type III curve
    (a gamma with a location) fitted to the permutations' mean, spread and skewness gives the
    tail beyond them (the moment-matched approximation of Gretton et al., 2009), so a strong
    signal gets a p-value below 1 / (permutations + 1) and can survive a correction over many
    tests."""
    null = np.asarray(null, dtype=np.float64)
    sd = float(null.std(ddof=1))
    if not sd > 0:
        return 1.0 if observed <= float(null.mean()) else 0.0
    return float(stats.pearson3.sf(observed, float(stats.skew(null)), loc=float(null.mean()), scale=sd))


def _permuted(statistic: Callable[[np.ndarray], float], n_x: int, n: int, permutations: int,
              seed: int) -> tuple[float, np.ndarray]:
    """A two-sample statistic of a 0/1 mask (1 = first sample) on the real split, and on
    `permutations` seeded random relabellings of the n pooled rows."""
    in_x = np.zeros(n)
    in_x[:n_x] = 1
    rng = np.random.default_rng(seed)
    return statistic(in_x), np.array([statistic(rng.permutation(in_x)) for _ in range(permutations)])


def mmd_test(x: np.ndarray, y: np.ndarray, permutations: int, seed: int = 0) -> tuple[float, float]:
    """MMD^2 (RBF kernel on L2-normalised vectors, bandwidth = median squared distance) and its
    p-value from permutations. One kernel matrix; each permutation is one matrix-vector product."""
    z = np.vstack([x, y]).astype(np.float64)
    z /= np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    sq = (z * z).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * z @ z.T, 0)
    gamma = 1.0 / max(float(np.median(d2[np.triu_indices(len(z), 1)])), 1e-12)
    k = np.exp(-gamma * d2)
    total = float(k.sum())
    observed, null = _permuted(lambda in_x: _mmd2_from_kernel(k, in_x, total), len(x), len(z), permutations, seed)
    return observed, permutation_p_value(observed, null)


def mean_shift_p_value(a: np.ndarray, b: np.ndarray, n: int, m: int, x: np.ndarray, y: np.ndarray,
                       permutations: int = 200, seed: int = 0) -> float:
    """p-value of ||a - b||^2, a and b the means of n and m vectors, under 'same distribution'.

    The null comes from the samples x and y of those vectors: the squared difference of their
    means under random relabelling (one matrix-vector product each), rescaled from the samples'
    sizes to n and m (its expectation is tr(covariance) * (1/n + 1/m))."""
    if min(len(x), len(y)) < 2:
        return 1.0
    z = np.vstack([x, y]).astype(np.float64)
    z -= z.mean(0)
    k = z @ z.T
    ns, ms = len(x), len(y)

    def diff2(in_x: np.ndarray) -> float:
        u = in_x / ns - (1 - in_x) / ms
        return float(u @ (k @ u))

    _, null = _permuted(diff2, ns, ns + ms, permutations, seed)
    null *= (1 / n + 1 / m) / (1 / ns + 1 / ms)
    return permutation_p_value(float(np.sum((np.asarray(a) - np.asarray(b)) ** 2)), null)


def embedding_rows(ref: EmbeddingStats, cur: EmbeddingStats, cfg: DriftConfig) -> list[DriftRow]:
    """MMD on the samples and the cosine shift of the centroids (exact sums), overall and per
    label; the centroid shift's p-value tests the difference of the two means."""
    if ref.key != cur.key:
        raise BadInput(f"embeddings of different models or preprocessing ({ref.key} vs {cur.key}): re-embed one of them")
    rows = []
    ref_labels, cur_labels = np.array(ref.sample_labels), np.array(cur.sample_labels)
    for label in [ALL, *sorted(set(ref.labels) & set(cur.labels))]:
        segment = "all" if label == ALL else f"label={label}"
        x = ref.sample if label == ALL else ref.sample[ref_labels == label]
        y = cur.sample if label == ALL else cur.sample[cur_labels == label]
        if min(len(x), len(y)) >= (2 if label == ALL else cfg.min_rows):
            stat, p = mmd_test(x, y, cfg.mmd_permutations)
            rows.append(DriftRow("embedding", segment, "mmd", stat, cfg.mmd_min, 0.0, p, n_ref=len(x), n_cur=len(y)))
        if min(ref.count[label], cur.count[label]) < cfg.min_rows:
            continue
        a, b = ref.centroid(label), cur.centroid(label)
        shift = 1.0 - float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))
        p = mean_shift_p_value(a, b, ref.count[label], cur.count[label], x, y, cfg.mmd_permutations)
        rows.append(DriftRow("embedding_centroid", segment, "cosine_shift", shift, cfg.centroid_shift_max, 0.0, p,
                             n_ref=ref.count[label], n_cur=cur.count[label]))
    return rows


def adjust(p: list[float], method: str) -> list[float]:
    """Holm (family-wise) or Benjamini-Hochberg (false discovery rate) adjusted p-values."""
    n = len(p)
    if n == 0:
        return []
    order = np.argsort(p)
    ps = np.asarray(p, dtype=float)[order]
    if method == "holm":
        adj = np.maximum.accumulate(np.minimum(1.0, (n - np.arange(n)) * ps))
    else:
        adj = np.minimum.accumulate(n / np.arange(n, 0, -1) * ps[::-1])[::-1]
        adj = np.minimum(1.0, adj)
    out = np.empty(n)
    out[order] = adj
    return out.tolist()


def compare(ref: Profile, cur: Profile, cfg: DriftConfig | None = None) -> list[DriftRow]:
    """Every drift row between two profiles, corrected for multiple testing and decided."""
    cfg = cfg or DriftConfig()
    rows = column_rows(ref, cur, cfg, cfg.segments)
    if ref.objects is not None and cur.objects is not None:  # the objects' own columns, per class too
        for r in column_rows(ref.objects, cur.objects, cfg, ref.objects.cfg.segments):
            r.feature = f"objects.{r.feature}"
            rows.append(r)
    if ref.embedding is not None and cur.embedding is not None:
        rows += embedding_rows(ref.embedding, cur.embedding, cfg)
    return decide(rows, cfg)


def column_rows(ref: Profile, cur: Profile, cfg: DriftConfig, segments: list[str]) -> list[DriftRow]:
    """The undecided rows of every column both profiles sketch, overall and per segment value."""
    rows: list[DriftRow] = []
    pairs = [("all", ref.columns, cur.columns)]
    for seg in segments:
        for value in sorted(set(ref.segments.get(seg, {})) & set(cur.segments.get(seg, {}))):
            pairs.append((f"{seg}={value}", ref.segments[seg][value], cur.segments[seg][value]))
    for segment, a, b in pairs:
        for name in sorted(set(a) & set(b)):
            if name in cfg.exclude or segment.startswith(f"{name}="):  # constant inside its own segment
                continue
            sa, sb = a[name], b[name]
            if min(sa.count, sb.count) < cfg.min_rows:
                continue
            if isinstance(sa, NumericSketch) and isinstance(sb, NumericSketch):
                rows += numeric_rows(name, segment, sa, sb, cfg)
            elif isinstance(sa, CategoricalSketch) and isinstance(sb, CategoricalSketch):
                if sa.distinct > 0.5 * sa.count:  # near-unique values: summarised, never drift-tested
                    continue
                rows += categorical_rows(name, segment, sa, sb, cfg)
                if segment == "all" and name in cfg.balance:
                    rows += share_rows(name, sa, sb, cfg)
    return rows


def family_of(row: DriftRow, cfg: DriftConfig) -> str:
    """The multiple-testing family a row's hypothesis belongs to (see the module docstring)."""
    if row.feature.startswith("objects.") or row.feature in OBJECT_IMAGE_KINDS:
        return "objects"
    if row.test == "share" or (row.feature in cfg.balance and row.segment == "all"):
        return "class_balance"
    if row.feature.startswith("embedding"):
        return "embedding"
    return "features" if row.segment == "all" else "segments"


def family_shares(cfg: DriftConfig, present: set[str]) -> dict[str, float]:
    """Each present family's share of alpha: drift.budget, renormalised over the families that
    have tests (which families have tests depends on the data, never on the p-values)."""
    budget = {f: w for f, w in cfg.budget.items() if f in present}
    total = sum(budget.values())
    missing = present - set(budget)  # a family left out of drift.budget gets none
    return {**{f: w / total for f, w in budget.items()}, **{f: 0.0 for f in missing}} if total else \
        {f: 1 / len(present) for f in present}


def decide(rows: list[DriftRow], cfg: DriftConfig) -> list[DriftRow]:
    """Correct the rows' p-values for multiple testing, family by family, and decide which rows
    drift (in place). p_adjusted = the within-family Holm (or BH) p-value divided by the
    family's share of alpha; a row drifts when p_adjusted < alpha and its effect size passes
    its threshold (raised to the sketches' resolution)."""
    # one hypothesis per p-value: PSI, Hellinger and JS are effect sizes of one binned test
    hypotheses: dict[tuple[str, str, str], list[DriftRow]] = {}
    for r in rows:
        r.family = family_of(r, cfg)
        if r.p_value is not None:
            hypotheses.setdefault((r.feature, r.segment, "binned" if r.test in BINNED else r.test), []).append(r)
    by_family: dict[str, list[list[DriftRow]]] = {}
    for group in hypotheses.values():
        by_family.setdefault(group[0].family, []).append(group)
    weight = family_shares(cfg, set(by_family))
    for family, groups in by_family.items():
        adjusted = adjust([g[0].p_value or 0.0 for g in groups], cfg.correction)  # every group has a p-value (above)
        for group, p in zip(groups, adjusted):
            for r in group:
                r.p_adjusted = min(1.0, p / weight[family]) if weight[family] > 0 else 1.0
    for r in rows:
        big = abs(r.statistic) > r.threshold
        r.drift = big and (r.p_adjusted is None or r.p_adjusted < cfg.alpha)
    return rows
